"""The monthly bill of one stack from what a measured fleet consumed (bench/fleet.py measures).
Every resource template.yaml creates (`bench/stack.py`) is priced at on-demand us-east-1 list
prices without free tiers, each in `PRICES` with its source; what the benchmark cannot measure
is an assumption, named in `Fleet` or below. The same bill is then printed with AWS's
always-free tiers taken off (`FREE_TIERS`: what a small account really pays).
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
GOAL_DOLLARS, GOAL_SECONDS, GOAL_MEMORY_MB = 3.00, 60.0, 256


def fits(seconds: float, rss_bytes: float) -> bool:
    """Whether an invocation fits the goal: 60 s and 256 MB."""
    return seconds <= GOAL_SECONDS and rss_bytes / 2**20 <= GOAL_MEMORY_MB


@dataclass(frozen=True)
class Price:
    dollars: float
    per: str
    source: str
    checked: bool  # True: checked against the source (a copy of the page) for this bill


_CW, _DDB = "aws.amazon.com/cloudwatch/pricing", "aws.amazon.com/dynamodb/pricing"
_LAMBDA, _SM = "aws.amazon.com/lambda/pricing (arm64)", "aws.amazon.com/secrets-manager/pricing"
_EC2 = "aws.amazon.com/ec2/pricing/on-demand (data transfer out, first 10 TB: Lambda's rate)"
PRICES: dict[str, Price] = {
    "lambda_request": Price(0.20 / 1e6, "request", _LAMBDA, True),
    "lambda_gb_second": Price(0.0000133334, "GB-second", f"{_LAMBDA}, first 7.5 B GB-s", True),
    "dynamodb_rru": Price(0.125 / 1e6, "read request unit", f"{_DDB}/on-demand", True),
    "dynamodb_wru": Price(0.625 / 1e6, "write request unit", f"{_DDB}/on-demand", True),
    "dynamodb_storage": Price(0.25, "GB-month", f"{_DDB}/on-demand (Standard class)", False),
    "dynamodb_pitr": Price(0.20, "GB-month", f"{_DDB} (continuous backups, PITR)", True),
    "secret": Price(0.40, "secret-month", _SM, True),
    "secret_call": Price(0.05 / 1e4, "API call", _SM, True),
    "kms_request": Price(0.03 / 1e4, "request", "aws.amazon.com/kms/pricing", True),
    "sns_publish": Price(0.50 / 1e6, "publish", "aws.amazon.com/sns/pricing", True),
    "sns_email": Price(2.00 / 1e5, "email delivery", "aws.amazon.com/sns/pricing", True),
    "sqs_request": Price(0.40 / 1e6, "request", "aws.amazon.com/sqs/pricing (standard)", True),
    "logs_ingest": Price(0.50, "GB ingested", f"{_CW} (Logs, Standard class)", True),
    "logs_storage": Price(0.03, "GB-month archived", f"{_CW} (Logs storage)", True),
    "alarm_metric": Price(0.10, "alarm metric-month", f"{_CW} (standard resolution)", True),
    "alarm_metric_high": Price(0.30, "alarm metric-month", f"{_CW} (high resolution)", True),
    "custom_metric": Price(0.30, "metric-month", f"{_CW} (first 10,000 metrics)", True),
    "xray_trace": Price(0.000005, "trace recorded", "aws.amazon.com/xray/pricing", True),
    "http_api_request": Price(1.00 / 1e6, "request", "aws.amazon.com/api-gateway/pricing", True),
    "scheduler_invocation": Price(1.00 / 1e6, "invocation", "aws.amazon.com/eventbridge", True),
    "internet_out": Price(0.09, "GB out to the internet", _EC2, False),
}


@dataclass(frozen=True)
class FreeTier:
    """A monthly allowance of AWS's always-free tier (not the 12-month one), shared by every
    price it names (in their unit), for the whole account."""

    quantity: float
    prices: tuple[str, ...]
    source: str


_FREE = "aws.amazon.com/free (Always Free)"
FREE_TIERS: dict[str, FreeTier] = {
    "Lambda requests": FreeTier(1e6, ("lambda_request",), f"{_FREE}; {_LAMBDA}"),
    # arm64 and x86 share it; INIT is billed as duration
    "Lambda compute": FreeTier(400_000, ("lambda_gb_second",), f"{_FREE}; {_LAMBDA}"),
    # 25 WCU/RCU are provisioned capacity: nothing for on-demand requests, nor for PITR
    "DynamoDB storage": FreeTier(25, ("dynamodb_storage",), f"{_FREE}; {_DDB}"),
    "SNS publishes": FreeTier(1e6, ("sns_publish",), f"{_FREE}; aws.amazon.com/sns/pricing"),
    "SNS email": FreeTier(1000, ("sns_email",), f"{_FREE}; aws.amazon.com/sns/pricing"),
    "SQS requests": FreeTier(1e6, ("sqs_request",), f"{_FREE}; aws.amazon.com/sqs/pricing"),
    "KMS requests": FreeTier(20_000, ("kms_request",), f"{_FREE}; aws.amazon.com/kms/pricing"),
    # ingestion, archive storage and Logs Insights scans share the 5 GB
    "CloudWatch Logs": FreeTier(5, ("logs_ingest", "logs_storage"), f"{_FREE}; {_CW}"),
    "CloudWatch alarms": FreeTier(10, ("alarm_metric",), f"{_FREE} (standard resolution); {_CW}"),
    "CloudWatch metrics": FreeTier(10, ("custom_metric",), f"{_FREE}; {_CW}"),
    "X-Ray traces": FreeTier(100_000, ("xray_trace",), f"{_FREE}; aws.amazon.com/xray/pricing"),
    "EventBridge Scheduler": FreeTier(
        14e6, ("scheduler_invocation",), f"{_FREE}; aws.amazon.com/eventbridge/pricing"
    ),
    # aggregated over every service and region since December 2021
    "Data transfer out": FreeTier(
        100, ("internet_out",), f"{_FREE}; aws.amazon.com/blogs/aws/aws-free-tier-data-transfer"
    ),
}
# No always-free tier: Secrets Manager (a 30-day trial), DynamoDB on-demand requests and PITR,
# API Gateway HTTP APIs (12 months only), high-resolution alarms.

ITEM_OVERHEAD = 100  # bytes DynamoDB adds to every stored item (its indexes)
PLATFORM_LOG_LINES = 3  # Lambda's own JSON records per invocation (platform.start, .report...)
PLATFORM_LOG_BYTES = 700  # their bytes together, with the X-Ray ids
LOG_EVENT_OVERHEAD = 26  # bytes CloudWatch Logs counts per log event beyond its message
TCP_IP_HEADERS = 52  # bytes a TCP segment adds on the wire: IPv4 20, TCP 20, timestamps 12
# TCP_INFO is read as a connection is closed, before the close sends anything: the reset that
# ends a portal connection (bitrix24/transport.py) is one more segment a connection, uncounted.
CLOSE_SEGMENTS = 1
KMS_PER_SECRET_CALL = 1  # GetSecretValue decrypts the data key, PutSecretValue asks a new one
KMS_TABLE_KEY_MINUTES = 5  # one table-key Decrypt per table per 5 minutes per function


@dataclass(frozen=True)
class Usage:
    """What something consumed, by name: `wall`, `cpu` (seconds); `rest`, `oauth`;
    `net.bytes`, `net.connections`, `net.segments`; `ddb.<Table>.<Operation>` (calls) and
    `ddb.<Table>.RRU` / `.WRU`; `sm.<Operation>`; `sns.Publish`; `sqs.<Operation>`;
    `log.lines`, `log.bytes`."""

    values: Mapping[str, float] = field(default_factory=dict)

    def get(self, key: str) -> float:
        return float(self.values.get(key, 0.0))

    def total(self, prefix: str, suffix: str = "") -> float:
        return sum(v for k, v in self.values.items() if k.startswith(prefix) and k.endswith(suffix))

    def __add__(self, other: Usage) -> Usage:
        return Usage({k: self.get(k) + other.get(k) for k in {*self.values, *other.values}})

    def __sub__(self, other: Usage) -> Usage:
        return self + other.times(-1.0)

    def times(self, factor: float) -> Usage:
        return Usage({k: v * factor for k, v in self.values.items()})

    def at_least_zero(self) -> Usage:
        return Usage({k: max(0.0, v) for k, v in self.values.items()})

    def units(self, kind: str) -> float:
        return self.total("ddb.", f".{kind}")

    def duration(self, memory_mb: int) -> float:
        """Lambda duration at `memory_mb`: the wall time, or the CPU time on M/1769 vCPU."""
        return max(self.get("wall"), self.get("cpu") * FULL_VCPU_MB / memory_mb)

    def governs(self, memory_mb: int) -> str:
        return "CPU" if self.get("cpu") * FULL_VCPU_MB / memory_mb > self.get("wall") else "wall"


@dataclass(frozen=True)
class FanOutFigures:
    """A fanned-out run's invocations, each measured on its own: the planner and one worker
    per shard. The `Figures` holding them carry the run's totals (planner + every worker) for
    everything but Lambda's requests and duration."""

    shards: int  # worker invocations a run: the orders the planner queues
    planner: Usage  # one planner invocation of a steady run
    planner_inventory: Usage  # the planner of a run that reads every inventory (all due)
    workers: tuple[Usage, ...]  # one invocation per measured shard, steady run
    workers_inventory: tuple[Usage, ...]  # the same shards in an inventory run

    def worker_seconds(
        self, memory_mb: int, refresh: Usage, refreshes_per_run: float, *, inventory: bool = False
    ) -> float:
        """Lambda seconds of every worker of one run: each invocation's own duration (each
        with its share of the run's token refreshes), scaled to all shards."""
        runs = self.workers_inventory if inventory else self.workers
        share = refresh.times(refreshes_per_run / self.shards)
        return sum((w + share).duration(memory_mb) for w in runs) * self.shards / len(runs)


@dataclass(frozen=True)
class Figures:
    """What the measured fleet consumed, per kind of event."""

    portals: int
    targets: int
    steady: Usage  # one steady run (median of the steady runs)
    inventory: Usage  # one run that reads every portal's inventory (all rounds due)
    refresh: Usage  # what a run with refreshes adds, per refresh
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
        (x0, u0), (x1, u1) = [(float(f.portals), pick(f)) for f in (measured[0], largest)]
        if x0 == x1:
            return u0.times(portals / x0 if x0 else 1.0)
        slope = (u1 - u0).times(1.0 / (x1 - x0))
        return (u0 + slope.times(portals - x0)).at_least_zero()

    stored = {}
    for t in largest.stored:
        usage = at(lambda f, t=t: Usage(dict(zip("bn", f.stored.get(t, (0, 0)), strict=True))))
        stored[t] = (usage.get("b"), usage.get("n"))
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
    checker_cold_starts_per_run: float = 1.0  # every run: an upper bound
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
    def inventory_share(self) -> float:
        """The share of the portals whose inventory every run reads: their rounds are spread
        over ValidateEveryMinutes (1 in 48 at the defaults)."""
        return min(1.0, self.schedule_minutes / self.validate_every_minutes)

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
    quantity: float = 0.0  # in `price`'s unit
    price: str = ""  # the PRICES entry, "" for a line of several


@dataclass
class Bill:
    fleet: Fleet
    figures: Figures
    stack: Stack
    lines: list[Line] = field(default_factory=list)
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

    def free_tier_dollars(self) -> list[float]:
        """Each line's dollars once the always-free tiers are used up, in the bill's order
        (a tier shared by several lines is spent on the first of them first)."""
        left = {name: tier.quantity for name, tier in FREE_TIERS.items()}
        owing: list[float] = []
        for line in self.lines:
            quantity = line.quantity
            for name, tier in FREE_TIERS.items():
                if line.price in tier.prices:
                    used = min(quantity, left[name])
                    left[name] -= used
                    quantity -= used
            owing.append(quantity * PRICES[line.price].dollars if line.price else line.dollars)
        return owing

    @property
    def total_with_free_tiers(self) -> float:
        return sum(self.free_tier_dollars())

    def add(self, item: str, quantity: float, price: str, detail: str = "") -> None:
        """One line: its quantity (in the price's unit, unless `detail` says more) and cost."""
        detail = detail or f"{_fmt(quantity)} x {PRICES[price].per}"
        self.lines.append(Line(item, detail, quantity * PRICES[price].dollars, quantity, price))


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 or float(value).is_integer() else f"{value:,.2f}"


def _gb_s(seconds: float, mb: int) -> float:
    return seconds * mb / 1024


def _spread(steady: float, all_due: float, share: float) -> float:
    """A run that reads `share` of the inventories, between a steady run and an all-due one."""
    return steady + max(0.0, all_due - steady) * share


def monthly_bill(figures: Figures, fleet: Fleet, stack: Stack) -> Bill:
    bill = Bill(fleet, figures, stack)
    runs, share = fleet.runs, fleet.inventory_share
    refresh_per_run = fleet.refreshes / runs
    functions = list(stack.functions.values())
    checker = next((f for f in functions if f.schedules), functions[0])
    api = next((f for f in functions if f.http_api), None)
    worker = next((f for f in functions if f.queues), None)
    polls = fleet.health_polls if api and stack.http_apis else 0.0
    memory, fan = checker.memory_mb, figures.fanout
    if fan is not None and worker is None:
        raise ValueError("a fanned-out run is priced on a stack deployed with FanOut=true")
    # A typical run refreshes 1/12 of the portals' tokens (hourly tokens, 5-minute runs).
    # ... and reads `share` of the inventories: what the all-due run adds, in that share.
    rounds = (figures.inventory - figures.steady).at_least_zero().times(share)
    typical = figures.steady + rounds + figures.refresh.times(refresh_per_run)
    month = typical.times(runs)
    health = figures.health.times(polls)
    shards = fan.shards if fan is not None else 0
    invocations = runs * (1 + shards)  # the scheduled run and, fanned out, one per shard

    # -- Lambda ----------------------------------------------------------------------------
    detail = f"{_fmt(runs)} runs + {_fmt(polls)} /health polls"
    if fan is not None:
        detail += f" + {_fmt(runs * shards)} shard invocations ({shards} a run)"
    bill.add("Lambda requests", invocations + polls, "lambda_request", detail)
    if fan is None or worker is None:
        bill.checker_run_seconds = typical.duration(memory)
        used = _gb_s(typical.duration(memory) * runs, memory)
        bill.add("Lambda duration, checker", used, "lambda_gb_second")
    else:
        planned = _spread(
            fan.planner.duration(memory), fan.planner_inventory.duration(memory), share
        )
        bill.add("Lambda duration, planner", _gb_s(planned * runs, memory), "lambda_gb_second")
        wmb = worker.memory_mb
        each = _spread(
            fan.worker_seconds(wmb, figures.refresh, refresh_per_run),
            fan.worker_seconds(wmb, figures.refresh, refresh_per_run, inventory=True),
            share,
        )
        used = _gb_s(each * runs, wmb)
        bill.checker_run_seconds = planned + each
        bill.add("Lambda duration, shard workers", used, "lambda_gb_second")
    if api is not None:
        used = _gb_s(figures.health.duration(api.memory_mb) * polls, api.memory_mb)
        bill.add("Lambda duration, snapshot API", used, "lambda_gb_second")

    def cold(function: str, mb: int) -> float:
        return figures.cold.get(function, next(iter(figures.cold.values()), Usage())).duration(mb)

    colds = [(runs * fleet.checker_cold_starts_per_run, checker)]
    if worker is not None and fan is not None:
        colds.append((runs * shards * fleet.worker_cold_starts_per_invocation, worker))
    if api is not None:
        colds.append((fleet.api_cold_starts_per_hour * MINUTES_PER_MONTH / 60, api))
    used = sum(_gb_s(n * cold(f.logical_id, f.memory_mb), f.memory_mb) for n, f in colds)
    bill.add("Lambda INIT (cold starts)", used, "lambda_gb_second")
    # -- DynamoDB --------------------------------------------------------------------------
    bill.add("DynamoDB reads", month.units("RRU") + health.units("RRU"), "dynamodb_rru")
    bill.add("DynamoDB writes", month.units("WRU") + health.units("WRU"), "dynamodb_wru")
    stored = {
        table: (size + ITEM_OVERHEAD * items)
        for table, (size, items) in figures.stored.items()
        if table in stack.tables
    }
    bill.add("DynamoDB storage", sum(stored.values()) / GB, "dynamodb_storage")
    pitr = sum(stored.get(t.logical_id, 0.0) for t in stack.tables.values() if t.pitr) / GB
    bill.add("DynamoDB point-in-time recovery", pitr, "dynamodb_pitr")
    # -- Secrets Manager and KMS ------------------------------------------------------------
    bill.add("Secrets Manager secrets", len(stack.secrets), "secret")
    bill.add("Secrets Manager API calls", month.total("sm."), "secret_call")
    secret_calls = month.get("sm.GetSecretValue") + month.get("sm.PutSecretValue")
    kms_tables = [t.logical_id for t in stack.tables.values() if t.kms]
    # one table-key decrypt per window for each function (role) that reads a KMS table
    readers = [fan.planner, figures.steady - fan.planner] if fan is not None else [typical]
    windows = MINUTES_PER_MONTH / KMS_TABLE_KEY_MINUTES
    reading = sum(1 for u in readers for t in kms_tables if u.total(f"ddb.{t}.") > 0)
    keys = reading * min(runs, windows)
    if api is not None:
        keys += min(polls, windows) * sum(
            1 for t in kms_tables if figures.health.total(f"ddb.{t}.") > 0
        )
    bill.add("KMS requests", secret_calls * KMS_PER_SECRET_CALL + keys, "kms_request")
    # -- SNS, SQS ----------------------------------------------------------------------------
    alerts = 2 * fleet.incidents_per_month + month.get("sns.Publish")
    notices = fleet.alarm_notifications_per_month
    bill.add("SNS publishes", alerts + notices, "sns_publish")
    emails = stack.email_subscriptions
    other_topics = sum(n for t, n in emails.items() if t != "Topic")
    sent_emails = alerts * emails.get("Topic", 0) + notices * other_topics
    bill.add("SNS email deliveries", sent_emails, "sns_email")
    polled = {q for f in functions for q in f.queues}
    # an idle event source long-polls all month; fanned out, each order is also received and
    # deleted once (SendMessageBatch: ten orders a call, measured)
    requests = len(polled) * fleet.sqs_pollers * 60 / fleet.sqs_poll_seconds * MINUTES_PER_MONTH
    if fan is not None:
        orders = runs * shards
        requests += month.total("sqs.SendMessage")
        requests += orders * (fleet.sqs_receives_per_order + fleet.sqs_deletes_per_order)
    bill.add("SQS requests", requests, "sqs_request")
    # -- CloudWatch ------------------------------------------------------------------------
    per_invocation = PLATFORM_LOG_BYTES + PLATFORM_LOG_LINES * LOG_EVENT_OVERHEAD
    ingested = (invocations + polls) * per_invocation
    for used in (month, health):
        ingested += used.get("log.bytes") + used.get("log.lines") * LOG_EVENT_OVERHEAD
    for _, fmt in stack.access_logs.values():
        ingested += polls * (len(access_log_line(fmt).encode()) + LOG_EVENT_OVERHEAD)
    bill.add("CloudWatch Logs ingestion", ingested / GB, "logs_ingest")
    days = max([d for d in stack.log_groups.values() if d] or [3650])
    # uncompressed: an upper bound
    bill.add("CloudWatch Logs storage", ingested * days / 30 / GB, "logs_storage")
    standard = sum(a.metrics for a in stack.alarms if not a.high_resolution)
    high = sum(a.metrics for a in stack.alarms if a.high_resolution)
    bill.add(
        "CloudWatch alarms", standard, "alarm_metric", f"{standard} standard-resolution metrics"
    )
    if high:
        bill.add("CloudWatch alarms", high, "alarm_metric_high", f"{high} high-resolution metrics")
    names: set[str] = set()  # distinct metrics the handlers add (metrics.add_metric("Name", ...))
    for app in (ROOT / "functions").glob("*/app.py"):
        names |= set(re.findall(r"add_metric\(\s*\"(\w+)\"", app.read_text(encoding="utf-8")))
    metrics = len(names) if fleet.publish_metrics else 0
    bill.add("CloudWatch custom metrics", metrics, "custom_metric")
    # -- X-Ray, API Gateway, Scheduler, data transfer ------------------------------------------
    traced = (runs if checker.traced else 0.0) + (polls if api and api.traced else 0.0)
    traced += runs * shards if worker is not None and worker.traced else 0
    bill.add("X-Ray traces", traced, "xray_trace")
    bill.add("API Gateway HTTP API", polls, "http_api_request")
    schedules = sum(f.schedules for f in functions)
    bill.add("EventBridge Scheduler", runs * schedules, "scheduler_invocation")
    # Measured over HTTPS: TCP payload (TLS handshake and records) and segments (SYN, ACKs, the
    # closing reset)
    segments = month.get("net.segments") + month.get("net.connections") * CLOSE_SEGMENTS
    sent = month.get("net.bytes") + segments * TCP_IP_HEADERS
    bill.add("Data transfer out (to the portals)", sent / GB, "internet_out")
    return bill


SHOWN = "ScheduleExpression FanOut MaxParallelPortals ShardPortals PublishMetrics LogRetentionDays"
SHOWN += " AlertEmail"


def render_bill(bill: Bill) -> str:
    fleet, figures, stack = bill.fleet, bill.figures, bill.stack
    width = max(len(line.item) for line in bill.lines)
    params = ", ".join(
        f"{k}={v}" for k, v in sorted(stack.parameters.items()) if k in SHOWN.split()
    )
    out = [
        f"Monthly bill: {fleet.targets:,} targets on {fleet.portals:,} portals, every "
        f"{fleet.schedule_minutes:g} min = {fleet.runs:,.0f} runs/month "
        f"(each reads 1 in {1 / fleet.inventory_share:,.0f} inventories)",
        f"  one stack as template.yaml deploys it ({params}); on-demand us-east-1 list "
        "prices, no free tier; the assumptions are cost.Fleet's",
        *([f"  from {figures.measured_on}"] if figures.measured_on else []),
        "",
        f"  {'':<{width}}  {'list':>9}  {'free tier':>9}",
        *(
            f"  {i.item:<{width}}  ${i.dollars:>8.4f}  ${free:>8.4f}   {i.detail}"
            for i, free in zip(bill.lines, bill.free_tier_dollars(), strict=True)
        ),
        f"  {'Total':<{width}}  ${bill.total:>8.4f}  ${bill.total_with_free_tiers:>8.4f}",
        "",
        "  list: without free tiers; free tier: the same with AWS's always-free tiers taken "
        "off (one account, this stack alone in it)",
        f"Unpriced resources: {', '.join(stack.unpriced) or 'none'}.",
    ]
    if figures.fanout is not None:
        out.append(
            f"Per shard: ${bill.total:.4f} / {bill.shards} shards = ${bill.per_shard:.4f} a month"
        )
    else:
        out.append(
            f"Goal: <= ${GOAL_DOLLARS:.2f} a month all-in for {fleet.targets:,} targets on "
            f"{fleet.portals:,} portals every {fleet.schedule_minutes:g} minutes: "
            f"{'MET' if bill.total <= GOAL_DOLLARS else 'NOT MET'} (${bill.total:.2f}; "
            f"${bill.total_with_free_tiers:.2f} with the always-free tiers)."
        )
    out.append("Prices (per unit; * = checked against a copy of the source for this bill):")
    for name, price in PRICES.items():
        mark = "*" if price.checked else " "
        out.append(f"  {mark} {name:<22} ${price.dollars:.10g} per {price.per}: {price.source}")
    out.append("Always-free tiers taken off (a month, one account; none for the rest):")
    for name, tier in FREE_TIERS.items():
        unit = PRICES[tier.prices[0]].per
        out.append(f"    {name:<22} {_fmt(tier.quantity)} x {unit}: {tier.source}")
    return "\n".join(out)
