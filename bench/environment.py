"""The benchmark's world: a fleet of local portals, moto's stack in this process, metered
clients, and the real check cycle wired as the checker Lambda wires it."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import tracemalloc
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws

from bench.metering import Measure, Meter
from connector_monitor.aws.dynamodb import CLIENT_CONFIG
from connector_monitor.aws.lease import Lease
from connector_monitor.aws.publisher import AlertPublisher
from connector_monitor.aws.repository import StateRepository
from connector_monitor.aws.token_store import (
    OVER_WRITE_BUDGET,
    token_source,
)
from connector_monitor.cycle import CheckCycle, CycleSettings, RunSummary
from connector_monitor.deadline import Deadline
from connector_monitor.domain.targets import Target, TargetList
from local.bitrix24_portal import LocalPortal
from local.template import table_definition
from tests.support.moto_speedups import quicker_moto

ROOT = Path(__file__).resolve().parents[1]
REGION = "eu-central-1"
CONNECTOR = "benchconnector"
RUN_DEADLINE = 600.0  # seconds; far beyond any run here
CHANGED_SHARE = 0.01  # the share of connectors flipped to show that writes follow changes
MIB = 1024 * 1024


# ---- the fleet -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchFleet:
    portals: int
    lines: int

    @property
    def size(self) -> int:
        return self.portals * self.lines

    def domains(self) -> list[str]:
        return [f"p{i:03d}.bench.local" for i in range(self.portals)]

    def targets(self) -> TargetList:
        found = [Target(d, CONNECTOR, n) for d in self.domains() for n in range(1, self.lines + 1)]
        return TargetList(tuple(found), ())


class _KnownWriteBudget(logging.Filter):
    """The bench keeps its whole fleet in one secret to measure scale; the token store's
    warning that a deployed stack should hold at most PORTALS_PER_SECRET portals is known here,
    and would repeat every run and count in the measured log volume of a one-stack fleet."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg is not OVER_WRITE_BUDGET


KNOWN_WRITE_BUDGET = _KnownWriteBudget()


@dataclass
class Bench:
    """The local portal, moto's stack and metered clients of one benchmark."""

    fleet: BenchFleet
    portal: LocalPortal
    secret_id: str
    topic_arn: str
    dynamodb: Any
    secrets: Any
    sns: Any
    meter: Meter
    tokens_table: str = "bench-tokens"  # empty: every portal's pair is in the secret
    targets: TargetList = field(init=False)
    _tables: int = 0

    def __post_init__(self) -> None:
        self.targets = self.fleet.targets()

    def new_table(self) -> str:
        self._tables += 1
        name = f"bench-{self._tables}"
        self.dynamodb.create_table(TableName=name, **table_definition())
        return name

    def real_run(self, table: str) -> RunSummary:
        """One run of the real cycle, wired as functions/checker/app.py wires it."""
        cycle = CheckCycle(
            repository=StateRepository(table, client=self.dynamodb),
            tokens=token_source(
                self.secret_id, client=self.secrets, lease=Lease(table, client=self.dynamodb)
            ),
            publisher=AlertPublisher(self.topic_arn, client=self.sns),
            settings=CycleSettings(),
        )
        return cycle.run(self.targets, Deadline.after(RUN_DEADLINE))

    def measure(self, run: Callable[[], object], *, traced: bool = False) -> Measure:
        self.meter.reset()
        before = self.portal.request_count()
        if traced:
            tracemalloc.start()
        started = time.perf_counter()
        run()
        seconds = time.perf_counter() - started
        peak = None
        if traced:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        return Measure(
            seconds,
            self.portal.request_count() - before,
            dict(self.meter.calls),
            dict(self.meter.read_units),
            dict(self.meter.write_units),
            self.meter.aws_seconds,
            peak,
        )

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
        """Every connector works again (the naive baseline runs on a healthy fleet too)."""
        for t in self.targets.targets:
            self.portal.connect(t.portal, t.connector, t.line)


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


AWS_ENVIRONMENT = {  # test credentials for moto; the functions' own variables: environment_of
    "AWS_DEFAULT_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


@contextlib.contextmanager
def bench_environment(fleet: BenchFleet, latency: float) -> Iterator[Bench]:
    with (
        patched_environ(AWS_ENVIRONMENT),
        quicker_moto(),
        LocalPortal() as portal,
        mock_aws(),
    ):
        for domain in fleet.domains():
            lines = {n: f"Line {n}" for n in range(1, fleet.lines + 1)}
            portal.add_portal(domain, connectors={CONNECTOR: "Bench connector"}, lines=lines)
            for line in lines:
                portal.connect(domain, CONNECTOR, line)
        secret = {"portals": {d: portal.credentials(d) for d in fleet.domains()}}
        logging.getLogger("connector_monitor.aws.token_store").addFilter(KNOWN_WRITE_BUDGET)
        meter = Meter()
        dynamodb = boto3.client("dynamodb", region_name=REGION, config=CLIENT_CONFIG)
        secrets = boto3.client("secretsmanager", region_name=REGION)
        sns = boto3.client("sns", region_name=REGION)
        secret_id = secrets.create_secret(Name="bench/tokens", SecretString=json.dumps(secret))[
            "ARN"
        ]
        topic_arn = sns.create_topic(Name="bench-alerts")["TopicArn"]
        for client in (dynamodb, secrets, sns):
            meter.attach(client)
        portal.latency = latency
        dynamodb.create_table(TableName="bench-tokens", **table_definition("TokenTable"))
        yield Bench(fleet, portal, secret_id, topic_arn, dynamodb, secrets, sns, meter)
