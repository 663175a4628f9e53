"""No token and no client secret ever leaves the secret: not in a log line, a stored item, an alert,
an API answer, a return value or a repr.

A full cycle of the real checker handler with known values (the local portal issues them): a
healthy run, an expired token refreshed and stored, an HTML error page, a revoked authorisation
(check.failed), a corrupt secret, an unreachable OAuth server, and recovery. Everything is
captured at DEBUG: the Powertools and library loggers, the root logger (botocore, urllib3,
requests, boto3), stdout and stderr. Then every log line, every DynamoDB item (a scan of the whole
table), every SNS message delivered to an SQS subscriber, every Snapshot API answer and every
return value or exception is searched for every token and secret the run ever saw, whole and in
part.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import traceback
from collections.abc import Iterator
from datetime import timedelta
from types import ModuleType
from typing import Any

import boto3
import pytest

from connector_monitor.cycle import CheckCycle
from connector_monitor.domain.shards import KeyRange
from connector_monitor.tokens.credentials import PortalCredentials
from connector_monitor.tokens.refresh import RefreshingTokens
from local.bitrix24_portal import PortalFault
from local.handlers import LambdaContext
from tests.events import http_event, load_handler
from tests.security.conftest import CONNECTOR, PORTAL, REGION, Stack, scheduled_event
from tests.wiring import token_source

TOKEN_FIELDS = ("access_token", "refresh_token", "client_secret")
PART = 16  # characters of a secret that count as a leak on their own (hex: 64 bits)
DEBUG_LOGGERS = ("botocore", "boto3", "urllib3", "requests", "s3transfer", "connector_monitor")
NOT_OURS = ("moto", "werkzeug", "local.")  # test infrastructure, absent from the Lambda


class _OursOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(NOT_OURS)


@pytest.fixture
def debug_logs(
    checker: ModuleType, log_stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> Iterator[io.StringIO]:
    """Every logger at DEBUG, all of it into one stream (Powertools' own via `log_stream`)."""
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    root = logging.getLogger()
    handler = logging.StreamHandler(log_stream)
    handler.setLevel(logging.DEBUG)
    handler.addFilter(_OursOnly())
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    names = [checker.logger.name, *DEBUG_LOGGERS]
    names += [n for n in logging.root.manager.loggerDict if n.startswith("connector_monitor")]
    levels = {name: logging.getLogger(name).level for name in names}
    root_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield log_stream
    root.removeHandler(handler)
    root.setLevel(root_level)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


class Run:
    """Invokes the checker and keeps everything that came out, and every secret it saw."""

    def __init__(self, stack: Stack, checker: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
        self.stack = stack
        self.checker = checker
        self.known: set[str] = set()
        self.outputs: list[str] = []  # return values, exceptions and tracebacks
        self.stores: list[RefreshingTokens] = []
        self._build = checker.root().cycle
        monkeypatch.setattr(checker.root(), "cycle", self._wrap)
        self.remember()

    def _wrap(self, invocation: timedelta, portals: KeyRange | None = None) -> CheckCycle:
        cycle: CheckCycle = self._build(invocation, portals)
        store: Any = cycle.tokens
        self.stores.append(store)
        return cycle

    def remember(self) -> None:
        """Every token and secret the stored secret holds now (skipped while it is corrupt),
        and every token the portal ever issued."""
        self.known |= self.stack.portal.issued_secrets()
        try:
            entries = self.stack.secret()["portals"].values()
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        for entry in entries:
            self.known |= {v for k in TOKEN_FIELDS if isinstance(v := entry.get(k), str) and v}

    def invoke(self) -> dict[str, Any] | None:
        self.remember()
        try:
            summary: dict[str, Any] = self.checker.lambda_handler(
                scheduled_event(), LambdaContext()
            )
        except Exception as exc:  # what the Lambda runtime would log for a failed invocation
            self.outputs += [repr(exc), "".join(traceback.format_exception(exc))]
            return None
        finally:
            self.remember()
        self.outputs.append(json.dumps(summary, default=str))
        return summary


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def delivered(stack: Stack) -> list[str]:
    """Every SNS delivery to the SQS subscriber, whole (envelope, subject, attributes)."""
    sqs = boto3.client("sqs", region_name=REGION)
    bodies: list[str] = []
    while True:
        answer = sqs.receive_message(
            QueueUrl=stack.queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )
        messages = answer.get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.dumps(message))
            sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])


def whole_table(stack: Stack) -> list[str]:
    """Every item, leases and pending alerts included (a scan: fine in a test)."""
    table = boto3.resource("dynamodb", region_name=REGION).Table(stack.table)
    items: list[dict[str, Any]] = []
    answer = table.scan(ConsistentRead=True)
    items += answer["Items"]
    while "LastEvaluatedKey" in answer:
        answer = table.scan(ConsistentRead=True, ExclusiveStartKey=answer["LastEvaluatedKey"])
        items += answer["Items"]
    return [json.dumps(item, default=str) for item in items]


def api_answers() -> list[str]:
    """The Snapshot API over the same table: every route, some errors, whole responses."""
    api = load_handler("snapshot_api")
    requests_ = [
        ("snapshot_get", "/snapshot", {}),
        ("snapshot_get", "/snapshot", {"state": "UNKNOWN", "limit": "1"}),
        ("snapshot_get", "/snapshot", {"portal": PORTAL}),
        ("snapshot_target_get", f"/snapshot/{PORTAL}/{CONNECTOR}/12", {}),
        ("snapshot_target_get", f"/snapshot/{PORTAL}/{CONNECTOR}/99", {}),
        ("health_get", "/health", {}),
        ("snapshot_get", "/snapshot", {"cursor": "bogus"}),
        ("snapshot_get", "/nothing", {}),
        ("history_portal_get", f"/history/{PORTAL}", {}),
        ("history_target_get", f"/history/{PORTAL}/{CONNECTOR}/12", {}),
        ("status_page_get", "/", {}),
    ]
    answers = [
        api.lambda_handler(http_event(base, path=path, query=query), LambdaContext("snapshot-api"))
        for base, path, query in requests_
    ]
    assert [a["statusCode"] for a in answers] == [
        200,
        200,
        200,
        200,
        404,
        200,
        400,
        404,
        200,
        200,
        200,
    ]
    return [json.dumps(answer) for answer in answers]


def leaks(text: str, known: set[str]) -> list[str]:
    """Which known secrets appear in `text`, whole or by their first or last PART characters."""
    found = []
    for secret in known:
        parts = {secret, secret[:PART], secret[-PART:]} if len(secret) >= 2 * PART else {secret}
        if any(part in text for part in parts):
            found.append(f"{secret[:4]}…({len(secret)} chars)")
    return found


def test_no_token_or_secret_reaches_logs_items_alerts_answers_or_return_values(
    stack: Stack,
    checker: ModuleType,
    debug_logs: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    portal = stack.portal
    run = Run(stack, checker, monkeypatch)
    first = stack.secret()["portals"][PORTAL]

    # a healthy run, then an expired access token: refreshed once, the new pair stored
    assert run.invoke() is not None
    portal.expire_access_tokens(PORTAL)
    assert run.invoke() is not None
    refreshed = stack.secret()["portals"][PORTAL]
    assert portal.refresh_count(PORTAL) == 1
    assert refreshed["refresh_token"] != first["refresh_token"]

    # the portal answers an HTML error page
    portal.inject(PORTAL, PortalFault.HTML, count=10)
    summary = run.invoke()
    assert summary is not None and summary["unknown"] == 3
    portal.clear_faults(PORTAL)

    # the authorisation is revoked: refresh refused, check.failed
    portal.revoke(PORTAL)
    portal.expire_access_tokens(PORTAL)
    run.invoke()
    run.invoke()

    # a person re-authorises; the OAuth server is then unreachable when the token expires
    document = stack.secret()
    document["portals"][PORTAL] = portal.credentials(PORTAL)
    stack.put_secret(document)
    run.remember()
    assert run.invoke() is not None
    good = stack.secret()
    unreachable = json.loads(json.dumps(good))
    unreachable["portals"][PORTAL]["oauth_endpoint"] = f"http://127.0.0.1:{closed_port()}/oauth/"
    stack.put_secret(unreachable)
    portal.expire_access_tokens(PORTAL)
    run.invoke()

    # the secret is corrupt (cut mid-JSON, tokens inside), then repaired
    text = json.dumps(good)
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(
        SecretId=stack.secret_id, SecretString=text[: len(text) // 2]
    )
    run.invoke()
    document = good
    document["portals"][PORTAL] = portal.credentials(PORTAL)
    stack.put_secret(document)
    run.remember()
    final = run.invoke()
    assert final is not None and final["up"] == 3

    # What came out, all of it
    alerts = delivered(stack)
    events = {
        json.loads(json.loads(a)["Body"])["MessageAttributes"]["event"]["Value"] for a in alerts
    }
    assert {"check.failed", "check.recovered"} <= events, events
    items = whole_table(stack)
    answers = api_answers()
    captured = capsys.readouterr()
    logs = debug_logs.getvalue() + captured.out + captured.err
    stores = [repr(store) + str(store) for store in run.stores]
    credentials = [
        repr(c) + str(c)
        for c in (
            PortalCredentials.from_secret_entry(PORTAL, first),
            PortalCredentials.from_secret_entry(PORTAL, refreshed),
            run.stores[-1].credentials(PORTAL),
        )
    ]

    # The capture worked: the run's own lines and botocore's DEBUG lines are there; the OAuth
    # request line is not (the transport, http.client, logs none: urllib3 did, redacted)
    assert "run finished" in logs
    assert "access token refreshed" in logs
    assert "Making request for OperationModel(name=Publish" in logs
    assert "before-call.secrets-manager.PutSecretValue" in logs  # its payload line is dropped
    assert "/oauth/token/?" not in logs and "/oauth/?" not in logs
    assert len(run.known) >= 9, "tokens of several refreshes and re-authorisations"

    # Then no known token or secret is anywhere
    for where, texts in {
        "log": [logs],
        "DynamoDB item": items,
        "SNS message": alerts,
        "API answer": answers,
        "checker return value or exception": run.outputs,
        "token store repr": stores,
        "PortalCredentials repr": credentials,
    }.items():
        for text in texts:
            assert leaks(text, run.known) == [], f"a secret in a {where}"


def test_the_token_store_and_credentials_show_no_secret_in_any_repr(stack: Stack) -> None:
    entry = stack.secret()["portals"][PORTAL]
    known = {entry[name] for name in TOKEN_FIELDS}
    store = token_source(stack.secret_id, client=boto3.client("secretsmanager", region_name=REGION))
    store.load()
    creds = store.credentials(PORTAL)
    assert creds.refresh_token == entry["refresh_token"]  # held, only never shown

    shown = [repr(store), str(store), repr(creds), str(creds), f"{creds!r}", repr([creds])]
    shown.append(repr({"credentials": creds, "extra": creds.extra}))

    assert PORTAL in repr(creds)
    for text in shown:
        assert leaks(text, known) == [], text
