"""AWS calls counted through botocore's event hooks: calls by service and operation, DynamoDB
calls and read and write units by table (AWS's item-size rules), time spent in AWS calls."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


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


def _key(item: Mapping[str, Any]) -> tuple[str, str]:
    return (str(item["pk"]["S"]), str(item["sk"]["S"]))


class Meter:
    """AWS calls of the clients (or the session) it is attached to, and DynamoDB's units.
    Calls are counted on botocore's `before-call` event (once per API call, retries inside);
    units from the items sent and returned: reads 4 KB a unit (half when eventually
    consistent), writes 1 KB a unit, transactions twice, one unit at least.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sizes: dict[tuple[str, str], int] = {}
        self._active = 0  # AWS calls in flight, over all threads
        self._busy_since = 0.0
        self.reset()

    def reset(self) -> None:
        self.calls: Counter[str] = Counter()  # "dynamodb:Query", "sns:Publish", ...
        self.tables: Counter[str] = Counter()  # DynamoDB calls by "table:Operation"
        self.table_units: Counter[str] = Counter()  # "table:RRU" / "table:WRU"
        self.aws_seconds = 0.0  # wall time during which at least one AWS call was in flight
        self.cpu_seconds = 0.0  # CPU time the meter itself spent (to take out of a measure)

    def units(self, kind: str) -> float:
        return sum(v for k, v in self.table_units.items() if k.endswith(f":{kind}"))

    @property
    def read_units(self) -> dict[str, float]:
        return {k.rsplit(":", 1)[0]: v for k, v in self.table_units.items() if k.endswith(":RRU")}

    @property
    def write_units(self) -> dict[str, float]:
        return {k.rsplit(":", 1)[0]: v for k, v in self.table_units.items() if k.endswith(":WRU")}

    def attach(self, client: Any) -> None:
        service = client.meta.service_model.service_id.hyphenize()
        self._register(client.meta.events, f".{service}.*", ".*" if service == "dynamodb" else None)

    def attach_session(self, session: Any) -> None:
        """Every client `session` (a boto3 Session) creates from now on: botocore copies the
        session's handlers into each new client, so the handler's own clients are metered."""
        self._register(session.events, "", "")

    def _register(self, events: Any, calls: str, dynamodb: str | None) -> None:
        events.register(f"before-call{calls}", self._count)
        events.register(f"after-call{calls}", self._done)
        events.register(f"after-call-error{calls}", self._done)
        if dynamodb is not None:
            events.register(f"before-parameter-build.dynamodb{dynamodb}", self._keep_params)
            events.register(f"after-call.dynamodb{dynamodb}", self._account)

    def _count(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.calls[f"{model.service_model.service_id.hyphenize()}:{model.name}"] += 1
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
        with self._lock:
            for table in _tables(params):
                self.tables[f"{table}:{getattr(model, 'name', '?')}"] += 1

    def _account(
        self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any
    ) -> None:
        started = time.thread_time()
        params: dict[str, Any] = context.get("bench_params") or {}
        transact = (b.get("TableName") for e in params.get("TransactItems", []) for b in e.values())
        table = str(
            params.get("TableName")
            or next(iter(params.get("RequestItems", {})), "")
            or next(transact, "?")
        )
        with self._lock:
            reads, writes = self._units(model.name, params, parsed)
            self.table_units[f"{table}:RRU"] += reads
            self.table_units[f"{table}:WRU"] += writes
            self.cpu_seconds += time.thread_time() - started

    def _units(
        self, operation: str, params: dict[str, Any], parsed: dict[str, Any]
    ) -> tuple[float, float]:
        """(read units, write units) of one call."""
        factor = 1.0 if params.get("ConsistentRead") else 0.5
        if operation in ("Query", "GetItem"):
            items = parsed.get("Items", []) if operation == "Query" else [parsed.get("Item") or {}]
            for item in items:
                if item:
                    self._sizes[_key(item)] = item_size(item)
            return max(1, math.ceil(sum(item_size(i) for i in items) / 4096)) * factor, 0.0
        if operation == "PutItem":
            old = parsed.get("Attributes")  # ReturnValues=ALL_OLD: the item it replaced
            if old:
                self._sizes[_key(old)] = item_size(old)
            return 0.0, self._put(params["Item"], 1)
        if operation == "UpdateItem" and params.get("ReturnValues") == "ALL_NEW":
            # the item as written: an update costs the larger of the item before and after
            return 0.0, self._touch(params["Key"], 1, delete=False, after=parsed.get("Attributes"))
        if operation in ("UpdateItem", "DeleteItem"):
            return 0.0, self._touch(params["Key"], 1, delete=operation == "DeleteItem")
        writes = 0.0
        if operation == "BatchWriteItem":
            for requests in params.get("RequestItems", {}).values():
                for request in requests:
                    if "PutRequest" in request:
                        writes += self._put(request["PutRequest"]["Item"], 1)
                    else:
                        writes += self._touch(request["DeleteRequest"]["Key"], 1, delete=True)
        elif operation == "TransactWriteItems":
            for entry in params.get("TransactItems", []):
                ((kind, body),) = entry.items()
                if kind == "Put":
                    writes += self._put(body["Item"], 2)
                else:
                    writes += self._touch(body["Key"], 2, delete=kind == "Delete")
        return 0.0, writes

    def _put(self, item: Mapping[str, Any], weight: int) -> float:
        key = _key(item)
        size = max(item_size(item), self._sizes.get(key, 0))
        self._sizes[key] = item_size(item)
        return weight * max(1, math.ceil(size / 1024))

    def _touch(
        self, key_attrs: Mapping[str, Any], weight: int, *, delete: bool, after: Any = None
    ) -> float:
        """An update or delete of an item whose size is known if this process read or wrote it
        (1 KB assumed otherwise), or returned as written (`after`: ReturnValues=ALL_NEW)."""
        key = _key(key_attrs)
        if delete:
            size = self._sizes.pop(key, 0)
        elif after:
            size = max(self._sizes.get(key, 0), item_size(after))
            self._sizes[key] = item_size(after)
        else:
            size = self._sizes.get(key, 1024)
        return weight * max(1, math.ceil(size / 1024))


def _tables(params: Mapping[str, Any]) -> list[str]:
    if "TableName" in params:
        return [str(params["TableName"])]
    transact = {
        str(b.get("TableName")) for e in params.get("TransactItems", []) for b in e.values()
    }
    return sorted({*params.get("RequestItems", {})} | transact)


@dataclass(frozen=True)
class Measure:
    seconds: float
    http_requests: int
    calls: Mapping[str, int]  # "dynamodb:Query", "secrets-manager:GetSecretValue", "sns:Publish"
    rru: float
    wru: float
    aws_seconds: float = 0.0  # of `seconds`, spent in AWS calls (moto, in this process)
    peak_bytes: int | None = None

    @property
    def dynamodb_calls(self) -> int:
        return sum(v for k, v in self.calls.items() if k.startswith("dynamodb:"))
