"""The fleet benchmarks' world, each part in a process of its own so none of their work counts
in a function's: moto's server and the local portal (N portals x L lines, `myconnector` on every
line, one application on all), template.yaml's tables, topic, secret (and work queue) on moto
with one watch and the token table filled, each Lambda function (`bench/fleet_child.py`) with
every invocation counted, and the series of runs `bench/fleet.py` and `bench/fanout.py` measure.

    python -m bench.lambdas moto | portal PORTALS LINES LATENCY
"""

from __future__ import annotations

import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

from bench.cost import Figures, Usage
from bench.environment import REGION, ROOT, CheckerParts, build_checker
from bench.metering import item_size
from local.aws import aws_environment
from local.template import OFF_AWS, function_environment, parameter_values, resolve
from local.template import table_definition as definition

MIB = 1024 * 1024
REFRESH_SHARE = 1 / 12  # tokens live an hour, runs come every 5 minutes
HEALTH_POLLS = 5  # warm GET /health calls measured (median)
T = TypeVar("T")
Stored = dict[str, tuple[float, float]]  # bytes and items, by table


CONNECTOR = "myconnector"
APP_NAME = "monitor"
READY_TIMEOUT = 120.0  # seconds for a process to come up
RUN_TIMEOUT = 600.0  # seconds for one command to answer


def domains(portals: int) -> list[str]:
    """The fleet's portal domains, in the order the sweep takes its first N from."""
    return [f"p{i:04d}.fleet.local" for i in range(portals)]


def base_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This environment without anything that could send a child to AWS, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return {**env, **extra}


class Child:
    """A process of this benchmark that answers one JSON line per command."""

    def __init__(self, command: list[str], env: Mapping[str, str], name: str) -> None:
        self.name = name
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=dict(env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.stderr, text=True,
        )  # fmt: skip

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


@dataclass
class Services:
    """moto's server and the local portal, each in its own process."""

    portal: Child
    moto_port: int
    portal_port: int
    app: dict[str, str]  # the application installed on every portal (client id, secret, ...)
    ca_file: str  # the portal's certificate authority: the functions' PORTAL_CA_BUNDLE

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    def client(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            service, endpoint_url=self.endpoint, region_name="eu-central-1",
            aws_access_key_id="bench", aws_secret_access_key="bench",
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )  # fmt: skip

    def counts(self) -> tuple[int, int]:
        answer = self.portal.ask({"cmd": "count"}, timeout=60)
        return int(answer["rest"]), int(answer["oauth"])

    def expire(self, portals: Sequence[str]) -> None:
        self.portal.ask({"cmd": "expire", "domains": list(portals)}, timeout=60)

    def fresh_pairs(self, portals: Sequence[str]) -> dict[str, dict[str, str]]:
        """A new token pair for each portal (refresh tokens are single-use: earlier
        measurements may have refreshed the pairs handed out before)."""
        answer = self.portal.ask({"cmd": "credentials", "domains": list(portals)}, timeout=120)
        pairs: dict[str, dict[str, str]] = answer["portals"]
        return pairs


@contextmanager
def services(portals: int, lines: int, latency: float) -> Iterator[Services]:
    env, own = base_environment({}), [sys.executable, "-m", "bench.lambdas"]
    with ExitStack() as stack:
        moto = Child([*own, "moto"], env, "moto")
        stack.callback(moto.close)
        portal = Child([*own, "portal", str(portals), str(lines), str(latency)], env, "portal")
        stack.callback(portal.close)
        moto_port = int(moto.read(READY_TIMEOUT)["port"])
        ready = portal.read(READY_TIMEOUT)
        yield Services(portal, moto_port, int(ready["port"]), ready["app"], ready["ca_file"])


def _reply(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def serve_moto() -> int:
    from local.aws import MotoStack
    from tests.support.moto_speedups import quicker_moto

    with quicker_moto(), MotoStack() as moto:
        _reply({"port": moto.port})
        for _ in sys.stdin:  # no commands: wait for the parent to close stdin
            pass
    return 0


def add_portals(portal: Any, fleet: Mapping[str, Mapping[int, str]], **options: Any) -> None:
    """Each portal of `fleet` with its open lines, CONNECTOR configured on every one."""
    for domain, lines in fleet.items():
        portal.add_portal(domain, connectors={CONNECTOR: "My connector"}, lines=lines, **options)
        for line in lines:
            portal.connect(domain, CONNECTOR, line)


def serve_portal(portals: int, lines: int, latency: float) -> int:
    from local.bitrix24_portal import LocalPortal

    portal = LocalPortal(tls=True)  # HTTPS, as portals speak: what a run's CPU is spent on
    portal.latency = latency
    numbers = {n: f"Line {n}" for n in range(1, lines + 1)}
    with portal:
        client_id, client_secret = portal.add_shared_app(APP_NAME)
        add_portals(portal, dict.fromkeys(domains(portals), numbers), app=client_id)
        app = {"client_id": client_id, "client_secret": client_secret}
        app["oauth_endpoint"] = portal.oauth_endpoint
        _reply({"port": portal.port, "app": app, "ca_file": portal.ca_file})
        for line in sys.stdin:
            command = json.loads(line)
            if command["cmd"] == "count":
                _reply({"rest": portal.request_count(), "oauth": portal.refresh_count()})
            elif command["cmd"] == "credentials":
                _reply({"portals": {d: portal.credentials(d) for d in command["domains"]}})
            elif command["cmd"] == "expire":
                for domain in command["domains"]:
                    portal.expire_access_tokens(domain)
                _reply({"expired": len(command["domains"])})
            else:
                _reply({"error": f"unknown command {command['cmd']!r}"})
    return 0


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
    schedule: timedelta = timedelta(minutes=5)

    @property
    def targets(self) -> int:
        return self.portals * self.lines


@dataclass
class Deployed:
    table: str
    tokens_table: str
    topic_arn: str
    secret_arn: str
    portals: list[str]
    queue_url: str = ""  # the work queue (FanOut=true)
    queue_arn: str = ""

    @property
    def names(self) -> dict[str, str]:
        """Logical id of each table, by its name here."""
        return {self.table: "Table", self.tokens_table: "TokenTable"}

    def resources(self) -> dict[str, str]:
        """The template's logical ids of the checker's resources, as deployed here."""
        found = {"Table": self.table, "TokenTable": self.tokens_table, "Topic": self.topic_arn}
        queue = {"WorkQueue": self.queue_url} if self.queue_url else {}
        return {**found, "PortalSecret": self.secret_arn, **queue}

    def checker(self, svc: Services) -> CheckerParts:
        """The checker's objects on moto's server (bench/environment.py's build_checker)."""
        settings = {"SECRET_ID": self.secret_arn, "TABLE_NAME": self.table}
        settings |= {"TOKENS_TABLE": self.tokens_table, "TOPIC_ARN": self.topic_arn}
        return build_checker(settings, svc.client)


_deployments = iter(range(1, 1_000_000))


def deploy(svc: Services, portals: int, *, queue: bool = False) -> Deployed:
    """Fresh tables, topic and secret (and work queue, as template.yaml declares it) for one
    measurement: the first `portals` portals' pairs in the token table, the application in the
    secret, and one `*/myconnector/*` watch in the registry."""
    from connector_monitor.aws.token_table import TablePairs
    from connector_monitor.domain.targets import ANY, Watch
    from connector_monitor.tokens.credentials import PortalCredentials

    n = next(_deployments)
    dynamodb = svc.client("dynamodb")
    table, tokens = f"fleet-{n}", f"fleet-{n}-tokens"
    dynamodb.create_table(TableName=table, **definition("Table"))
    dynamodb.create_table(TableName=tokens, **definition("TokenTable"))
    topic_arn = svc.client("sns").create_topic(Name=f"fleet-{n}-alerts")["TopicArn"]
    secret = json.dumps({"portals": {}, "apps": {APP_NAME: svc.app}})
    secrets = svc.client("secretsmanager")
    secret_arn = secrets.create_secret(Name=f"fleet-{n}/tokens", SecretString=secret)["ARN"]
    chosen = domains(portals)
    deployed = Deployed(table, tokens, topic_arn, secret_arn, chosen)
    if queue:
        sqs = svc.client("sqs")
        attributes = {"VisibilityTimeout": "720", "MessageRetentionPeriod": "3600"}
        url = sqs.create_queue(QueueName=f"{table}-work", Attributes=attributes)["QueueUrl"]
        found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        deployed.queue_url, deployed.queue_arn = url, found["Attributes"]["QueueArn"]
    fresh = svc.fresh_pairs(chosen)
    pairs = TablePairs(tokens, apps=dict, client=dynamodb)
    deployed.checker(svc).registry.add(
        Watch(ANY, CONNECTOR), added_by="bench.fleet", at=datetime.now(UTC)
    )

    def put_pair(domain: str) -> None:
        credentials = PortalCredentials.from_secret_entry(domain, fresh[domain])
        pairs.put_new(domain, APP_NAME, credentials)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put_pair, chosen))
    return deployed


def stored(svc: Services, deployed: Deployed) -> Stored:
    """Each table's bytes (AWS's item-size rules) and items."""
    found: Stored = {}
    for name, logical in deployed.names.items():
        pages = svc.client("dynamodb").get_paginator("scan").paginate(TableName=name)
        items = [item for page in pages for item in page["Items"]]
        found[logical] = (float(sum(map(item_size, items))), float(len(items)))
    return found


def stored_line(found: Stored) -> str:
    tables = [f"{t} {n:,.0f} items {b / 1e6:,.2f} MB" for t, (b, n) in found.items()]
    return "Stored after the runs: " + "; ".join(tables)


def lambda_environment(
    logical_id: str, deployed: Deployed, spec: Spec, parameters: Mapping[str, str]
) -> dict[str, str]:
    """The function's environment as template.yaml sets it; a variable naming a resource this
    benchmark does not create is left empty."""
    values = {**parameter_values(**parameters), **deployed.resources()}
    declared = resolve(function_environment(logical_id), values)
    env = {name: value if isinstance(value, str) else "" for name, value in declared.items()}
    timeout = spec.timeout * 1000 if logical_id != "SnapshotApiFunction" else 10_000
    extra = {"BENCH_TIMEOUT_MS": str(timeout), "BENCH_MEMORY_MB": str(spec.memory)}
    return {**env, **OFF_AWS, **extra}


class Run:
    """One invocation, as the function's process (its answer: `wall`, `cpu`, `peak_rss`,
    `calls`, `tables`, `table_units`, `sent`, `log`, `answer`) and the portal (`rest` requests,
    `oauth` refreshes) saw it."""

    def __init__(
        self, label: str, got: dict[str, Any], rest: int, oauth: int, names: Mapping[str, str]
    ) -> None:
        self.label, self.rest, self.oauth, self.table_names = label, rest, oauth, names
        self.wall, self.cpu = got["wall"], got["cpu"]
        self.peak_rss, self.calls, self.tables = got["peak_rss"], got["calls"], got["tables"]
        self.table_units, self.sent, self.log = got["table_units"], got["sent"], got["log"]
        self.answer: dict[str, Any] | None = got["answer"]
        self.log_lines = [line for line in self.log.splitlines() if line.strip()]
        self.log_bytes = len(self.log.encode())
        self.dynamodb_calls = sum(self.tables.values())
        used = self.usage()
        self.estimate, self.governs = used.duration, used.governs  # Lambda's, at (memory_mb)

    def units(self, kind: str) -> float:
        return sum(v for k, v in self.table_units.items() if k.endswith(f":{kind}"))

    def logical(self, key: str) -> str:
        """ "table:rest" with the table's logical id."""
        name, rest = key.split(":", 1)
        return f"{self.table_names.get(name, name)}:{rest}"

    def token_store_calls(self) -> dict[str, int]:
        found = {k: v for k, v in self.calls.items() if k.startswith("secrets-manager:")}
        for key, count in self.tables.items():
            if self.logical(key).startswith("TokenTable:"):
                found[f"token table:{key.split(':', 1)[1]}"] = count
        return found

    def usage(self) -> Usage:
        sent = {
            f"net.{k}": float(self.sent.get(k, 0)) for k in ("bytes", "connections", "segments")
        }
        values: dict[str, float] = {
            "wall": self.wall,
            "cpu": self.cpu,
            "rest": self.rest,
            "oauth": self.oauth,
            "log.lines": len(self.log_lines),
            "log.bytes": self.log_bytes,
            **sent,
        }
        for key, count in self.tables.items():
            values["ddb." + self.logical(key).replace(":", ".")] = count
        for key, units in self.table_units.items():
            name = "ddb." + self.logical(key).replace(":", ".")
            values[name] = values.get(name, 0.0) + units
        prefixes = {"secrets-manager": "sm", "sns": "sns", "sqs": "sqs"}
        for key, count in self.calls.items():
            service, operation = key.split(":", 1)
            if service in prefixes:
                values[f"{prefixes[service]}.{operation}"] = count
        return Usage(values)


class Function:
    """One Lambda function's process (`bench/fleet_child.py`): its INIT on start, one Run per
    invocation."""

    def __init__(
        self, svc: Services, name: str, env: Mapping[str, str], deployed: Deployed,
        log_dir: Path, handler: str = "lambda_handler",
    ) -> None:  # fmt: skip
        self.svc, self.table_names = svc, deployed.names
        self.log_file = log_dir / f"{name}-{time.monotonic_ns()}.log"
        event = ROOT / "events" / ("schedule.json" if name == "checker" else "health_get.json")
        port = svc.portal_port if name == "checker" else 0
        command = [sys.executable, "-m", "bench.fleet_child", name, str(self.log_file)]
        trusted = {"PORTAL_CA_BUNDLE": svc.ca_file}
        child_env = base_environment({**env, **aws_environment(svc.endpoint, REGION), **trusted})
        self.child = Child([*command, str(port), str(event), handler], child_env, name)
        ready = self.with_log(lambda: self.child.read(READY_TIMEOUT))
        self.init = Usage(ready["init"]) + Usage(ready["wiring"])  # import + first call's wiring

    def run(self, label: str, event: Mapping[str, Any] | None = None) -> Run:
        before = self.svc.counts()
        command: dict[str, Any] = {"cmd": "run"}
        if event is not None:
            command["event"] = dict(event)
        got = self.with_log(lambda: self.child.ask(command))
        after = self.svc.counts()
        if got.get("error"):
            raise RuntimeError(f"{label}: the handler failed:\n{got['error']}")
        return Run(label, got, after[0] - before[0], after[1] - before[1], self.table_names)

    def with_log(self, step: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The child's answer; if it has none, its log's end (its stderr) is in the error."""
        try:
            return step()
        except RuntimeError as exc:
            exists = self.log_file.exists()
            tail = self.log_file.read_text(errors="replace")[-3000:] if exists else ""
            raise RuntimeError(f"{exc}\n{self.log_file.name}:\n{tail}") from None

    def close(self) -> float:
        """The process's peak RSS over all its runs."""
        try:
            return float(self.child.ask({"cmd": "quit"}, timeout=30)["ru_maxrss"])
        finally:
            self.child.close()


def heads(memory: int, first: str, second: str) -> str:
    """The columns a fleet run and a fan-out invocation share: `first` after the peak RSS,
    `second` after the token-store calls."""
    return (
        f"{'wall s':>7} {'CPU s':>6} {f'est {memory}MB s':>11} {'governs':>7} {'RSS MiB':>7}"
        f"{first} {'portal req':>10} {'OAuth':>5} {'DynamoDB':>8} {'RRU':>8} {'WRU':>8} "
        f"{'tokens':>6} {second:>4} {'log lines':>9} {'log bytes':>9} {'sent KB':>8}"
    )


def cells(run: Run, memory: int, rss: float, first: str, second: int) -> str:
    tokens = sum(run.token_store_calls().values())
    return (
        f"{run.wall:7.2f} {run.cpu:6.2f} {run.estimate(memory):11.2f} {run.governs(memory):>7} "
        f"{rss / MIB:7.1f}{first} {run.rest:10,d} {run.oauth:5d} {run.dynamodb_calls:8,d} "
        f"{run.units('RRU'):8,.1f} {run.units('WRU'):8,.1f} {tokens:6d} {second:4d} "
        f"{len(run.log_lines):9,d} {run.log_bytes:9,d} {run.sent.get('bytes', 0) / 1000:8,.1f}"
    )


def poll_health(
    svc: Services, deployed: Deployed, spec: Spec, log_dir: Path
) -> tuple[list[Run], Usage]:
    """The snapshot API function's GET /health: a cold call and HEALTH_POLLS warm ones."""
    env = lambda_environment("SnapshotApiFunction", deployed, spec, {})
    server = Function(svc, "snapshot_api", env, deployed, log_dir)
    try:
        return [server.run("GET /health") for _ in range(1 + HEALTH_POLLS)], server.init
    finally:
        server.close()


def median_usage(usages: Sequence[Usage]) -> Usage:
    keys = {k for u in usages for k in u.values}
    return Usage({k: statistics.median(u.get(k) for u in usages) for k in keys})


def figures_of(
    spec: Spec,
    series: Series[T],
    usage: Callable[[T], Usage],
    health: list[Run],
    refreshing: Callable[[T], Usage] | None = None,
    **known: Any,
) -> Figures:
    """What a series of runs consumed, per kind of event: a steady run (the median), an
    inventory run, what one token refresh adds to a run (`refreshing`: the part of a run that
    refreshes, all of it unless given), one warm GET /health."""
    steady = median_usage([usage(r) for r in series.steady])
    refresh, part = Usage(), refreshing or usage
    if series.refresh is not None and series.refreshed:
        added = part(series.refresh) - median_usage([part(r) for r in series.steady])
        refresh = added.at_least_zero().times(1 / series.refreshed)
    return Figures(
        portals=spec.portals,
        targets=spec.targets,
        steady=steady,
        inventory=usage(series.inventory) if series.inventory is not None else steady,
        refresh=refresh,
        health=median_usage([r.usage() for r in health[1:]] or [Usage()]),
        **known,
    )


@dataclass
class Series(Generic[T]):
    first: T
    second: T
    steady: list[T]
    inventory: T | None  # every portal's round due (a fresh deploy, a long outage)
    refresh: T | None
    refreshed: int  # portals whose access token expired before the refresh run
    rounds: T | None = None  # a steady run 5 minutes after the last: ~1 round in 48 due

    def runs(self) -> list[T]:
        found = [self.first, self.second, *self.steady]
        extra = (self.rounds, self.inventory, self.refresh)
        return found + [r for r in extra if r is not None]


def run_series(
    svc: Services, deployed: Deployed, spec: Spec, run: Callable[[str], T], expirable: list[str],
    *, inventory: bool = True, refresh: bool = True,
) -> Series[T]:  # fmt: skip
    """The first run (inventories and discovery, everything written once), a second, the
    steady runs, a rounds run (as the steady run 5 minutes after the last finds them: ~1
    portal in 48 reads its inventory), an inventory run (every round due, as a fresh deploy or
    a long outage finds them) and a run with 1/12 of `expirable`'s access tokens expired
    (each refreshes once, as every 5-minute run sees with hourly tokens)."""
    print("    first run...", flush=True)
    first, second = run("first run"), run("second run")
    print(f"    {spec.steady_runs} steady runs...", flush=True)
    steady = [run("steady run") for _ in range(spec.steady_runs)]
    rounds, inventoried, refreshing, refreshed = None, None, None, 0
    if inventory:
        _rounds_due(svc, deployed, spec, last_run_back=spec.schedule)
        print("    rounds run (the last run moved 5 minutes back)...", flush=True)
        rounds = run("rounds run")
        _rounds_due(svc, deployed, spec, last_run_back=None)
        print("    inventory run (no run recorded: every round due)...", flush=True)
        inventoried = run("inventory run")
    if refresh:
        count = max(1, round(len(expirable) * REFRESH_SHARE))
        expired = expirable[:: max(1, len(expirable) // count)][:count]
        svc.expire(expired)
        refreshed = len(expired)
        print(f"    refresh run ({refreshed} portals' access tokens expired)...", flush=True)
        refreshing = run(f"refresh run ({refreshed})")
    return Series(first, second, steady, inventoried, refreshing, refreshed, rounds)


def _rounds_due(
    svc: Services, deployed: Deployed, spec: Spec, last_run_back: timedelta | None
) -> None:
    """Every inventory record an interval older, and the last run's record `last_run_back`
    earlier (None: removed): the next run reads the inventories whose round fell since."""
    from connector_monitor.aws.records import iso, parse_iso

    dynamodb, table = svc.client("dynamodb"), deployed.table

    def back(value: dict[str, str], by: timedelta) -> dict[str, str]:
        return {"S": iso(parse_iso(value["S"]) - by)}

    pages = dynamodb.get_paginator("query").paginate(
        TableName=table, KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "INVENTORY"}},
    )  # fmt: skip
    items = [item for page in pages for item in page["Items"]]
    for item in items:
        item["validated_at"] = back(item["validated_at"], spec.validate_every)
    last = dynamodb.get_item(TableName=table, Key={"pk": {"S": "RUN"}, "sk": {"S": "LATEST"}})
    if last_run_back is None or "Item" not in last:
        dynamodb.delete_item(TableName=table, Key={"pk": {"S": "RUN"}, "sk": {"S": "LATEST"}})
    else:
        run = last["Item"]
        run["started_at"] = back(run["started_at"], last_run_back)
        for shard in run.get("shards", {}).get("L", []):
            shard["M"]["started_at"] = back(shard["M"]["started_at"], last_run_back)
        items.append(run)
    for start in range(0, len(items), 25):
        batch = [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]
        dynamodb.batch_write_item(RequestItems={table: batch})


if __name__ == "__main__":  # moto's server or the local portal, in a process of its own
    if sys.argv[1] == "moto":
        sys.exit(serve_moto())
    sys.exit(serve_portal(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
