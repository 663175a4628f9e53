"""One hostile portal among healthy ones (`python -m bench.hostile`): each row a run of the real
checker handler, in this process against moto's server and the local portal, with one portal
misbehaving as `local.bitrix24_portal.PortalFault` describes (bench/README.md: the columns).

    .venv/bin/python -m bench.hostile [--budget 30] [--pace 2] [--portals 4] [--lines 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from bench.lambdas import CONNECTOR, add_portals
from local.aws import MotoStack, apply_environment
from local.bitrix24_portal import LocalPortal, PortalFault
from local.handlers import LambdaContext, load_handler
from local.run import function_environment, scheduled_event
from tests.support.moto_speedups import quicker_moto

HOSTILE = "hostile.bench.local"
NAMED = "named.bench.local"  # 200 open lines named with 3 KB each
SHORT = "short.bench.local"  # the same 200 lines with short names: the control of NAMED
NAMED_LINES = 200
MB = 2**20


@dataclass(frozen=True)
class Outcome:
    seconds: float
    peak_mb: float
    others_up: str  # "UP/all" of the targets of the other portals
    largest_item_kb: float
    hostile: str


@dataclass
class HostileBench:
    portal: LocalPortal
    aws: MotoStack
    checker: ModuleType
    healthy: list[str]
    lines: int
    budget: float

    def run(self, subject: str) -> Outcome:
        """One invocation over every target (`budget` seconds of it; the handler keeps 15 s
        back); `subject` is the portal the row is about."""
        context = LambdaContext(remaining_ms=int(self.budget * 1000))
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        started = time.monotonic()
        self.checker.lambda_handler(scheduled_event(), context)
        seconds = time.monotonic() - started
        peak = (tracemalloc.get_traced_memory()[1] - base) / MB
        tracemalloc.stop()
        states = self._states()
        others_up = sum(
            1
            for key, state in states.items()
            if not key.startswith(subject + "/") and state == "UP"
        )
        its = sorted({v for k, v in states.items() if k.startswith(subject + "/")})
        return Outcome(seconds, peak, others_up, self._largest_item() / 1024, ", ".join(its))

    def forget_inventory(self, portal: str) -> None:
        """The next run validates `portal` again (its connector and line lists are read)."""
        key = {"pk": {"S": "INVENTORY"}, "sk": {"S": portal}}
        self.aws.client("dynamodb").delete_item(TableName=self.aws.resources.table, Key=key)

    def _states(self) -> dict[str, str]:
        found = self.aws.client("dynamodb").query(
            TableName=self.aws.resources.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "STATE"}},
        )["Items"]
        return {
            i["sk"]["S"]: i["state"]["S"] + (f"/{i['cause']['S']}" if "cause" in i else "")
            for i in found
        }

    def _largest_item(self) -> int:
        items = self.aws.client("dynamodb").scan(TableName=self.aws.resources.table)["Items"]
        return max(len(json.dumps(item)) for item in items)


@contextmanager
def hostile_bench(portals: int, lines: int, budget: float) -> Iterator[HostileBench]:
    # moto's TransactWriteItems copies the whole table per item: with tracemalloc on, the first
    # run's writes of 415 targets outlast the client's read timeout.
    with quicker_moto(), LocalPortal(tls=True) as portal, MotoStack() as aws:
        healthy = [f"p{i:02d}.bench.local" for i in range(portals)]
        fleet = {d: {n: f"Line {n}" for n in range(1, lines + 1)} for d in [*healthy, HOSTILE]}
        for domain, name in ((NAMED, "N" * 3000), (SHORT, "Line")):
            fleet[domain] = {n: f"{n} {name}" for n in range(1, NAMED_LINES + 1)}
        add_portals(portal, fleet)
        resources = aws.create({"portals": {d: portal.credentials(d) for d in fleet}})
        targets = [f"{d}/{CONNECTOR}/{n}" for d, names in fleet.items() for n in names]
        base_env = {
            **aws.environment(),
            **function_environment(
                targets=",".join(targets),
                secret_id=resources.secret_id,
                table=resources.table,
                tokens_table=resources.tokens_table,
                topic_arn=resources.topic_arn,
                interval=300,
                log_level="WARNING",
            ),
            "PORTAL_CA_BUNDLE": portal.ca_file,  # the portals speak HTTPS, as portals do
        }
        apply_environment(base_env, os.environ)
        logging.disable(logging.CRITICAL)  # the hostile rows log loudly, by design
        checker = load_handler("checker")
        yield HostileBench(portal, aws, checker, healthy, lines, budget)


Row = tuple[str, str, Callable[[], None]]  # name, the portal it is about, its set-up


def rows(bench: HostileBench, pace: float) -> list[Row]:
    """Each set-up starts from a clean portal."""

    def fault(kind: PortalFault, **options: Any) -> Callable[[], None]:
        return lambda: bench.portal.inject(HOSTILE, kind, **options)

    def oauth_trickle() -> None:
        bench.portal.expire_access_tokens(HOSTILE)
        bench.portal.inject(HOSTILE, PortalFault.TRICKLE, method="oauth", delay=pace)

    return [
        ("healthy (baseline)", HOSTILE, lambda: None),
        (f"REST trickle, 1 byte / {pace:g} s", HOSTILE, fault(PortalFault.TRICKLE, delay=pace)),
        (f"OAuth trickle, 1 byte / {pace:g} s", HOSTILE, oauth_trickle),
        ("100 MB body", HOSTILE, fault(PortalFault.HUGE)),
        ("gzip bomb, 200 KB -> 200 MB", HOSTILE, fault(PortalFault.GZIP_BOMB)),
        ("450 KB error code", HOSTILE, fault(PortalFault.HUGE_ERROR_CODE)),
        ("200 lines, short names, listed", SHORT, lambda: bench.forget_inventory(SHORT)),
        ("200 lines named 3 KB, listed", NAMED, lambda: bench.forget_inventory(NAMED)),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=30.0, help="invocation seconds")
    parser.add_argument("--pace", type=float, default=2.0, help="seconds between trickled bytes")
    parser.add_argument("--portals", type=int, default=4, help="healthy portals")
    parser.add_argument("--lines", type=int, default=3, help="targets per portal")
    args = parser.parse_args(argv)
    with hostile_bench(args.portals, args.lines, args.budget) as bench:
        bench.run(HOSTILE)  # cold start, first writes and validation: untimed
        bench.run(HOSTILE)
        results: list[tuple[str, Outcome]] = []
        for name, subject, arm in rows(bench, args.pace):
            arm()
            results.append((name, bench.run(subject)))
            bench.portal.clear_faults()
    baseline = results[0][1]
    total = (args.portals + 1) * args.lines + 2 * NAMED_LINES
    print(
        f"one run of {total} targets: {args.portals} healthy portals x {args.lines} "
        f"lines, 2 healthy portals x {NAMED_LINES} lines, 1 hostile portal x {args.lines} lines; "
        f"{args.budget:g} s invocation budget (deadline {args.budget - 15:g} s)"
    )
    print(
        f"{'hostile portal':<32} {'wall s':>7} {'x base':>7} {'peak MB':>8} {'x base':>7} "
        f"{'others UP':>11} {'max item KB':>12}  its targets"
    )
    for name, o in results:
        print(
            f"{name:<32} {o.seconds:7.2f} {o.seconds / baseline.seconds:7.1f} {o.peak_mb:8.1f} "
            f"{o.peak_mb / baseline.peak_mb:7.1f} {o.others_up:>11} "
            f"{o.largest_item_kb:12.1f}  {o.hostile or '-'}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
