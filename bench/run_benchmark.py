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
Last the naive/real ratios. (The monthly bill is `bench/fleet.py`'s and `bench/bill.py`'s.)

Three artefacts of the test doubles are taken out of the measure, not hidden: moto's
TransactWriteItems backup and its response serialiser (`quicker_moto`), and the local portal's
Nagle delay (`bench_environment`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial

from bench.environment import (
    Bench,
    BenchFleet,
    bench_environment,
)
from bench.logs import capture_logs
from bench.naive import naive_run
from bench.report import Row, render_ratios, render_table
from connector_monitor.cycle import CycleSettings

CHANGED_SHARE = 0.01  # the share of connectors flipped to show that writes follow changes


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


def _real_rows(bench: Bench, runs: int) -> tuple[Row, Row, str]:
    return bench_variant(bench, "real", bench.real_run, runs, settle=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--portals", type=int, default=20)
    parser.add_argument("--lines", type=int, default=100, help="lines (targets) per portal")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per REST request")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of the real cycle")
    parser.add_argument(
        "--baseline-runs", type=int, default=1, help="timed runs of the naive baseline"
    )
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
            bench, "naive", lambda table: naive_run(bench, table), args.baseline_runs, settle=False
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
    print()
    print(
        f"Log output of one warm steady run (the checker handler): {logs.lines} JSON lines, "
        f"{logs.bytes:,} bytes ("
        + ", ".join(f"{k} {v:,} B" for k, v in sorted(logs.kinds.items()))
        + f"); custom metrics per run: {logs.metrics}"
        + (f" (+{logs.cold_start_metrics} on cold start)" if logs.cold_start_metrics else "")
    )
    print(
        "\nThe monthly bill is measured on a fleet by `make fleet` (python -m bench.fleet) and "
        "`make cost` (python -m bench.bill)."
    )
    print(f"\n(benchmark took {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
