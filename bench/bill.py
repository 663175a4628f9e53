"""The monthly bill, measured on two small fleets and fitted to the priced one (`make cost`):

    .venv/bin/python -m bench.bill [--portals 1000] [--targets 5000] [--measure 50,100]
                                   [--lines 5] [--latency 0.3] [--parallel 64] [--param K=V]

The real handlers run as `bench/fleet.py` runs them (each Lambda function in a process of its
own, moto's server and the local portal in two more), on each measured fleet: the first run, a
second, steady runs, an inventory run, a run with 1/12 of the tokens expired and the /health
poll. Every quantity of a run (seconds, requests, DynamoDB calls and units, bytes logged and
sent, bytes stored) is fitted as a + b x portals through the measured fleets and priced for
--portals by `bench/cost.py`; the printout says so. `python -m bench.fleet` prices the full
fleet from its own measurement instead.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.cost import Fleet, fitted, monthly_bill, render_bill
from bench.fleet import Spec, measure, services
from bench.stack import read_stack


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--portals", type=int, default=1000, help="portals to price")
    parser.add_argument("--targets", type=int, default=5000, help="targets to price")
    parser.add_argument("--measure", default="50,100", help="portal counts measured")
    parser.add_argument("--lines", type=int, default=0, help="lines per portal (targets/portals)")
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per portal request")
    parser.add_argument("--parallel", type=int, default=64, help="MaxParallelPortals")
    parser.add_argument("--memory-mb", type=int, default=256)
    parser.add_argument("--steady-runs", type=int, default=3)
    parser.add_argument("--schedule-minutes", type=float, default=5.0)
    parser.add_argument("--incidents", type=int, default=30, help="incidents a month (assumed)")
    parser.add_argument(
        "--param", action="append", default=[], help="a template parameter to price, K=V"
    )
    args = parser.parse_args(argv)
    args.sizes = sorted({int(s) for s in args.measure.split(",") if s.strip()})
    if not args.sizes or min(args.sizes) < 1 or args.portals < 1:
        parser.error("--measure needs portal counts of at least 1")
    args.lines = args.lines or max(1, round(args.targets / args.portals))
    args.params = dict(p.split("=", 1) for p in args.param)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    print(
        f"Measuring the real handlers on {' and '.join(map(str, args.sizes))} portals x "
        f"{args.lines} lines ({args.latency * 1000:g} ms a portal request, "
        f"MaxParallelPortals={args.parallel}), to price {args.targets:,} targets on "
        f"{args.portals:,} portals...",
        flush=True,
    )
    figures = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        services(max(args.sizes), args.lines, args.latency) as svc,
    ):
        for size in args.sizes:
            spec = Spec(
                size, args.lines, args.latency, args.parallel, args.memory_mb, args.steady_runs
            )
            figures.append(measure(svc, spec, Path(tmp)).figures())
    fleet = Fleet(
        targets=args.targets,
        portals=args.portals,
        schedule_minutes=args.schedule_minutes,
        incidents_per_month=args.incidents,
        publish_metrics=args.params.get("PublishMetrics") == "true",
    )
    stack = read_stack({"MaxParallelPortals": str(args.parallel), **args.params})
    print()
    print(render_bill(monthly_bill(fitted(figures, args.portals, args.targets), fleet, stack)))
    print(f"\n(took {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
