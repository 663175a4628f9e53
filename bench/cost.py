"""The monthly bill of the checker, from what one steady run was measured to consume: pricing
only, no measuring (`bench/bill.py` measures then prices; `bench/run_benchmark.py` prices its
own measured steady run). Prices are on-demand list prices (docs/ARCHITECTURE.md, "What a run
costs"), free tiers ignored. Everything that is an assumption rather than a measurement is
printed as one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from connector_monitor.aws.token_store import PORTALS_PER_SECRET

MINUTES_PER_MONTH = 30 * 24 * 60  # 8,640 runs at 5 minutes (docs/ARCHITECTURE.md) is a 30-day month
GB = 1_000_000_000  # decimal GB: the larger figure for per-GB prices
# What the benchmark cannot see in-process, stated rather than hidden:
PLATFORM_LOG_LINES = 3  # Lambda's own platform.start / platform.report / runtime lines
PLATFORM_LOG_BYTES = 700  # their JSON (LogFormat: JSON) with the X-Ray segment ids, together
LOG_EVENT_OVERHEAD = 26  # bytes CloudWatch Logs counts per log event on top of its message
ITEM_OVERHEAD = 100  # bytes DynamoDB adds to every stored item for its indexes
SCOPES = ("target", "portal", "fixed")  # what a measured quantity grows with


@dataclass(frozen=True)
class Prices:
    """On-demand list prices in USD (us-east-1), as docs/ARCHITECTURE.md quotes them where it
    does."""

    dynamodb_read_per_million: float = 0.125
    dynamodb_write_per_million: float = 0.625
    dynamodb_storage_per_gb_month: float = 0.25
    secret_per_month: float = 0.40
    secrets_per_10k_calls: float = 0.05
    sns_publish_per_million: float = 0.50
    sns_email_per_100k: float = 2.00
    lambda_per_gb_second: float = 0.0000133334  # arm64
    lambda_per_million_requests: float = 0.20
    logs_ingest_per_gb: float = 0.50
    metric_per_month: float = 0.30
    xray_per_million_traces: float = 5.00
    scheduler_per_million: float = 1.00


@dataclass(frozen=True)
class RunFigures:
    """What one steady run of the real checker consumed, measured on `targets` on `portals`.

    Capacity units are split by what they grow with (SCOPES): the targets' state items, the
    per-portal items (run record, inventory) and a fixed part (minimum charges).
    """

    targets: int
    portals: int
    seconds: float  # wall time of one steady run
    read_units: Mapping[str, float]  # RRU per steady run, by scope
    write_units: Mapping[str, float]  # WRU per steady run, by scope
    secret_reads: int  # GetSecretValue per run
    log_lines: int  # JSON lines the handler printed in a warm steady run
    log_bytes: int
    metrics: int  # custom metrics (name x dimensions) every run publishes
    cold_start_metrics: int = 0  # published only by a cold start (Powertools' ColdStart)
    validation_write_units: float = 0.0  # WRU of one target validation (inventory), all portals
    incident_write_units: float = 0.0  # WRU per target per incident (down and recovery)
    refresh_secret_calls: float = 2.0  # Secrets Manager calls per token refresh (re-read, write)
    refresh_write_units: float = 2.0  # WRU per token refresh (the lease: put, delete)
    stored_bytes_per_target: float = 0.0
    measured_on: str = ""  # how the figures were taken, for the printout


@dataclass(frozen=True)
class Fleet:
    """The deployment to price."""

    targets: int = 1000
    portals: int = PORTALS_PER_SECRET  # one stack: its secret has room for this many
    schedule_minutes: float = 5.0
    memory_mb: int = 256
    incidents_per_month: int = 30  # assumption: each is one connector.down + one .recovered
    validate_every_minutes: float = 240.0  # VALIDATE_EVERY_MINUTES default
    token_refreshes_per_portal_hour: float = 1.0  # access tokens live an hour
    publish_metrics: bool = False  # the template's PublishMetrics (off by default)

    @property
    def runs_per_month(self) -> float:
        return MINUTES_PER_MONTH / self.schedule_minutes


@dataclass(frozen=True)
class Line:
    item: str
    detail: str
    dollars: float


@dataclass(frozen=True)
class Bill:
    fleet: Fleet
    figures: RunFigures
    lines: list[Line] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(line.dollars for line in self.lines)

    def dollars(self, item: str) -> float:
        return next(line.dollars for line in self.lines if line.item == item)


def scaled(units: Mapping[str, float], figures: RunFigures, fleet: Fleet) -> float:
    """Per-run units on `fleet`, from units measured on the figures' fleet, scope by scope."""
    ratio = {
        "target": fleet.targets / figures.targets if figures.targets else 0.0,
        "portal": fleet.portals / figures.portals if figures.portals else 0.0,
        "fixed": 1.0,
    }
    return sum(value * ratio.get(scope, 1.0) for scope, value in units.items())


def monthly_bill(figures: RunFigures, fleet: Fleet, prices: Prices = Prices()) -> Bill:
    runs = fleet.runs_per_month
    per_target = fleet.targets / figures.targets if figures.targets else 0.0
    per_portal = fleet.portals / figures.portals if figures.portals else 0.0
    lines: list[Line] = []

    rru = scaled(figures.read_units, figures, fleet)
    lines.append(
        Line(
            "DynamoDB reads",
            f"{rru:,.1f} RRU/run x {runs:,.0f} runs = {rru * runs / 1e6:,.3f} M RRU",
            rru * runs * prices.dynamodb_read_per_million / 1e6,
        )
    )

    refreshes = fleet.portals * fleet.token_refreshes_per_portal_hour * MINUTES_PER_MONTH / 60
    steady_wru = scaled(figures.write_units, figures, fleet)
    validations = MINUTES_PER_MONTH / fleet.validate_every_minutes
    validation_wru = figures.validation_write_units * per_portal * validations
    incident_wru = figures.incident_write_units * fleet.incidents_per_month
    lease_wru = figures.refresh_write_units * refreshes
    wru = steady_wru * runs + validation_wru + incident_wru + lease_wru
    lines.append(
        Line(
            "DynamoDB writes",
            f"{steady_wru:,.1f} WRU/run x {runs:,.0f} + validation {validation_wru:,.0f}"
            f" + incidents {incident_wru:,.0f} + refresh leases {lease_wru:,.0f}"
            f" = {wru / 1e6:,.3f} M WRU",
            wru * prices.dynamodb_write_per_million / 1e6,
        )
    )

    stored = figures.stored_bytes_per_target * fleet.targets
    lines.append(
        Line(
            "DynamoDB storage",
            f"{stored / 1e6:,.2f} MB of target state (history expires by TTL)",
            stored / GB * prices.dynamodb_storage_per_gb_month,
        )
    )

    refresh_calls = figures.refresh_secret_calls * refreshes
    secret_calls = figures.secret_reads * runs + refresh_calls
    lines.append(
        Line(
            "Secrets Manager",
            f"1 secret + {secret_calls:,.0f} calls ({figures.secret_reads}/run"
            f" + {refreshes:,.0f} token refreshes x {figures.refresh_secret_calls:g})",
            prices.secret_per_month + secret_calls * prices.secrets_per_10k_calls / 10_000,
        )
    )

    publishes = 2 * fleet.incidents_per_month
    lines.append(
        Line(
            "SNS",
            f"{publishes} alerts ({fleet.incidents_per_month} incidents, assumed), to 1 email",
            publishes * prices.sns_publish_per_million / 1e6
            + publishes * prices.sns_email_per_100k / 100_000,
        )
    )

    # Run time has a fixed part: scaled up with the targets, never down (an upper bound).
    seconds = figures.seconds * max(1.0, per_target)
    gb_seconds = seconds * fleet.memory_mb / 1024 * runs
    lines.append(
        Line(
            "Lambda",
            f"{seconds:.2f} s/run at {fleet.memory_mb} MB arm64 = {gb_seconds:,.0f} GB-s"
            f" + {runs:,.0f} requests",
            gb_seconds * prices.lambda_per_gb_second
            + runs * prices.lambda_per_million_requests / 1e6,
        )
    )

    events = figures.log_lines + PLATFORM_LOG_LINES
    log_bytes = figures.log_bytes + PLATFORM_LOG_BYTES + events * LOG_EVENT_OVERHEAD
    lines.append(
        Line(
            "CloudWatch Logs",
            f"{events} lines, {log_bytes:,} B/run x {runs:,.0f} = {log_bytes * runs / GB:,.3f} GB",
            log_bytes * runs / GB * prices.logs_ingest_per_gb,
        )
    )

    metrics_cost = figures.metrics * prices.metric_per_month
    lines.append(
        Line(
            "CloudWatch metrics",
            f"{figures.metrics} custom metrics, no per-target dimension (PublishMetrics=true)"
            if fleet.publish_metrics
            else f"none (PublishMetrics=false, the default; true adds {figures.metrics} "
            f"metrics = ${metrics_cost:.2f})",
            metrics_cost if fleet.publish_metrics else 0.0,
        )
    )

    lines.append(
        Line(
            "X-Ray (Tracing: Active)",
            f"{runs:,.0f} traces",
            runs * prices.xray_per_million_traces / 1e6,
        )
    )

    lines.append(
        Line(
            "EventBridge Scheduler",
            f"{runs:,.0f} invocations",
            runs * prices.scheduler_per_million / 1e6,
        )
    )
    return Bill(fleet, figures, lines)


def render_bill(bill: Bill, prices: Prices = Prices()) -> str:
    fleet, figures = bill.fleet, bill.figures
    width = max(len(line.item) for line in bill.lines)
    out = [
        f"Monthly bill: {fleet.targets:,} targets on {fleet.portals:,} portals, every "
        f"{fleet.schedule_minutes:g} min = {fleet.runs_per_month:,.0f} runs/month",
        "  on-demand list prices (us-east-1), free tiers ignored",
    ]
    if figures.measured_on:
        out.append(f"  from {figures.measured_on}")
    if (figures.targets, figures.portals) != (fleet.targets, fleet.portals):
        out.append(
            f"  measured on {figures.targets:,} targets / {figures.portals:,} portals; scaled"
            " per target (state reads; run time only upwards) and per portal (run record,"
            " inventory)"
        )
    out.append("")
    for line in bill.lines:
        out.append(f"  {line.item:<{width}}  ${line.dollars:>8.4f}   {line.detail}")
    out.append(f"  {'Total':<{width}}  ${bill.total:>8.4f}")
    out.append("")
    out += _notes(bill, prices)
    return "\n".join(out)


def _notes(bill: Bill, prices: Prices) -> list[str]:
    fleet, figures = bill.fleet, bill.figures
    metrics = bill.dollars("CloudWatch metrics")
    per_second = fleet.memory_mb / 1024 * fleet.runs_per_month * prices.lambda_per_gb_second
    notes = [
        "Assumptions: Lambda platform log lines "
        f"{PLATFORM_LOG_LINES} x ~{PLATFORM_LOG_BYTES // PLATFORM_LOG_LINES} B and "
        f"{LOG_EVENT_OVERHEAD} B per log event; {fleet.incidents_per_month} incidents a month, "
        "each costing the write units measured for a 1% change; one token refresh per portal "
        "an hour (access tokens live an hour), each costing the calls measured when every "
        "token expired; DynamoDB units from AWS's item-size rules (the repository's queries are "
        "eventually consistent, its writes conditional).",
        f"Each extra second of run time adds ${per_second:.4f}/month (the local CPU is faster "
        "than a 256 MB Lambda's share, while moto's in-process work is counted in the time).",
        "Not counted: log storage (compressed, ~$0.03/GB-month), the snapshot API (per use), "
        "cold-start INIT time.",
    ]
    if figures.cold_start_metrics and fleet.publish_metrics:
        notes.append(
            f"Plus {figures.cold_start_metrics} metric published on cold starts only "
            f"(Powertools' ColdStart): up to ${figures.cold_start_metrics * 0.30:.2f} a month if "
            "a cold start happens every hour."
        )
    if fleet.portals > PORTALS_PER_SECRET:
        stacks = math.ceil(fleet.portals / PORTALS_PER_SECRET)
        notes.append(
            f"{fleet.portals} portals are more than one stack's secret has room for "
            f'({PORTALS_PER_SECRET}, README "Deploy with SAM"): they need {stacks} stacks, and '
            "this bill prices one. Each further stack adds its own secret ($0.40), runs and "
            "schedule."
        )
    verdict = "HOLDS" if bill.total < 1.0 else "DOES NOT HOLD"
    notes.append(
        f'Claim "well under $1 a month for 1,000 targets": {verdict} at ${bill.total:.2f}/month '
        f"for {fleet.targets:,} targets."
    )
    biggest = sorted(bill.lines, key=lambda line: line.dollars, reverse=True)[:3]
    notes.append(
        "Largest items: " + ", ".join(f"{line.item} ${line.dollars:.2f}" for line in biggest)
    )
    if metrics > 0 and fleet.publish_metrics:
        notes.append(
            f"Without the custom metrics (or if CloudWatch's always-free 10 custom metrics cover "
            f"them) the total is ${bill.total - metrics:.2f}/month."
        )
    return notes


def fleet_from(
    targets: int,
    portals: int,
    schedule: float,
    incidents: int,
    publish_metrics: bool = False,
) -> Fleet:
    return Fleet(
        targets=targets,
        portals=portals,
        schedule_minutes=schedule,
        incidents_per_month=incidents,
        publish_metrics=publish_metrics,
    )
