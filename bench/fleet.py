"""The fleet benchmark (`make fleet`, `make cost`, and `make fanout` through bench/fanout.py):
the real handlers, each Lambda function in a process of its own, on a fleet of local portals
and moto's server; the runs' figures, the sweep and the monthly bill (bench/README.md).

    .venv/bin/python -m bench.fleet [--portals 1000] [--lines 5] [--latency 0.3] [--parallel 64]
                                    [--memory-mb 256] [--steady-runs 3]
                                    [--sweep 250,500,1000,2000] [--param K=V]
    .venv/bin/python -m bench.fleet --fit 50,100 [--price-portals 1000] [--price-targets 5000]
    .venv/bin/python -m bench.fleet --fanout --portals 10000 --shard-portals 2000 ...
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import fanout, lambdas
from bench.cost import (
    FULL_VCPU_MB,
    GOAL_MEMORY_MB,
    GOAL_SECONDS,
    Figures,
    Fleet,
    fits,
    fitted,
    monthly_bill,
    render_bill,
)
from bench.lambdas import MIB, Run, Services, Spec
from bench.stack import read_stack
from local.template import parameter_values


class Measured:
    """One invocation's runs on a fresh deploy (one `*/myconnector/*` watch), the checker in
    one process; then /health and the bytes stored."""

    def __init__(
        self, svc: Services, spec: Spec, log_dir: Path, *, refresh: bool = True, api: bool = True
    ) -> None:
        self.spec, self.health = spec, []
        print(f"  {spec.portals:,} portals x {spec.lines} lines: deploying...", flush=True)
        deployed = lambdas.deploy(svc, spec.portals)
        parameters = {"Targets": "", "MaxParallelPortals": str(spec.parallel)}
        parameters["ShardPortals"] = str(max(10, spec.portals))
        env = lambdas.lambda_environment("CheckerFunction", deployed, spec, parameters)
        function = lambdas.Function(svc, "checker", env, deployed, log_dir)
        self.init = {"CheckerFunction": function.init}
        try:
            self.series = lambdas.run_series(
                svc, deployed, spec, function.run, deployed.portals, refresh=refresh
            )
        finally:
            self.ru_maxrss = function.close()
        if api:
            self.health, init = lambdas.poll_health(svc, deployed, spec, log_dir)
            self.init["SnapshotApiFunction"] = init
        self.stored = lambdas.stored(svc, deployed)
        s = self.series
        self.steady = sorted(s.steady, key=lambda r: r.wall)[len(s.steady) // 2]
        extra = (s.rounds, s.inventory, s.refresh)
        self.runs = [s.first, s.second, self.steady, *(r for r in extra if r)]
        self.worst = max(self.runs, key=lambda r: r.estimate(spec.memory))
        self.peak_rss = max([r.peak_rss for r in self.runs] + [self.ru_maxrss])

    def figures(self) -> Figures:
        spec, steady_runs = self.spec, len(self.series.steady)
        return lambdas.figures_of(
            spec,
            self.series,
            Run.usage,
            self.health,
            cold=self.init,
            stored=self.stored,
            measured_on=f"the real handlers on {spec.portals:,} portals x {spec.lines} lines at "
            f"{spec.latency * 1000:g} ms (steady: median of {steady_runs} runs)",
        )

    def table(self) -> list[str]:
        memory, s = self.spec.memory, self.series
        out = [f"  {'run':<22} {lambdas.heads(memory, '', 'SNS')}"]
        rows = [(s.first, "first run"), (s.second, "second run")]
        rows.append((self.steady, f"steady (median of {len(s.steady)})"))
        rows += [
            (s.rounds, "rounds run (1 in 48)"),
            (s.inventory, "inventory run"),
            (s.refresh, f"refresh run ({s.refreshed} expired)"),
        ]
        for run, label in (row for row in rows if row[0] is not None):
            out.append(
                f"  {label:<22} "
                + lambdas.cells(run, memory, run.peak_rss, "", run.calls.get("sns:Publish", 0))
            )
        return out

    def report(self) -> list[str]:
        spec, memory, worst = self.spec, self.spec.memory, self.worst
        tokens = ", ".join(f"{k} {v}" for k, v in sorted(self.steady.token_store_calls().items()))
        out = ["Runs (one */myconnector/* watch):", *self.table(), ""]
        out.append(f"Steady run's token store: {tokens or 'none'}")
        cold = "; ".join(
            f"{name} {u.get('wall') * 1000:.0f} ms wall / {u.get('cpu') * 1000:.0f} ms CPU "
            f"({u.duration(memory):.2f} s at {memory} MB)"
            for name, u in self.init.items()
        )
        out += ["", f"Cold start (import app + first call's wiring, this machine): {cold}"]
        if len(self.health) > 1:
            warm, run = self.health[1:], self.health[-1]
            out.append(
                f"GET /health (snapshot API, median of {len(warm)} warm): "
                f"{statistics.median(r.wall for r in warm) * 1000:.0f} ms wall, "
                f"{statistics.median(r.cpu for r in warm) * 1000:.0f} ms CPU, status "
                f"{(run.answer or {}).get('statusCode')}, DynamoDB {run.dynamodb_calls} call(s) "
                f"{run.units('RRU'):.1f} RRU, log {len(run.log_lines)} lines {run.log_bytes} B"
            )
        out.append(lambdas.stored_line(self.stored))
        seconds, rss = worst.estimate(memory), self.peak_rss / MIB
        ok_time, ok_memory = seconds <= GOAL_SECONDS, rss <= GOAL_MEMORY_MB
        out.append(
            f"One invocation, {spec.portals:,} portals x {spec.lines} lines at "
            f"{spec.latency * 1000:g} ms, {spec.parallel} portals in parallel: slowest run "
            f"'{worst.label}' {seconds:.1f} s estimated at {memory} MB "
            f"({worst.governs(memory)} governs: wall {worst.wall:.1f} s, CPU {worst.cpu:.2f} s "
            f"x {FULL_VCPU_MB}/{memory} = {worst.cpu * FULL_VCPU_MB / memory:.1f} s) "
            f"{'<=' if ok_time else '>'} {GOAL_SECONDS:g} s: {'YES' if ok_time else 'NO'}; "
            f"peak RSS {rss:.0f} MiB {'<=' if ok_memory else '>'} {GOAL_MEMORY_MB} MB: "
            f"{'YES' if ok_memory else 'NO'}"
        )
        out.append(self.steady_cpu_line())
        out.append(self.portals_per_invocation_line())
        return out

    def steady_cpu_line(self) -> str:
        each = self.steady.cpu / self.spec.portals
        return (
            f"Steady run: {each * 1000:.2f} ms of checker CPU a portal (goal <= 5 ms: "
            f"{'MET' if each <= 0.005 else 'NOT MET'}); 1,000 portals {each * 1000:.2f} s of CPU, "
            f"{each * 1000 * FULL_VCPU_MB / self.spec.memory:.1f} s at {self.spec.memory} MB"
        )

    def portals_per_invocation_line(self) -> str:
        """ShardPortals from the CPU a portal of the costliest run (CPU governs at 256 MB), after
        a cold start's INIT, within the 60 s goal (half the function's 120 s timeout)."""
        memory, worst = self.spec.memory, self.worst
        init = self.init["CheckerFunction"].duration(memory)
        each = worst.cpu / self.spec.portals * FULL_VCPU_MB / memory
        fits_in = int((GOAL_SECONDS - init) / each) if each > 0 else 0
        return (
            f"Portals one invocation checks from the CPU a portal: ({GOAL_SECONDS:g} s - INIT "
            f"{init:.1f} s) / ('{worst.label}' {each * 1000:.1f} ms a portal at {memory} MB) "
            f"= {fits_in:,}"
        )


def sweep(svc: Services, base: Spec, sizes: Sequence[int], log_dir: Path) -> list[str]:
    memory, passing, limits = base.memory, [0], []
    rows = []
    for size in sizes:
        spec = dataclasses.replace(base, portals=size, steady_runs=2)
        rows.append((size, Measured(svc, spec, log_dir, refresh=False, api=False)))
    out = [
        "",
        f"Sweep: one invocation at {memory} MB, {base.lines} lines per portal, "
        f"{base.latency * 1000:g} ms, {base.parallel} in parallel (the worst of first, steady "
        "and inventory runs)",
        f"  {'portals':>7} {'worst run':<14} {'wall s':>7} {'CPU s':>6} {'est s':>6} "
        f"{'governs':>7} {'RSS MiB':>7}  within 60 s and 256 MB",
    ]
    for size, m in rows:
        worst = m.worst
        ok = fits(worst.estimate(memory), m.peak_rss)
        passing += [size] if ok else []
        out.append(
            f"  {size:7,d} {worst.label:<14} {worst.wall:7.1f} {worst.cpu:6.2f} "
            f"{worst.estimate(memory):6.1f} {worst.governs(memory):>7} "
            f"{m.peak_rss / MIB:7.0f}  {'yes' if ok else 'NO'}"
        )
    # where the worst run's seconds and the peak RSS reach the goal, linearly between the
    # measured sizes around it (or beyond the last two)
    for points, goal in (
        ([(float(n), m.worst.estimate(memory)) for n, m in rows], GOAL_SECONDS),
        ([(float(n), m.peak_rss / MIB) for n, m in rows], float(GOAL_MEMORY_MB)),
    ):
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            if y0 <= goal < y1 or (x1 == points[-1][0] and y1 <= goal and y1 > y0):
                limits.append(x0 + (goal - y0) * (x1 - x0) / (y1 - y0))
                break
    near = f"; by linear interpolation the limit is near {int(min(limits)):,} portals"
    out.append(
        f"PORTALS PER INVOCATION: {max(passing):,} (the largest measured size within 60 s and "
        f"256 MB){near if limits else ''}"
    )
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add = parser.add_argument
    add("--portals", type=int, default=1000)
    add("--lines", type=int, default=5, help="open lines per portal (targets)")
    add("--latency", type=float, default=0.3, help="seconds per portal request")
    add("--parallel", type=int, default=64, help="MaxParallelPortals (1..64)")
    add("--memory-mb", type=int, default=256, help="the checker's MemorySize")
    add("--steady-runs", type=int, default=3)
    add("--sweep", default="", help="portal counts, e.g. 250,500,1000,2000")
    add("--fit", default="", help="only the bill: measure these portal counts, fit and price")
    add("--param", action="append", default=[], help="a template parameter to price, K=V")
    add("--price-portals", type=int, default=1000, help="fleet the bill prices")
    add("--price-targets", type=int, default=5000)
    add("--schedule-minutes", type=float, default=5.0, help="the priced schedule")
    add("--incidents", type=int, default=30, help="incidents a month (assumed, priced)")
    add("--fanout", action="store_true", help="measure the fanned-out fleet (bench/fanout.py)")
    add("--shard-portals", type=int, default=2000, help="fan-out: ShardPortals (>= 10)")
    add("--no-inventory", action="store_true", help="fan-out: skip the inventory run")
    add("--no-refresh", action="store_true", help="fan-out: skip the refresh run")
    args = parser.parse_args(argv)
    if not 1 <= args.parallel <= 64:
        parser.error("--parallel must be 1..64 (MaxParallelPortals)")
    if min(args.portals, args.lines, args.steady_runs) < 1:
        parser.error("--portals, --lines and --steady-runs must be at least 1")
    if args.fanout and (args.shard_portals < 10 or args.portals <= args.shard_portals):
        parser.error("--fanout needs --shard-portals >= 10 and more --portals than that")
    args.sizes = [int(s) for s in args.sweep.split(",") if s.strip()]
    args.fitted = sorted({int(s) for s in args.fit.split(",") if s.strip()})
    args.params = dict(p.split("=", 1) for p in args.param)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    spec = Spec(
        args.portals, args.lines, args.latency, args.parallel, args.memory_mb, args.steady_runs
    )
    if args.fanout:
        return fanout.main(spec, args)
    started = time.perf_counter()
    stack = read_stack({"MaxParallelPortals": str(spec.parallel), **args.params})
    fleet = Fleet(
        targets=args.price_targets,
        portals=args.price_portals,
        schedule_minutes=args.schedule_minutes,
        incidents_per_month=args.incidents,
        publish_metrics=args.params.get("PublishMetrics") == "true",
    )
    print(
        f"Measuring the real handlers on {' and '.join(map(str, args.fitted))} portals x "
        f"{spec.lines} lines ({spec.latency * 1000:g} ms a portal request, "
        f"MaxParallelPortals={spec.parallel}), to price {fleet.targets:,} targets on "
        f"{fleet.portals:,} portals..."
        if args.fitted
        else f"Fleet: {spec.portals:,} portals x {spec.lines} lines = {spec.targets:,} targets, "
        f"{spec.latency * 1000:g} ms a portal request, MaxParallelPortals={spec.parallel} "
        f"(template default {parameter_values().get('MaxParallelPortals', '?')}), "
        f"{spec.memory} MB.\nEach Lambda function runs in a process of its own (the handler "
        "and nothing else); moto's server and the local portal in two more.",
        flush=True,
    )
    out: list[str] = []
    largest = max([*args.fitted, *args.sizes] or [spec.portals])
    with (
        tempfile.TemporaryDirectory() as tmp,
        lambdas.services(largest, spec.lines, spec.latency) as svc,
    ):
        log_dir = Path(tmp)
        if args.fitted:
            sizes = [dataclasses.replace(spec, portals=n) for n in args.fitted]
            figures = [Measured(svc, s, log_dir).figures() for s in sizes]
        else:
            measured = Measured(svc, spec, log_dir)
            out += ["", *measured.report()]
            out += sweep(svc, spec, args.sizes, log_dir) if args.sizes else []
            figures = [measured.figures()]
    priced = fitted(figures, fleet.portals, fleet.targets)
    print("\n".join(out) + "\n\n" + render_bill(monthly_bill(priced, fleet, stack)))
    print(f"\n(benchmark took {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
