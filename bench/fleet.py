"""The fleet benchmark (`make fleet`): the real checker handler against a fleet of local
portals, each Lambda function in a process of its own, and the monthly bill from the counts.

    .venv/bin/python -m bench.fleet [--portals 1000] [--lines 5] [--latency 0.3] [--parallel 64]
                                    [--memory-mb 256] [--steady-runs 3] [--no-explicit]
                                    [--sweep 250,500,1000,2000]
    .venv/bin/python -m bench.fleet --fanout --portals 10000 --shard-portals 1000 ...
                                    (the fanned-out fleet: bench/fanout.py)

Three kinds of process, so that each measures only itself:
- moto's server (AWS), and the local Bitrix24 portal hosting N portals x L open lines with the
  connector `myconnector` configured on every line, answering each request after --latency
  seconds (`bench/services.py`);
- the checker (`bench/fleet_child.py`): functions/checker/app.py `lambda_handler` with the
  environment template.yaml gives it (MaxParallelPortals=--parallel), invoked once per run and
  doing nothing else, so its wall time, CPU time (`time.process_time()`) and peak RSS are the
  checker's; then the snapshot API function the same way for a GET /health.

The targets come from the registry: one watch `*/myconnector/*` (every line where the connector
is configured, on every portal with tokens), discovered at the first run. The tokens are in the
fleet's token table, the application's client id and secret in the secret (`apps`).

Runs: the first (inventories and discovery probes; everything written once), a second, the
steady runs (median), an inventory run (the inventory records aged past ValidateEveryMinutes, as
every 48th run at 5 minutes finds them), and a run in which 1/12 of the portals' access tokens
have expired (each refreshes once, as every 5-minute run sees with hourly tokens). For each: wall
and CPU seconds, the estimated Lambda duration at --memory-mb (max(wall, CPU x 1769/M): a
function gets M/1769 of a vCPU), peak RSS, portal requests (the portal counts them), DynamoDB
calls by table and operation with read and write units, token-store calls, SNS publishes, the
log lines and bytes the handler printed, the bytes it sent to the portals. Then the explicit-
entries variant (one registry entry per target, no discovery), the sweep (the largest portal
count one invocation checks within 60 s and 256 MB: the fan-out's shard size), and the bill.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from bench.cost import (
    FULL_VCPU_MB,
    GOAL_MEMORY_MB,
    GOAL_SECONDS,
    Figures,
    Fleet,
    Usage,
    fitted,
    monthly_bill,
    render_bill,
)
from bench.metering import item_size
from bench.services import APP_NAME, CONNECTOR, domains
from bench.stack import read_stack
from local.aws import aws_environment
from local.template import (
    OFF_AWS,
    function_environment,
    parameter_values,
    resolve,
    table_definition,
)

ROOT = Path(__file__).resolve().parents[1]
REGION = "eu-central-1"
MIB = 1024 * 1024
READY_TIMEOUT = 120.0  # seconds for a process to come up
RUN_TIMEOUT = 600.0  # seconds for one run to answer
REFRESH_SHARE = 1 / 12  # tokens live an hour, runs come every 5 minutes
HEALTH_POLLS = 5  # warm GET /health calls measured (median)
# Variables that could send the children anywhere but moto: never passed on.
UNSAFE = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


# ---- processes -----------------------------------------------------------------------------


class Child:
    """A process of this benchmark that answers one JSON line per command."""

    def __init__(self, command: list[str], env: Mapping[str, str], name: str) -> None:
        self.name = name
        # kept open for the process's whole life (closed in close()): its errors, if it fails
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )

    def read(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.stderr.seek(0)
            why = self.stderr.read().decode("utf-8", "replace")[-3000:]
            raise RuntimeError(f"{self.name} did not answer within {timeout:g} s:\n{why}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, command: Mapping[str, Any], timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self.read(timeout)

    def close(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.stderr.close()


def base_environment(extra: Mapping[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in UNSAFE and not k.startswith(("AWS_", "POWERTOOLS_"))
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


@dataclass
class Services:
    """moto's server and the local portal, each in its own process."""

    moto: Child
    portal: Child
    moto_port: int
    portal_port: int
    credentials: dict[str, Any]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    def client(self, service: str) -> Any:
        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )

    def counts(self) -> tuple[int, int]:
        answer = self.portal.ask({"cmd": "count"}, timeout=60)
        return int(answer["rest"]), int(answer["oauth"])

    def expire(self, portals: Sequence[str]) -> None:
        self.portal.ask({"cmd": "expire", "domains": list(portals)}, timeout=60)

    def fresh_pairs(self, portals: Sequence[str]) -> dict[str, dict[str, str]]:
        """A new token pair for each portal (pairs handed out before may have been refreshed
        by an earlier measurement: refresh tokens are single-use)."""
        answer = self.portal.ask({"cmd": "credentials", "domains": list(portals)}, timeout=120)
        pairs: dict[str, dict[str, str]] = answer["portals"]
        return pairs


@contextmanager
def services(portals: int, lines: int, latency: float) -> Iterator[Services]:
    env = base_environment({})
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        moto = Child([sys.executable, "-m", "bench.services", "moto"], env, "moto")
        stack.callback(moto.close)
        creds = Path(tmp) / "credentials.json"
        portal = Child(
            [
                sys.executable,
                "-m",
                "bench.services",
                "portal",
                f"--portals={portals}",
                f"--lines={lines}",
                f"--latency={latency}",
                f"--credentials={creds}",
            ],
            env,
            "portal",
        )
        stack.callback(portal.close)
        moto_port = int(moto.read(READY_TIMEOUT)["port"])
        portal_port = int(portal.read(READY_TIMEOUT)["port"])
        yield Services(moto, portal, moto_port, portal_port, json.loads(creds.read_text()))


# ---- the stack in moto -----------------------------------------------------------------------


@dataclass
class Deployed:
    table: str
    tokens_table: str
    topic_arn: str
    secret_arn: str
    portals: list[str]

    def resources(self) -> dict[str, str]:
        """The template's logical ids of the checker's resources, as deployed here."""
        return {
            "Table": self.table,
            "TokenTable": self.tokens_table,
            "Topic": self.topic_arn,
            "PortalSecret": self.secret_arn,
        }


_deployments = iter(range(1, 1_000_000))


def deploy(svc: Services, portals: int, lines: int, *, explicit: bool) -> Deployed:
    """Fresh tables, topic and secret for one measurement: the first `portals` portals' pairs
    in the token table, the application in the secret, and the registry's entries."""
    from connector_monitor.aws.registry import Registry
    from connector_monitor.aws.token_table import TablePairs
    from connector_monitor.domain.targets import ANY, Target, Watch
    from connector_monitor.tokens.credentials import PortalCredentials

    n = next(_deployments)
    dynamodb = svc.client("dynamodb")
    table, tokens = f"fleet-{n}", f"fleet-{n}-tokens"
    dynamodb.create_table(TableName=table, **table_definition("Table"))
    dynamodb.create_table(TableName=tokens, **table_definition("TokenTable"))
    topic_arn = svc.client("sns").create_topic(Name=f"fleet-{n}-alerts")["TopicArn"]
    app = svc.credentials["app"]
    secret = {
        "portals": {},
        "apps": {
            APP_NAME: {
                "client_id": app["client_id"],
                "client_secret": app["client_secret"],
                "oauth_endpoint": app["oauth_endpoint"],
            }
        },
    }
    secret_arn = svc.client("secretsmanager").create_secret(
        Name=f"fleet-{n}/tokens", SecretString=json.dumps(secret)
    )["ARN"]
    chosen = domains(portals)
    fresh = svc.fresh_pairs(chosen)
    pairs = TablePairs(tokens, apps=dict, client=dynamodb)
    registry = Registry(table, client=dynamodb)
    now = datetime.now(UTC)

    def put_pair(domain: str) -> None:
        entry = fresh[domain]
        pairs.put_new(domain, APP_NAME, PortalCredentials.from_secret_entry(domain, entry))

    entries: list[Target | Watch] = (
        [Target(d, CONNECTOR, line) for d in chosen for line in range(1, lines + 1)]
        if explicit
        else [Watch(ANY, CONNECTOR)]
    )
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put_pair, chosen))
        list(pool.map(lambda e: registry.add(e, added_by="bench.fleet", at=now), entries))
    return Deployed(table, tokens, topic_arn, secret_arn, chosen)


def age_inventories(svc: Services, table: str, by: timedelta) -> int:
    """Move every portal's inventory `by` into the past: the next run repeats them all."""
    from connector_monitor.aws.records import iso, parse_iso

    dynamodb = svc.client("dynamodb")
    items: list[dict[str, Any]] = []
    for page in dynamodb.get_paginator("query").paginate(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "INVENTORY"}},
    ):
        items += page["Items"]
    for item in items:
        item["validated_at"] = {"S": iso(parse_iso(item["validated_at"]["S"]) - by)}
    for start in range(0, len(items), 25):
        batch = [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]
        dynamodb.batch_write_item(RequestItems={table: batch})
    return len(items)


def table_bytes(svc: Services, table: str) -> tuple[float, float, Counter[str]]:
    """Bytes and items stored in `table` (AWS's item-size rules), and bytes by partition."""
    by_pk: Counter[str] = Counter()
    count = 0
    for page in svc.client("dynamodb").get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            count += 1
            pk = str(item["pk"]["S"])
            by_pk[pk.split("#")[0]] += item_size(item)
    return float(sum(by_pk.values())), float(count), by_pk


# ---- the functions ----------------------------------------------------------------------------


def lambda_environment(
    logical_id: str,
    resources: Mapping[str, str],
    parameters: Mapping[str, str],
    extra: Mapping[str, str],
) -> tuple[dict[str, str], list[str]]:
    """The function's environment as template.yaml sets it; a variable naming a resource this
    benchmark does not create (a queue of a later version) gets a placeholder, and is listed."""
    values = {**parameter_values(**parameters), **resources}
    env: dict[str, str] = {}
    missing: list[str] = []
    for name, value in resolve(function_environment(logical_id), values).items():
        if isinstance(value, str):
            env[name] = value
        else:
            env[name] = ""
            missing.append(name)
    return {**env, **OFF_AWS, **extra}, missing


@dataclass
class Run:
    """One invocation, as the function's process and the portal saw it."""

    label: str
    wall: float
    cpu: float
    peak_rss: float
    rest: int
    oauth: int
    calls: dict[str, int]
    tables: dict[str, int]
    table_units: dict[str, float]
    sent: dict[str, int]
    log: str
    answer: dict[str, Any] | None
    table_names: Mapping[str, str] = field(default_factory=dict)  # moto name -> logical id
    cpu_main: float = 0.0  # of `cpu`, the handler's thread (the rest: the portal threads)

    def estimate(self, memory_mb: int) -> float:
        return max(self.wall, self.cpu * FULL_VCPU_MB / memory_mb)

    def governs(self, memory_mb: int) -> str:
        return "CPU" if self.cpu * FULL_VCPU_MB / memory_mb > self.wall else "wall"

    @property
    def log_lines(self) -> list[str]:
        return [line for line in self.log.splitlines() if line.strip()]

    @property
    def log_bytes(self) -> int:
        return len(self.log.encode())

    def dynamodb_calls(self) -> int:
        return sum(self.tables.values())

    def units(self, kind: str) -> float:
        return sum(v for k, v in self.table_units.items() if k.endswith(f":{kind}"))

    def token_store_calls(self) -> dict[str, int]:
        found = {k: v for k, v in self.calls.items() if k.startswith("secrets-manager:")}
        tokens = self.table_names_of("TokenTable")
        for key, count in self.tables.items():
            table, operation = key.split(":", 1)
            if table in tokens:
                found[f"token table:{operation}"] = count
        return found

    def table_names_of(self, logical_id: str) -> set[str]:
        return {name for name, lid in self.table_names.items() if lid == logical_id}

    def usage(self) -> Usage:
        values: dict[str, float] = {
            "wall": self.wall,
            "cpu": self.cpu,
            "rest": self.rest,
            "oauth": self.oauth,
            "net.bytes": self.sent.get("bytes", 0),
            "net.connections": self.sent.get("connections", 0),
            "net.writes": self.sent.get("writes", 0),
            "log.lines": len(self.log_lines),
            "log.bytes": self.log_bytes,
        }
        for key, count in self.tables.items():
            name, operation = key.split(":", 1)
            values[f"ddb.{self.table_names.get(name, name)}.{operation}"] = count
        for key, units in self.table_units.items():
            name, kind = key.rsplit(":", 1)
            logical = self.table_names.get(name, name)
            values[f"ddb.{logical}.{kind}"] = values.get(f"ddb.{logical}.{kind}", 0.0) + units
        for key, count in self.calls.items():
            service, operation = key.split(":", 1)
            if service == "secrets-manager":
                values[f"sm.{operation}"] = count
            elif service == "sns":
                values[f"sns.{operation}"] = count
            elif service == "sqs":
                values[f"sqs.{operation}"] = count
        return Usage(values)


class Function:
    """One Lambda function's process (`bench/fleet_child.py`)."""

    def __init__(
        self,
        svc: Services,
        name: str,
        env: Mapping[str, str],
        event: Path,
        table_names: Mapping[str, str],
        log_dir: Path,
        handler: str = "lambda_handler",
    ) -> None:
        self.svc = svc
        self.table_names = dict(table_names)
        self.log_file = log_dir / f"{name}-{time.monotonic_ns()}.log"
        child_env = base_environment({**env, **aws_environment(svc.endpoint, REGION)})
        self.child = Child(
            [
                sys.executable,
                "-m",
                "bench.fleet_child",
                name,
                str(self.log_file),
                str(svc.portal_port if name == "checker" else 0),
                str(event),
                handler,
            ],
            child_env,
            f"{name}.{handler}",
        )
        ready = self.with_log(lambda: self.child.read(READY_TIMEOUT))
        self.init = Usage({"wall": ready["init"]["wall"], "cpu": ready["init"]["cpu"]})
        self.wiring = Usage({"wall": ready["wiring"]["wall"], "cpu": ready["wiring"]["cpu"]})
        self.ru_maxrss = 0.0

    def run(
        self, label: str, profile: Path | None = None, event: Mapping[str, Any] | None = None
    ) -> Run:
        before = self.svc.counts()
        command: dict[str, Any] = {"cmd": "run"}
        if profile is not None:
            command["profile"] = str(profile)
        if event is not None:
            command["event"] = dict(event)
        answer = self.with_log(lambda: self.child.ask(command))
        after = self.svc.counts()
        if answer.get("error"):
            raise RuntimeError(f"{label}: the handler failed:\n{answer['error']}")
        return Run(
            label,
            answer["wall"],
            answer["cpu"],
            answer["peak_rss"],
            after[0] - before[0],
            after[1] - before[1],
            answer["calls"],
            answer["tables"],
            answer["table_units"],
            answer["sent"],
            answer["log"],
            answer["answer"],
            self.table_names,
            answer.get("cpu_main", 0.0),
        )

    def with_log(self, step: Any) -> dict[str, Any]:
        """The child's answer; if it has none, its log's end (its stderr goes there) is in the
        error."""
        try:
            answer: dict[str, Any] = step()
        except RuntimeError as exc:
            exists = self.log_file.exists()
            tail = self.log_file.read_text(errors="replace")[-3000:] if exists else ""
            raise RuntimeError(f"{exc}\n{self.log_file.name}:\n{tail}") from None
        return answer

    def close(self) -> float:
        try:
            self.ru_maxrss = float(self.child.ask({"cmd": "quit"}, timeout=30)["ru_maxrss"])
        finally:
            self.child.close()
        return self.ru_maxrss


def checker(
    svc: Services, deployed: Deployed, spec: Spec, log_dir: Path, shard_portals: int
) -> tuple[Function, list[str]]:
    env, missing = lambda_environment(
        "CheckerFunction",
        resources=deployed.resources(),
        parameters={
            "Targets": "",
            "MaxParallelPortals": str(spec.parallel),
            "ShardPortals": str(shard_portals),
        },
        extra={"BENCH_TIMEOUT_MS": str(spec.timeout * 1000), "BENCH_MEMORY_MB": str(spec.memory)},
    )
    names = {deployed.table: "Table", deployed.tokens_table: "TokenTable"}
    event = ROOT / "events" / "schedule.json"
    return Function(svc, "checker", env, event, names, log_dir), missing


def snapshot_api(svc: Services, deployed: Deployed, spec: Spec, log_dir: Path) -> Function:
    env, _ = lambda_environment(
        "SnapshotApiFunction",
        resources={"Table": deployed.table},
        parameters={},
        extra={"BENCH_TIMEOUT_MS": "10000", "BENCH_MEMORY_MB": str(spec.memory)},
    )
    event = ROOT / "events" / "health_get.json"
    return Function(svc, "snapshot_api", env, event, {deployed.table: "Table"}, log_dir)


# ---- one measurement --------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    portals: int
    lines: int
    latency: float
    parallel: int
    memory: int
    steady_runs: int
    timeout: int = 120  # the checker's Timeout in template.yaml
    validate_every: timedelta = timedelta(minutes=240)

    @property
    def targets(self) -> int:
        return self.portals * self.lines


@dataclass
class Measured:
    spec: Spec
    variant: str
    first: Run
    second: Run
    steady: list[Run]
    inventory: Run
    refresh: Run | None
    refreshed: int
    health: list[Run]
    init: dict[str, Usage]
    ru_maxrss: float
    stored: dict[str, tuple[float, float]]
    stored_by_pk: dict[str, Counter[str]]
    missing_env: list[str]

    @property
    def steady_median(self) -> Run:
        ordered = sorted(self.steady, key=lambda r: r.wall)
        return ordered[len(ordered) // 2]

    def runs(self) -> list[Run]:
        found = [self.first, self.second, self.steady_median, self.inventory]
        return found + ([self.refresh] if self.refresh else [])

    def worst(self) -> Run:
        return max(self.runs(), key=lambda r: r.estimate(self.spec.memory))

    @property
    def peak_rss(self) -> float:
        return max([r.peak_rss for r in self.runs()] + [self.ru_maxrss])

    def figures(self) -> Figures:
        steady = median_usage([r.usage() for r in self.steady])
        refresh = (
            (self.refresh.usage() - steady).at_least_zero().times(1 / self.refreshed)
            if self.refresh and self.refreshed
            else Usage()
        )
        health = median_usage([r.usage() for r in self.health[1:]] or [Usage()])
        return Figures(
            portals=self.spec.portals,
            targets=self.spec.targets,
            steady=steady,
            inventory=self.inventory.usage(),
            refresh=refresh,
            health=health,
            cold=self.init,
            stored=self.stored,
            measured_on=(
                f"the real handlers on {self.spec.portals:,} portals x {self.spec.lines} lines at "
                f"{self.spec.latency * 1000:g} ms ({self.variant}; steady: median of "
                f"{len(self.steady)} runs)"
            ),
        )


def median_usage(usages: Sequence[Usage]) -> Usage:
    keys = {k for u in usages for k in u.values}
    return Usage({k: statistics.median(u.get(k) for u in usages) for k in keys})


def measure(
    svc: Services,
    spec: Spec,
    log_dir: Path,
    *,
    explicit: bool = False,
    refresh: bool = True,
    api: bool = True,
    profile: Path | None = None,
    say: Any = print,
) -> Measured:
    variant = "explicit entries" if explicit else "one */myconnector/* watch"
    say(f"  {spec.portals:,} portals x {spec.lines} lines, {variant}: deploying...", flush=True)
    deployed = deploy(svc, spec.portals, spec.lines, explicit=explicit)
    function, missing = checker(svc, deployed, spec, log_dir, max(10, spec.portals))
    init = {"CheckerFunction": function.init + function.wiring}
    try:
        say("    first run...", flush=True)
        first = function.run("first run")
        second = function.run("second run")
        say(f"    {spec.steady_runs} steady runs...", flush=True)
        steady = [function.run("steady run") for _ in range(spec.steady_runs)]
        aged = age_inventories(svc, deployed.table, spec.validate_every + timedelta(minutes=1))
        say(f"    inventory run ({aged} inventories aged)...", flush=True)
        inventory = function.run("inventory run")
        refreshed, refreshing = 0, None
        if refresh:
            count = max(1, round(spec.portals * REFRESH_SHARE))
            step = max(1, spec.portals // count)
            expired = deployed.portals[::step][:count]
            svc.expire(expired)
            refreshed = len(expired)
            say(f"    refresh run ({refreshed} portals' access tokens expired)...", flush=True)
            refreshing = function.run(f"refresh run ({refreshed})")
        if profile is not None:
            say("    one more steady run under cProfile (not counted)...", flush=True)
            function.run("profiled", profile=profile)
    finally:
        ru_maxrss = function.close()
    health: list[Run] = []
    if api:
        server = snapshot_api(svc, deployed, spec, log_dir)
        init["SnapshotApiFunction"] = server.init + server.wiring
        try:
            health = [server.run("GET /health") for _ in range(1 + HEALTH_POLLS)]
        finally:
            server.close()
    stored: dict[str, tuple[float, float]] = {}
    by_pk: dict[str, Counter[str]] = {}
    for name, logical in ((deployed.table, "Table"), (deployed.tokens_table, "TokenTable")):
        size, items, pks = table_bytes(svc, name)
        stored[logical], by_pk[logical] = (size, items), pks
    return Measured(
        spec,
        variant,
        first,
        second,
        steady,
        inventory,
        refreshing,
        refreshed,
        health,
        init,
        ru_maxrss,
        stored,
        by_pk,
        missing,
    )


# ---- printing ----------------------------------------------------------------------------------


def run_table(measured: Measured) -> list[str]:
    memory = measured.spec.memory
    head = (
        f"  {'run':<22} {'wall s':>7} {'CPU s':>6} {f'est {memory}MB s':>11} {'governs':>7} "
        f"{'RSS MiB':>7} {'portal req':>10} {'OAuth':>5} {'DynamoDB':>8} {'RRU':>8} "
        f"{'WRU':>8} {'tokens':>6} {'SNS':>4} {'log lines':>9} {'log bytes':>9} {'sent KB':>8}"
    )
    out = [head]
    rows = [
        (measured.first, "first run"),
        (measured.second, "second run"),
        (measured.steady_median, f"steady (median of {len(measured.steady)})"),
        (measured.inventory, "inventory run"),
    ]
    if measured.refresh:
        rows.append((measured.refresh, f"refresh run ({measured.refreshed} expired)"))
    for run, label in rows:
        tokens = sum(run.token_store_calls().values())
        out.append(
            f"  {label:<22} {run.wall:7.2f} {run.cpu:6.2f} {run.estimate(memory):11.2f} "
            f"{run.governs(memory):>7} {run.peak_rss / MIB:7.1f} {run.rest:10,d} "
            f"{run.oauth:5d} {run.dynamodb_calls():8,d} {run.units('RRU'):8,.1f} "
            f"{run.units('WRU'):8,.1f} {tokens:6d} {run.calls.get('sns:Publish', 0):4d} "
            f"{len(run.log_lines):9,d} {run.log_bytes:9,d} {run.sent.get('bytes', 0) / 1000:8,.1f}"
        )
    return out


def details(measured: Measured) -> list[str]:
    out: list[str] = []
    for run in (measured.first, measured.steady_median, measured.inventory, measured.refresh):
        if run is None:
            continue
        calls = ", ".join(f"{measured_table(run, k)} {v}" for k, v in sorted(run.tables.items()))
        units = ", ".join(
            f"{measured_table(run, k)} {v:,.1f}" for k, v in sorted(run.table_units.items()) if v
        )
        tokens = ", ".join(f"{k} {v}" for k, v in sorted(run.token_store_calls().items()))
        out.append(
            f"  {run.label}: CPU {run.cpu:.2f} s = {run.cpu_main:.2f} s in the handler's thread "
            f"(AWS calls, decisions) + {run.cpu - run.cpu_main:.2f} s in the portal threads"
        )
        out.append(f"  {'':<{len(run.label)}}  DynamoDB calls: {calls}")
        out.append(f"  {'':<{len(run.label)}}  units: {units}")
        out.append(f"  {'':<{len(run.label)}}  token store: {tokens or 'none'}")
        out.append(
            f"  {'':<{len(run.label)}}  sent to the portals: {run.sent.get('bytes', 0):,} B in "
            f"{run.sent.get('writes', 0):,} writes on {run.sent.get('connections', 0):,} "
            f"connections; log: {log_kinds(run)}"
        )
    return out


def measured_table(run: Run, key: str) -> str:
    name, rest = key.split(":", 1)
    return f"{run.table_names.get(name, name)}:{rest}"


def log_kinds(run: Run) -> str:
    kinds: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for line in run.log_lines:
        try:
            message = str(json.loads(line).get("message", "?"))
        except (json.JSONDecodeError, AttributeError):
            message = "(not JSON)"
        key = message[:48]
        kinds[key] += 1
        sizes[key] += len(line.encode()) + 1
    top = sorted(sizes.items(), key=lambda kv: kv[1], reverse=True)[:4]
    return "; ".join(f"{kinds[k]} x '{k}' {v:,} B" for k, v in top) or "nothing"


def verdict(measured: Measured) -> list[str]:
    spec, worst = measured.spec, measured.worst()
    seconds = worst.estimate(spec.memory)
    memory = measured.peak_rss / MIB
    ok_time, ok_memory = seconds <= GOAL_SECONDS, memory <= GOAL_MEMORY_MB
    return [
        f"One invocation, {spec.portals:,} portals x {spec.lines} lines at "
        f"{spec.latency * 1000:g} ms, {spec.parallel} portals in parallel: slowest run "
        f"'{worst.label}' {seconds:.1f} s estimated at {spec.memory} MB "
        f"({worst.governs(spec.memory)} governs: wall {worst.wall:.1f} s, CPU {worst.cpu:.2f} s "
        f"x {FULL_VCPU_MB}/{spec.memory} = {worst.cpu * FULL_VCPU_MB / spec.memory:.1f} s) "
        f"{'<=' if ok_time else '>'} {GOAL_SECONDS:g} s: {'YES' if ok_time else 'NO'}; "
        f"peak RSS {memory:.0f} MiB {'<=' if ok_memory else '>'} {GOAL_MEMORY_MB} MB: "
        f"{'YES' if ok_memory else 'NO'}"
    ]


def cold_line(measured: Measured) -> str:
    parts = []
    for name, usage in measured.init.items():
        parts.append(
            f"{name} {usage.get('wall') * 1000:.0f} ms wall / {usage.get('cpu') * 1000:.0f} ms "
            f"CPU ({usage.duration(measured.spec.memory):.2f} s at {measured.spec.memory} MB)"
        )
    return "Cold start (import app + first call's wiring, this machine): " + "; ".join(parts)


def health_line(measured: Measured) -> str:
    if len(measured.health) < 2:
        return ""
    warm = measured.health[1:]
    wall = statistics.median(r.wall for r in warm)
    cpu = statistics.median(r.cpu for r in warm)
    run = warm[-1]
    status = (run.answer or {}).get("statusCode")
    return (
        f"GET /health (snapshot API, median of {len(warm)} warm): {wall * 1000:.0f} ms wall, "
        f"{cpu * 1000:.0f} ms CPU, status {status}, DynamoDB {run.dynamodb_calls()} call(s) "
        f"{run.units('RRU'):.1f} RRU, log {len(run.log_lines)} lines {run.log_bytes} B"
    )


def storage_line(measured: Measured) -> str:
    parts = []
    for table, (size, items) in measured.stored.items():
        pks = ", ".join(
            f"{pk} {b / 1000:,.0f} KB" for pk, b in measured.stored_by_pk[table].most_common(4)
        )
        parts.append(f"{table} {items:,.0f} items {size / 1e6:,.2f} MB ({pks})")
    return "Stored after the runs: " + "; ".join(parts)


def report(measured: Measured, title: str) -> list[str]:
    out = [title, *run_table(measured), ""]
    out += details(measured)
    out.append("")
    out.append(cold_line(measured))
    health = health_line(measured)
    if health:
        out.append(health)
    out.append(storage_line(measured))
    out.append(
        f"Peak RSS of the checker process over all its runs: {measured.ru_maxrss / MIB:.0f} MiB"
    )
    if measured.missing_env:
        out.append(
            "Left empty (resources this benchmark does not create): "
            + ", ".join(measured.missing_env)
        )
    out += verdict(measured)
    return out


def variant_line(watch: Measured, explicit: Measured) -> str:
    w, e = watch.steady_median, explicit.steady_median
    memory = watch.spec.memory
    return (
        f"Explicit entries ({explicit.spec.targets:,} registry items) against the watch, steady "
        f"run: {e.estimate(memory):.2f} s vs {w.estimate(memory):.2f} s estimated "
        f"(CPU {e.cpu:.2f} vs {w.cpu:.2f} s), {e.units('RRU'):,.1f} vs {w.units('RRU'):,.1f} "
        f"RRU, {e.dynamodb_calls()} vs {w.dynamodb_calls()} DynamoDB calls; first run "
        f"{explicit.first.rest:,} vs {watch.first.rest:,} portal requests, "
        f"{explicit.first.estimate(memory):.1f} vs {watch.first.estimate(memory):.1f} s"
    )


def profile_lines(stats_file: Path, count: int) -> list[str]:
    """The functions a profiled steady run spent its CPU in (cProfile slows it down)."""
    import io
    import pstats

    out = [
        f"Where a steady run's CPU goes (cProfile, each thread's CPU time, of one more steady "
        f"run; top {count}; metering.py is this benchmark's meter, not the handler):"
    ]
    for order in ("tottime", "cumulative"):
        buffer = io.StringIO()
        stats = pstats.Stats(str(stats_file), stream=buffer)
        stats.strip_dirs().sort_stats(order).print_stats(count)
        lines = buffer.getvalue().splitlines()
        start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
        out.append(f"  by {order}:")
        out += ["    " + line for line in lines[start:] if line.strip()]
    return out


# ---- the sweep -------------------------------------------------------------------------------


def sweep(svc: Services, base: Spec, sizes: Sequence[int], log_dir: Path) -> list[str]:
    rows: list[tuple[int, Measured]] = []
    for size in sizes:
        spec = Spec(size, base.lines, base.latency, base.parallel, base.memory, steady_runs=2)
        rows.append((size, measure(svc, spec, log_dir, refresh=False, api=False)))
    memory = base.memory
    out = [
        f"Sweep: one invocation at {memory} MB, {base.lines} lines per portal, "
        f"{base.latency * 1000:g} ms, {base.parallel} in parallel (the worst of first, steady "
        "and inventory runs)",
        f"  {'portals':>7} {'worst run':<14} {'wall s':>7} {'CPU s':>6} {'est s':>6} "
        f"{'governs':>7} {'RSS MiB':>7}  within 60 s and 256 MB",
    ]
    passing: list[int] = []
    for size, m in rows:
        worst = m.worst()
        ok = worst.estimate(memory) <= GOAL_SECONDS and m.peak_rss / MIB <= GOAL_MEMORY_MB
        if ok:
            passing.append(size)
        out.append(
            f"  {size:7,d} {worst.label:<14} {worst.wall:7.1f} {worst.cpu:6.2f} "
            f"{worst.estimate(memory):6.1f} {worst.governs(memory):>7} "
            f"{m.peak_rss / MIB:7.0f}  {'yes' if ok else 'NO'}"
        )
    best = max(passing) if passing else 0
    estimate = crossing(rows, memory)
    out.append(
        f"PORTALS PER INVOCATION: {best:,} (the largest measured size within 60 s and 256 MB)"
        + (f"; by linear interpolation the limit is near {estimate:,} portals" if estimate else "")
    )
    return out


def crossing(rows: Sequence[tuple[int, Measured]], memory: int) -> int | None:
    """Where the worst run's estimated seconds and peak RSS reach the goal, linearly between
    the two measured sizes around it (or beyond the last two)."""
    if len(rows) < 2:
        return None
    limits: list[float] = []
    for value, goal in (
        (lambda m: m.worst().estimate(memory), GOAL_SECONDS),
        (lambda m: m.peak_rss / MIB, float(GOAL_MEMORY_MB)),
    ):
        points = [(float(size), float(value(m))) for size, m in rows]
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            if y0 <= goal < y1 or (x1 == points[-1][0] and y1 <= goal and y1 > y0):
                limits.append(x0 + (goal - y0) * (x1 - x0) / (y1 - y0))
                break
    return int(min(limits)) if limits else None


# ---- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--portals", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=5, help="open lines per portal (targets)")
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per portal request")
    parser.add_argument("--parallel", type=int, default=64, help="MaxParallelPortals (1..64)")
    parser.add_argument("--memory-mb", type=int, default=256, help="the checker's MemorySize")
    parser.add_argument("--steady-runs", type=int, default=3)
    parser.add_argument(
        "--no-explicit", action="store_true", help="skip the explicit-entries variant"
    )
    parser.add_argument("--sweep", default="", help="portal counts, e.g. 250,500,1000,2000")
    parser.add_argument(
        "--param", action="append", default=[], help="a template parameter to price, K=V"
    )
    parser.add_argument("--price-portals", type=int, default=1000, help="fleet the bill prices")
    parser.add_argument(
        "--profile", type=int, default=0, help="cProfile one more steady run: print N functions"
    )
    parser.add_argument("--price-targets", type=int, default=5000)
    fan = parser.add_argument_group(
        "fan-out (bench/fanout.py)", "FanOut=true: the planner and one invocation per shard"
    )
    fan.add_argument("--fanout", action="store_true", help="measure the fanned-out fleet")
    fan.add_argument("--shard-portals", type=int, default=1000, help="ShardPortals (>= 10)")
    fan.add_argument(
        "--measure-shards", type=int, default=0, help="deliver K shards, scale to all (0: all)"
    )
    fan.add_argument("--no-inventory", action="store_true", help="skip the inventory run")
    fan.add_argument("--no-refresh", action="store_true", help="skip the refresh run")
    args = parser.parse_args(argv)
    if not 1 <= args.parallel <= 64:
        parser.error("--parallel must be 1..64 (MaxParallelPortals)")
    if min(args.portals, args.lines, args.steady_runs) < 1:
        parser.error("--portals, --lines and --steady-runs must be at least 1")
    if args.fanout and (args.shard_portals < 10 or args.portals <= args.shard_portals):
        parser.error("--fanout needs --shard-portals >= 10 and more --portals than that")
    args.sizes = [int(s) for s in args.sweep.split(",") if s.strip()]
    args.params = dict(p.split("=", 1) for p in args.param)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.fanout:
        from bench.fanout import main as fanout_main

        return fanout_main(args)
    started = time.perf_counter()
    spec = Spec(
        args.portals, args.lines, args.latency, args.parallel, args.memory_mb, args.steady_runs
    )
    stack = read_stack({"MaxParallelPortals": str(spec.parallel), **args.params})
    print(
        f"Fleet: {spec.portals:,} portals x {spec.lines} lines = {spec.targets:,} targets, "
        f"{spec.latency * 1000:g} ms a portal request, MaxParallelPortals={spec.parallel} "
        f"(template default {parameter_values().get('MaxParallelPortals', '?')}), "
        f"{spec.memory} MB.\nEach Lambda function runs in a process of its own (the handler "
        "and nothing else); moto's server and the local portal in two more.",
        flush=True,
    )
    portals = max([spec.portals, *args.sizes])
    profiled: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, services(portals, spec.lines, spec.latency) as svc:
        log_dir = Path(tmp)
        stats = log_dir / "steady.prof" if args.profile else None
        main_run = measure(svc, spec, log_dir, profile=stats)
        if stats is not None:
            profiled = profile_lines(stats, args.profile)
        explicit = None
        if not args.no_explicit:
            explicit = measure(svc, spec, log_dir, explicit=True, refresh=False, api=False)
        swept = sweep(svc, spec, args.sizes, log_dir) if args.sizes else []
    print()
    print("\n".join(report(main_run, f"Runs ({main_run.variant}):")))
    if profiled:
        print()
        print("\n".join(profiled))
    if explicit is not None:
        print()
        print(f"Runs ({explicit.variant}):")
        print("\n".join(run_table(explicit)))
        print("\n".join(details(explicit)[:4]))
        print(variant_line(main_run, explicit))
    if swept:
        print()
        print("\n".join(swept))
    fleet = Fleet(
        targets=args.price_targets,
        portals=args.price_portals,
        publish_metrics=args.params.get("PublishMetrics") == "true",
    )
    figures = fitted([main_run.figures()], fleet.portals, fleet.targets)
    print()
    print(render_bill(monthly_bill(figures, fleet, stack)))
    print(f"\n(benchmark took {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
