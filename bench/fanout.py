"""The fan-out benchmark (`make fanout`, `python -m bench.fleet --fanout`): a fleet larger than
one invocation checks, deployed with FanOut=true and checked as Lambda checks it, one process
per invocation:

    .venv/bin/python -m bench.fleet --fanout [--portals 10000] [--lines 5] [--shard-portals 1000]
                                    [--measure-shards K] [--steady-runs 1] [--no-inventory]
                                    [--no-refresh] [--latency 0.3] [--parallel 64]

- **The planner**: functions/checker/app.py `lambda_handler` with the checker's environment as
  template.yaml sets it for FanOut=true (WORK_QUEUE_URL: a queue on moto's server,
  SHARD_PORTALS), in a process of its own (`bench/fleet_child.py`): it reads the registry and
  the whole token table, records the run as in progress and queues one order per shard.
- **The shards**: each order the planner queued, received from the queue and handed to
  `shard_handler` in an SQS event as Lambda's event source hands it (`local/work_queue.py`'s
  event), each in a new process with the worker's environment (ShardWorkerFunction): one cold
  invocation per shard, as on Lambda. The order is deleted once the worker did not report it
  failed. Here the shards run one after another, each measured alone; on Lambda they run at
  once (MaximumConcurrency 10), so a run takes the planner's time plus the slowest shard's.
  `--measure-shards K` delivers K of the shards (spread over the fleet) and drops the others'
  orders: the run's totals are then the planner's plus the measured shards' scaled to all, and
  the printout says which figures are measured and which are scaled.
- **Runs**: the first (discovery: inventories and probes, every target written once), the
  second (each target's first confirmation is written too), the steady runs, an inventory run
  (every inventory aged past ValidateEveryMinutes) and a run in which 1/12 of the measured
  shards' portals' access tokens have expired.
- **Measured** per invocation as `bench/fleet.py` measures one: wall, CPU, the estimated
  Lambda duration at --memory-mb (max(wall, CPU x 1769/M)), peak RSS (sampled, and the
  process's high-water mark VmHWM: import and run), its INIT (import + first call's wiring),
  portal requests and refreshes, DynamoDB calls and units by table, token-store calls, SQS
  calls, log lines and bytes, bytes sent to the portals. After each run: whether the run
  record names this run (every shard finished) and how many targets it counted.

Both functions get SCHEDULE_EXPRESSION=rate(1 hour) here: it only sets how old an order (or an
unfinished run) may be before it is dropped (marked), and shards delivered one after another
take longer than the 5 minutes a real run's shards, delivered at once, do.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.cost import (
    FULL_VCPU_MB,
    GOAL_MEMORY_MB,
    GOAL_SECONDS,
    FanOutFigures,
    Figures,
    Fleet,
    Usage,
    monthly_bill,
    render_bill,
)
from bench.fleet import (
    MIB,
    REFRESH_SHARE,
    REGION,
    ROOT,
    Deployed,
    Function,
    Run,
    Services,
    Spec,
    age_inventories,
    deploy,
    lambda_environment,
    log_kinds,
    measured_table,
    median_usage,
    snapshot_api,
)
from bench.metering import item_size
from bench.stack import read_stack

# The interval both functions are given here (see the module's docstring).
SLOW_SCHEDULE = "rate(1 hour)"
FIXED_PARTITIONS = ("RUN", "REGISTRY", "CONFIG", "LOCK")  # not per portal: never scaled


@dataclass(frozen=True)
class FanSpec:
    fleet: Spec
    shard_portals: int
    measure_shards: int  # 0: every shard
    inventory: bool = True
    refresh: bool = True


@dataclass
class Invocation:
    """One invocation in a process of its own: its run and its cold start."""

    label: str  # "planner" or "shard N"
    run: Run
    init: Usage  # import app + the first call's wiring
    ru_maxrss: float
    portals: int
    targets: int | None = None  # a shard's summary: the targets it checked

    @property
    def peak(self) -> float:
        return max(self.run.peak_rss, self.ru_maxrss)

    def fits(self, memory: int) -> bool:
        return self.run.estimate(memory) <= GOAL_SECONDS and self.peak / MIB <= GOAL_MEMORY_MB


@dataclass
class Round:
    """One fanned-out run: the planner, then the shards it queued."""

    label: str
    planner: Invocation
    shards: list[Invocation]  # those delivered (measured), in shard order
    total_shards: int
    orders: int  # orders the planner queued
    complete: bool  # the run record names this run: every shard finished
    summary: Mapping[str, int] = field(default_factory=dict)  # the run record's counts

    @property
    def scale(self) -> float:
        return self.total_shards / len(self.shards)

    def workers(self) -> Usage:
        """Every shard's consumption in this run (measured, or the measured ones scaled)."""
        total = Usage()
        for shard in self.shards:
            total = total + shard.run.usage()
        return total.times(self.scale)

    def total(self) -> Usage:
        return self.planner.run.usage() + self.workers()

    def slowest(self, memory: int) -> Invocation:
        return max(self.shards, key=lambda s: s.run.estimate(memory))

    def seconds(self, memory: int) -> float:
        """The run on Lambda: the planner, then every shard at once."""
        return self.planner.run.estimate(memory) + self.slowest(memory).run.estimate(memory)


@dataclass
class FanMeasured:
    spec: FanSpec
    ranges: list[tuple[str, str | None]]
    measured: list[int]  # shard indexes delivered
    first: Round
    second: Round
    steady: list[Round]
    inventory: Round | None
    refresh: Round | None
    refreshed: int
    health: list[Run]
    api_init: Usage | None
    stored: dict[str, tuple[float, float]]  # logical table -> (bytes, items), scaled
    stored_measured: dict[str, tuple[float, float]]  # as found
    missing_env: list[str]

    @property
    def scaled(self) -> bool:
        return len(self.measured) < len(self.ranges)

    def rounds(self) -> list[Round]:
        found = [self.first, self.second, *self.steady]
        return found + [r for r in (self.inventory, self.refresh) if r is not None]

    def steady_median(self) -> Round:
        ordered = sorted(self.steady, key=lambda r: r.seconds(self.spec.fleet.memory))
        return ordered[len(ordered) // 2]

    def which(self) -> str:
        count = len(self.ranges)
        if not self.scaled:
            return f"every shard measured ({count} of {count})"
        names = ", ".join(str(i) for i in self.measured)
        return (
            f"shards {names} measured ({len(self.measured)} of {count}); the run's totals are "
            f"the planner's (measured at full size) + the measured shards' x "
            f"{count}/{len(self.measured)} (scaled)"
        )

    def figures(self) -> Figures:
        steady = median_usage([r.total() for r in self.steady])
        planner = median_usage([r.planner.run.usage() for r in self.steady])
        workers = tuple(
            median_usage([r.shards[i].run.usage() for r in self.steady])
            for i in range(len(self.measured))
        )
        inventory = self.inventory or self.steady_median()
        refresh = Usage()
        if self.refresh is not None and self.refreshed:
            measured = self.refresh.workers().times(1 / self.refresh.scale)
            base = self.steady_median().workers().times(1 / self.steady_median().scale)
            refresh = (measured - base).at_least_zero().times(1 / self.refreshed)
        health = median_usage([r.usage() for r in self.health[1:]] or [Usage()])
        cold = {
            "CheckerFunction": median_usage([r.planner.init for r in self.rounds()]),
            "ShardWorkerFunction": median_usage([s.init for r in self.rounds() for s in r.shards]),
        }
        if self.api_init is not None:
            cold["SnapshotApiFunction"] = self.api_init
        fleet = self.spec.fleet
        kinds = [f"steady: median of {len(self.steady)}"]
        if self.inventory is None:
            kinds.append("no inventory run measured: priced as a steady run")
        if self.refresh is None:
            kinds.append("no refresh run measured: refreshes not priced")
        return Figures(
            portals=fleet.portals,
            targets=fleet.targets,
            steady=steady,
            inventory=inventory.total(),
            refresh=refresh,
            health=health,
            cold=cold,
            stored=self.stored,
            measured_on=(
                f"the real handlers fanned out, {fleet.portals:,} portals x {fleet.lines} lines "
                f"at {fleet.latency * 1000:g} ms, ShardPortals={self.spec.shard_portals:,} "
                f"({'; '.join(kinds)})"
            ),
            fanout=FanOutFigures(
                shards=len(self.ranges),
                planner=planner,
                planner_inventory=inventory.planner.run.usage(),
                workers=workers,
                workers_inventory=tuple(s.run.usage() for s in inventory.shards),
                measured=self.which(),
            ),
        )


# ---- the stack ---------------------------------------------------------------------------------


def work_queue(svc: Services, deployed: Deployed) -> tuple[str, str]:
    """WorkQueue as template.yaml declares it (visibility timeout, retention), on moto."""
    sqs = svc.client("sqs")
    url = sqs.create_queue(
        QueueName=f"{deployed.table}-work",
        Attributes={"VisibilityTimeout": "720", "MessageRetentionPeriod": "3600"},
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def environments(
    deployed: Deployed, spec: FanSpec, queue_url: str
) -> tuple[dict[str, str], dict[str, str], list[str]]:
    resources = deployed.resources()
    parameters = {
        "Targets": "",
        "FanOut": "true",
        "MaxParallelPortals": str(spec.fleet.parallel),
        "ShardPortals": str(spec.shard_portals),
        "ScheduleExpression": SLOW_SCHEDULE,
    }
    extra = {
        "BENCH_TIMEOUT_MS": str(spec.fleet.timeout * 1000),
        "BENCH_MEMORY_MB": str(spec.fleet.memory),
    }
    planner, missing = lambda_environment(
        "CheckerFunction", {**resources, "WorkQueue": queue_url}, parameters, extra
    )
    worker, missing_worker = lambda_environment("ShardWorkerFunction", resources, parameters, extra)
    if planner.get("WORK_QUEUE_URL") != queue_url:
        raise RuntimeError("template.yaml no longer gives the checker WORK_QUEUE_URL with FanOut")
    return planner, worker, sorted({*missing, *missing_worker})


def chosen_shards(count: int, wanted: int) -> list[int]:
    """`wanted` shard indexes spread over `count` (the first and the last among them)."""
    if wanted <= 0 or wanted >= count:
        return list(range(count))
    if wanted == 1:
        return [0]
    return sorted({round(i * (count - 1) / (wanted - 1)) for i in range(wanted)})


# ---- one fanned-out run --------------------------------------------------------------------------


class FanOut:
    """The deployed fan-out: the planner's and the worker's environments, the queue."""

    def __init__(
        self, svc: Services, spec: FanSpec, log_dir: Path, say: Callable[..., None] = print
    ) -> None:
        from connector_monitor.domain.shards import split

        self.svc, self.spec, self.log_dir, self.say = svc, spec, log_dir, say
        self.deployed = deploy(svc, spec.fleet.portals, spec.fleet.lines, explicit=False)
        self.queue_url, self.queue_arn = work_queue(svc, self.deployed)
        self.planner_env, self.worker_env, self.missing = environments(
            self.deployed, spec, self.queue_url
        )
        self.names = {self.deployed.table: "Table", self.deployed.tokens_table: "TokenTable"}
        self.ranges = split(self.deployed.portals, spec.shard_portals)
        self.measured = chosen_shards(len(self.ranges), spec.measure_shards)
        self.sqs = svc.client("sqs")

    def portals_of(self, index: int) -> list[str]:
        shard = self.ranges[index]
        return [p for p in self.deployed.portals if shard.holds_portal(p)]

    def invoke(
        self, label: str, env: Mapping[str, str], handler: str, event: Mapping[str, Any] | None
    ) -> tuple[Run, Usage, float]:
        """One cold invocation in a new process: its run, its INIT and its peak RSS."""
        schedule = ROOT / "events" / "schedule.json"
        function = Function(
            self.svc, "checker", env, schedule, self.names, self.log_dir, handler=handler
        )
        try:
            run = function.run(label, event=event)
        finally:
            ru_maxrss = function.close()
        return run, function.init + function.wiring, ru_maxrss

    def round(self, label: str) -> Round:
        from local.work_queue import sqs_event

        memory = self.spec.fleet.memory
        run, init, ru = self.invoke(f"{label}: planner", self.planner_env, "lambda_handler", None)
        planner = Invocation(
            "planner", run, init, ru, len(self.deployed.portals), (run.answer or {}).get("targets")
        )
        run_id = str((run.answer or {}).get("run_id", ""))
        orders = self.take_orders()
        self.say(
            f"      planner {run.estimate(memory):.1f} s, {len(orders)} orders queued; "
            f"delivering {len(self.measured)}...",
            flush=True,
        )
        shards: list[Invocation] = []
        for message in orders:
            index = int(json.loads(message["Body"])["index"])
            if index not in self.measured:
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
                continue
            event = sqs_event(message, self.queue_arn, REGION)
            run, init, ru = self.invoke(
                f"{label}: shard {index}", self.worker_env, "shard_handler", event
            )
            failures = (run.answer or {}).get("batchItemFailures")
            if failures is None or failures:
                raise RuntimeError(
                    f"{label}: shard {index} failed ({run.answer}):\n{run.log[-3000:]}"
                )
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
            shards.append(
                Invocation(
                    f"shard {index}", run, init, ru, len(self.portals_of(index)), shard_targets(run)
                )
            )
            self.say(f"      shard {index}: {run.estimate(memory):.1f} s", flush=True)
        queued = [int(json.loads(m["Body"])["index"]) for m in orders]
        if queued != list(range(len(self.ranges))):
            raise RuntimeError(
                f"{label}: the planner queued shards {queued}, not the {len(self.ranges)} "
                "the bench split the fleet into"
            )
        record = self.last_run()
        complete = record is not None and record.run_id == run_id
        summary = dict(record.summary) if complete and record is not None else {}
        return Round(label, planner, shards, len(self.ranges), len(orders), complete, summary)

    def take_orders(self) -> list[dict[str, Any]]:
        """Every order queued, in shard order (received as the event source receives them)."""
        found: list[dict[str, Any]] = []
        while batch := self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=3600
        ).get("Messages", []):
            found += batch
        return sorted(found, key=lambda m: int(json.loads(m["Body"])["index"]))

    def last_run(self) -> Any:
        from connector_monitor.aws.repository import StateRepository

        repository = StateRepository(self.deployed.table, client=self.svc.client("dynamodb"))
        return repository.load_run()

    def stored(self) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]]]:
        """Bytes and items in each table, as found and with the per-portal partitions of the
        state table scaled to every shard when only some were delivered."""
        found: dict[str, tuple[float, float]] = {}
        scaled: dict[str, tuple[float, float]] = {}
        factor = len(self.ranges) / len(self.measured)
        for name, logical in (
            (self.deployed.table, "Table"),
            (self.deployed.tokens_table, "TokenTable"),
        ):
            size: Counter[str] = Counter()
            items: Counter[str] = Counter()
            pages = self.svc.client("dynamodb").get_paginator("scan").paginate(TableName=name)
            for page in pages:
                for item in page["Items"]:
                    pk = str(item["pk"]["S"]).split("#")[0]
                    size[pk] += item_size(item)
                    items[pk] += 1
            found[logical] = (float(sum(size.values())), float(sum(items.values())))
            if logical == "TokenTable":  # every portal's pair is deployed: nothing to scale
                scaled[logical] = found[logical]
                continue
            scaled[logical] = (
                sum(v * (1 if pk in FIXED_PARTITIONS else factor) for pk, v in size.items()),
                sum(v * (1 if pk in FIXED_PARTITIONS else factor) for pk, v in items.items()),
            )
        return found, scaled


def shard_targets(run: Run) -> int | None:
    """The targets a shard checked, from its log's `shard finished` line."""
    for line in run.log_lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("message") == "shard finished":
            return int(record.get("summary", {}).get("targets", 0))
    return None


def measure_fanout(
    svc: Services, spec: FanSpec, log_dir: Path, say: Callable[..., None] = print
) -> FanMeasured:
    fleet = spec.fleet
    say(
        f"  {fleet.portals:,} portals x {fleet.lines} lines, FanOut=true, "
        f"ShardPortals={spec.shard_portals:,}: deploying...",
        flush=True,
    )
    fan = FanOut(svc, spec, log_dir, say)
    say(
        f"    {len(fan.ranges)} shards; delivering {len(fan.measured)} of them each run", flush=True
    )
    say("    first run (discovery)...", flush=True)
    first = fan.round("first run")
    say("    second run...", flush=True)
    second = fan.round("second run")
    steady = []
    for n in range(fleet.steady_runs):
        say(f"    steady run {n + 1} of {fleet.steady_runs}...", flush=True)
        steady.append(fan.round("steady run"))
    inventory = None
    if spec.inventory:
        aged = age_inventories(svc, fan.deployed.table, fleet.validate_every + timedelta(minutes=1))
        say(f"    inventory run ({aged:,} inventories aged)...", flush=True)
        inventory = fan.round("inventory run")
    refresh, refreshed = None, 0
    if spec.refresh:
        delivered = [p for i in fan.measured for p in fan.portals_of(i)]
        count = max(1, round(len(delivered) * REFRESH_SHARE))
        step = max(1, len(delivered) // count)
        expired = delivered[::step][:count]
        svc.expire(expired)
        refreshed = len(expired)
        say(f"    refresh run ({refreshed} portals' access tokens expired)...", flush=True)
        refresh = fan.round(f"refresh run ({refreshed})")
    server = snapshot_api(svc, fan.deployed, fleet, log_dir)
    try:
        health = [server.run("GET /health") for _ in range(6)]
    finally:
        server.close()
    found, scaled = fan.stored()
    return FanMeasured(
        spec,
        [(r.lo, r.hi) for r in fan.ranges],
        fan.measured,
        first,
        second,
        steady,
        inventory,
        refresh,
        refreshed,
        health,
        server.init + server.wiring,
        scaled,
        found,
        fan.missing,
    )


# ---- printing -----------------------------------------------------------------------------------


def header(memory: int) -> str:
    return (
        f"  {'invocation':<10} {'portals':>7} {'wall s':>7} {'CPU s':>6} "
        f"{f'est {memory}MB s':>11} {'governs':>7} {'RSS MiB':>7} {'INIT s':>6} "
        f"{'portal req':>10} {'OAuth':>5} {'DynamoDB':>8} {'RRU':>8} {'WRU':>8} {'tokens':>6} "
        f"{'SQS':>4} {'log lines':>9} {'log bytes':>9} {'sent KB':>8} {'targets':>7}  "
        f"60 s & {GOAL_MEMORY_MB} MB"
    )


def row(invocation: Invocation, memory: int) -> str:
    run = invocation.run
    tokens = sum(run.token_store_calls().values())
    sqs = sum(v for k, v in run.calls.items() if k.startswith("sqs:"))
    targets = "-" if invocation.targets is None else f"{invocation.targets:,}"
    return (
        f"  {invocation.label:<10} {invocation.portals:7,d} {run.wall:7.2f} {run.cpu:6.2f} "
        f"{run.estimate(memory):11.2f} {run.governs(memory):>7} {invocation.peak / MIB:7.1f} "
        f"{invocation.init.duration(memory):6.2f} {run.rest:10,d} {run.oauth:5d} "
        f"{run.dynamodb_calls():8,d} {run.units('RRU'):8,.1f} {run.units('WRU'):8,.1f} "
        f"{tokens:6d} {sqs:4d} {len(run.log_lines):9,d} {run.log_bytes:9,d} "
        f"{run.sent.get('bytes', 0) / 1000:8,.1f} {targets:>7}  "
        f"{'yes' if invocation.fits(memory) else 'NO'}"
    )


def round_lines(measured: FanMeasured, run: Round) -> list[str]:
    memory = measured.spec.fleet.memory
    expected = measured.spec.fleet.targets
    out = [f"Run '{run.label}':", header(memory), row(run.planner, memory)]
    out += [row(s, memory) for s in run.shards]
    slowest = run.slowest(memory)
    counted = run.summary.get("targets")
    checked = (
        f"run record complete: yes ({counted:,} of {expected:,} targets checked: "
        f"{run.summary.get('up', 0):,} up, {run.summary.get('down', 0):,} down, "
        f"{run.summary.get('unknown', 0):,} unknown)"
        if run.complete and counted is not None
        else "run record complete: NO (not every shard was delivered)"
    )
    out.append(
        f"  RUN TIME on Lambda: planner {run.planner.run.estimate(memory):.2f} s + slowest shard "
        f"({slowest.label}) {slowest.run.estimate(memory):.2f} s = {run.seconds(memory):.2f} s "
        f"(the shards at once); {run.orders} orders queued, {len(run.shards)} delivered; " + checked
    )
    return out


def details(run: Round) -> list[str]:
    out = []
    for invocation in (run.planner, run.shards[0]):
        each = invocation.run
        calls = ", ".join(f"{measured_table(each, k)} {v}" for k, v in sorted(each.tables.items()))
        units = ", ".join(
            f"{measured_table(each, k)} {v:,.1f}" for k, v in sorted(each.table_units.items()) if v
        )
        tokens = ", ".join(f"{k} {v}" for k, v in sorted(each.token_store_calls().items()))
        other = ", ".join(
            f"{k} {v}" for k, v in sorted(each.calls.items()) if k.startswith(("sqs:", "sns:"))
        )
        label = f"{run.label}, {invocation.label}"
        pad = " " * len(label)
        out.append(
            f"  {label}: CPU {each.cpu:.2f} s = {each.cpu_main:.2f} s in the handler's thread + "
            f"{each.cpu - each.cpu_main:.2f} s in the portal threads; INIT "
            f"{invocation.init.get('wall'):.2f} s wall / {invocation.init.get('cpu'):.2f} s CPU"
        )
        out.append(f"  {pad}  DynamoDB calls: {calls}")
        out.append(f"  {pad}  units: {units}")
        out.append(f"  {pad}  token store: {tokens or 'none'}; SQS, SNS: {other or 'none'}")
        out.append(f"  {pad}  log: {log_kinds(each)}")
    return out


def per_shard(measured: FanMeasured) -> list[str]:
    memory = measured.spec.fleet.memory
    rounds = measured.rounds()
    out = [
        f"PER SHARD ({measured.spec.shard_portals:,} portals a shard; the est. Lambda seconds of "
        f"each run, max(wall, CPU x {FULL_VCPU_MB}/{memory}); peak RSS of the invocation's "
        "process, import included):",
        f"  {'shard':<8} {'portals':>7} "
        + " ".join(f"{r.label.split(' (')[0]:>14}" for r in rounds)
        + f" {'worst s':>8} {'RSS MiB':>8}  within 60 s and {GOAL_MEMORY_MB} MB",
    ]
    worst_seconds, worst_rss = 0.0, 0.0
    for position, index in enumerate(measured.measured):
        shards = [r.shards[position] for r in rounds]
        seconds = max(s.run.estimate(memory) for s in shards)
        rss = max(s.peak for s in shards) / MIB
        worst_seconds, worst_rss = max(worst_seconds, seconds), max(worst_rss, rss)
        fits = seconds <= GOAL_SECONDS and rss <= GOAL_MEMORY_MB
        out.append(
            f"  {f'shard {index}':<8} {shards[0].portals:7,d} "
            + " ".join(f"{s.run.estimate(memory):14.2f}" for s in shards)
            + f" {seconds:8.2f} {rss:8.1f}  {'YES' if fits else 'NO'}"
        )
    planner_s = max(r.planner.run.estimate(memory) for r in rounds)
    planner_rss = max(r.planner.peak for r in rounds) / MIB
    out.append(
        f"  {'planner':<8} {measured.spec.fleet.portals:7,d} "
        + " ".join(f"{r.planner.run.estimate(memory):14.2f}" for r in rounds)
        + f" {planner_s:8.2f} {planner_rss:8.1f}  "
        + ("YES" if planner_s <= GOAL_SECONDS and planner_rss <= GOAL_MEMORY_MB else "NO")
    )
    fits = worst_seconds <= GOAL_SECONDS and worst_rss <= GOAL_MEMORY_MB
    out.append(
        f"MAX SHARD: {worst_seconds:.2f} s estimated at {memory} MB, {worst_rss:.0f} MiB peak RSS: "
        f"{'every measured shard fits' if fits else 'NOT every shard fits'} 60 s and "
        f"{GOAL_MEMORY_MB} MB; slowest run on Lambda (planner + slowest shard): "
        f"{max(r.seconds(memory) for r in rounds):.2f} s"
    )
    out.append(f"MEASURED vs SCALED: {measured.which()}.")
    if measured.scaled:
        out.append(
            "  Scaled: the run's DynamoDB units, requests, log bytes and bytes sent, the worker "
            "seconds, and the state table's stored bytes (all but its RUN and REGISTRY items) = "
            "the measured shards' x shards/measured. Measured at full size: the planner (the "
            "whole registry and token table, every order queued), each delivered shard."
        )
    return out


def fan_report(measured: FanMeasured) -> list[str]:
    spec, fleet = measured.spec, measured.spec.fleet
    out = [
        f"Fan-out (FanOut=true): {fleet.portals:,} portals x {fleet.lines} lines = "
        f"{fleet.targets:,} targets, ShardPortals={spec.shard_portals:,} -> "
        f"{len(measured.ranges)} shards; {fleet.latency * 1000:g} ms a portal request, "
        f"MaxParallelPortals={fleet.parallel}, {fleet.memory} MB; {measured.which()}.",
        "Each invocation is a new process (a cold start): the planner (lambda_handler), then each "
        "shard order through shard_handler as the SQS event source delivers it, one after "
        "another here (at once on Lambda: MaximumConcurrency 10).",
        "",
    ]
    for run in measured.rounds():
        out += round_lines(measured, run)
        out.append("")
    out += details(measured.steady_median())
    out.append("")
    out += per_shard(measured)
    health = measured.health[1:]
    if health:
        out.append(
            f"GET /health after the runs (median of {len(health)} warm): "
            f"{statistics.median(r.wall for r in health) * 1000:.0f} ms wall, status "
            f"{(health[-1].answer or {}).get('statusCode')}"
        )
    out.append(
        "Stored after the runs: "
        + "; ".join(
            f"{t} {items:,.0f} items {size / 1e6:,.2f} MB"
            + (
                f" (scaled from {measured.stored_measured[t][1]:,.0f} items)"
                if measured.stored_measured[t] != (size, items)
                else ""
            )
            for t, (size, items) in measured.stored.items()
        )
    )
    if measured.missing_env:
        out.append("Left empty: " + ", ".join(measured.missing_env))
    return out


def main(args: Any) -> int:
    """`python -m bench.fleet --fanout ...` (args parsed there)."""
    import tempfile
    import time

    from bench.fleet import services

    started = time.perf_counter()
    fleet = Spec(
        args.portals, args.lines, args.latency, args.parallel, args.memory_mb, args.steady_runs
    )
    spec = FanSpec(
        fleet,
        args.shard_portals,
        args.measure_shards,
        inventory=not args.no_inventory,
        refresh=not args.no_refresh,
    )
    params = {
        "FanOut": "true",
        "ShardPortals": str(spec.shard_portals),
        "MaxParallelPortals": str(fleet.parallel),
        **args.params,
    }
    stack = read_stack(params)
    print(
        f"Fan-out fleet: {fleet.portals:,} portals x {fleet.lines} lines = {fleet.targets:,} "
        f"targets, ShardPortals={spec.shard_portals:,}, {fleet.latency * 1000:g} ms a portal "
        f"request, MaxParallelPortals={fleet.parallel}, {fleet.memory} MB.",
        flush=True,
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        services(fleet.portals, fleet.lines, fleet.latency) as svc,
    ):
        measured = measure_fanout(svc, spec, Path(tmp))
    print()
    print("\n".join(fan_report(measured)))
    # the measured fleet itself is priced (its shards are measured at their full size)
    price = Fleet(
        targets=fleet.targets,
        portals=fleet.portals,
        publish_metrics=args.params.get("PublishMetrics") == "true",
    )
    bill = monthly_bill(measured.figures(), price, stack)
    print()
    print(render_bill(bill))
    print(
        f"\nBILL PER SHARD: ${bill.total:.4f} a month / {bill.shards} shards = "
        f"${bill.per_shard:.4f} a shard ({price.portals / bill.shards:,.0f} portals, "
        f"{price.targets / bill.shards:,.0f} targets)"
    )
    print(f"\n(benchmark took {time.perf_counter() - started:.0f} s)")
    return 0
