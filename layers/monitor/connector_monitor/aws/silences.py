"""Silences in the state table, and acknowledging a target's open outage.

Item: `pk` "SILENCE", `sk` the silence's id; `portal`, `connector`, `line`, `cause` (each
optional), `until`, `by`, `why`, `created_at`, and `expires_at` (the table's TTL: a week after
the silence ends, so `monitorctl silence list` still shows recent ones). Every run reads the
partition by one query (a handful of items). An acknowledgement is three attributes of the
target's status item (`acked_since`, `acked_by`), written with its version bumped
so that a run that read the status before cannot store over it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..domain.results import Cause
from ..domain.silences import Matcher, Silence, SilenceError
from ..domain.targets import Target
from ..ports.state_store import StateStoreError
from . import clients
from .dynamodb import (
    describe_error,
    error_code,
    placeholders,
    plain,
    put_if_absent,
    query_items,
    table_key,
)
from .records import TTL_ATTRIBUTE, iso, parse_iso, status_key

SILENCE_PK = "SILENCE"
KEPT_AFTER_END = timedelta(days=7)


class SilenceTable:
    """The silences' partition of the state table (the `SilenceStore` port)."""

    def __init__(self, table_name: str, *, client: Any | None = None) -> None:
        self.table_name = table_name
        self._client = client or clients.client("dynamodb")
        self.calls = 0

    def silences(self) -> list[Silence]:
        found = (_silence(item) for item in self._items())
        return sorted((s for s in found if s is not None), key=lambda s: (s.created_at, s.id))

    def add(self, silence: Silence) -> None:
        matcher = silence.matcher
        item: dict[str, Any] = {
            "pk": SILENCE_PK,
            "sk": silence.id,
            "portal": matcher.portal,
            "connector": matcher.connector,
            "line": matcher.line,
            "cause": matcher.cause.value if matcher.cause else None,
            "until": iso(silence.until),
            "by": silence.by,
            "why": silence.why,
            "created_at": iso(silence.created_at),
            TTL_ATTRIBUTE: int((silence.until + KEPT_AFTER_END).timestamp()),
        }
        try:
            added = put_if_absent(
                self._call, self.table_name, {k: v for k, v in item.items() if v is not None}
            )
        except ClientError as exc:
            raise StateStoreError(describe_error("add a silence", exc)) from None
        if not added:
            raise StateStoreError(f"a silence with the id {silence.id} exists already")

    def remove(self, silence_id: str) -> Silence | None:
        try:
            answer = self._call(
                "delete_item",
                TableName=self.table_name,
                Key=table_key(SILENCE_PK, silence_id),
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            raise StateStoreError(describe_error("remove a silence", exc)) from None
        old = answer.get("Attributes")
        return _silence(plain(old)) if old else None

    def acknowledge(self, target: Target, *, by: str) -> datetime | None:
        key = status_key(target)
        try:
            answer = self._call(
                "update_item",
                TableName=self.table_name,
                Key=table_key(key["pk"], key["sk"]),
                UpdateExpression=(
                    "SET acked_since = down_since, acked_by = :by, version = version + :one"
                ),
                ConditionExpression="attribute_exists(down_since)",
                ExpressionAttributeValues=placeholders(by=by, one=1),
                ReturnValues="UPDATED_NEW",  # what the API role may read back
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise StateStoreError(describe_error("acknowledge an outage", exc)) from None
        return parse_iso(str(plain(answer["Attributes"])["acked_since"]))

    def _items(self) -> Iterator[dict[str, Any]]:
        try:
            yield from query_items(self._call, self.table_name, SILENCE_PK)
        except ClientError as exc:
            raise StateStoreError(describe_error("read the silences", exc)) from None

    def _call(self, operation: str, **params: Any) -> Any:
        self.calls += 1
        try:
            return getattr(self._client, operation)(**params)
        except BotoCoreError as exc:
            raise StateStoreError(f"DynamoDB {operation} failed: {type(exc).__name__}") from None


def _silence(item: dict[str, Any]) -> Silence | None:
    """A stored silence; None for an item the monitor did not write (edited by hand)."""
    try:
        line = item.get("line")
        matcher = Matcher(
            portal=str(item["portal"]) if item.get("portal") else None,
            connector=str(item["connector"]) if item.get("connector") else None,
            line=int(line) if line is not None else None,
            cause=Cause(item["cause"]) if item.get("cause") else None,
        )
        return Silence(
            id=str(item["sk"]),
            matcher=matcher,
            until=parse_iso(str(item["until"])),
            by=str(item.get("by", "")),
            why=str(item.get("why", "")),
            created_at=parse_iso(str(item["created_at"])),
        )
    except (KeyError, ValueError, TypeError, SilenceError):
        return None
