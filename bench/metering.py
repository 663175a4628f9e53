"""Counting what a run costs in AWS calls: DynamoDB calls by operation and the read and write
units they cost (from AWS's item-size rules), Secrets Manager and SNS calls, time spent in AWS."""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# ---- counting AWS calls and DynamoDB capacity units -----------------------------------------


def attribute_size(value: Mapping[str, Any]) -> int:
    """Bytes of one typed DynamoDB value, by AWS's item-size rules."""
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(str(raw).encode())
    if kind == "N":
        digits = str(raw).lstrip("-").replace(".", "").strip("0") or "0"
        return 1 + math.ceil(len(digits) / 2)
    if kind == "B":
        return len(raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + attribute_size(v) for v in raw)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + attribute_size(v) for k, v in raw.items())
    if kind in ("SS", "NS", "BS"):
        return sum(attribute_size({kind[0]: v}) for v in raw)
    return 0


def item_size(item: Mapping[str, Any]) -> int:
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def scope_of(pk: str) -> str:
    """What an item's count or size grows with (see bench/cost.py SCOPES)."""
    if pk in ("STATE", "CONFIG"):
        return "target"
    if pk in ("RUN", "INVENTORY", "PORTAL"):  # PORTAL: a pair in the fleet's token table
        return "portal"
    if pk.startswith("HISTORY#"):
        return "alert"
    return "fixed"


class Meter:
    """AWS calls by operation for the clients it is attached to, and DynamoDB capacity units.

    Calls are counted on botocore's `before-call` event (once per API call, retries inside);
    units are computed from the items sent and returned: reads 4 KB per unit (half when
    eventually consistent), writes 1 KB per unit, transactions twice, one unit at least.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sizes: dict[tuple[str, str], int] = {}
        self._active = 0  # AWS calls in flight, over all threads
        self._busy_since = 0.0
        self.calls: Counter[str] = Counter()
        self.read_units: Counter[str] = Counter()
        self.write_units: Counter[str] = Counter()
        self.aws_seconds = 0.0  # wall time during which at least one AWS call was in flight
        self.tables: Counter[str] = Counter()  # DynamoDB calls by "table:Operation"
        self.table_units: Counter[str] = Counter()  # "table:RRU" / "table:WRU"
        self.cpu_seconds = 0.0  # CPU time the meter itself spent (to take out of a measure)

    def attach(self, client: Any) -> None:
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"before-call.{service}.*", self._count)
        client.meta.events.register(f"after-call.{service}.*", self._done)
        client.meta.events.register(f"after-call-error.{service}.*", self._done)
        if service == "dynamodb":
            client.meta.events.register("before-parameter-build.dynamodb.*", self._keep_params)
            client.meta.events.register("after-call.dynamodb.*", self._account)

    def attach_session(self, session: Any) -> None:
        """Count every client `session` (a boto3 Session) creates from now on: botocore copies
        the session's event handlers into each new client, so code that makes its own clients
        (the handler's `boto3.client(...)`) is metered without being changed."""
        events = session.events
        events.register("before-call", self._count)
        events.register("after-call", self._done)
        events.register("after-call-error", self._done)
        events.register("before-parameter-build.dynamodb", self._keep_params)
        events.register("after-call.dynamodb", self._account)

    def reset(self) -> None:
        with self._lock:
            self.tables = Counter()
            self.table_units = Counter()
            self.cpu_seconds = 0.0
            self.calls = Counter()
            self.read_units = Counter()
            self.write_units = Counter()
            self.aws_seconds = 0.0

    def mean_item_size(self, pk: str) -> float:
        with self._lock:
            sizes = [size for (p, _), size in self._sizes.items() if p == pk]
        return statistics.fmean(sizes) if sizes else 0.0

    def _count(self, model: Any, **_: Any) -> None:
        name = f"{model.service_model.service_id.hyphenize()}:{model.name}"
        with self._lock:
            self.calls[name] += 1
            if self._active == 0:
                self._busy_since = time.perf_counter()
            self._active += 1

    def _done(self, **_: Any) -> None:
        with self._lock:
            self._active = max(0, self._active - 1)
            if self._active == 0:
                self.aws_seconds += time.perf_counter() - self._busy_since

    def _keep_params(
        self, params: dict[str, Any], context: dict[str, Any], model: Any = None, **_: Any
    ) -> None:
        context["bench_params"] = params
        operation = getattr(model, "name", "?")
        tables = (
            [str(params["TableName"])]
            if "TableName" in params
            else sorted(
                {*params.get("RequestItems", {})}
                | {
                    str(body.get("TableName"))
                    for entry in params.get("TransactItems", [])
                    for body in entry.values()
                }
            )
        )
        with self._lock:
            for table in tables:
                self.tables[f"{table}:{operation}"] += 1

    def _account(
        self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any
    ) -> None:
        started = time.thread_time()
        try:
            self._account_call(model, parsed, context)
        finally:
            spent = time.thread_time() - started
            with self._lock:
                self.cpu_seconds += spent

    def _account_call(self, model: Any, parsed: dict[str, Any], context: dict[str, Any]) -> None:
        params: dict[str, Any] = context.get("bench_params") or {}
        table = str(
            params.get("TableName")
            or next(iter(params.get("RequestItems", {})), "")
            or next(
                (
                    body.get("TableName")
                    for entry in params.get("TransactItems", [])
                    for body in entry.values()
                ),
                "?",
            )
        )
        with self._lock:
            reads, writes = sum(self.read_units.values()), sum(self.write_units.values())
            self._account_locked(model.name, params, parsed)
            self.table_units[f"{table}:RRU"] += sum(self.read_units.values()) - reads
            self.table_units[f"{table}:WRU"] += sum(self.write_units.values()) - writes

    def _account_locked(
        self, operation: str, params: dict[str, Any], parsed: dict[str, Any]
    ) -> None:
        factor = 1.0 if params.get("ConsistentRead") else 0.5
        if operation == "Query":
            pk = params.get("ExpressionAttributeValues", {}).get(":pk", {}).get("S", "")
            items = parsed.get("Items", [])
            for item in items:
                self._remember(item)
            self._read(scope_of(pk), sum(item_size(i) for i in items), factor)
        elif operation == "GetItem":
            item = parsed.get("Item")
            if item:
                self._remember(item)
            self._read(scope_of(params["Key"]["pk"]["S"]), item_size(item or {}), factor)
        elif operation == "PutItem":
            old = parsed.get("Attributes")  # ReturnValues=ALL_OLD: the item it replaced
            if old:
                self._remember(old)
            self._put(params["Item"], 1)
        elif operation == "UpdateItem" and params.get("ReturnValues") == "ALL_NEW":
            # the item as written: an update costs the larger of the item before and after
            self._touch(params["Key"], 1, delete=False, after=parsed.get("Attributes"))
        elif operation in ("UpdateItem", "DeleteItem"):
            self._touch(params["Key"], 1, delete=operation == "DeleteItem")
        elif operation == "BatchWriteItem":
            for requests in params.get("RequestItems", {}).values():
                for request in requests:
                    if "PutRequest" in request:
                        self._put(request["PutRequest"]["Item"], 1)
                    else:
                        self._touch(request["DeleteRequest"]["Key"], 1, delete=True)
        elif operation == "TransactWriteItems":
            for entry in params.get("TransactItems", []):
                ((kind, body),) = entry.items()
                if kind == "Put":
                    self._put(body["Item"], 2)
                else:
                    self._touch(body["Key"], 2, delete=kind == "Delete")

    def _read(self, scope: str, size: int, factor: float) -> None:
        units = math.ceil(size / 4096)
        self.read_units[scope if units else "fixed"] += max(1, units) * factor

    def _put(self, item: Mapping[str, Any], weight: int) -> None:
        key = _item_key(item)
        size = max(item_size(item), self._sizes.get(key, 0))
        self._sizes[key] = item_size(item)
        self.write_units[scope_of(key[0])] += weight * max(1, math.ceil(size / 1024))

    def _touch(
        self,
        key_attrs: Mapping[str, Any],
        weight: int,
        *,
        delete: bool,
        after: Mapping[str, Any] | None = None,
    ) -> None:
        """An update or delete of an item whose size is known if this process read or wrote it
        (1 KB assumed otherwise), or returned as written (`after`: ReturnValues=ALL_NEW)."""
        key = _item_key(key_attrs)
        if delete:
            size = self._sizes.pop(key, 0)
        elif after:
            size = max(self._sizes.get(key, 0), item_size(after))
            self._sizes[key] = item_size(after)
        else:
            size = self._sizes.get(key, 1024)
        self.write_units[scope_of(key[0])] += weight * max(1, math.ceil(size / 1024))

    def _remember(self, item: Mapping[str, Any]) -> None:
        self._sizes[_item_key(item)] = item_size(item)


def _item_key(item: Mapping[str, Any]) -> tuple[str, str]:
    return (str(item["pk"]["S"]), str(item["sk"]["S"]))


@dataclass(frozen=True)
class Measure:
    seconds: float
    http_requests: int
    calls: Mapping[str, int]  # "dynamodb:Query", "secrets-manager:GetSecretValue", "sns:Publish"
    read_units: Mapping[str, float]  # by scope
    write_units: Mapping[str, float]
    aws_seconds: float = 0.0  # of `seconds`, spent in AWS calls (moto, in this process)
    peak_bytes: int | None = None

    def dynamodb_calls(self) -> dict[str, int]:
        return {k.split(":", 1)[1]: v for k, v in sorted(self.calls.items()) if "dynamodb" in k}

    @property
    def rru(self) -> float:
        return sum(self.read_units.values())

    @property
    def wru(self) -> float:
        return sum(self.write_units.values())
