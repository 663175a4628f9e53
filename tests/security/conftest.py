"""The worlds the security tests run in.

- The checker as the template wires it (moto for AWS, the local portal over real HTTP): the e2e
  fixtures, re-exported.
- The Snapshot API served over real HTTP on 127.0.0.1 (`local.api_server.ApiServer`) by the real
  handler, over a moto table holding a small fleet and a fresh run record. One per module: the
  fuzzer sends hundreds of requests and none of them writes.

moto answers a read whose key is larger than DynamoDB allows (partition key 2,048 bytes, sort key
1,024 bytes) as "no such item"; the real service refuses it with a ValidationException. The
snapshot handler's client here refuses it the same way, so a request that would fail in AWS
fails here too.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.client import HTTPResponse
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from connector_monitor.aws.repository import StateRepository
from connector_monitor.domain.results import Cause, State
from connector_monitor.domain.runs import PortalRun, RunRecord
from connector_monitor.domain.targets import Target
from connector_monitor.domain.transitions import TargetStatus
from local.api_server import ApiServer
from local.handlers import load_handler
from local.template import table_definition
from tests.e2e.conftest import (  # noqa: F401 - fixtures re-exported for tests/security
    CONNECTOR,
    PORTAL,
    REGION,
    Stack,
    checker,
    log_stream,
    portal,
    scheduled_event,
    snapshot_api_environment,
    stack,
)

TABLE = "snapshot-abuse"
OTHER = "other.bitrix24.com"
FLEET_LINES = {12: State.UP, 14: State.DOWN, 16: State.UNKNOWN}
HASH_KEY_LIMIT = 2048  # bytes, DynamoDB's limit on a partition key value
RANGE_KEY_LIMIT = 1024  # bytes, on a sort key value


# ---- DynamoDB's key-size limits, which moto does not apply to reads ---------------------------
def oversized_key(key: dict[str, Any] | None) -> str | None:
    """Why DynamoDB would refuse this key (low-level `{"pk": {"S": ...}, ...}`), or None."""
    if not key:
        return None
    pk = key.get("pk", {}).get("S", "")
    sk = key.get("sk", {}).get("S", "")
    if len(pk.encode()) > HASH_KEY_LIMIT:
        return "Size of hashkey has exceeded the maximum size limit of2048 bytes"
    if len(sk.encode()) > RANGE_KEY_LIMIT:
        return "Aggregated size of all range keys has exceeded the size limit of 1024 bytes"
    return None


def refuse_oversized_keys(params: dict[str, Any], model: Any, **_: Any) -> None:
    """A `before-parameter-build.dynamodb` hook: answer as DynamoDB does to an oversized key."""
    keys = [params.get("Key"), params.get("ExclusiveStartKey")]
    for request in (params.get("RequestItems") or {}).values():
        keys += request.get("Keys", []) if isinstance(request, dict) else []
    for key in keys:
        why = oversized_key(key)
        if why:
            error = {
                "Code": "ValidationException",
                "Message": f"One or more parameter values were invalid: {why}",
            }
            raise ClientError({"Error": error}, model.name)


def strict_dynamodb_client() -> Any:
    client = boto3.client("dynamodb", region_name=REGION)
    client.meta.events.register("before-parameter-build.dynamodb.*", refuse_oversized_keys)
    return client


# ---- a small fleet, written the way the checker writes it ------------------------------------
def target_status(domain: str, line: int, state: State, now: datetime) -> TargetStatus:
    seen = state is not State.UNKNOWN
    return TargetStatus(
        Target(domain, CONNECTOR, line),
        state,
        since=now - timedelta(hours=2),
        checked_at=now - timedelta(minutes=1),
        status=(state is State.UP) if seen else None,
        configured=True if seen else None,
        error=(state is State.DOWN) if seen else None,
        cause=None if seen else Cause.PORTAL_FAILING,
        detail={
            State.UP: None,
            State.DOWN: "ERROR=true: call imconnector.activate",
            State.UNKNOWN: "portal answered 502 Bad Gateway",
        }[state],
    )


def store_fleet(repository: StateRepository) -> list[Target]:
    """Four targets on two portals (one in each state, one more UP) and a run just finished."""
    now = datetime.now(UTC)
    statuses = [target_status(PORTAL, line, state, now) for line, state in FLEET_LINES.items()]
    statuses.append(target_status(OTHER, 1, State.UP, now))
    repository.save(statuses, claims={})
    repository.save_run(
        RunRecord(
            "run-security",
            now - timedelta(seconds=3),
            now - timedelta(seconds=1),
            {"targets": 4, "up": 2, "down": 1, "unknown": 1, "http_requests": 2},
            {p: PortalRun(now - timedelta(seconds=2), 1) for p in (PORTAL, OTHER)},
        )
    )
    return [s.subject for s in statuses if isinstance(s.subject, Target)]


# ---- the served API --------------------------------------------------------------------------
@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ServedApi:
    """The snapshot handler behind a local HTTP API, and what it answered."""

    server: ApiServer
    handler: ModuleType
    targets: list[Target]
    statuses: list[int] = field(default_factory=list)  # every status the handler answered

    @property
    def url(self) -> str:
        return self.server.url

    def raw(self, method: str, target: bytes, body: bytes = b"", **headers: str) -> Answer:
        """Send exactly these bytes as the request target (no client normalises the path)."""
        host, port = self.server._server.server_address[:2]
        lines = [f"{method} ".encode() + target + b" HTTP/1.1", f"Host: {host}:{port}".encode()]
        lines += [f"{name.replace('_', '-')}: {value}".encode() for name, value in headers.items()]
        lines += [b"Connection: close", f"Content-Length: {len(body)}".encode(), b"", b""]
        with socket.create_connection((str(host), int(port)), timeout=10) as sock:
            sock.sendall(b"\r\n".join(lines) + body)
            response = HTTPResponse(sock, method=method)
            response.begin()
            data = response.read()
            return Answer(response.status, dict(response.getheaders()), data)

    def invoke(self, event: dict[str, Any]) -> Answer:
        """Call the handler with an API Gateway event directly (for what HTTP cannot carry)."""
        status, headers, data = self.server.invoke(event)
        return Answer(status, dict(headers), data)


@pytest.fixture(scope="module")
def served_api() -> Iterator[ServedApi]:
    with pytest.MonkeyPatch.context() as patch, mock_aws():
        for name, value in snapshot_api_environment(TABLE).items():
            patch.setenv(name, value)
        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(TableName=TABLE, **table_definition())
        targets = store_fleet(StateRepository(TABLE, client=client))
        handler = load_handler("snapshot_api")
        strict = StateRepository(TABLE, client=strict_dynamodb_client())
        patch.setattr(handler, "repository", lambda: strict)
        handler.service.cache_clear()

        statuses: list[int] = []

        def counted(event: dict[str, Any], context: Any) -> dict[str, Any]:
            answer: dict[str, Any] = handler.lambda_handler(event, context)
            statuses.append(int(answer["statusCode"]))
            return answer

        with ApiServer(counted) as server:
            yield ServedApi(server, handler, targets, statuses)
