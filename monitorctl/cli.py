"""Operate a deployed monitor, with your own AWS credentials:

    python -m monitorctl --stack NAME targets list
    python -m monitorctl --stack NAME targets add a.bitrix24.com/myconnector/12 '*/myconnector/*'
    python -m monitorctl --stack NAME targets remove example.bitrix24.com/myconnector/12
    python -m monitorctl --stack NAME tokens list
    python -m monitorctl --stack NAME tokens move [--portal example.bitrix24.com ...]
    python -m monitorctl --stack NAME tokens set example.bitrix24.com < new-pair.json

`--stack` reads the table, token table and secret from the stack's outputs; `--table`,
`--tokens-table` and `--secret` name them instead. No command prints a token or a secret.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from connector_monitor.api.errors import ApiError, NotFound
from connector_monitor.api.registry_service import RegistryService, entry_from_text
from connector_monitor.aws.lease import Lease
from connector_monitor.aws.registry import Registry
from connector_monitor.aws.secret_pairs import SecretPairs
from connector_monitor.aws.token_table import TablePairs
from connector_monitor.ports.state_store import StateStoreError
from connector_monitor.tokens.credentials import portal_key
from connector_monitor.tokens.errors import TokenError
from connector_monitor.tokens.moving import move_to_table, set_pair

OUTPUTS = {"table": "TableName", "tokens_table": "TokenTableName", "secret": "SecretArn"}


class UsageError(Exception):
    """What the operator must pass or fix; printed as is."""


@dataclass(frozen=True)
class Stack:
    """Where the monitor keeps what the commands touch."""

    table: str
    tokens_table: str
    secret: str


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m monitorctl", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--stack", help="the deployed stack's name (reads its outputs)")
    parser.add_argument("--region", help="AWS region (default: your AWS configuration's)")
    parser.add_argument("--table", help="the state table (instead of --stack)")
    parser.add_argument("--tokens-table", help="the fleet's token table (instead of --stack)")
    parser.add_argument("--secret", help="the secret's name or ARN (instead of --stack)")
    groups = parser.add_subparsers(dest="group", required=True)

    targets = groups.add_parser("targets", help="the target registry")
    verbs = targets.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", help="every entry, with who added it and when")
    add = verbs.add_parser("add", help="add entries: domain/connector/line, line or domain *")
    add.add_argument("entries", nargs="+", metavar="ENTRY")
    add.add_argument("--by", help="who adds them (default: your AWS identity)")
    remove = verbs.add_parser("remove", help="remove entries")
    remove.add_argument("entries", nargs="+", metavar="ENTRY")
    label = verbs.add_parser(
        "label",
        help="set a portal's client labels, shown in its alerts and snapshot targets",
        description=(
            "Set DOMAIN's client labels: exactly those given (the others are unset); none "
            "given removes them. Alerts show them from the next run. Example: "
            "targets label client.bitrix24.com --client Acme --owner jane@example.com "
            "--tier gold --runbook https://wiki.example.com/acme"
        ),
    )
    label.add_argument("domain", metavar="DOMAIN")
    for name, what in LABELS.items():
        label.add_argument(f"--{name}", help=what)
    label.add_argument("--by", help="who sets them (default: your AWS identity)")

    tokens = groups.add_parser("tokens", help="the portals' token pairs")
    verbs = tokens.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", help="which portals' pairs are in the secret, which in the table")
    move = verbs.add_parser("move", help="move pairs from the secret to the fleet's token table")
    move.add_argument(
        "--portal", action="append", dest="portals", help="only this portal (repeatable)"
    )
    put = verbs.add_parser(
        "set",
        help="replace a portal's pair in the token table (after re-authorising the application)",
        description=(
            "Replace DOMAIN's pair in the fleet's token table with a new one, under the "
            "portal's refresh lease. The pair is a JSON object (access_token, refresh_token, "
            "and optionally expires_at or expires, client_endpoint, member_id) read from "
            "standard input or --file: never from the command line, where other users and the "
            "shell's history could read it."
        ),
    )
    put.add_argument("domain", metavar="DOMAIN")
    put.add_argument("--file", help="read the pair from this file (default: standard input)")
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
    if args.stack:
        outputs = stack_outputs(args.stack, args.region)
        for name, output in OUTPUTS.items():
            found[name] = found[name] or outputs.get(output)
    return Stack(found["table"] or "", found["tokens_table"] or "", found["secret"] or "")


def stack_outputs(stack: str, region: str | None) -> dict[str, str]:
    client = boto3.client("cloudformation", region_name=region)
    try:
        (described,) = client.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        raise UsageError(f"stack {stack} could not be read: {exc}") from None
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def _need(value: str, what: str, option: str) -> str:
    if not value:
        raise UsageError(f"which {what}? pass --stack NAME or {option}")
    return value


def _registry(args: argparse.Namespace, stack: Stack) -> RegistryService:
    table = _need(stack.table, "state table", "--table")
    return RegistryService(Registry(table, client=_dynamodb(args)))


def _dynamodb(args: argparse.Namespace) -> Any:
    return boto3.client("dynamodb", region_name=args.region)


# ---- targets ----------------------------------------------------------------------------------
def targets_list(args: argparse.Namespace, stack: Stack, out: TextIO) -> int:
    service, cursor, count = _registry(args, stack), None, 0
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
    service, by, now = _registry(args, stack), args.by or identity(args), datetime.now(UTC)
    for entry in entries:
        added = service.add(entry, by=by, at=now)
        print(f"{'added' if added else 'already there'}: {entry.key}", file=out)
    return 0


def targets_remove(args: argparse.Namespace, stack: Stack, out: TextIO) -> int:
    entries = [entry_from_text(text) for text in args.entries]
    service, missing = _registry(args, stack), 0
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
    service, by = _registry(args, stack), args.by or identity(args)
    stored = service.set_labels(args.domain, given, by=by, at=datetime.now(UTC))
    shown = stored.labels.model_dump(exclude_none=True)
    text = ", ".join(f"{k}: {v}" for k, v in shown.items()) or "none (removed)"
    print(f"labels of {stored.portal}: {text}", file=out)
    return 0


def identity(args: argparse.Namespace) -> str:
    """Who is adding: the caller's AWS identity, else the local user."""
    try:
        return str(boto3.client("sts", region_name=args.region).get_caller_identity()["Arn"])
    except (BotoCoreError, ClientError):
        return getpass.getuser()


# ---- tokens -----------------------------------------------------------------------------------
def _secret(args: argparse.Namespace, stack: Stack) -> SecretPairs:
    secret = _need(stack.secret, "secret", "--secret")
    return SecretPairs(secret, client=boto3.client("secretsmanager", region_name=args.region))


def _table(args: argparse.Namespace, stack: Stack, secret: SecretPairs) -> TablePairs:
    table = _need(stack.tokens_table, "token table", "--tokens-table")
    return TablePairs(table, apps=secret.apps, client=_dynamodb(args))


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
        client=_dynamodb(args),
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


COMMANDS = {
    ("targets", "list"): targets_list,
    ("targets", "add"): targets_add,
    ("targets", "remove"): targets_remove,
    ("targets", "label"): targets_label,
    ("tokens", "list"): tokens_list,
    ("tokens", "move"): tokens_move,
    ("tokens", "set"): tokens_set,
}
