"""The naive baseline: one imconnector.status request per line and a GetItem + PutItem per
target per run, with the same state machine and token store. What the real cycle is measured
against."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from bench.environment import (
    RUN_DEADLINE,
    Bench,
)
from connector_monitor.aws.records import status_from_item, status_key, status_to_item
from connector_monitor.aws.token_store import (
    token_source,
)
from connector_monitor.bitrix24.answers import STATUS_METHOD, read_status
from connector_monitor.bitrix24.errors import PortalError
from connector_monitor.bitrix24.rest_session import RestSession
from connector_monitor.deadline import Deadline
from connector_monitor.domain.results import CheckResult
from connector_monitor.domain.targets import Target
from connector_monitor.domain.transitions import Thresholds, advance
from connector_monitor.token_refresh import RefreshingTokens

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


# ---- the naive baseline ----------------------------------------------------------------------


def naive_run(bench: Bench, table: str, workers: int = 8) -> None:
    """One request per line and a GetItem + PutItem per target; portals in parallel."""
    tokens = token_source(bench.secret_id, client=bench.secrets)
    tokens.load()
    deadline = Deadline.after(RUN_DEADLINE)
    portals = bench.targets.portals()
    with ThreadPoolExecutor(max_workers=min(workers, len(portals))) as pool:
        futures = [
            pool.submit(
                _naive_portal,
                bench.dynamodb,
                table,
                tokens,
                p,
                bench.targets.for_portal(p),
                deadline,
            )
            for p in portals
        ]
        for future in futures:
            future.result()


def _naive_portal(
    dynamodb: Any,
    table: str,
    tokens: RefreshingTokens,
    portal: str,
    targets: Sequence[Target],
    deadline: Deadline,
) -> None:
    thresholds = Thresholds()
    with RestSession(portal, tokens) as client:
        for target in targets:
            key = {k: {"S": v} for k, v in status_key(target).items()}
            found = dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)
            previous = None
            if "Item" in found:
                plain = {k: _deserializer.deserialize(v) for k, v in found["Item"].items()}
                previous = status_from_item(plain)
            now = datetime.now(UTC)
            try:
                params = {"CONNECTOR": target.connector, "LINE": target.line}
                answer = client.call(STATUS_METHOD, params, deadline)
                result = read_status(target, answer, checked_at=now)
            except PortalError as exc:
                result = CheckResult.unknown(target, exc.kind.cause, exc.detail, checked_at=now)
            status = advance(previous, result, thresholds).status
            item = {k: _serializer.serialize(v) for k, v in status_to_item(status).items()}
            dynamodb.put_item(TableName=table, Item=item)
