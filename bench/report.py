"""The benchmark's tables: one row per run kind, and the naive/real ratios."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench.environment import (
    MIB,
)
from bench.metering import Measure


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
