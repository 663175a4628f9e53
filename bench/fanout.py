"""The fan-out benchmark (`make fanout`, `python -m bench.fleet --fanout`): a fleet larger than
one invocation checks, deployed with FanOut=true and checked as Lambda checks it: the planner
(`lambda_handler`), then each order it queued handed to `shard_handler` in the event Lambda's
SQS event source builds, every invocation a cold start in a process of its own, the shards one
after another (at once on Lambda). Both functions get SCHEDULE_EXPRESSION=rate(1 hour): it only
sets how old an order may be before a worker drops it (bench/README.md: what is printed).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import cost, lambdas
from bench.cost import GOAL_MEMORY_MB, Usage
from bench.environment import REGION
from bench.lambdas import MIB, Run, Spec, median_usage
from bench.stack import read_stack


@dataclass
class Invocation:
    """One invocation in a process of its own: its run and its cold start."""

    label: str  # "planner" or "shard N"
    run: Run
    init: Usage  # import app + the first call's wiring
    ru_maxrss: float
    portals: int
    targets: int | None = None  # the targets it checked (a shard's `shard finished` line)

    @property
    def peak(self) -> float:
        return max(self.run.peak_rss, self.ru_maxrss)

    def fits(self, memory: int) -> bool:
        return cost.fits(self.run.estimate(memory), self.peak)


@dataclass
class Round:
    """One fanned-out run: the planner, then the shards it queued."""

    label: str
    planner: Invocation
    shards: list[Invocation]
    complete: bool  # the run record names this run: every shard finished
    summary: Mapping[str, int] = field(default_factory=dict)  # the run record's counts

    def workers(self) -> Usage:
        return sum((s.run.usage() for s in self.shards), Usage())

    def total(self) -> Usage:
        return self.planner.run.usage() + self.workers()

    def slowest(self, memory: int) -> Invocation:
        return max(self.shards, key=lambda s: s.run.estimate(memory))

    def seconds(self, memory: int) -> float:
        """The run on Lambda: the planner, then every shard at once."""
        return self.planner.run.estimate(memory) + self.slowest(memory).run.estimate(memory)


class FanOut:
    """The deployed fan-out (the planner's and the worker's environments, the queue) and what
    was measured on it."""

    def __init__(self, svc: lambdas.Services, spec: Spec, shard_portals: int, log_dir: Path):
        from connector_monitor.domain.shards import split

        self.svc, self.spec, self.log_dir, self.shard_portals = svc, spec, log_dir, shard_portals
        self.deployed = lambdas.deploy(svc, spec.portals, queue=True)
        parameters = {
            "Targets": "",
            "FanOut": "true",
            "MaxParallelPortals": str(spec.parallel),
            "ShardPortals": str(shard_portals),
            "ScheduleExpression": "rate(1 hour)",
        }
        d, environment = self.deployed, lambdas.lambda_environment
        self.planner_env = environment("CheckerFunction", d, spec, parameters)
        self.worker_env = environment("ShardWorkerFunction", d, spec, parameters)
        if self.planner_env.get("WORK_QUEUE_URL") != d.queue_url:
            raise RuntimeError("template.yaml no longer gives the checker WORK_QUEUE_URL")
        self.ranges = split(d.portals, shard_portals)
        self.sqs = svc.client("sqs")

    def invoke(
        self, label: str, handler: str, event: Mapping[str, Any] | None, portals: int
    ) -> Invocation:
        """One cold invocation in a new process: its run, its INIT and its peak RSS."""
        env = self.worker_env if handler == "shard_handler" else self.planner_env
        function = lambdas.Function(self.svc, "checker", env, self.deployed, self.log_dir, handler)
        try:
            run = function.run(label, event=event)
        finally:
            ru_maxrss = function.close()
        targets = (run.answer or {}).get("targets") if handler == "lambda_handler" else None
        for line in run.log_lines if handler == "shard_handler" else []:
            record = json.loads(line) if line.startswith("{") else {}
            if isinstance(record, dict) and record.get("message") == "shard finished":
                targets = int(record.get("summary", {}).get("targets", 0))
        return Invocation(label.split(": ")[-1], run, function.init, ru_maxrss, portals, targets)

    def round(self, label: str) -> Round:
        from local.work_queue import sqs_event

        memory, queue = self.spec.memory, self.deployed.queue_url
        planner = self.invoke(f"{label}: planner", "lambda_handler", None, self.spec.portals)
        run_id = str((planner.run.answer or {}).get("run_id", ""))
        orders: list[dict[str, Any]] = []  # every order queued, as the event source gets them
        while batch := self.sqs.receive_message(
            QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=3600
        ).get("Messages", []):
            orders += batch
        orders.sort(key=lambda m: int(json.loads(m["Body"])["index"]))
        queued = [int(json.loads(m["Body"])["index"]) for m in orders]
        if queued != list(range(len(self.ranges))):
            raise RuntimeError(
                f"{label}: the planner queued shards {queued}, not the {len(self.ranges)} "
                "the bench split the fleet into"
            )
        print(f"      planner {planner.run.estimate(memory):.1f} s, {len(orders)} orders queued")
        shards: list[Invocation] = []
        for index, message in enumerate(orders):
            event = sqs_event(message, self.deployed.queue_arn, REGION)
            portals = sum(1 for p in self.deployed.portals if self.ranges[index].holds_portal(p))
            shard = self.invoke(f"{label}: shard {index}", "shard_handler", event, portals)
            failures = (shard.run.answer or {}).get("batchItemFailures")
            if failures is None or failures:
                raise RuntimeError(
                    f"{label}: shard {index} failed ({shard.run.answer}):\n{shard.run.log[-3000:]}"
                )
            shards.append(shard)
            print(f"      shard {index}: {shard.run.estimate(memory):.1f} s", flush=True)
            self.sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        record = self.deployed.checker(self.svc).repository.load_run()
        complete = record is not None and record.run_id == run_id
        summary = dict(record.summary) if complete and record is not None else {}
        return Round(label, planner, shards, complete, summary)

    def measure(self, args: Any) -> None:
        """The series of runs, /health, and the bytes and items in each table."""
        self.series = lambdas.run_series(
            self.svc, self.deployed, self.spec, self.round, self.deployed.portals,
            inventory=not args.no_inventory, refresh=not args.no_refresh,
        )  # fmt: skip
        self.health, self.api_init = lambdas.poll_health(
            self.svc, self.deployed, self.spec, self.log_dir
        )
        self.stored = lambdas.stored(self.svc, self.deployed)

    def steady(self) -> Round:
        ordered = sorted(self.series.steady, key=lambda r: r.seconds(self.spec.memory))
        return ordered[len(ordered) // 2]

    def figures(self) -> cost.Figures:
        s, fleet = self.series, self.spec
        inventory = s.inventory or self.steady()
        shards = [i for r in s.runs() for i in r.shards]
        cold = {
            "CheckerFunction": median_usage([r.planner.init for r in s.runs()]),
            "ShardWorkerFunction": median_usage([i.init for i in shards]),
            "SnapshotApiFunction": self.api_init,
        }
        workers = tuple(
            median_usage([r.shards[i].run.usage() for r in s.steady])
            for i in range(len(self.ranges))
        )
        fanout = cost.FanOutFigures(
            shards=len(self.ranges),
            planner=median_usage([r.planner.run.usage() for r in s.steady]),
            planner_inventory=inventory.planner.run.usage(),
            workers=workers,
            workers_inventory=tuple(i.run.usage() for i in inventory.shards),
        )
        return lambdas.figures_of(
            fleet,
            s,
            Round.total,
            self.health,
            Round.workers,
            cold=cold,
            stored=self.stored,
            fanout=fanout,
            measured_on=f"the real handlers fanned out, {fleet.portals:,} "
            f"portals x {fleet.lines} lines at {fleet.latency * 1000:g} ms, "
            f"ShardPortals={self.shard_portals:,} (steady: median of {len(s.steady)})",
        )


def row(invocation: Invocation, memory: int) -> str:
    run, init = invocation.run, f" {invocation.init.duration(memory):6.2f}"
    sqs = sum(v for k, v in run.calls.items() if k.startswith("sqs:"))
    targets = "-" if invocation.targets is None else f"{invocation.targets:,}"
    return (
        f"  {invocation.label:<10} {invocation.portals:7,d} "
        f"{lambdas.cells(run, memory, invocation.peak, init, sqs)} {targets:>7}  "
        f"{'yes' if invocation.fits(memory) else 'NO'}"
    )


def round_lines(measured: FanOut, run: Round) -> list[str]:
    memory, expected, counts = measured.spec.memory, measured.spec.targets, run.summary
    columns = lambdas.heads(memory, f" {'INIT s':>6}", "SQS")
    head = f"  {'invocation':<10} {'portals':>7} {columns} {'targets':>7}  60 s & 256 MB"
    out = [f"Run '{run.label}':", head, row(run.planner, memory)]
    out += [row(s, memory) for s in run.shards]
    slowest = run.slowest(memory)
    checked = (
        f"run record complete: yes ({counts['targets']:,} of {expected:,} targets checked: "
        f"{counts.get('up', 0):,} up, {counts.get('down', 0):,} down, "
        f"{counts.get('unknown', 0):,} unknown)"
        if run.complete and "targets" in counts
        else "run record complete: NO"
    )
    out.append(
        f"  RUN TIME on Lambda: planner {run.planner.run.estimate(memory):.2f} s + slowest shard "
        f"({slowest.label}) {slowest.run.estimate(memory):.2f} s = {run.seconds(memory):.2f} s "
        f"(the shards at once); {len(run.shards)} orders queued, {len(run.shards)} delivered; "
        + checked
    )
    return out


def per_shard(measured: FanOut) -> list[str]:
    memory, rounds = measured.spec.memory, measured.series.runs()
    out = [
        f"PER SHARD ({measured.shard_portals:,} portals a shard; the est. Lambda seconds of "
        f"each run, max(wall, CPU x {cost.FULL_VCPU_MB}/{memory}); peak RSS of the "
        "invocation's process, import included):",
        f"  {'shard':<8} {'portals':>7} "
        + " ".join(f"{r.label.split(' (')[0]:>14}" for r in rounds)
        + f" {'worst s':>8} {'RSS MiB':>8}  within 60 s and {GOAL_MEMORY_MB} MB",
    ]
    columns = [[r.shards[p] for r in rounds] for p in range(len(measured.ranges))]
    for invocations in [*columns, [r.planner for r in rounds]]:
        seconds = max(i.run.estimate(memory) for i in invocations)
        rss = max(i.peak for i in invocations)
        out.append(
            f"  {invocations[0].label:<8} {invocations[0].portals:7,d} "
            + " ".join(f"{i.run.estimate(memory):14.2f}" for i in invocations)
            + f" {seconds:8.2f} {rss / MIB:8.1f}  {'YES' if cost.fits(seconds, rss) else 'NO'}"
        )
    shards = [i for r in rounds for i in r.shards]
    seconds, rss = max(i.run.estimate(memory) for i in shards), max(i.peak for i in shards)
    fit = cost.fits(seconds, rss)
    out.append(
        f"MAX SHARD: {seconds:.2f} s estimated at {memory} MB, {rss / MIB:.0f} MiB peak RSS: "
        f"{'every measured shard fits' if fit else 'NOT every shard fits'} 60 s and "
        f"{GOAL_MEMORY_MB} MB; slowest run on Lambda (planner + slowest shard): "
        f"{max(r.seconds(memory) for r in rounds):.2f} s"
    )
    return out


def fan_report(measured: FanOut) -> list[str]:
    fleet = measured.spec
    out = [
        f"Fan-out (FanOut=true): {fleet.portals:,} portals x {fleet.lines} lines = "
        f"{fleet.targets:,} targets, ShardPortals={measured.shard_portals:,} -> "
        f"{len(measured.ranges)} shards; {fleet.latency * 1000:g} ms a portal request, "
        f"MaxParallelPortals={fleet.parallel}, {fleet.memory} MB; every invocation a cold "
        "start, the shards one after another (at once on Lambda).",
        "",
    ]
    for run in measured.series.runs():
        out += [*round_lines(measured, run), ""]
    out += per_shard(measured)
    health = measured.health[1:]
    out.append(
        f"GET /health after the runs (median of {len(health)} warm): "
        f"{statistics.median(r.wall for r in health) * 1000:.0f} ms wall, status "
        f"{(health[-1].answer or {}).get('statusCode')}"
    )
    out.append(lambdas.stored_line(measured.stored))
    return out


def main(fleet: Spec, args: Any) -> int:
    """`python -m bench.fleet --fanout ...` (args parsed there)."""
    started = time.perf_counter()
    params = {
        "FanOut": "true",
        "ShardPortals": str(args.shard_portals),
        "MaxParallelPortals": str(fleet.parallel),
        **args.params,
    }
    with (
        tempfile.TemporaryDirectory() as tmp,
        lambdas.services(fleet.portals, fleet.lines, fleet.latency) as svc,
    ):
        print(
            f"  {fleet.portals:,} portals x {fleet.lines} lines, FanOut=true, "
            f"ShardPortals={args.shard_portals:,}: deploying...",
            flush=True,
        )
        measured = FanOut(svc, fleet, args.shard_portals, Path(tmp))
        measured.measure(args)
    print("\n" + "\n".join(fan_report(measured)))
    price = cost.Fleet(
        targets=fleet.targets,
        portals=fleet.portals,
        publish_metrics=args.params.get("PublishMetrics") == "true",
    )
    bill = cost.monthly_bill(measured.figures(), price, read_stack(params))
    print("\n" + cost.render_bill(bill))
    print(
        f"\nBILL PER SHARD: ${bill.total:.4f} a month / {bill.shards} shards = "
        f"${bill.per_shard:.4f} a shard ({price.portals / bill.shards:,.0f} portals, "
        f"{price.targets / bill.shards:,.0f} targets)"
    )
    print(f"\n(benchmark took {time.perf_counter() - started:.0f} s)")
    return 0
