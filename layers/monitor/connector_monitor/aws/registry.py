"""The target registry: entries (`portal/connector/line`, `portal/connector/*`,
`*/connector/*`) kept in the state table, beyond what `TARGETS` can hold.

Item: `pk` "REGISTRY", `sk` the entry's key; `portal`, `connector`, `line` (a number or "*"),
`added_at`, `added_by`. A portal's client labels are an item of the same partition, `sk`
`portal/#labels` (no connector id holds a "#"), with `client`, `owner`, `tier`, `runbook`,
`set_at`, `set_by`: beside the portal's entries, so a shard's key range reads them with its
entries. The checker reads the partition by query pages at each run; the CLI and the API's
registry routes add and remove entries and set labels (the API's role may write this partition
only).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..domain.labels import LabelError, PortalLabels
from ..domain.shards import KeyRange, portal_key
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
from .dynamodb import describe_error, plain, put_if_absent, query_items, table_key, typed
from .records import iso, parse_iso

REGISTRY_PK = "REGISTRY"
EVERY_PORTAL = f"{ANY}/"  # the keys of `*/connector/*` watches start so
EVERY_PORTAL_END = f"{ANY}0"  # the first key after them ("0" sorts right after "/")
ADDED_BY_LIMIT = 200  # an IAM ARN or a person's name, not a document
LABELS_SUFFIX = "/#labels"


def labels_key(portal: str) -> str:
    return f"{portal}{LABELS_SUFFIX}"


def is_labels_key(key: str) -> bool:
    return key.endswith(LABELS_SUFFIX)


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
        raw = self._items_of(portals)
        for item in raw:
            if is_labels_key(str(item.get("sk", ""))):
                continue
            registered = _registered(item)
            if registered.entry is not None:
                items.append(registered.entry)
            else:
                reason = registered.problem or "not a valid entry"
                items.append(ConfigIssue(f"registry {registered.key}", reason))
        return replace(entry_list(items), labels=_labels_in(raw))

    def entries(self) -> list[RegisteredEntry]:
        return [_registered(item) for item in self._items() if not _is_labels(item)]

    def all_labels(self) -> dict[str, PortalLabels]:
        """Every portal's labels (a read of the whole partition: for the CLI's listing)."""
        return _labels_in(list(self._items()))

    def labels_of(self, portals: list[str]) -> dict[str, PortalLabels]:
        """These portals' labels (those that have some): one query of the key range from the
        first portal to the last (a page of the snapshot is such a range)."""
        wanted = set(portals)
        if not wanted:
            return {}
        span = KeyRange(portal_key(min(wanted)), f"{max(wanted)}0")  # "0" sorts after "/"
        found = _labels_in(list(self._items(lo=span.lo, hi=span.hi)))
        return {portal: labels for portal, labels in found.items() if portal in wanted}

    def set_labels(self, portal: str, labels: PortalLabels, *, by: str, at: datetime) -> None:
        """Store the portal's labels, replacing any; no label at all removes the item."""
        key = table_key(REGISTRY_PK, labels_key(portal))
        try:
            if not labels:
                self._call("delete_item", TableName=self.table_name, Key=key)
                return
            item = {
                "pk": REGISTRY_PK,
                "sk": labels_key(portal),
                "portal": portal,
                **labels.as_dict(),
                "set_at": iso(at),
                "set_by": clip(by, ADDED_BY_LIMIT),
            }
            self._call("put_item", TableName=self.table_name, Item=typed(item))
        except ClientError as exc:
            raise StateStoreError(describe_error("set a portal's labels", exc)) from None

    def _items_of(self, portals: KeyRange | None) -> list[dict[str, Any]]:
        if portals is None or portals.whole:
            return list(self._items())
        # An entry's key starts with its portal's key (`portal/`), so a shard's range of
        # portals is a range of entry keys; `*/...` (every portal) sorts before any domain.
        ranges = [(portals.lo or None, portals.hi), (EVERY_PORTAL, EVERY_PORTAL_END)]
        found = {item["sk"]: item for lo, hi in ranges for item in self._items(lo=lo, hi=hi)}
        return [
            item
            for key, item in sorted(found.items())
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
        items = [plain(i) for i in answer.get("Items", [])]
        entries = [_registered(i) for i in items if not _is_labels(i)]
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


def _is_labels(item: dict[str, Any]) -> bool:
    return is_labels_key(str(item.get("sk", "")))


def _labels_in(items: list[dict[str, Any]]) -> dict[str, PortalLabels]:
    """The labels items among `items`, by portal; one written wrong by hand is skipped."""
    found: dict[str, PortalLabels] = {}
    for item in items:
        if not _is_labels(item):
            continue
        fields: dict[str, object] = {
            k: item[k] for k in ("client", "owner", "tier", "runbook") if k in item
        }
        try:
            found[str(item.get("portal", ""))] = PortalLabels.from_fields(fields)
        except LabelError:
            continue
    return found


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
