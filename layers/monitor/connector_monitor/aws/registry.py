"""The target registry: entries (`portal/connector/line`, `portal/connector/*`,
`*/connector/*`) kept in the state table, beyond what `TARGETS` can hold.

Item: `pk` "REGISTRY", `sk` the entry's key; `portal`, `connector`, `line` (a number or "*"),
`added_at`, `added_by`. The checker reads the partition by query pages at each run; the CLI and
the API's registry routes add and remove entries (the API's role may write this partition only).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..domain.shards import KeyRange
from ..domain.targets import (
    ANY,
    ConfigIssue,
    Target,
    TargetList,
    Watch,
    check_entry,
    entry_list,
)
from ..domain.text import clip
from ..ports.registry import RegisteredEntry
from ..ports.state_store import StateStoreError
from . import clients
from .dynamodb import describe_error, plain, put_if_absent, query_items, table_key
from .records import iso, parse_iso

REGISTRY_PK = "REGISTRY"
EVERY_PORTAL = f"{ANY}/"  # the keys of `*/connector/*` watches start so
EVERY_PORTAL_END = f"{ANY}0"  # the first key after them ("0" sorts right after "/")
ADDED_BY_LIMIT = 200  # an IAM ARN or a person's name, not a document


class Registry:
    """The registry's partition of the state table (the registry port's store); its failures
    are `StateStoreError`s, as the state repository's are."""

    def __init__(self, table_name: str, *, client: Any | None = None) -> None:
        self.table_name = table_name
        self._client = client or clients.client("dynamodb")
        self.calls = 0

    def load(self, portals: KeyRange | None = None) -> TargetList:
        """Every entry, each once; an item that is not a valid entry (written by hand) is a
        configuration problem named after its key, never a reason to drop the others. With
        `portals` (a shard's range) only what that shard checks: its portals' entries, read by
        their key range, and the watches of every portal."""
        items: list[Target | Watch | ConfigIssue] = []
        for registered in self._entries_of(portals):
            if registered.entry is not None:
                items.append(registered.entry)
            else:
                reason = registered.problem or "not a valid entry"
                items.append(ConfigIssue(f"registry {registered.key}", reason))
        return entry_list(items)

    def entries(self) -> list[RegisteredEntry]:
        return [_registered(item) for item in self._items()]

    def _entries_of(self, portals: KeyRange | None) -> list[RegisteredEntry]:
        if portals is None or portals.whole:
            return self.entries()
        # An entry's key starts with its portal's key (`portal/`), so a shard's range of
        # portals is a range of entry keys; `*/...` (every portal) sorts before any domain.
        ranges = [(portals.lo or None, portals.hi), (EVERY_PORTAL, EVERY_PORTAL_END)]
        found = {
            item["sk"]: _registered(item) for lo, hi in ranges for item in self._items(lo=lo, hi=hi)
        }
        return [
            registered
            for key, registered in sorted(found.items())
            if key.startswith(EVERY_PORTAL) or portals.holds_key(key)
        ]

    def page(
        self, *, limit: int, after: str | None = None
    ) -> tuple[list[RegisteredEntry], str | None]:
        """Up to `limit` entries in key order after `after`, and the key to continue after."""
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": REGISTRY_PK}},
            "Limit": limit,
        }
        if after:
            params["ExclusiveStartKey"] = table_key(REGISTRY_PK, after)
        try:
            answer = self._call("query", **params)
        except ClientError as exc:
            raise StateStoreError(describe_error("read the registry", exc)) from None
        entries = [_registered(plain(i)) for i in answer.get("Items", [])]
        last = answer.get("LastEvaluatedKey")
        return entries, (str(last["sk"]["S"]) if last else None)

    def add(self, entry: Target | Watch, *, added_by: str, at: datetime) -> bool:
        """Store `entry` unless it is there already (then False: adding twice is harmless)."""
        line = ANY if isinstance(entry, Watch) else entry.line
        item = {
            "pk": REGISTRY_PK,
            "sk": entry.key,
            "portal": entry.portal,
            "connector": entry.connector,
            "line": line,
            "added_at": iso(at),
            "added_by": clip(added_by, ADDED_BY_LIMIT),
        }
        try:
            return put_if_absent(self._call, self.table_name, item)
        except ClientError as exc:
            raise StateStoreError(describe_error("add a registry entry", exc)) from None

    def remove(self, key: str) -> bool:
        """Remove the entry with this key; False when there was none."""
        try:
            answer = self._call(
                "delete_item",
                TableName=self.table_name,
                Key=table_key(REGISTRY_PK, key),
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            raise StateStoreError(describe_error("remove a registry entry", exc)) from None
        return bool(answer.get("Attributes"))

    def _items(self, *, lo: str | None = None, hi: str | None = None) -> Iterator[dict[str, Any]]:
        try:
            yield from query_items(self._call, self.table_name, REGISTRY_PK, lo=lo, hi=hi)
        except ClientError as exc:
            raise StateStoreError(describe_error("read the registry", exc)) from None

    def _call(self, operation: str, **params: Any) -> Any:
        self.calls += 1
        try:
            return getattr(self._client, operation)(**params)
        except BotoCoreError as exc:  # endpoint unreachable, credentials, ...
            raise StateStoreError(f"DynamoDB {operation} failed: {type(exc).__name__}") from None


def _registered(item: dict[str, Any]) -> RegisteredEntry:
    key = str(item.get("sk", ""))
    checked = check_entry(item.get("portal"), item.get("connector"), item.get("line"), key)
    added_at, added_by = stored_time(item.get("added_at")), str(item.get("added_by", ""))
    if isinstance(checked, ConfigIssue):
        return RegisteredEntry(key, added_at, added_by, problem=checked.reason)
    if checked.key != key:
        problem = f"the item's key does not match its parts ({checked.key})"
        return RegisteredEntry(key, added_at, added_by, problem=problem)
    return RegisteredEntry(key, added_at, added_by, entry=checked)


def stored_time(value: object) -> datetime | None:
    """A time `add` stored; None when missing or written otherwise (by hand)."""
    try:
        return parse_iso(str(value))
    except ValueError:
        return None
