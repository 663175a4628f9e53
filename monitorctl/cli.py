"""Operate a deployed monitor, with your own AWS credentials:

    python -m monitorctl --stack NAME targets list
    python -m monitorctl --stack NAME targets add a.bitrix24.com/myconnector/12 '*/myconnector/*'
    python -m monitorctl --stack NAME targets remove example.bitrix24.com/myconnector/12
    python -m monitorctl --stack NAME tokens list
    python -m monitorctl --stack NAME tokens move [--portal example.bitrix24.com ...]
    python -m monitorctl --stack NAME tokens set example.bitrix24.com < new-pair.json
    python -m monitorctl --stack NAME portals authorize example.bitrix24.com
    python -m monitorctl --stack NAME silence add --portal client.bitrix24.com --for 2h --why ...
    python -m monitorctl --stack NAME silence list
    python -m monitorctl --stack NAME silence remove 20261206T120000Z-1a2b3c4d
    python -m monitorctl --stack NAME ack client.bitrix24.com/myconnector/12
    python -m monitorctl --stack NAME status [--state DOWN] [--portal example.bitrix24.com]
    python -m monitorctl --stack NAME history example.bitrix24.com[/myconnector/12]

`--stack` reads the table, token table and secret from the stack's outputs; `--table`,
`--tokens-table` and `--secret` name them instead. `--local` reaches the local run (`make run`:
moto on 127.0.0.1, its tables and secret, read from the file the run writes); `--endpoint-url`
sends every AWS call elsewhere. No command prints a token or a secret.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlencode

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from connector_monitor.api.errors import ApiError, NotFound
from connector_monitor.api.history_service import HistoryService
from connector_monitor.api.registry_service import RegistryService, entry_from_text
from connector_monitor.api.silence_service import SilenceService
from connector_monitor.api.snapshot_service import SnapshotService
from connector_monitor.api.views import SilenceRequest
from connector_monitor.aws.history import HistoryReader
from connector_monitor.aws.lease import Lease
from connector_monitor.aws.registry import Registry
from connector_monitor.aws.repository import StateRepository
from connector_monitor.aws.secret_pairs import SecretPairs
from connector_monitor.aws.silences import SilenceTable
from connector_monitor.aws.token_table import TablePairs
from connector_monitor.domain.authorize_state import (
    LINK_LIFETIME,
    AuthorizeState,
    sign_state,
    state_key,
)
from connector_monitor.domain.targets import Target
from connector_monitor.ports.state_store import StateStoreError
from connector_monitor.tokens.credentials import portal_key
from connector_monitor.tokens.errors import TokenError
from connector_monitor.tokens.moving import move_to_table, set_pair

from .status import print_history, print_status

OUTPUTS = {"table": "TableName", "tokens_table": "TokenTableName", "secret": "SecretArn"}
# Where `make run` (local/run.py) writes how to reach its moto server and resources.
LOCAL_RUN_FILE = Path(__file__).resolve().parent.parent / ".local-run.json"
PROG = "python -m monitorctl"


class UsageError(Exception):
    """What the operator must pass or fix; printed as is."""


@dataclass(frozen=True)
class Stack:
    """Where the monitor keeps what the commands touch."""

    table: str
    tokens_table: str
    secret: str
    endpoint_url: str | None = None
    region: str | None = None
    # the local run's made-up credentials (moto takes any): never the user's ~/.aws
    credentials: dict[str, str] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        return boto3.client(
            service, region_name=self.region, endpoint_url=self.endpoint_url, **self.credentials
        )


def _verb(
    verbs: Any, name: str, help_text: str, example: str, description: str | None = None
) -> argparse.ArgumentParser:
    """A verb whose --help ends with an example of its use."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        name,
        help=help_text,
        description=description or help_text,
        epilog=f"example:\n  {PROG} {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(__doc__ or "").splitlines()[0],
        epilog=(
            f"examples:\n  {PROG} --stack bitrix24-connector-monitor targets list\n"
            f"  {PROG} --local silence list   (the local run of `make run`)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stack", help="the deployed stack's name (reads its outputs)")
    parser.add_argument("--region", help="AWS region (default: your AWS configuration's)")
    parser.add_argument("--table", help="the state table (instead of --stack)")
    parser.add_argument("--tokens-table", help="the fleet's token table (instead of --stack)")
    parser.add_argument("--secret", help="the secret's name or ARN (instead of --stack)")
    parser.add_argument(
        "--endpoint-url", help="send every AWS call there (e.g. a moto server) instead of AWS"
    )
    parser.add_argument(
        "--local",
        nargs="?",
        const=str(LOCAL_RUN_FILE),
        metavar="FILE",
        help="the local run's moto server, tables and secret (`make run` writes FILE, "
        f"default {LOCAL_RUN_FILE.name} at the repository's root, and prints this command)",
    )
    groups = parser.add_subparsers(dest="group", required=True)

    targets = groups.add_parser("targets", help="the target registry")
    verbs = targets.add_subparsers(dest="verb", required=True)
    _verb(verbs, "list", "every entry, with who added it and when", "--stack NAME targets list")
    add = _verb(
        verbs,
        "add",
        "add entries: domain/connector/line, line or domain *",
        "--stack NAME targets add client.bitrix24.com/myconnector/12 '*/myconnector/*'",
    )
    add.add_argument("entries", nargs="+", metavar="ENTRY")
    add.add_argument("--by", help="who adds them (default: your AWS identity)")
    remove = _verb(
        verbs,
        "remove",
        "remove entries",
        "--stack NAME targets remove client.bitrix24.com/myconnector/12",
    )
    remove.add_argument("entries", nargs="+", metavar="ENTRY")
    label = _verb(
        verbs,
        "label",
        "set a portal's client labels, shown in its alerts and snapshot targets",
        "--stack NAME targets label client.bitrix24.com --client Acme "
        "--owner jane@example.com --tier gold --runbook https://wiki.example.com/acme",
        description=(
            "Set DOMAIN's client labels: exactly those given (the others are unset); none "
            "given removes them. Alerts show them from the next run."
        ),
    )
    label.add_argument("domain", metavar="DOMAIN")
    for name, what in LABELS.items():
        label.add_argument(f"--{name}", help=what)
    label.add_argument("--by", help="who sets them (default: your AWS identity)")

    tokens = groups.add_parser("tokens", help="the portals' token pairs")
    verbs = tokens.add_subparsers(dest="verb", required=True)
    _verb(
        verbs,
        "list",
        "which portals' pairs are in the secret, which in the table",
        "--stack NAME tokens list",
    )
    move = _verb(
        verbs,
        "move",
        "move pairs from the secret to the fleet's token table",
        "--stack NAME tokens move --portal client.bitrix24.com",
    )
    move.add_argument(
        "--portal", action="append", dest="portals", help="only this portal (repeatable)"
    )
    put = _verb(
        verbs,
        "set",
        "replace a portal's pair in the token table (after re-authorising the application)",
        "--stack NAME tokens set client.bitrix24.com < new-pair.json",
        description=(
            "Replace DOMAIN's pair in the fleet's token table with a new one (a refresh "
            "under way keeps it). The pair is a JSON object (access_token, refresh_token, "
            "and optionally expires_at or expires, client_endpoint, member_id) read from "
            "standard input or --file: never from the command line, where other users and the "
            "shell's history could read it."
        ),
    )
    put.add_argument("domain", metavar="DOMAIN")
    put.add_argument("--file", help="read the pair from this file (default: standard input)")

    portals = groups.add_parser("portals", help="the portals the monitor's application is on")
    verbs = portals.add_subparsers(dest="verb", required=True)
    authorize = _verb(
        verbs,
        "authorize",
        "print the link that re-authorises the application on a portal (no reinstall)",
        "--stack NAME portals authorize client.bitrix24.com",
        description=(
            "Print DOMAIN's authorisation link for the monitor's application. A portal "
            "administrator opens it; Bitrix24 sends them back to the stack's AuthorizedHandlerUrl "
            "with a code, which the stack verifies and stores. The link is signed for DOMAIN "
            f"and expires in {LINK_LIFETIME // 60} minutes."
        ),
    )
    authorize.add_argument("domain", metavar="DOMAIN")
    authorize.add_argument("--app", help="the application's name in the secret's apps")
    authorize.add_argument(
        "--portal-url", help="the portal's address (default: https://DOMAIN)", default=""
    )

    silence = groups.add_parser("silence", help="hold the alerts of a portal, connector or cause")
    verbs = silence.add_subparsers(dest="verb", required=True)
    mute = _verb(
        verbs,
        "add",
        "silence a portal, a connector, one target or a cause until a time",
        "--stack NAME silence add --portal client.bitrix24.com --for 2h --why 'bridge upgrade'",
        description=(
            "While the silence is active, the alerts of the targets it matches are held: their "
            "state and history go on, nothing is published. When it ends (or is removed), a "
            "target still down is announced once; one that recovered meanwhile announces "
            "nothing. Give what it matches (at least one of --portal, --connector, --cause), "
            "how long (--for or --until) and why."
        ),
    )
    mute.add_argument("--portal", help="a portal domain")
    mute.add_argument("--connector", help="a connector id")
    mute.add_argument("--line", help="an open line (with --portal and --connector)")
    mute.add_argument(
        "--cause", help="why the monitor cannot see: auth_lost, access_denied, rate_limited, ..."
    )
    until = mute.add_mutually_exclusive_group(required=True)
    until.add_argument("--for", dest="duration", help="how long: 30m, 2h, 3d")
    until.add_argument("--until", help="when it ends: 2026-12-07T08:00:00Z")
    mute.add_argument("--why", required=True, help="the reason, for whoever reads the list")
    mute.add_argument("--by", help="who (default: your AWS identity)")
    _verb(verbs, "list", "every silence, active or ended this week", "--stack NAME silence list")
    unmute = _verb(
        verbs,
        "remove",
        "end a silence now (held targets still down are announced once by the next run)",
        "--stack NAME silence remove 20261206T120000Z-1a2b3c4d",
    )
    unmute.add_argument("silence_id", metavar="ID")

    # ack, status and history are verbs of their own: one word, no group
    ack = _verb(
        groups,
        "ack",
        "acknowledge a target's open outage: its reminders stop",
        "--stack NAME ack client.bitrix24.com/myconnector/12",
        description=(
            "Mark the open outage of PORTAL/CONNECTOR/LINE acknowledged: no more reminders for "
            "it. Its recovery is still announced, and a later outage is not acknowledged."
        ),
    )
    ack.add_argument("target", metavar="PORTAL/CONNECTOR/LINE")
    ack.add_argument("--by", help="who (default: your AWS identity)")
    ack.set_defaults(verb="")
    status = _verb(
        groups,
        "status",
        "the latest state of every target (exit 1 while one is DOWN)",
        "--stack NAME status --state DOWN",
    )
    status.add_argument("--state", help="only UP, DOWN or UNKNOWN")
    status.add_argument("--portal", help="only this portal's targets")
    status.set_defaults(verb="")
    history = _verb(
        groups,
        "history",
        "incidents and uptime (24 h, 7 d, 30 d) of a portal or a target",
        "--stack NAME history example.bitrix24.com/myconnector/12",
    )
    history.add_argument("what", metavar="PORTAL[/CONNECTOR/LINE]")
    history.set_defaults(verb="")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = parse_args(argv)
    try:
        stack = locate(args)
        return COMMANDS[(args.group, args.verb)](args, stack, out)
    except (UsageError, ApiError) as exc:
        print(f"error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    except (StateStoreError, TokenError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as exc:
        print(f"error: AWS refused or could not be reached: {exc}", file=sys.stderr)
        return 1


def locate(args: argparse.Namespace) -> Stack:
    found = {"table": args.table, "tokens_table": args.tokens_table, "secret": args.secret}
    endpoint, region, credentials = args.endpoint_url, args.region, {}
    if args.local:
        run = local_run(Path(args.local))
        for name in OUTPUTS:
            found[name] = found[name] or run.get(name)
        endpoint, region = endpoint or run.get("endpoint_url"), region or run.get("region")
        credentials = {"aws_access_key_id": "local-run", "aws_secret_access_key": "local-run"}
    if args.stack:
        outputs = stack_outputs(args.stack, region, endpoint)
        for name, output in OUTPUTS.items():
            found[name] = found[name] or outputs.get(output)
    return Stack(
        found["table"] or "",
        found["tokens_table"] or "",
        found["secret"] or "",
        endpoint_url=endpoint,
        region=region,
        credentials=credentials,
    )


def local_run(path: Path) -> dict[str, str]:
    """What `make run` wrote about itself: its moto endpoint, region, tables and secret."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"no local run: {path} is missing (start one with `make run`)") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} could not be read ({type(exc).__name__})") from None
    if not isinstance(document, dict) or not all(
        isinstance(document.get(k), str) for k in ("endpoint_url", "region", "table")
    ):
        raise UsageError(f"{path} is not a local run's file (endpoint_url, region, table)")
    return {k: v for k, v in document.items() if isinstance(v, str)}


def stack_outputs(stack: str, region: str | None, endpoint: str | None = None) -> dict[str, str]:
    client = boto3.client("cloudformation", region_name=region, endpoint_url=endpoint)
    try:
        (described,) = client.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        raise UsageError(f"stack {stack} could not be read: {exc}") from None
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def _need(value: str, what: str, option: str) -> str:
    if not value:
        raise UsageError(f"which {what}? pass --stack NAME or {option}")
    return value


def _registry(stack: Stack) -> RegistryService:
    table = _need(stack.table, "state table", "--table")
    return RegistryService(Registry(table, client=stack.client("dynamodb")))


# ---- targets ----------------------------------------------------------------------------------
def targets_list(args: argparse.Namespace, stack: Stack, out: TextIO) -> int:
    service, cursor, count = _registry(stack), None, 0
    portals: set[str] = set()
    while True:
        page = service.page(cursor=cursor)
        for entry in page.entries:
            count += 1
            portals.add(entry.portal)
            note = f"  PROBLEM: {entry.problem}" if entry.problem else ""
            print(
                f"{entry.key}\tadded {entry.added_at or '?'} by {entry.added_by or '?'}{note}",
                file=out,
            )
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    print(f"{count} entries", file=out)
    for portal, labels in sorted(service.labels_of(sorted(portals - {"*"})).items()):
        text = ", ".join(f"{k}: {v}" for k, v in labels.as_dict().items())
        print(f"labels of {portal}: {text}", file=out)
    return 0


def targets_add(args: argparse.Namespace, stack: Stack, out: TextIO) -> int:
    entries = [entry_from_text(text) for text in args.entries]  # all valid, or nothing added
    service, by, now = _registry(stack), args.by or identity(stack), datetime.now(UTC)
    for entry in entries:
        added = service.add(entry, by=by, at=now)
        print(f"{'added' if added else 'already there'}: {entry.key}", file=out)
    return 0


def targets_remove(args: argparse.Namespace, stack: Stack, out: TextIO) -> int:
    entries = [entry_from_text(text) for text in args.entries]
    service, missing = _registry(stack), 0
    for entry in entries:
        try:
            service.remove(entry)
        except NotFound:
            missing += 1
            print(f"not in the registry: {entry.key}", file=out)
        else:
            print(f"removed: {entry.key}", file=out)
    return 1 if missing else 0


LABELS = {
    "client": "the client's name",
    "owner": "who looks after the client",
    "tier": "the client's tier (e.g. gold)",
    "runbook": "an https:// URL of the client's runbook",
}


def targets_label(args: argparse.Namespace, stack: Stack, out: TextIO) -> int:
    given = {name: getattr(args, name) for name in LABELS if getattr(args, name) is not None}
    service, by = _registry(stack), args.by or identity(stack)
    stored = service.set_labels(args.domain, given, by=by, at=datetime.now(UTC))
    shown = stored.labels.model_dump(exclude_none=True)
    text = ", ".join(f"{k}: {v}" for k, v in shown.items()) or "none (removed)"
    print(f"labels of {stored.portal}: {text}", file=out)
    return 0


def identity(stack: Stack) -> str:
    """Who is adding: the caller's AWS identity, else the local user."""
    try:
        return str(stack.client("sts").get_caller_identity()["Arn"])
    except (BotoCoreError, ClientError):
        return getpass.getuser()


# ---- tokens -----------------------------------------------------------------------------------
def _secret(args: argparse.Namespace, stack: Stack) -> SecretPairs:
    secret = _need(stack.secret, "secret", "--secret")
    return SecretPairs(secret, client=stack.client("secretsmanager"))


def _table(args: argparse.Namespace, stack: Stack, secret: SecretPairs) -> TablePairs:
    table = _need(stack.tokens_table, "token table", "--tokens-table")
    return TablePairs(table, apps=secret.apps, client=stack.client("dynamodb"))


def tokens_list(args: argparse.Namespace, stack: Stack, out: TextIO) -> int:
    secret = _secret(args, stack)
    secret.load()
    table = _table(args, stack, secret)
    table.load()
    in_secret, in_table = secret.portals(), table.portals()
    for portal in sorted({*in_secret, *in_table}):
        where = [
            name for name, held in (("secret", in_secret), ("table", in_table)) if portal in held
        ]
        note = (
            "  (both: the table's pair is used; `tokens move` finishes)" if len(where) == 2 else ""
        )
        print(f"{portal}\t{' + '.join(where)}{note}", file=out)
    print(f"{len(in_secret)} in the secret, {len(in_table)} in the token table", file=out)
    return 0


def tokens_move(args: argparse.Namespace, stack: Stack, out: TextIO) -> int:
    secret = _secret(args, stack)
    table = _table(args, stack, secret)
    lease = Lease(
        _need(stack.table, "state table (it holds the refresh leases)", "--table"),
        client=stack.client("dynamodb"),
    )
    moved = move_to_table(secret, table, lease, portals=args.portals)
    for portal in moved.moved:
        print(f"moved: {portal}", file=out)
    for portal in moved.already:
        print(
            f"already in the table (the same pair; the secret's entry removed): {portal}", file=out
        )
    for portal in moved.differing:
        print(
            f"left in the secret: its pair differs from the token table's: {portal} (if the "
            "application was re-authorised, store the new pair with "
            f"`monitorctl tokens set {portal}`, then move again)",
            file=out,
        )
    for portal, reason in moved.unreadable.items():
        print(f"left in the secret, unreadable: {portal}: {reason}", file=out)
    asked = {portal_key(p) for p in args.portals or ()}
    absent = sorted(asked - {*moved.moved, *moved.already, *moved.unreadable})
    for portal in absent:
        print(f"not in the secret: {portal}", file=out)
    return 1 if moved.unreadable or moved.differing or absent else 0


def tokens_set(
    args: argparse.Namespace, stack: Stack, out: TextIO, stdin: TextIO | None = None
) -> int:
    domain = portal_key(str(args.domain))
    try:
        if args.file:
            with open(args.file, encoding="utf-8") as source:
                text = source.read()
        else:
            text = (stdin or sys.stdin).read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"the new pair could not be read ({type(exc).__name__})") from None
    try:
        pair = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise UsageError("the new pair is not valid JSON (an object: access_token, ...)") from None
    if not isinstance(pair, dict):
        raise UsageError("the new pair is not a JSON object (access_token, refresh_token, ...)")
    secret = _secret(args, stack)
    set_pair(_table(args, stack, secret), domain, pair)
    print(f"set: {domain} (its pair in the token table replaced)", file=out)
    return 0


# ---- portals ----------------------------------------------------------------------------------
def portals_authorize(args: argparse.Namespace, stack: Stack, out: TextIO) -> int:
    domain = portal_key(str(args.domain))
    apps = _secret(args, stack).apps()
    if args.app:
        app = apps.get(args.app)
    elif len(apps) == 1:
        (app,) = apps.values()
    else:
        app = None
    if app is None:
        known = ", ".join(sorted(apps)) or "none"
        raise UsageError(f"which application? pass --app NAME (the secret's apps: {known})")
    state = AuthorizeState(domain, app.name, int(time.time()) + LINK_LIFETIME)
    base = (args.portal_url or f"https://{domain}").rstrip("/")
    query = urlencode(
        {"client_id": app.client_id, "state": sign_state(state, state_key(app.client_secret))}
    )
    print(f"{base}/oauth/authorize/?{query}", file=out)
    return 0


# ---- silences and acknowledgements ------------------------------------------------------------
DURATION = re.compile(r"^([1-9][0-9]{0,5})([mhd])$")
UNITS = {"m": 1, "h": 60, "d": 24 * 60}


def _silences(stack: Stack) -> SilenceService:
    table = _need(stack.table, "state table", "--table")
    return SilenceService(SilenceTable(table, client=stack.client("dynamodb")))


def silence_add(args: argparse.Namespace, stack: Stack, out: TextIO) -> int:
    minutes = None
    if args.duration is not None:
        match = DURATION.match(args.duration.strip())
        if match is None:
            raise UsageError(f"--for {args.duration[:20]!r}: write 30m, 2h or 3d")
        minutes = int(match[1]) * UNITS[match[2]]
    try:
        request = SilenceRequest(
            portal=args.portal,
            connector=args.connector,
            line=args.line,
            cause=args.cause,
            until=args.until,
            minutes=minutes,
            why=args.why,
        )
    except ValueError as exc:  # pydantic's: the first problem, in its words
        first = exc.errors()[0] if hasattr(exc, "errors") else {}
        where = ".".join(str(p) for p in first.get("loc", ())) or "silence"
        where = {"minutes": "for"}.get(where, where)
        raise UsageError(f"--{where}: {first.get('msg', exc)}") from None
    added = _silences(stack).add(request, by=args.by or identity(stack), at=datetime.now(UTC))
    print(f"added: {added.id}\t{_matched(added)} until {added.until}", file=out)
    return 0


def silence_list(args: argparse.Namespace, stack: Stack, out: TextIO) -> int:
    listed = _silences(stack).list(datetime.now(UTC)).silences
    for s in listed:
        state = "active" if s.active else "ended"
        print(
            f"{s.id}\t{state}\t{_matched(s)}\tuntil {s.until}\tby {s.by}\t{s.why}",
            file=out,
        )
    print(f"{len(listed)} silences ({sum(s.active for s in listed)} active)", file=out)
    return 0


def silence_remove(args: argparse.Namespace, stack: Stack, out: TextIO) -> int:
    removed = _silences(stack).remove(args.silence_id, datetime.now(UTC))
    print(f"removed: {removed.id}\t{_matched(removed)}", file=out)
    return 0


def _matched(view: Any) -> str:
    where = "/".join(
        str(part) if part is not None else "*" for part in (view.portal, view.connector, view.line)
    )
    return where + (f" cause={view.cause}" if view.cause else "")


def acknowledge(args: argparse.Namespace, stack: Stack, out: TextIO) -> int:
    target = entry_from_text(args.target)
    if not isinstance(target, Target):
        raise UsageError(f"{target.key}: acknowledge one target, PORTAL/CONNECTOR/LINE")
    acked = _silences(stack).acknowledge(
        target, by=args.by or identity(stack), at=datetime.now(UTC)
    )
    print(
        f"acknowledged: {acked.target} (outage since {acked.incident_since}); "
        "no more reminders for it",
        file=out,
    )
    return 0


# ---- status and history ---------------------------------------------------------------------
def _state(args: argparse.Namespace, stack: Stack) -> StateRepository:
    return StateRepository(
        _need(stack.table, "state table", "--table"), client=stack.client("dynamodb")
    )


def status(args: argparse.Namespace, stack: Stack, out: TextIO) -> int:
    # The CLI does not know the schedule: the snapshot's staleness is not judged here (the
    # last run's time is printed instead).
    service = SnapshotService(_state(args, stack), stale_after=timedelta(days=365))
    return print_status(service, datetime.now(UTC), out, state=args.state, portal=args.portal)


def history(args: argparse.Namespace, stack: Stack, out: TextIO) -> int:
    table = _need(stack.table, "state table", "--table")
    reader = HistoryReader(table, client=stack.client("dynamodb"))
    service = HistoryService(_state(args, stack), reader)
    return print_history(service, args.what, datetime.now(UTC), out)


COMMANDS = {
    ("targets", "list"): targets_list,
    ("targets", "add"): targets_add,
    ("targets", "remove"): targets_remove,
    ("targets", "label"): targets_label,
    ("tokens", "list"): tokens_list,
    ("tokens", "move"): tokens_move,
    ("tokens", "set"): tokens_set,
    ("portals", "authorize"): portals_authorize,
    ("silence", "add"): silence_add,
    ("silence", "list"): silence_list,
    ("silence", "remove"): silence_remove,
    ("ack", ""): acknowledge,
    ("status", ""): status,
    ("history", ""): history,
}
