"""The monthly bill of one stack, from what a measured fleet consumed: pricing only, no
measuring (`bench/fleet.py` measures and prints it, `bench/bill.py` measures a smaller fleet
and fits it to the priced one).

Every resource template.yaml creates is priced, counted from the template itself
(`bench/stack.py`): the functions (requests, duration, the INIT phase of cold starts, billed
since 1 August 2025), both tables (reads, writes, storage, point-in-time recovery), the secret,
KMS requests, the topics (publishes, emails), the queues, the log groups (ingestion, storage
for their retention), the alarms and their metrics, custom metrics, X-Ray traces, the HTTP API
(a `/health` poll every minute), EventBridge Scheduler, and the data the checker sends to the
portals over the internet. Prices are on-demand us-east-1 list prices without free tiers, each
in `PRICES` with where it comes from; what the benchmark cannot measure is an assumption,
named in `Fleet` or below, and printed with the bill.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.stack import Stack, access_log_line

ROOT = Path(__file__).resolve().parents[1]
MINUTES_PER_MONTH = 30 * 24 * 60  # a 30-day month: 8,640 runs at 5 minutes
GB = 1_000_000_000  # decimal GB, the larger figure for per-GB prices
FULL_VCPU_MB = 1769  # Lambda gives a function M/1769 of a vCPU
GOAL_DOLLARS = 2.00
GOAL_SECONDS = 60.0
GOAL_MEMORY_MB = 256


# ---- prices: each in one place, with its source ---------------------------------------------


@dataclass(frozen=True)
class Price:
    dollars: float
    per: str
    source: str
    checked: bool  # True: checked against the source (a copy of the page) for this bill


PRICES: dict[str, Price] = {
    "lambda_request": Price(
        0.20 / 1e6, "request", "aws.amazon.com/lambda/pricing (arm64, us-east-1)", True
    ),
    "lambda_gb_second": Price(
        0.0000133334, "GB-second arm64", "aws.amazon.com/lambda/pricing, first 7.5 B GB-s", True
    ),
    "dynamodb_rru": Price(
        0.125 / 1e6, "read request unit", "aws.amazon.com/dynamodb/pricing/on-demand", True
    ),
    "dynamodb_wru": Price(
        0.625 / 1e6, "write request unit", "aws.amazon.com/dynamodb/pricing/on-demand", True
    ),
    "dynamodb_storage": Price(
        0.25, "GB-month", "aws.amazon.com/dynamodb/pricing/on-demand (Standard class)", False
    ),
    "dynamodb_pitr": Price(
        0.20, "GB-month", "aws.amazon.com/dynamodb/pricing (continuous backups, PITR)", True
    ),
    "secret": Price(0.40, "secret-month", "aws.amazon.com/secrets-manager/pricing", True),
    "secret_call": Price(0.05 / 1e4, "API call", "aws.amazon.com/secrets-manager/pricing", True),
    "kms_request": Price(
        0.03 / 1e4,
        "request",
        "aws.amazon.com/kms/pricing (AWS managed keys: no monthly fee, requests charged)",
        True,
    ),
    "sns_publish": Price(0.50 / 1e6, "publish", "aws.amazon.com/sns/pricing", True),
    "sns_email": Price(2.00 / 1e5, "email delivery", "aws.amazon.com/sns/pricing", True),
    "sqs_request": Price(
        0.40 / 1e6,
        "request (64 KB chunk)",
        "aws.amazon.com/sqs/pricing (standard queue; empty receives are requests)",
        True,
    ),
    "logs_ingest": Price(
        0.50, "GB ingested", "aws.amazon.com/cloudwatch/pricing (Logs, Standard class)", True
    ),
    "logs_storage": Price(
        0.03, "GB-month archived", "aws.amazon.com/cloudwatch/pricing (Logs storage)", True
    ),
    "alarm_metric": Price(
        0.10, "alarm metric-month", "aws.amazon.com/cloudwatch/pricing (standard resolution)", True
    ),
    "alarm_metric_high": Price(
        0.30, "alarm metric-month", "aws.amazon.com/cloudwatch/pricing (high resolution)", True
    ),
    "custom_metric": Price(
        0.30, "metric-month", "aws.amazon.com/cloudwatch/pricing (first 10,000 metrics)", True
    ),
    "xray_trace": Price(0.000005, "trace recorded", "aws.amazon.com/xray/pricing", True),
    "http_api_request": Price(
        1.00 / 1e6, "request", "aws.amazon.com/api-gateway/pricing (HTTP API, first 300 M)", True
    ),
    "scheduler_invocation": Price(
        1.00 / 1e6, "invocation", "aws.amazon.com/eventbridge/pricing (Scheduler)", True
    ),
    "internet_out": Price(
        0.09,
        "GB out to the internet",
        "aws.amazon.com/ec2/pricing/on-demand (data transfer out, first 10 TB; Lambda is "
        "charged at EC2 data transfer rates)",
        False,
    ),
}

# ---- what the benchmark cannot measure, stated rather than hidden --------------------------
ITEM_OVERHEAD = 100  # bytes DynamoDB adds to every stored item (its indexes)
PLATFORM_LOG_LINES = 3  # Lambda's own JSON records per invocation (platform.start, .report...)
PLATFORM_LOG_BYTES = 700  # their bytes together, with the X-Ray ids
LOG_EVENT_OVERHEAD = 26  # bytes CloudWatch Logs counts per log event beyond its message
TLS_CONNECTION_BYTES = 1200  # client->server bytes of a TCP + TLS 1.3 connection's set-up and
# close (SYN, ACKs, ClientHello ~520 B, Finished, FIN): the local portal speaks plain HTTP
PACKET_OVERHEAD = 150  # per write (segment) sent: TLS record, TCP/IP headers, ACKs of the answer
KMS_PER_SECRET_READ = 1  # GetSecretValue decrypts the secret's data key (AWS managed key)
KMS_PER_SECRET_WRITE = 1  # PutSecretValue asks KMS for a new data key
KMS_TABLE_KEY_MINUTES = 5  # DynamoDB caches a table's key per caller for ~5 minutes idle:
# counted as one Decrypt per table per 5 minutes for each function that reads it


@dataclass(frozen=True)
class Usage:
    """What something consumed (a run, one token refresh, one /health poll), by name:
    `wall`, `cpu` (seconds); `rest`, `oauth` (portal requests); `net.bytes`,
    `net.connections`, `net.writes` (sent to the portals); `ddb.<Table>.<Operation>` (calls)
    and `ddb.<Table>.RRU` / `.WRU`; `sm.<Operation>`; `sns.Publish`; `log.lines`,
    `log.bytes`."""

    values: Mapping[str, float] = field(default_factory=dict)

    def get(self, key: str) -> float:
        return float(self.values.get(key, 0.0))

    def total(self, prefix: str, suffix: str = "") -> float:
        return sum(v for k, v in self.values.items() if k.startswith(prefix) and k.endswith(suffix))

    def __add__(self, other: Usage) -> Usage:
        keys = {*self.values, *other.values}
        return Usage({k: self.get(k) + other.get(k) for k in keys})

    def __sub__(self, other: Usage) -> Usage:
        return self + other.times(-1.0)

    def times(self, factor: float) -> Usage:
        return Usage({k: v * factor for k, v in self.values.items()})

    def at_least_zero(self) -> Usage:
        return Usage({k: max(0.0, v) for k, v in self.values.items()})

    def dynamodb_calls(self) -> float:
        return sum(
            v
            for k, v in self.values.items()
            if k.startswith("ddb.") and not k.endswith((".RRU", ".WRU"))
        )

    def units(self, kind: str) -> float:
        return self.total("ddb.", f".{kind}")

    def duration(self, memory_mb: int) -> float:
        """Lambda duration at `memory_mb`: the wall time, or the CPU time on M/1769 vCPU."""
        return max(self.get("wall"), self.get("cpu") * FULL_VCPU_MB / memory_mb)


def fit(samples: Iterable[tuple[float, Usage]], x: float) -> Usage:
    """Each quantity as a + b*x through the two measured sizes (or scaled from one), at x."""
    points = sorted(samples, key=lambda s: s[0])
    if len(points) == 1:
        (x0, u0) = points[0]
        return u0.times(x / x0 if x0 else 1.0)
    (x0, u0), (x1, u1) = points[0], points[-1]
    slope = (u1 - u0).times(1.0 / (x1 - x0))
    return (u0 + slope.times(x - x0)).at_least_zero()


@dataclass(frozen=True)
class FanOutFigures:
    """The invocations of a fanned-out run (FanOut=true), each measured on its own: the planner
    (the scheduled invocation: reads the registry and the whole token table, queues one order
    per shard) and one worker invocation per shard. The `Figures` holding them carry the run's
    totals (planner + every worker) for everything but Lambda's requests and duration."""

    shards: int  # worker invocations a run: the orders the planner queues
    planner: Usage  # one planner invocation of a steady run
    planner_inventory: Usage  # the planner of a run that repeats the inventories
    workers: tuple[Usage, ...]  # one invocation per measured shard, steady run
    workers_inventory: tuple[Usage, ...]  # the same shards in an inventory run
    measured: str = ""  # which shards were measured and which are scaled from them

    def worker_seconds(
        self, memory_mb: int, refresh: Usage, refreshes_per_run: float, *, inventory: bool = False
    ) -> float:
        """Lambda seconds of every worker of one run: each invocation's own duration (the
        measured shards', each with its share of the run's token refreshes), scaled to all."""
        runs = self.workers_inventory if inventory else self.workers
        share = refresh.times(refreshes_per_run / self.shards)
        return sum((w + share).duration(memory_mb) for w in runs) * self.shards / len(runs)


@dataclass(frozen=True)
class Figures:
    """What the measured fleet consumed, per kind of event."""

    portals: int
    targets: int
    steady: Usage  # one steady run (median of the steady runs)
    inventory: Usage  # one run that repeats the inventory (every ValidateEveryMinutes)
    refresh: Usage  # one portal's token refresh: what a run with refreshes adds, per refresh
    health: Usage  # one GET /health of the snapshot API function
    cold: Mapping[str, Usage]  # per function: its INIT (import app) + first call's wiring
    stored: Mapping[str, tuple[float, float]]  # table -> (item bytes, items)
    measured_on: str = ""
    fanout: FanOutFigures | None = None  # a fanned-out run: steady/inventory are its totals


def fitted(samples: Iterable[Figures], portals: int, targets: int) -> Figures:
    """Figures for a fleet of `portals` (same lines per portal), each quantity fitted as
    a + b*portals through the measured fleets (proportional to one, if only one was measured).
    Per-refresh, per-poll and cold-start figures do not grow with the fleet: the largest
    measured fleet's are kept (fitting them would magnify noise)."""
    measured = sorted(samples, key=lambda f: f.portals)
    largest = measured[-1]
    if (largest.portals, largest.targets) == (portals, targets):
        return largest

    def at(pick: Callable[[Figures], Usage]) -> Usage:
        return fit([(float(f.portals), pick(f)) for f in measured], float(portals))

    stored: dict[str, tuple[float, float]] = {}
    for table in largest.stored:
        usage = at(
            lambda f, t=table: Usage(dict(zip(("b", "n"), f.stored.get(t, (0, 0)), strict=True)))
        )
        stored[table] = (usage.get("b"), usage.get("n"))
    sizes = " and ".join(f"{f.portals:,}" for f in measured)
    how = "a + b x portals through" if len(measured) > 1 else "proportionally from"
    return Figures(
        portals=portals,
        targets=targets,
        steady=at(lambda f: f.steady),
        inventory=at(lambda f: f.inventory),
        refresh=largest.refresh,
        health=largest.health,
        cold=largest.cold,
        stored=stored,
        measured_on=f"{largest.measured_on}; fitted to {portals:,} portals ({how} the runs "
        f"measured on {sizes} portals)",
    )


@dataclass(frozen=True)
class Fleet:
    """The deployment to price, and the assumptions about it."""

    targets: int = 5000
    portals: int = 1000
    schedule_minutes: float = 5.0
    validate_every_minutes: float = 240.0  # ValidateEveryMinutes default: 1 run in 48
    refreshes_per_portal_hour: float = 1.0  # access tokens live an hour
    health_polls_per_minute: float = 1.0  # the /health poll of the goal
    incidents_per_month: int = 30  # each a connector.down and a connector.recovered
    alarm_notifications_per_month: int = 4  # alarm state changes the operations topic sends
    checker_cold_starts_per_run: float = 1.0  # every run (a 5-minute gap is at the edge of
    # how long Lambda keeps an idle environment): an upper bound
    api_cold_starts_per_hour: float = 1.0  # polled every minute it stays warm; recycled hourly
    sqs_pollers: int = 5  # Lambda's SQS event source polls with 5 pollers while idle ...
    sqs_poll_seconds: float = 20.0  # ... each a 20-second long poll
    sqs_receives_per_order: float = 1.0  # the event source's ReceiveMessage that finds an order
    sqs_deletes_per_order: float = 1.0  # ... and its DeleteMessage once the worker succeeded
    worker_cold_starts_per_invocation: float = 1.0  # every shard (an upper bound)
    publish_metrics: bool = False  # PublishMetrics (off by default)

    @property
    def runs(self) -> float:
        return MINUTES_PER_MONTH / self.schedule_minutes

    @property
    def inventory_runs(self) -> float:
        return self.runs * self.schedule_minutes / self.validate_every_minutes

    @property
    def refreshes(self) -> float:
        return self.portals * self.refreshes_per_portal_hour * MINUTES_PER_MONTH / 60

    @property
    def health_polls(self) -> float:
        return self.health_polls_per_minute * MINUTES_PER_MONTH


@dataclass(frozen=True)
class Line:
    item: str
    detail: str
    dollars: float


@dataclass
class Bill:
    fleet: Fleet
    figures: Figures
    stack: Stack
    lines: list[Line] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checker_run_seconds: float = 0.0  # estimated Lambda duration of a typical run

    @property
    def total(self) -> float:
        return sum(line.dollars for line in self.lines)

    @property
    def shards(self) -> int:
        return self.figures.fanout.shards if self.figures.fanout else 1

    @property
    def per_shard(self) -> float:
        """The bill divided among the shards of a fanned-out run (the whole bill otherwise)."""
        return self.total / self.shards

    def dollars(self, item: str) -> float:
        return sum(line.dollars for line in self.lines if line.item == item)

    def add(self, item: str, detail: str, dollars: float) -> None:
        self.lines.append(Line(item, detail, dollars))


def custom_metrics_in_code() -> int:
    """Distinct metric names the handlers add (`metrics.add_metric("Name", ...)`)."""
    names: set[str] = set()
    for app in (ROOT / "functions").glob("*/app.py"):
        names |= set(re.findall(r"add_metric\(\s*\"(\w+)\"", app.read_text(encoding="utf-8")))
    return len(names)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 or float(value).is_integer() else f"{value:,.2f}"


def monthly_bill(figures: Figures, fleet: Fleet, stack: Stack) -> Bill:
    p = {name: price.dollars for name, price in PRICES.items()}
    bill = Bill(fleet, figures, stack)
    runs, inventories = fleet.runs, fleet.inventory_runs
    refresh_per_run = fleet.refreshes / runs
    scheduled = [f for f in stack.functions.values() if f.schedules]
    checker = scheduled[0] if scheduled else next(iter(stack.functions.values()))
    api = next((f for f in stack.functions.values() if f.http_api), None)
    polls = fleet.health_polls if api and stack.http_apis else 0.0
    memory = checker.memory_mb
    fan = figures.fanout
    worker = next((f for f in stack.functions.values() if f.queues), None)
    if fan is not None and worker is None:
        raise ValueError("a fanned-out run is priced on a stack deployed with FanOut=true")
    # A typical run refreshes 1/12 of the portals' tokens (hourly tokens, 5-minute runs).
    typical = figures.steady + figures.refresh.times(refresh_per_run)
    validating = figures.inventory + figures.refresh.times(refresh_per_run)
    month = typical.times(runs - inventories) + validating.times(inventories)
    health = figures.health.times(polls)
    shards = fan.shards if fan is not None else 0
    invocations = runs * (1 + shards)  # the scheduled run and, fanned out, one per shard

    # -- Lambda ----------------------------------------------------------------------------
    bill.add(
        "Lambda requests",
        (
            f"{_fmt(runs)} planner runs + {_fmt(runs * shards)} shard invocations "
            f"({shards} a run) + {_fmt(polls)} /health polls"
            if fan is not None
            else f"{_fmt(runs)} checker runs + {_fmt(polls)} /health polls"
        ),
        (invocations + polls) * p["lambda_request"],
    )
    if fan is None:
        checker_seconds = (
            typical.duration(memory) * (runs - inventories)
            + validating.duration(memory) * inventories
        )
        bill.checker_run_seconds = typical.duration(memory)
        gb_s = checker_seconds * memory / 1024
        bill.add(
            "Lambda duration, checker",
            f"{typical.duration(memory):.2f} s a run at {memory} MB ({_governs(typical, memory)} "
            f"governs; inventory runs {validating.duration(memory):.2f} s) = {_fmt(gb_s)} GB-s",
            gb_s * p["lambda_gb_second"],
        )
    else:
        assert worker is not None
        planned = fan.planner.duration(memory)
        gb_s = (
            (planned * (runs - inventories) + fan.planner_inventory.duration(memory) * inventories)
            * memory
            / 1024
        )
        bill.add(
            "Lambda duration, planner",
            f"{planned:.2f} s a run at {memory} MB ({_governs(fan.planner, memory)} governs: "
            f"the registry, the whole token table, {shards} orders queued) = {_fmt(gb_s)} GB-s",
            gb_s * p["lambda_gb_second"],
        )
        wmb = worker.memory_mb
        each = fan.worker_seconds(wmb, figures.refresh, refresh_per_run)
        each_inventory = fan.worker_seconds(wmb, figures.refresh, refresh_per_run, inventory=True)
        worker_gb_s = (each * (runs - inventories) + each_inventory * inventories) * wmb / 1024
        bill.checker_run_seconds = planned + each
        bill.add(
            "Lambda duration, shard workers",
            f"{shards} invocations a run, {each / shards:.2f} s each on average at {wmb} MB "
            f"({_governs(fan.workers[0], wmb)} governs; {each:.1f} s a run, inventory runs "
            f"{each_inventory:.1f} s) = {_fmt(worker_gb_s)} GB-s",
            worker_gb_s * p["lambda_gb_second"],
        )
    if api is not None:
        api_gb_s = figures.health.duration(api.memory_mb) * polls * api.memory_mb / 1024
        bill.add(
            "Lambda duration, snapshot API",
            f"{figures.health.duration(api.memory_mb) * 1000:.0f} ms a /health poll at "
            f"{api.memory_mb} MB x {_fmt(polls)} = {_fmt(api_gb_s)} GB-s",
            api_gb_s * p["lambda_gb_second"],
        )
    checker_colds = runs * fleet.checker_cold_starts_per_run
    worker_colds = runs * shards * fleet.worker_cold_starts_per_invocation
    api_colds = fleet.api_cold_starts_per_hour * MINUTES_PER_MONTH / 60 if api else 0.0
    init_gb_s = checker_colds * _cold(figures, checker.logical_id).duration(memory) * memory / 1024
    cold_parts = [
        f"{_fmt(checker_colds)} {'planner' if fan else 'checker'} cold starts x "
        f"{_cold(figures, checker.logical_id).duration(memory):.2f} s"
    ]
    if worker is not None and fan is not None:
        worker_init = _cold(figures, worker.logical_id).duration(worker.memory_mb)
        init_gb_s += worker_colds * worker_init * worker.memory_mb / 1024
        cold_parts.append(f"{_fmt(worker_colds)} shard worker x {worker_init:.2f} s")
    if api is not None:
        init_gb_s += (
            api_colds
            * _cold(figures, api.logical_id).duration(api.memory_mb)
            * api.memory_mb
            / 1024
        )
        api_init = _cold(figures, api.logical_id).duration(api.memory_mb)
        cold_parts.append(f"{_fmt(api_colds)} API x {api_init:.2f} s")
    bill.add(
        "Lambda INIT (cold starts)",
        " + ".join(cold_parts) + f" (import + first call's wiring) = {_fmt(init_gb_s)} GB-s",
        init_gb_s * p["lambda_gb_second"],
    )

    # -- DynamoDB --------------------------------------------------------------------------
    rru, wru = month.units("RRU") + health.units("RRU"), month.units("WRU") + health.units("WRU")
    split_reads = ""
    split_writes = ""
    if fan is not None:
        planner_tokens = fan.planner.get("ddb.TokenTable.RRU")
        workers = figures.steady - fan.planner
        split_reads = (
            f" (planner {fan.planner.units('RRU'):,.1f}, of which the token table "
            f"{planner_tokens:,.1f}; workers {workers.units('RRU'):,.1f}, of which the token "
            f"table {workers.get('ddb.TokenTable.RRU'):,.1f}: the token table is read twice)"
        )
        split_writes = (
            f" (of which the run record: {figures.steady.get('ddb.Table.PutItem'):,.0f} PutItem "
            f"and {figures.steady.get('ddb.Table.UpdateItem'):,.0f} UpdateItem a run)"
        )
    bill.add(
        "DynamoDB reads",
        f"{typical.units('RRU'):,.1f} RRU a run{split_reads}, {validating.units('RRU'):,.1f} an "
        f"inventory run, {figures.health.units('RRU'):.1f} a /health = {rru / 1e6:,.3f} M RRU",
        rru * p["dynamodb_rru"],
    )
    bill.add(
        "DynamoDB writes",
        f"{figures.steady.units('WRU'):,.1f} WRU a steady run{split_writes}, "
        f"{figures.refresh.units('WRU'):.1f} a token refresh x {_fmt(fleet.refreshes)}, "
        f"{figures.inventory.units('WRU'):,.0f} an inventory run = {wru / 1e6:,.3f} M WRU",
        wru * p["dynamodb_wru"],
    )
    stored = {
        table: (size + ITEM_OVERHEAD * items)
        for table, (size, items) in figures.stored.items()
        if table in stack.tables
    }
    stored_gb = sum(stored.values()) / GB
    bill.add(
        "DynamoDB storage",
        ", ".join(f"{t} {b / 1e6:,.2f} MB" for t, b in sorted(stored.items())),
        stored_gb * p["dynamodb_storage"],
    )
    pitr = [t for t in stack.tables.values() if t.pitr]
    pitr_gb = sum(stored.get(t.logical_id, 0.0) for t in pitr) / GB
    bill.add(
        "DynamoDB point-in-time recovery",
        f"{len(pitr)} tables with PITR, {pitr_gb * 1000:,.2f} MB",
        pitr_gb * p["dynamodb_pitr"],
    )

    # -- Secrets Manager and KMS ------------------------------------------------------------
    secrets = len(stack.secrets)
    reads, writes = month.get("sm.GetSecretValue"), month.get("sm.PutSecretValue")
    calls = month.total("sm.")
    bill.add("Secrets Manager secrets", f"{secrets} secret(s)", secrets * p["secret"])
    bill.add(
        "Secrets Manager API calls",
        f"{_fmt(calls)} calls ({figures.steady.total('sm.'):.0f} a run)",
        calls * p["secret_call"],
    )
    kms_tables = [t.logical_id for t in stack.tables.values() if t.kms]
    readers = (
        [fan.planner, figures.steady - fan.planner] if fan is not None else [typical]
    )  # what each function (role) calling DynamoDB consumed
    checker_tables = [t for u in readers for t in kms_tables if u.total(f"ddb.{t}.") > 0]
    key_windows = MINUTES_PER_MONTH / KMS_TABLE_KEY_MINUTES
    table_keys = len(checker_tables) * min(runs, key_windows)
    if api is not None and figures.health.total("ddb.") > 0:
        table_keys += min(polls, key_windows) * sum(
            1 for t in kms_tables if figures.health.total(f"ddb.{t}.") > 0
        )
    kms = reads * KMS_PER_SECRET_READ + writes * KMS_PER_SECRET_WRITE + table_keys
    bill.add(
        "KMS requests",
        f"{_fmt(reads + writes)} for the secret + {_fmt(table_keys)} DynamoDB table-key "
        f"decrypts ({len(kms_tables)} tables under aws/dynamodb)",
        kms * p["kms_request"],
    )

    # -- SNS, SQS ----------------------------------------------------------------------------
    alerts = 2 * fleet.incidents_per_month + month.get("sns.Publish")
    notices = fleet.alarm_notifications_per_month
    bill.add(
        "SNS publishes",
        f"{_fmt(alerts)} alerts ({fleet.incidents_per_month} incidents) + {notices} alarm "
        "notifications",
        (alerts + notices) * p["sns_publish"],
    )
    alert_emails = stack.email_subscriptions.get("Topic", 0)
    ops_emails = sum(n for t, n in stack.email_subscriptions.items() if t != "Topic")
    emails = alerts * alert_emails + notices * ops_emails
    bill.add(
        "SNS email deliveries",
        f"{_fmt(emails)} ({sum(stack.email_subscriptions.values())} email subscriptions)",
        emails * p["sns_email"],
    )
    polled = sorted({q for f in stack.functions.values() for q in f.queues})
    idle = len(polled) * fleet.sqs_pollers * 60 / fleet.sqs_poll_seconds * MINUTES_PER_MONTH
    orders = runs * shards
    sends = month.total("sqs.SendMessage")  # SendMessageBatch: ten orders a call
    receives = orders * fleet.sqs_receives_per_order
    deletes = orders * fleet.sqs_deletes_per_order
    if fan is not None:
        sqs_detail = (
            f"{len(stack.queues)} queues; {_fmt(orders)} shard orders ({shards} a run): "
            f"{_fmt(sends)} SendMessageBatch by the planner + {_fmt(receives)} receives and "
            f"{_fmt(deletes)} deletes by the event source (one each an order, assumed) + idle "
            f"polling of {', '.join(polled)}: {fleet.sqs_pollers} pollers x "
            f"{fleet.sqs_poll_seconds:g} s long polls = {_fmt(idle)} receives"
        )
    elif polled:
        sqs_detail = (
            f"{len(stack.queues)} queues; {', '.join(polled)} polled by a Lambda event source: "
            f"{fleet.sqs_pollers} pollers x {fleet.sqs_poll_seconds:g} s long polls = "
            f"{_fmt(idle)} receives (shard orders themselves not measured here)"
        )
    else:
        sqs_detail = (
            f"{len(stack.queues)} queues, none polled: no requests while Scheduler delivers "
            "every run (the dead-letter queue gets a message only when it cannot)"
        )
    sqs_requests = idle + (sends + receives + deletes if fan is not None else 0.0)
    bill.add("SQS requests", sqs_detail, sqs_requests * p["sqs_request"])

    # -- CloudWatch ------------------------------------------------------------------------
    per_invocation = PLATFORM_LOG_BYTES + PLATFORM_LOG_LINES * LOG_EVENT_OVERHEAD
    checker_logs = (
        month.get("log.bytes")
        + month.get("log.lines") * LOG_EVENT_OVERHEAD
        + invocations * per_invocation
    )
    api_logs = (
        health.get("log.bytes") + health.get("log.lines") * LOG_EVENT_OVERHEAD
    ) + polls * per_invocation
    access = 0.0
    for _api_id, (_group, fmt) in stack.access_logs.items():
        access += polls * (len(access_log_line(fmt).encode()) + LOG_EVENT_OVERHEAD)
    ingested = checker_logs + api_logs + access
    bill.add(
        "CloudWatch Logs ingestion",
        f"{'planner + workers' if fan else 'checker'} {checker_logs / GB * 1000:,.1f} MB "
        f"({typical.get('log.bytes'):,.0f} B printed a run), snapshot API "
        f"{api_logs / GB * 1000:,.1f} MB, API access log {access / GB * 1000:,.1f} MB",
        ingested / GB * p["logs_ingest"],
    )
    retention = [d for d in stack.log_groups.values() if d]
    days = max(retention) if retention else 3650
    stored_logs = ingested * days / 30
    bill.add(
        "CloudWatch Logs storage",
        f"{len(stack.log_groups)} log groups kept {days} days: {stored_logs / GB * 1000:,.1f} MB "
        "held (uncompressed: an upper bound)",
        stored_logs / GB * p["logs_storage"],
    )
    standard = sum(a.metrics for a in stack.alarms if not a.high_resolution)
    high = sum(a.metrics for a in stack.alarms if a.high_resolution)
    bill.add(
        "CloudWatch alarms",
        f"{len(stack.alarms)} alarms, {standard} standard-resolution metrics"
        + (f", {high} high-resolution" if high else ""),
        standard * p["alarm_metric"] + high * p["alarm_metric_high"],
    )
    metrics = custom_metrics_in_code()
    bill.add(
        "CloudWatch custom metrics",
        f"{metrics} metrics (PublishMetrics=true)"
        if fleet.publish_metrics
        else f"none (PublishMetrics=false, the default; true adds {metrics} x $0.30)",
        metrics * p["custom_metric"] if fleet.publish_metrics else 0.0,
    )

    # -- X-Ray, API Gateway, Scheduler, data transfer ------------------------------------------
    traced = (runs if checker.traced else 0.0) + (polls if api and api.traced else 0.0)
    if fan is not None and worker is not None and worker.traced:
        traced += runs * shards
    bill.add(
        "X-Ray traces",
        f"{_fmt(traced)} traces recorded ({len(stack.traced_functions)} traced functions; "
        "none retrieved)",
        traced * p["xray_trace"],
    )
    bill.add(
        "API Gateway HTTP API",
        f"{_fmt(polls)} requests (a /health poll every minute)",
        polls * p["http_api_request"],
    )
    schedules = sum(f.schedules for f in stack.functions.values())
    bill.add(
        "EventBridge Scheduler",
        f"{_fmt(runs * schedules)} invocations",
        runs * schedules * p["scheduler_invocation"],
    )
    sent = (
        month.get("net.bytes")
        + month.get("net.connections") * TLS_CONNECTION_BYTES
        + month.get("net.writes") * PACKET_OVERHEAD
    )
    bill.add(
        "Data transfer out (to the portals)",
        f"{typical.get('net.bytes') / 1000:,.0f} KB sent a run in "
        f"{typical.get('net.writes'):,.0f} writes on {typical.get('net.connections'):,.0f} "
        f"connections (+TLS/TCP) = {sent / GB:,.2f} GB",
        sent / GB * p["internet_out"],
    )
    bill.notes = _notes(bill, checker_colds, api_colds)
    return bill


def _governs(usage: Usage, memory_mb: int) -> str:
    return "CPU" if usage.get("cpu") * FULL_VCPU_MB / memory_mb > usage.get("wall") else "wall"


def _cold(figures: Figures, function: str) -> Usage:
    if function in figures.cold:
        return figures.cold[function]
    return next(iter(figures.cold.values()), Usage())


def _notes(bill: Bill, checker_colds: float, api_colds: float) -> list[str]:
    fleet, stack = bill.fleet, bill.stack
    notes = [
        "Assumptions: "
        f"{fleet.incidents_per_month} incidents a month (2 alerts each) and "
        f"{fleet.alarm_notifications_per_month} alarm notifications, each emailed to every "
        f"subscription (AlertEmail set); one token refresh per portal an hour (access tokens "
        f"live an hour), each costing what the refresh run measured per refresh; "
        f"{_fmt(checker_colds)} {'planner' if bill.figures.fanout else 'checker'} cold starts "
        "(every run: an upper bound) and "
        f"{_fmt(api_colds)} API cold starts a month, INIT billed as CPU-bound like the invoke; "
        "Lambda duration = max(local wall, local CPU x 1769/M) (local wall includes moto's and "
        "the local portal's answers); "
        f"{PLATFORM_LOG_LINES} Lambda platform log records ({PLATFORM_LOG_BYTES} B) an "
        f"invocation and {LOG_EVENT_OVERHEAD} B per log event; DynamoDB units from AWS's "
        f"item-size rules, {ITEM_OVERHEAD} B per stored item; KMS: one request per secret read "
        f"or write, one table-key decrypt per table per {KMS_TABLE_KEY_MINUTES} minutes per "
        f"function; data sent over TLS: +{TLS_CONNECTION_BYTES} B a connection and "
        f"+{PACKET_OVERHEAD} B a write beyond the HTTP bytes measured; no X-Ray trace is "
        "retrieved; history items of alerts (a few KB) are left out of storage.",
        "Not in the bill: SAM's artifact bucket (S3, not created by the template: a few MB at "
        "$0.023/GB-month); the free tiers (with them Lambda, X-Ray, KMS, Logs, the HTTP API "
        "and the first 100 GB of data transfer cost nothing at this size).",
    ]
    free = ", ".join(f"{kind} x{n}" for kind, n in sorted(stack.free.items()))
    notes.append(f"No charge by themselves: {free}.")
    notes.append(
        "Unpriced resources: " + (", ".join(stack.unpriced) if stack.unpriced else "none") + "."
    )
    fan = bill.figures.fanout
    if fan is not None:
        notes.insert(
            1,
            f"Fan-out (FanOut=true): every run is one planner invocation and {fan.shards} worker "
            f"invocations, one shard order each; {fan.measured or 'every shard measured'}; "
            f"{_fmt(fleet.runs * fan.shards * fleet.worker_cold_starts_per_invocation)} worker "
            "cold starts (every invocation: an upper bound); the event source receives and "
            f"deletes each order once ({fleet.sqs_receives_per_order:g} receive, "
            f"{fleet.sqs_deletes_per_order:g} delete, on top of its idle long polls: an upper "
            "bound); each function (role) decrypts each table's key once per "
            f"{KMS_TABLE_KEY_MINUTES} minutes.",
        )
        notes.append(
            f"Per shard: ${bill.total:.4f} / {fan.shards} shards = ${bill.per_shard:.4f} a month "
            f"for {fleet.portals / fan.shards:,.0f} portals ({fleet.targets / fan.shards:,.0f} "
            "targets) of the fanned-out fleet."
        )
    else:
        verdict = "MET" if bill.total <= GOAL_DOLLARS else "NOT MET"
        notes.append(
            f"Goal: <= ${GOAL_DOLLARS:.2f} a month all-in for {fleet.targets:,} targets on "
            f"{fleet.portals:,} portals every {fleet.schedule_minutes:g} minutes: {verdict} "
            f"(${bill.total:.2f})."
        )
    biggest = sorted(bill.lines, key=lambda line: line.dollars, reverse=True)[:5]
    notes.append(
        "Largest items: " + ", ".join(f"{line.item} ${line.dollars:.2f}" for line in biggest)
    )
    return notes


def render_bill(bill: Bill) -> str:
    fleet, figures = bill.fleet, bill.figures
    width = max(len(line.item) for line in bill.lines)
    params = ", ".join(
        f"{k}={v}" for k, v in sorted(bill.stack.parameters.items()) if k in _SHOWN_PARAMETERS
    )
    out = [
        f"Monthly bill: {fleet.targets:,} targets on {fleet.portals:,} portals, every "
        f"{fleet.schedule_minutes:g} min = {fleet.runs:,.0f} runs/month "
        f"({fleet.inventory_runs:,.0f} repeat the inventory)",
        f"  one stack as template.yaml deploys it ({params}); on-demand us-east-1 list "
        "prices, no free tier",
    ]
    if figures.measured_on:
        out.append(f"  from {figures.measured_on}")
    out.append("")
    for line in bill.lines:
        out.append(f"  {line.item:<{width}}  ${line.dollars:>8.4f}   {line.detail}")
    out.append(f"  {'Total':<{width}}  ${bill.total:>8.4f}")
    out.append("")
    out += bill.notes
    out.append("Prices (per unit; * = checked against a copy of the source for this bill):")
    for name, price in PRICES.items():
        mark = "*" if price.checked else " "
        out.append(f"  {mark} {name:<22} ${price.dollars:.10g} per {price.per}: {price.source}")
    return "\n".join(out)


_SHOWN_PARAMETERS = {
    "ScheduleExpression",
    "FanOut",
    "MaxParallelPortals",
    "ShardPortals",
    "PublishMetrics",
    "LogRetentionDays",
    "AlertEmail",
}
