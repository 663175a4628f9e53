"""The benchmark: the real check run against a naive one, on local portals and moto.

    .venv/bin/python bench/run_benchmark.py [--portals 20] [--lines 100] [--latency 0.05]
                                            [--runs 3] [--baseline-runs 1]

A fleet of P portals x L lines (one connector on each line) lives in the local Bitrix24 portal,
which answers every REST request after `--latency` seconds; AWS is moto, in this process.

(a) real:  `CheckCycle` as the checker Lambda builds it: batched `imconnector.status` (50 per
    request), portals in parallel (8 at a time), the state read by query, only changed targets
    written, conditionally and in transactions of 100.
(b) naive: one `imconnector.status` request per line through `PortalClient.call`, lines one after
    another within a portal, portals in parallel the same way, and a GetItem + PutItem per target
    per run. Same state machine, same token store: only the I/O pattern differs.

For each: wall time (median of the runs; first run on an empty table and steady run apart),
the part of it spent outside AWS calls, HTTP requests the portal received, DynamoDB calls by
operation and the capacity units they cost, and peak Python memory (tracemalloc, in an extra
untimed run). Then, for the real cycle only: the run after 1% of the connectors went down, the
run after it (alerts published) and a run in which every access token had expired (refreshes).
Last the naive/real ratios and the monthly bill (bench/cost.py) of the real steady run.

Three artefacts of the test doubles are taken out of the measure, not hidden: moto's
TransactWriteItems backup and its response serialiser (`quicker_moto`), and the local portal's
Nagle delay (`bench_environment`).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import json
import logging
import math
import os
import statistics
import sys
import threading
import time
import tracemalloc
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "layers" / "monitor", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import boto3  # noqa: E402
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer  # noqa: E402
from moto import mock_aws  # noqa: E402
from moto.core.serialize import BaseJSONSerializer  # noqa: E402
from moto.dynamodb import models as moto_dynamodb  # noqa: E402
from moto.dynamodb.models.table import Table as MotoTable  # noqa: E402

from bench.cost import (  # noqa: E402
    ITEM_OVERHEAD,
    SCOPES,
    Fleet,
    RunFigures,
    fleet_from,
    monthly_bill,
    render_bill,
)
from connector_monitor.aws.lease import Lease  # noqa: E402
from connector_monitor.aws.publisher import AlertPublisher  # noqa: E402
from connector_monitor.aws.records import status_from_item, status_key, status_to_item  # noqa: E402
from connector_monitor.aws.repository import CLIENT_CONFIG, StateRepository  # noqa: E402
from connector_monitor.aws.token_store import (  # noqa: E402
    OVER_WRITE_BUDGET,
    PORTALS_PER_SECRET,
    SecretsTokenStore,
)
from connector_monitor.bitrix24.answers import STATUS_METHOD, read_status  # noqa: E402
from connector_monitor.bitrix24.client import PortalClient  # noqa: E402
from connector_monitor.bitrix24.errors import PortalError  # noqa: E402
from connector_monitor.cycle import CheckCycle, CycleSettings, RunSummary  # noqa: E402
from connector_monitor.deadline import Deadline  # noqa: E402
from connector_monitor.domain.results import CheckResult  # noqa: E402
from connector_monitor.domain.targets import Target, TargetList  # noqa: E402
from connector_monitor.domain.transitions import Thresholds, advance  # noqa: E402
from local.bitrix24_portal import LocalPortal  # noqa: E402
from local.handlers import LambdaContext  # noqa: E402
from local.template import table_definition  # noqa: E402

REGION = "eu-central-1"
CONNECTOR = "benchconnector"
RUN_DEADLINE = 600.0  # seconds; far beyond any run here
CHANGED_SHARE = 0.01  # the share of connectors flipped to show that writes follow changes
MIB = 1024 * 1024

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


# ---- the fleet -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchFleet:
    portals: int
    lines: int

    @property
    def size(self) -> int:
        return self.portals * self.lines

    def domains(self) -> list[str]:
        return [f"p{i:03d}.bench.local" for i in range(self.portals)]

    def targets(self) -> TargetList:
        found = [Target(d, CONNECTOR, n) for d in self.domains() for n in range(1, self.lines + 1)]
        return TargetList(tuple(found), ())


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
    if pk in ("RUN", "INVENTORY"):
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

    def attach(self, client: Any) -> None:
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"before-call.{service}.*", self._count)
        client.meta.events.register(f"after-call.{service}.*", self._done)
        client.meta.events.register(f"after-call-error.{service}.*", self._done)
        if service == "dynamodb":
            client.meta.events.register("before-parameter-build.dynamodb.*", self._keep_params)
            client.meta.events.register("after-call.dynamodb.*", self._account)

    def reset(self) -> None:
        with self._lock:
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

    def _keep_params(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["bench_params"] = params

    def _account(
        self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any
    ) -> None:
        params: dict[str, Any] = context.get("bench_params") or {}
        with self._lock:
            self._account_locked(model.name, params, parsed)

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
            self._put(params["Item"], 1)
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

    def _touch(self, key_attrs: Mapping[str, Any], weight: int, *, delete: bool) -> None:
        key = _item_key(key_attrs)
        size = self._sizes.pop(key, 0) if delete else self._sizes.get(key, 1024)
        self.write_units[scope_of(key[0])] += weight * max(1, math.ceil(size / 1024))

    def _remember(self, item: Mapping[str, Any]) -> None:
        self._sizes[_item_key(item)] = item_size(item)


def _item_key(item: Mapping[str, Any]) -> tuple[str, str]:
    return (str(item["pk"]["S"]), str(item["sk"]["S"]))


# ---- one measured run --------------------------------------------------------------------------


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


@dataclass
class Row:
    """One line of the table: a variant's scenario, timed `len(timed)` times."""

    variant: str
    scenario: str
    timed: list[Measure]
    traced: Measure | None = None  # the untimed run tracemalloc watched

    @property
    def seconds(self) -> float:
        return statistics.median(m.seconds for m in self.timed)

    @property
    def outside_aws(self) -> float:
        return statistics.median(m.seconds - m.aws_seconds for m in self.timed)

    @property
    def counts(self) -> Measure:
        return self.timed[-1]  # counts do not vary between runs of one scenario

    @property
    def peak_mib(self) -> float | None:
        if self.traced is None or self.traced.peak_bytes is None:
            return None
        return self.traced.peak_bytes / MIB


class _KnownWriteBudget(logging.Filter):
    """The bench keeps its whole fleet in one secret to measure scale; the token store's
    warning that a deployed stack should hold at most PORTALS_PER_SECRET portals is known here,
    and would repeat every run and count in the measured log volume of a one-stack fleet."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg is not OVER_WRITE_BUDGET


KNOWN_WRITE_BUDGET = _KnownWriteBudget()


@dataclass
class Bench:
    """The local portal, moto's stack and metered clients of one benchmark."""

    fleet: BenchFleet
    portal: LocalPortal
    secret_id: str
    topic_arn: str
    dynamodb: Any
    secrets: Any
    sns: Any
    meter: Meter
    targets: TargetList = field(init=False)
    _tables: int = 0

    def __post_init__(self) -> None:
        self.targets = self.fleet.targets()

    def new_table(self) -> str:
        self._tables += 1
        name = f"bench-{self._tables}"
        self.dynamodb.create_table(TableName=name, **table_definition())
        return name

    def real_run(self, table: str) -> RunSummary:
        """One run of the real cycle, wired as functions/checker/app.py wires it."""
        cycle = CheckCycle(
            repository=StateRepository(table, client=self.dynamodb),
            tokens=SecretsTokenStore(
                self.secret_id, client=self.secrets, lease=Lease(table, client=self.dynamodb)
            ),
            publisher=AlertPublisher(self.topic_arn, client=self.sns),
            settings=CycleSettings(),
        )
        return cycle.run(self.targets, Deadline.after(RUN_DEADLINE))

    def naive_run(self, table: str) -> None:
        naive_run(self, table)

    def measure(self, run: Callable[[], object], *, traced: bool = False) -> Measure:
        self.meter.reset()
        before = self.portal.request_count()
        if traced:
            tracemalloc.start()
        started = time.perf_counter()
        run()
        seconds = time.perf_counter() - started
        peak = None
        if traced:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        return Measure(
            seconds,
            self.portal.request_count() - before,
            dict(self.meter.calls),
            dict(self.meter.read_units),
            dict(self.meter.write_units),
            self.meter.aws_seconds,
            peak,
        )

    def flip(self, share: float) -> list[Target]:
        """Take `share` of the connectors down (ERROR=true), spread over the fleet."""
        targets = self.targets.targets
        count = max(1, round(len(targets) * share))
        step = len(targets) // count
        flipped = [targets[i * step + (i % max(1, step))] for i in range(count)]
        for t in flipped:
            self.portal.set_status(t.portal, t.connector, t.line, configured=True, error=True)
        return flipped

    def heal(self) -> None:
        """Every connector works again (the naive baseline runs on a healthy fleet too)."""
        for t in self.targets.targets:
            self.portal.connect(t.portal, t.connector, t.line)


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


class _IndexCopy:
    """Stands in for the `copy` module inside moto's DynamoDB backend.

    moto's TransactWriteItems backs up, for its rollback, the whole table once per item of the
    transaction (`copy.deepcopy(table)`): quadratic in the table size, and nothing DynamoDB does.
    Here one backup per table and transaction copies the item index (hash -> range -> Item):
    enough to roll back Puts and Deletes, which are all the monitor's transactions hold.
    """

    def __init__(self) -> None:
        self.backups: dict[int, MotoTable] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    def deepcopy(self, value: Any, memo: dict[int, Any] | None = None) -> Any:
        if not isinstance(value, MotoTable):
            return copy.deepcopy(value, memo)
        if id(value) not in self.backups:
            backup = copy.copy(value)
            backup.items = defaultdict(
                dict, {h: dict(r) if isinstance(r, dict) else r for h, r in value.items.items()}
            )
            self.backups[id(value)] = backup
        return self.backups[id(value)]


def _wire_ready(value: Any) -> bool:
    """A DynamoDB value already in its JSON wire form: no bytes, no None, no model objects."""
    if isinstance(value, dict):
        return all(k not in ("B", "BS") and _wire_ready(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_wire_ready(v) for v in value)
    return isinstance(value, str | bool)


@contextlib.contextmanager
def quicker_moto() -> Iterator[None]:
    """Take two costs of moto's in-process emulation out of the measured time.

    - TransactWriteItems: see `_IndexCopy`.
    - Responses: moto serialises every DynamoDB attribute value by walking its shape model
      (~1 ms per returned item), which would dwarf the monitor's own work. A value already in
      wire form is written as it is; the JSON sent back is the same (tests/integration/
      test_bench_smoke.py compares both).
    """
    shim = _IndexCopy()
    original_transact = moto_dynamodb.DynamoDBBackend.transact_write_items
    original_structure = BaseJSONSerializer._serialize_type_structure

    def transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> None:
        shim.backups.clear()
        try:
            original_transact(backend, transact_items)
        finally:
            shim.backups.clear()

    def serialize_structure(
        serializer: Any, serialized: Any, value: Any, shape: Any, key: str
    ) -> None:
        if key and shape.name == "AttributeValue" and value and _wire_ready(value):
            serialized[serializer.get_serialized_name(shape, key)] = value
            return
        original_structure(serializer, serialized, value, shape, key)

    with (
        mock.patch.object(moto_dynamodb, "copy", shim),
        mock.patch.object(
            moto_dynamodb.DynamoDBBackend, "transact_write_items", transact_write_items
        ),
        mock.patch.object(BaseJSONSerializer, "_serialize_type_structure", serialize_structure),
    ):
        yield


AWS_ENVIRONMENT = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "bitrix24-connector-monitor",
    "POWERTOOLS_METRICS_NAMESPACE": "Bitrix24ConnectorMonitor",
    "POWERTOOLS_LOG_LEVEL": "INFO",
}


@contextlib.contextmanager
def bench_environment(fleet: BenchFleet, latency: float) -> Iterator[Bench]:
    with (
        patched_environ(AWS_ENVIRONMENT),
        quicker_moto(),
        LocalPortal() as portal,
        mock_aws(),
    ):
        for domain in fleet.domains():
            lines = {n: f"Line {n}" for n in range(1, fleet.lines + 1)}
            portal.add_portal(domain, connectors={CONNECTOR: "Bench connector"}, lines=lines)
            for line in lines:
                portal.connect(domain, CONNECTOR, line)
        secret = {"portals": {d: portal.credentials(d) for d in fleet.domains()}}
        logging.getLogger("connector_monitor.aws.token_store").addFilter(KNOWN_WRITE_BUDGET)
        meter = Meter()
        dynamodb = boto3.client("dynamodb", region_name=REGION, config=CLIENT_CONFIG)
        secrets = boto3.client("secretsmanager", region_name=REGION)
        sns = boto3.client("sns", region_name=REGION)
        secret_id = secrets.create_secret(Name="bench/tokens", SecretString=json.dumps(secret))[
            "ARN"
        ]
        topic_arn = sns.create_topic(Name="bench-alerts")["TopicArn"]
        for client in (dynamodb, secrets, sns):
            meter.attach(client)
        portal.latency = latency
        yield Bench(fleet, portal, secret_id, topic_arn, dynamodb, secrets, sns, meter)


# ---- the naive baseline ----------------------------------------------------------------------


def naive_run(bench: Bench, table: str, workers: int = 8) -> None:
    """One request per line and a GetItem + PutItem per target; portals in parallel."""
    tokens = SecretsTokenStore(bench.secret_id, client=bench.secrets)
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
    tokens: SecretsTokenStore,
    portal: str,
    targets: Sequence[Target],
    deadline: Deadline,
) -> None:
    thresholds = Thresholds()
    with PortalClient(portal, tokens) as client:
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


# ---- scenarios -------------------------------------------------------------------------------


def bench_variant(
    bench: Bench, variant: str, run: Callable[[str], object], runs: int, *, settle: bool
) -> tuple[Row, Row, str]:
    """`runs` first runs, each on an empty table; then `runs` steady runs on the first table and
    one more under tracemalloc (memory is measured apart: tracing slows Python down).

    With `settle`, an untimed run goes before the steady ones: the state machine's streak
    counters stop changing (and the real cycle stops writing) once they reach max(thresholds).
    """
    tables = [bench.new_table() for _ in range(runs)]
    firsts = [bench.measure(partial(run, table)) for table in tables]
    table = tables[0]
    if settle:
        run(table)
    steadies = [bench.measure(partial(run, table)) for _ in range(runs)]
    traced = bench.measure(partial(run, table), traced=True)
    return Row(variant, "first run", firsts), Row(variant, "steady run", steadies, traced), table


def bench_refresh(bench: Bench, table: str) -> Row:
    """Every portal's access token expired: each refreshes once (OAuth, secret write-back)."""
    for domain in bench.fleet.domains():
        bench.portal.expire_access_tokens(domain)
    return Row("real", "tokens expired", [bench.measure(partial(bench.real_run, table))])


def bench_change(bench: Bench, table: str) -> tuple[Row, Row, int]:
    """1% of the connectors go down: the run that sees it, and the next (threshold 2: alerts)."""
    flipped = bench.flip(CHANGED_SHARE)
    seen = bench.measure(partial(bench.real_run, table))
    alerted = bench.measure(partial(bench.real_run, table))
    return (
        Row("real", f"{len(flipped)} went down", [seen]),
        Row("real", "next run (alerts)", [alerted]),
        len(flipped),
    )


# ---- the handler's log output ----------------------------------------------------------------


@dataclass(frozen=True)
class LogCapture:
    lines: int
    bytes: int
    metrics: int  # distinct (namespace, name, dimensions) a warm run publishes
    cold_start_metrics: int  # published by the cold start only
    kinds: Mapping[str, int]  # bytes by kind of line, for the printout


class _Discard(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


def load_checker() -> ModuleType:
    path = ROOT / "functions" / "checker" / "app.py"
    spec = importlib.util.spec_from_file_location(f"bench_checker_{uuid.uuid4().hex}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _point_logs_at(module: ModuleType, stream: io.TextIOBase) -> None:

    names = [module.logger.name, *(n for n in logging.root.manager.loggerDict if "." in n)]
    for name in names:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(stream)


def capture_logs(bench: Bench, table: str) -> LogCapture:
    """Invoke the real checker handler once on a steady table and keep what it printed.

    It is a cold start, so Powertools adds a ColdStart metric in a line of its own: that line
    is counted apart, a warm run does not print it.
    """
    env = {
        "TARGETS": ",".join(t.key for t in bench.targets.targets),
        "SECRET_ID": bench.secret_id,
        "TABLE_NAME": table,
        "TOPIC_ARN": bench.topic_arn,
        "SCHEDULE_EXPRESSION": "rate(5 minutes)",
    }
    event = json.loads((ROOT / "events" / "schedule.json").read_text())
    buffer = io.StringIO()
    with patched_environ(env), contextlib.redirect_stdout(buffer):
        checker = load_checker()
        _point_logs_at(checker, buffer)
        checker.lambda_handler(event, LambdaContext())
        _point_logs_at(checker, _Discard())  # later runs' lines are not part of the measure
    warm: list[str] = []
    cold_only: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()
    for line in _json_lines(buffer.getvalue()):
        found = _metrics([line])
        if found and all(name == "ColdStart" for _, name, _ in found):
            cold_only |= found
        else:
            warm.append(line)
    kinds: Counter[str] = Counter()
    for line in warm:
        kinds["EMF metrics" if "_aws" in json.loads(line) else "log"] += len(line.encode())
    return LogCapture(
        lines=len(warm),
        bytes=sum(len(line.encode()) for line in warm),
        metrics=len(_metrics(warm)),
        cold_start_metrics=len(cold_only),
        kinds=dict(kinds),
    )


def _json_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _metrics(lines: Sequence[str]) -> set[tuple[str, str, tuple[tuple[str, str], ...]]]:
    """Distinct custom metrics (namespace, name, dimensions) in EMF lines."""
    found: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()
    for line in lines:
        blob = json.loads(line)
        for directive in blob.get("_aws", {}).get("CloudWatchMetrics", []):
            for dimensions in directive.get("Dimensions", [[]]):
                dims = tuple(sorted((d, str(blob.get(d))) for d in dimensions))
                for metric in directive.get("Metrics", []):
                    found.add((directive.get("Namespace", ""), metric["Name"], dims))
    return found


# ---- figures for the bill ----------------------------------------------------------------------


def figures_from(
    bench: Bench,
    first: Row,
    steady: Row,
    changed: tuple[Row, Row, int],
    refreshed: Row,
    logs: LogCapture,
    label: str,
) -> RunFigures:
    counts = steady.counts
    seen, alerted, flipped = changed
    extra = (seen.counts.wru - counts.wru) + (alerted.counts.wru - counts.wru)
    portals = bench.fleet.portals
    secret_calls = sum(v for k, v in refreshed.counts.calls.items() if "secrets" in k)
    steady_secret_calls = sum(v for k, v in counts.calls.items() if "secrets" in k)
    return RunFigures(
        targets=bench.fleet.size,
        portals=bench.fleet.portals,
        seconds=steady.seconds,
        read_units=_by_scope(counts.read_units),
        write_units=_by_scope(counts.write_units),
        secret_reads=counts.calls.get("secrets-manager:GetSecretValue", 0),
        log_lines=logs.lines,
        log_bytes=logs.bytes,
        metrics=logs.metrics,
        cold_start_metrics=logs.cold_start_metrics,
        validation_write_units=first.counts.write_units.get("portal", 0.0)
        - counts.write_units.get("portal", 0.0),
        incident_write_units=2 * extra / flipped,  # going down measured; recovery alike
        refresh_secret_calls=(secret_calls - steady_secret_calls) / portals,
        refresh_write_units=(refreshed.counts.wru - counts.wru) / portals,
        stored_bytes_per_target=bench.meter.mean_item_size("STATE") + ITEM_OVERHEAD,
        measured_on=label,
    )


def _by_scope(units: Mapping[str, float]) -> dict[str, float]:
    known = {scope: units.get(scope, 0.0) for scope in SCOPES}
    known["fixed"] += sum(v for k, v in units.items() if k not in SCOPES)
    return known


def quick_figures(fleet: BenchFleet, latency: float = 0.0, runs: int = 3) -> RunFigures:
    """The real cycle's steady-run figures on a small fleet (bench/cost.py standalone)."""
    with bench_environment(fleet, latency) as bench:
        first, steady, table = _real_rows(bench, runs)
        logs = capture_logs(bench, table)
        changed = bench_change(bench, table)
        refreshed = bench_refresh(bench, table)
        label = (
            f"a steady run measured on {fleet.portals} portals x {fleet.lines} lines "
            f"(latency {latency * 1000:g} ms, median of {runs})"
        )
        return figures_from(bench, first, steady, changed, refreshed, logs, label)


def _real_rows(bench: Bench, runs: int) -> tuple[Row, Row, str]:
    return bench_variant(bench, "real", bench.real_run, runs, settle=True)


# ---- printing ----------------------------------------------------------------------------------


def _row_line(row: Row) -> str:
    c = row.counts
    mem = f"{row.peak_mib:8.1f}" if row.peak_mib is not None else f"{'-':>8}"
    dynamodb = sum(c.dynamodb_calls().values())
    return (
        f"{row.variant:<6} {row.scenario:<18} {row.seconds:8.2f} {row.outside_aws:8.2f} "
        f"{c.http_requests:6d} {dynamodb:9d} {c.rru:8.1f} {c.wru:8.1f} {mem}"
    )


def render_table(rows: Sequence[Row]) -> str:
    head = (
        f"{'':<6} {'run':<18} {'wall s':>8} {'non-AWS':>8} {'HTTP':>6} {'DynamoDB':>9} "
        f"{'RRU':>8} {'WRU':>8} {'peak MiB':>8}"
    )
    out = [head, "-" * len(head), *(_row_line(r) for r in rows), ""]
    out.append("DynamoDB calls by operation (and other AWS calls):")
    for row in rows:
        ops = ", ".join(f"{op} {n}" for op, n in row.counts.dynamodb_calls().items()) or "none"
        other = ", ".join(
            f"{k} {v}" for k, v in sorted(row.counts.calls.items()) if "dynamodb" not in k
        )
        out.append(f"  {row.variant:<6} {row.scenario:<18} {ops}" + (f"; {other}" if other else ""))
    return "\n".join(out)


def _ratio(naive: float, real: float) -> str:
    if real == 0:
        return "n/a" if naive == 0 else "inf"
    return f"{naive / real:,.1f}x"


def render_ratios(real: tuple[Row, Row], naive: tuple[Row, Row]) -> str:
    out = ["Ratios naive / real (same process, same portal latency):"]
    for r, n, name in zip(real, naive, ("first run", "steady run"), strict=True):
        rc, nc = r.counts, n.counts
        rd, nd = sum(rc.dynamodb_calls().values()), sum(nc.dynamodb_calls().values())
        memory = ""
        if n.peak_mib is not None and r.peak_mib is not None:
            memory = f", peak memory {_ratio(n.peak_mib, r.peak_mib)}"
        out.append(
            f"  {name:<11} wall time {_ratio(n.seconds, r.seconds)} (outside AWS calls "
            f"{_ratio(n.outside_aws, r.outside_aws)}), HTTP requests "
            f"{_ratio(nc.http_requests, rc.http_requests)}, DynamoDB calls {_ratio(nd, rd)}, "
            f"RRU {_ratio(nc.rru, rc.rru)}, WRU {_ratio(nc.wru, rc.wru)}{memory}"
        )
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--portals", type=int, default=20)
    parser.add_argument("--lines", type=int, default=100, help="lines (targets) per portal")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per REST request")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of the real cycle")
    parser.add_argument(
        "--baseline-runs", type=int, default=1, help="timed runs of the naive baseline"
    )
    parser.add_argument("--cost-targets", type=int, default=1000, help="fleet the bill prices")
    parser.add_argument(
        "--cost-portals",
        type=int,
        default=PORTALS_PER_SECRET,
        help=f"portals the bill prices (default: {PORTALS_PER_SECRET}, what one stack holds)",
    )
    parser.add_argument("--schedule-minutes", type=float, default=5.0)
    parser.add_argument("--incidents", type=int, default=30, help="incidents a month (assumed)")
    args = parser.parse_args(argv)
    if min(args.portals, args.lines, args.runs, args.baseline_runs) < 1:
        parser.error("--portals, --lines, --runs and --baseline-runs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    fleet = BenchFleet(args.portals, args.lines)
    started = time.perf_counter()
    print(
        f"Fleet: {fleet.portals} portals x {fleet.lines} lines = {fleet.size:,} targets; local "
        f"portal latency {args.latency * 1000:g} ms per request; moto in-process; "
        f"{CycleSettings().max_parallel_portals} portals in parallel.\n"
        f"real:  CheckCycle, median of {args.runs} run(s) per row.\n"
        f"naive: one imconnector.status request per line + GetItem/PutItem per target, median "
        f"of {args.baseline_runs} run(s) per row"
        + (" (--baseline-runs 1 keeps the default run short)" if args.baseline_runs == 1 else "")
        + ".\nwall s: median wall time of one run; non-AWS: the same minus the time spent in AWS "
        "calls (moto, emulating them in this process).\n"
        "peak MiB: tracemalloc peak of a steady run, measured in an extra untimed run (includes "
        "moto's and the local portal's work in this process).",
        flush=True,
    )
    with bench_environment(fleet, args.latency) as bench:
        real_first, real_steady, table = _real_rows(bench, args.runs)
        logs = capture_logs(bench, table)
        changed = bench_change(bench, table)
        refreshed = bench_refresh(bench, table)
        bench.heal()
        naive_first, naive_steady, _ = bench_variant(
            bench, "naive", bench.naive_run, args.baseline_runs, settle=False
        )
        rows = [
            real_first,
            real_steady,
            changed[0],
            changed[1],
            refreshed,
            naive_first,
            naive_steady,
        ]
        print()
        print(render_table(rows))
        print()
        print(render_ratios((real_first, real_steady), (naive_first, naive_steady)))
        print(
            f"Writes follow changes: {changed[2]} of {fleet.size:,} targets changed -> "
            f"{changed[0].counts.wru:,.0f} WRU (steady run {real_steady.counts.wru:,.0f}, "
            f"first run {real_first.counts.wru:,.0f}, naive every run "
            f"{naive_steady.counts.wru:,.0f})."
        )
        label = (
            f"the real steady run above ({fleet.size:,} targets, latency "
            f"{args.latency * 1000:g} ms, median of {args.runs})"
        )
        figures = figures_from(bench, real_first, real_steady, changed, refreshed, logs, label)
    cost_fleet: Fleet = fleet_from(
        args.cost_targets, args.cost_portals, args.schedule_minutes, args.incidents
    )
    print()
    print(
        f"Log output of one warm steady run (the checker handler): {logs.lines} JSON lines, "
        f"{logs.bytes:,} bytes ("
        + ", ".join(f"{k} {v:,} B" for k, v in sorted(logs.kinds.items()))
        + f"); custom metrics per run: {logs.metrics}"
        + (f" (+{logs.cold_start_metrics} on cold start)" if logs.cold_start_metrics else "")
    )
    print()
    print(render_bill(monthly_bill(figures, cost_fleet)))
    print(f"\n(benchmark took {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
