"""The benchmark (`make bench`): the real check run against a naive one, in this process, on a
fleet of local portals and moto (bench/README.md: the options, each row and column).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import statistics
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any
from unittest import mock

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from moto import mock_aws

from bench import transport
from bench.environment import REGION, ROOT, RUN_DEADLINE, CheckerParts, build_checker
from bench.lambdas import CONNECTOR, add_portals
from bench.metering import Measure, Meter
from connector_monitor.aws.clients import CONFIGS
from connector_monitor.aws.records import status_from_item, status_key, status_to_item
from connector_monitor.aws.secret_pairs import OVER_WRITE_BUDGET
from connector_monitor.bitrix24.answers import STATUS_METHOD, read_status
from connector_monitor.bitrix24.rest_session import RestSession
from connector_monitor.cycle import RunSummary
from connector_monitor.deadline import Deadline
from connector_monitor.domain.portal_errors import PortalError
from connector_monitor.domain.results import CheckResult
from connector_monitor.domain.targets import Target, TargetList
from connector_monitor.domain.transitions import Thresholds, advance
from local.bitrix24_portal import LocalPortal
from local.handlers import LambdaContext, load_handler
from local.template import environment_of, table_definition
from tests.support.moto_speedups import quicker_moto

MIB = 1024 * 1024
CHANGED_SHARE = 0.01  # the share of connectors flipped to show that writes follow changes


@dataclass
class Bench:
    """The local portal, moto's stack and metered clients of one benchmark."""

    domains: list[str]
    lines: int
    portal: LocalPortal
    settings: dict[str, str]  # the checker's variables, but for TABLE_NAME
    clients: dict[str, Any]  # by service
    meter: Meter
    parallel: int = 8  # MaxParallelPortals of the in-process fleet
    tables: int = 0

    def __post_init__(self) -> None:
        lines = range(1, self.lines + 1)
        found = tuple(Target(d, CONNECTOR, n) for d in self.domains for n in lines)
        self.targets = TargetList(found, ())
        self.dynamodb = self.clients["dynamodb"]

    def new_table(self) -> str:
        self.tables += 1
        self.dynamodb.create_table(TableName=f"bench-{self.tables}", **table_definition())
        return f"bench-{self.tables}"

    def checker(self, table: str) -> CheckerParts:
        return build_checker({**self.settings, "TABLE_NAME": table}, self.clients.__getitem__)

    def real_run(self, table: str) -> RunSummary:
        return self.checker(table).cycle.run(self.targets, Deadline.after(RUN_DEADLINE))

    def measure(self, run: Callable[[], object], *, traced: bool = False) -> Measure:
        self.meter.reset()
        before = self.portal.request_count()
        if traced:
            tracemalloc.start()
        started = time.perf_counter()
        run()
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] if traced else None
        if traced:
            tracemalloc.stop()
        m, requests = self.meter, self.portal.request_count() - before
        rru, wru = m.units("RRU"), m.units("WRU")
        return Measure(seconds, requests, dict(m.calls), rru, wru, m.aws_seconds, peak)

    def flip(self, share: float) -> list[Target]:
        """Take `share` of the connectors down (ERROR=true), spread over the fleet."""
        targets = self.targets.targets
        count = max(1, round(len(targets) * share))
        step = len(targets) // count
        flipped = [targets[i * step + (i % max(1, step))] for i in range(count)]
        for t in flipped:
            self.portal.set_status(t.portal, t.connector, t.line, configured=True, error=True)
        return flipped

    def heal(self) -> None:
        for t in self.targets.targets:
            self.portal.connect(t.portal, t.connector, t.line)


AWS_ENVIRONMENT = {  # test credentials for moto
    "AWS_DEFAULT_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


@contextlib.contextmanager
def bench_environment(portals: int, lines: int, latency: float) -> Iterator[Bench]:
    domains = [f"p{i:03d}.bench.local" for i in range(portals)]
    with (
        mock.patch.dict(os.environ, AWS_ENVIRONMENT),
        quicker_moto(),
        LocalPortal(tls=True) as portal,
        mock_aws(),
    ):
        numbers = {n: f"Line {n}" for n in range(1, lines + 1)}
        add_portals(portal, dict.fromkeys(domains, numbers))
        secret = {"portals": {d: portal.credentials(d) for d in domains}}
        # The whole fleet is in one secret here: the token store's warning that a stack should
        # hold fewer portals a secret would repeat every run and count in the log volume.
        logging.getLogger("connector_monitor.aws.secret_pairs").addFilter(
            lambda record: record.msg is not OVER_WRITE_BUDGET
        )
        meter, config = Meter(), CONFIGS["dynamodb"]
        clients = {s: boto3.client(s, region_name=REGION) for s in ("secretsmanager", "sns")}
        clients["dynamodb"] = boto3.client("dynamodb", region_name=REGION, config=config)
        for client in clients.values():
            meter.attach(client)
        secrets, sns = clients["secretsmanager"], clients["sns"]
        settings = {
            "SECRET_ID": secrets.create_secret(
                Name="bench/tokens", SecretString=json.dumps(secret)
            )["ARN"],
            "TOPIC_ARN": sns.create_topic(Name="bench-alerts")["TopicArn"],
            "TOKENS_TABLE": "bench-tokens",  # empty: every portal's pair is in the secret
            "PORTAL_CA_BUNDLE": portal.ca_file,  # the portal speaks HTTPS, as portals do
            "MAX_PARALLEL_PORTALS": str(Bench.parallel),
        }
        clients["dynamodb"].create_table(TableName="bench-tokens", **table_definition("TokenTable"))
        portal.latency = latency
        yield Bench(domains, lines, portal, settings, clients, meter)


def naive_run(bench: Bench, table: str) -> None:
    """One imconnector.status request per line and a GetItem + PutItem per target, portals in
    parallel as the real cycle checks them; same state machine, same token source."""
    tokens = bench.checker(table).cycle.tokens
    tokens.load()
    deadline = Deadline.after(RUN_DEADLINE)
    serialize, deserialize = TypeSerializer().serialize, TypeDeserializer().deserialize

    def portal(domain: str) -> None:
        with RestSession(domain, tokens, ca_bundle=bench.portal.ca_file) as client:
            for target in bench.targets.for_portal(domain):
                key = {k: {"S": v} for k, v in status_key(target).items()}
                found = bench.dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)
                previous = None
                if "Item" in found:
                    previous = status_from_item(
                        {k: deserialize(v) for k, v in found["Item"].items()}
                    )
                now = datetime.now(UTC)
                try:
                    params = {"CONNECTOR": target.connector, "LINE": target.line}
                    answer = client.call(STATUS_METHOD, params, deadline)
                    result = read_status(target, answer, checked_at=now)
                except PortalError as exc:
                    result = CheckResult.unknown(target, exc.kind.cause, exc.detail, checked_at=now)
                status = advance(previous, result, Thresholds()).status
                item = {k: serialize(v) for k, v in status_to_item(status).items()}
                bench.dynamodb.put_item(TableName=table, Item=item)

    portals = bench.targets.portals()
    with ThreadPoolExecutor(max_workers=min(bench.parallel, len(portals))) as pool:
        list(pool.map(portal, portals))


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
        peak = self.traced.peak_bytes if self.traced else None
        return None if peak is None else peak / MIB


def bench_variant(
    bench: Bench, variant: str, run: Callable[[str], object], runs: int, *, settle: bool
) -> tuple[Row, Row, str]:
    """`runs` first runs, each on an empty table; then `runs` steady runs on the first table and
    one more under tracemalloc (tracing slows Python down). With `settle`, an untimed run goes
    first: the streak counters stop changing (and the real cycle writing) at max(thresholds)."""
    tables = [bench.new_table() for _ in range(runs)]
    firsts = [bench.measure(partial(run, table)) for table in tables]
    table = tables[0]
    if settle:
        run(table)
    steadies = [bench.measure(partial(run, table)) for _ in range(runs)]
    traced = bench.measure(partial(run, table), traced=True)
    return Row(variant, "first run", firsts), Row(variant, "steady run", steadies, traced), table


Metric = tuple[str, str, tuple[tuple[str, str], ...]]


def metrics_in(line: str) -> set[Metric]:
    """Distinct custom metrics (namespace, name, dimensions) in an EMF line."""
    blob, found = json.loads(line), set()
    for directive in blob.get("_aws", {}).get("CloudWatchMetrics", []):
        for dimensions in directive.get("Dimensions", [[]]):
            dims = tuple(sorted((d, str(blob.get(d))) for d in dimensions))
            for metric in directive.get("Metrics", []):
                found.add((directive.get("Namespace", ""), metric["Name"], dims))
    return found


def capture_logs(bench: Bench, table: str) -> tuple[list[str], set[Metric], set[Metric]]:
    """The real checker handler invoked once on a steady table: its log lines, the metrics a
    warm run publishes (PublishMetrics=true) and those only a cold start adds (ColdStart)."""
    settings = bench.settings
    resources = {"Table": table, "TokenTable": settings["TOKENS_TABLE"]}
    env = environment_of(
        "CheckerFunction",
        resources={
            **resources,
            "Topic": settings["TOPIC_ARN"],
            "PortalSecret": settings["SECRET_ID"],
        },
        parameters={
            "Targets": ",".join(t.key for t in bench.targets.targets),
            "PublishMetrics": "true",
        },
        extra={"POWERTOOLS_LOG_LEVEL": "INFO", "PORTAL_CA_BUNDLE": settings["PORTAL_CA_BUNDLE"]},
    )
    event = json.loads((ROOT / "events" / "schedule.json").read_text())
    buffer = io.StringIO()
    with mock.patch.dict(os.environ, env), contextlib.redirect_stdout(buffer):
        checker = load_handler("checker")
        streams = [n for n in logging.root.manager.loggerDict if "." in n] + [checker.logger.name]
        handlers = [h for n in streams for h in logging.getLogger(n).handlers]
        handlers = [h for h in handlers if isinstance(h, logging.StreamHandler)]
        for handler in handlers:
            handler.setStream(buffer)
        checker.lambda_handler(event, LambdaContext())
        for handler in handlers:  # later runs' lines are not part of the measure
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115
    warm, metrics, cold = [], set(), set()
    for line in filter(str.strip, buffer.getvalue().splitlines()):
        found = metrics_in(line)
        if found and all(name == "ColdStart" for _, name, _ in found):
            cold |= found
        else:
            warm.append(line)
            metrics |= found
    return warm, metrics, cold


def render_table(rows: Sequence[Row]) -> list[str]:
    head = (
        f"{'':<6} {'run':<18} {'wall s':>8} {'non-AWS':>8} {'HTTP':>6} {'DynamoDB':>9} "
        f"{'RRU':>8} {'WRU':>8} {'peak MiB':>8}"
    )
    out = [head, "-" * len(head)]
    for r in rows:
        c = r.counts
        mem = f"{r.peak_mib:8.1f}" if r.peak_mib is not None else f"{'-':>8}"
        out.append(
            f"{r.variant:<6} {r.scenario:<18} {r.seconds:8.2f} {r.outside_aws:8.2f} "
            f"{c.http_requests:6d} {c.dynamodb_calls:9d} {c.rru:8.1f} "
            f"{c.wru:8.1f} {mem}"
        )
    return out


def ratio(naive: float, real: float) -> str:
    if real == 0:
        return "n/a" if naive == 0 else "inf"
    return f"{naive / real:,.1f}x"


def render_ratios(real: Sequence[Row], naive: Sequence[Row]) -> list[str]:
    out = ["Ratios naive / real (same process, same portal latency):"]
    for r, n in zip(real, naive, strict=True):
        rc, nc = r.counts, n.counts
        rd, nd = rc.dynamodb_calls, nc.dynamodb_calls
        memory = ""
        if n.peak_mib is not None and r.peak_mib is not None:
            memory = f", peak memory {ratio(n.peak_mib, r.peak_mib)}"
        out.append(
            f"  {r.scenario:<11} wall time {ratio(n.seconds, r.seconds)} (outside AWS calls "
            f"{ratio(n.outside_aws, r.outside_aws)}), HTTP requests "
            f"{ratio(nc.http_requests, rc.http_requests)}, DynamoDB calls {ratio(nd, rd)}, "
            f"RRU {ratio(nc.rru, rc.rru)}, WRU {ratio(nc.wru, rc.wru)}{memory}"
        )
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--portals", type=int, default=20)
    parser.add_argument("--lines", type=int, default=100, help="lines (targets) per portal")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per REST request")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of the real cycle")
    parser.add_argument("--baseline-runs", type=int, default=1, help="timed naive runs")
    parser.add_argument(
        "--exchanges", type=int, default=50, help="TLS exchanges per transport in its row"
    )
    args = parser.parse_args(argv)
    if min(args.portals, args.lines, args.runs, args.baseline_runs, args.exchanges) < 1:
        parser.error(
            "--portals, --lines, --runs, --baseline-runs and --exchanges must be at least 1"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started, size = time.perf_counter(), args.portals * args.lines
    with bench_environment(args.portals, args.lines, args.latency) as bench:
        print(
            f"Fleet: {args.portals} portals x {args.lines} lines = {size:,} targets; "
            f"local portal latency {args.latency * 1000:g} ms per request; moto in-process; "
            f"{bench.parallel} portals in parallel.\n"
            f"real:  CheckCycle, median of {args.runs} run(s) per row.\n"
            f"naive: one imconnector.status request per line + GetItem/PutItem per target, "
            f"median of {args.baseline_runs} run(s) per row.\n"
            "(bench/README.md: the columns)",
            flush=True,
        )
        real = bench_variant(bench, "real", bench.real_run, args.runs, settle=True)
        table = real[2]
        logs, metrics, cold = capture_logs(bench, table)
        flipped = bench.flip(CHANGED_SHARE)
        real_run = partial(bench.real_run, table)
        seen = Row("real", f"{len(flipped)} went down", [bench.measure(real_run)])
        alerted = Row("real", "next run (alerts)", [bench.measure(real_run)])
        for domain in bench.domains:  # each portal refreshes once (OAuth, secret write-back)
            bench.portal.expire_access_tokens(domain)
        refreshed = Row("real", "tokens expired", [bench.measure(real_run)])
        bench.heal()
        naive = bench_variant(
            bench, "naive", partial(naive_run, bench), args.baseline_runs, settle=False
        )
        bench.portal.latency = 0.0  # the exchange row measures CPU and bytes, not waiting
        exchanges = transport.compare(bench.portal, bench.domains[0], args.exchanges)
    rows = [real[0], real[1], seen, alerted, refreshed, naive[0], naive[1]]
    kinds: Counter[str] = Counter()
    for line in logs:
        kinds["EMF metrics" if "_aws" in json.loads(line) else "log"] += len(line.encode())
    print("", *render_table(rows), "", *render_ratios(real[:2], naive[:2]), sep="\n")
    print(
        f"Writes follow changes: {len(flipped)} of {size:,} targets changed -> "
        f"{seen.counts.wru:,.0f} WRU (steady run {real[1].counts.wru:,.0f}, first run "
        f"{real[0].counts.wru:,.0f}, naive every run {naive[1].counts.wru:,.0f}).\n"
    )
    print(
        f"Log output of one warm steady run (the checker handler): {len(logs)} JSON lines, "
        f"{sum(len(line.encode()) for line in logs):,} bytes ("
        + ", ".join(f"{k} {v:,} B" for k, v in sorted(kinds.items()))
        + f"); custom metrics per run: {len(metrics)}"
        + (f" (+{len(cold)} on cold start)" if cold else "")
    )
    print("", *transport.render(*exchanges, args.exchanges), sep="\n")
    print(
        "\nThe monthly bill is measured on a fleet by `make fleet` and `make cost` "
        f"(python -m bench.fleet).\n\n(benchmark took {time.perf_counter() - started:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
