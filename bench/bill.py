"""The monthly bill of a fleet, measured then priced (`make cost`):

    .venv/bin/python -m bench.bill [--targets 1000] [--portals N] [--schedule-minutes 5]
                                   [--measure-portals P --measure-lines L] [--latency 0.0]

One steady run of the real check cycle is measured (bench/run_benchmark.py's `quick_figures`:
local portals and moto in this process) and priced by `bench/cost.py`.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

from bench.cost import PORTALS_PER_SECRET, fleet_from, monthly_bill, render_bill
from bench.environment import BenchFleet
from bench.run_benchmark import quick_figures


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000, help="targets to price")
    parser.add_argument(
        "--portals",
        type=int,
        default=PORTALS_PER_SECRET,
        help=f"portals to price (default: {PORTALS_PER_SECRET}, what one stack holds)",
    )
    parser.add_argument("--schedule-minutes", type=float, default=5.0)
    parser.add_argument("--incidents", type=int, default=30, help="incidents a month (assumed)")
    parser.add_argument(
        "--metrics", action="store_true", help="price PublishMetrics=true (4 custom metrics)"
    )
    parser.add_argument(
        "--measure-portals", type=int, help="portals to measure on (default: those priced)"
    )
    parser.add_argument("--measure-lines", type=int, default=100, help="lines per portal")
    parser.add_argument("--latency", type=float, default=0.0, help="portal latency, seconds")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    fleet = fleet_from(
        args.targets,
        args.portals,
        args.schedule_minutes,
        args.incidents,
        args.metrics,
    )
    lines = max(1, math.ceil(args.targets / fleet.portals))
    if args.measure_portals:
        measured = BenchFleet(args.measure_portals, args.measure_lines)
    else:  # measure the priced fleet itself: nothing to scale
        measured = BenchFleet(fleet.portals, lines)
    print(
        f"Measuring one steady run on {measured.portals} portals x {measured.lines} lines "
        f"(latency {args.latency * 1000:g} ms, moto in-process)...",
        flush=True,
    )
    figures = quick_figures(measured, latency=args.latency)
    print(render_bill(monthly_bill(figures, fleet)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
