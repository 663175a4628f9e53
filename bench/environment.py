"""The benchmarks' world: `build_checker`, the one place bench wires the checker's objects (as
functions/checker/app.py wires them), and the in-process fleet of local portals on moto."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
from moto import mock_aws

from bench.metering import Measure, Meter
from connector_monitor import composition
from connector_monitor.aws import clients
from connector_monitor.aws.registry import Registry
from connector_monitor.aws.repository import StateRepository
from connector_monitor.aws.secret_pairs import OVER_WRITE_BUDGET
from connector_monitor.cycle import CheckCycle, RunSummary
from connector_monitor.deadline import Deadline
from connector_monitor.domain.shards import KeyRange
from connector_monitor.domain.targets import Target, TargetList
from connector_monitor.fanout import Planner, ShardWorker
from connector_monitor.settings import CheckerSettings, load_settings
from connector_monitor.tokens.ports import Tokens
from local.bitrix24_portal import LocalPortal
from local.template import table_definition
from tests.support.moto_speedups import quicker_moto

ROOT = Path(__file__).resolve().parents[1]
REGION = "eu-central-1"
MIB = 1024 * 1024
CONNECTOR = "benchconnector"
RUN_DEADLINE = 600.0  # seconds; far beyond any run here
CLAIM_MARGIN = timedelta(seconds=30)  # functions/checker/app.py's: claims outlive the invocation


@dataclass(frozen=True)
class CheckerParts:
    cycle: CheckCycle
    tokens: Tokens
    repository: StateRepository
    registry: Registry
    planner: Planner | None  # with a work queue (FanOut=true)
    worker: ShardWorker


def build_checker(
    config: CheckerSettings,
    invocation: timedelta = timedelta(seconds=RUN_DEADLINE),
    *,
    portals: KeyRange | None = None,
    dynamodb: Any | None = None,
    secrets: Any | None = None,
    sns: Any | None = None,
    sqs: Any | None = None,
) -> CheckerParts:
    """The checker's objects for one invocation of at most `invocation`, built by the product's
    composition root as the handler builds them (the token table when `config` names one, a
    shard's `portals` of it); the clients given (metered, on moto) replace boto3's own."""
    given = {"dynamodb": dynamodb, "secretsmanager": secrets, "sns": sns, "sqs": sqs}
    root = composition.Checker(
        config,
        composition.Tuning(
            aws=lambda service: given[service] or clients.client(service),
            lease_aws=lambda: dynamodb or clients.lease_client(),
        ),
    )
    cycle = root.cycle(invocation, portals)
    return CheckerParts(
        cycle,
        cycle.tokens,
        root.repository,
        root.registry,
        root.planner(cycle),
        root.worker(cycle),
    )


def checker_settings(**values: str) -> CheckerSettings:
    return load_settings(CheckerSettings, values)  # from its variables: TABLE_NAME=..., ...


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
    parallel: int = 8  # MaxParallelPortals of the in-process fleet
    targets: TargetList = field(init=False)
    _tables: int = 0

    def __post_init__(self) -> None:
        self.targets = self.fleet.targets()

    def new_table(self) -> str:
        self._tables += 1
        name = f"bench-{self._tables}"
        self.dynamodb.create_table(TableName=name, **table_definition())
        return name

    def checker(self, table: str) -> CheckerParts:
        config = checker_settings(
            SECRET_ID=self.secret_id,
            TABLE_NAME=table,
            TOKENS_TABLE=self.tokens_table,
            TOPIC_ARN=self.topic_arn,
            MAX_PARALLEL_PORTALS=str(self.parallel),
        )
        return build_checker(config, dynamodb=self.dynamodb, secrets=self.secrets, sns=self.sns)

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
def bench_environment(fleet: BenchFleet, latency: float) -> Iterator[Bench]:
    with (
        mock.patch.dict(os.environ, AWS_ENVIRONMENT),
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
        # The whole fleet is in one secret here: the token store's warning that a stack should
        # hold fewer portals a secret would repeat every run and count in the log volume.
        logging.getLogger("connector_monitor.aws.secret_pairs").addFilter(
            lambda record: record.msg is not OVER_WRITE_BUDGET
        )
        meter = Meter()
        dynamodb = boto3.client("dynamodb", region_name=REGION, config=clients.CONFIGS["dynamodb"])
        secrets = boto3.client("secretsmanager", region_name=REGION)
        sns = boto3.client("sns", region_name=REGION)
        secret_id = secrets.create_secret(Name="bench/tokens", SecretString=json.dumps(secret))
        topic_arn = sns.create_topic(Name="bench-alerts")["TopicArn"]
        for client in (dynamodb, secrets, sns):
            meter.attach(client)
        portal.latency = latency
        dynamodb.create_table(TableName="bench-tokens", **table_definition("TokenTable"))
        yield Bench(fleet, portal, secret_id["ARN"], topic_arn, dynamodb, secrets, sns, meter)
