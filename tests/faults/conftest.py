"""The world a fault row runs in: the checker handler wired as the template wires it (moto for
AWS, the local portal over real HTTP), a second healthy portal as a bystander, and the seams a
fault needs (SDK event hooks, the portal's fault injection, a short REST timeout).

Seams used, all public (constructor arguments and dataclass fields, no private attribute):
- `checker.tuning` answers the row's `Tuning`: the composition root then builds everything as
  it does on Lambda, but with REST sessions that wait less (the handler's read for 10 s),
  a new Secrets Manager client each invocation that carries the row's hooks, and DynamoDB and
  SNS clients made here (the library's client configs) that carry botocore event hooks.
- botocore's standard-mode backoff and the token store's retry pauses are shortened (the
  number of retries stays as deployed).
- DynamoDB throttling is answered inside moto's DynamoDB front (see `throttle_dynamodb`).
- `socket.getaddrinfo` refuses every name but loopback: nothing leaves the machine.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import socket
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.retries.standard import ExponentialBackoff
from moto.core.exceptions import JsonRESTError
from moto.dynamodb.responses import DynamoHandler

from connector_monitor.aws import clients
from connector_monitor.aws.lease import Lease
from connector_monitor.aws.registry import Registry
from connector_monitor.aws.secret_pairs import SecretPairs
from connector_monitor.aws.token_table import TablePairs
from connector_monitor.bitrix24.connector_checks import ConnectorChecks
from connector_monitor.bitrix24.oauth import OAUTH_TIMEOUT
from connector_monitor.bitrix24.rest_session import RestSession, RetryPolicy, Timeouts
from connector_monitor.composition import Tuning as Wiring
from connector_monitor.domain.targets import ConfigIssue, parse_entry
from connector_monitor.tokens.moving import move_to_table
from connector_monitor.tokens.ports import TokenSource
from local.bitrix24_portal import LocalPortal
from local.handlers import LambdaContext
from tests.e2e import conftest as e2e
from tests.e2e.conftest import CONNECTOR, PORTAL, REGION, Stack, scheduled_event

# The e2e fixtures, visible to the tests of this directory too.
portal = e2e.portal
stack = e2e.stack
checker = e2e.checker
log_stream = e2e.log_stream

A = PORTAL  # the portal a row usually breaks: lines 12, 14, 16
B = "other.bitrix24.com"  # a healthy bystander: line 1
C = "big.bitrix24.com"  # added by rows that need two batch chunks (53 lines)
B_LINE = 1
TOKEN_FIELDS = ("access_token", "refresh_token", "client_secret")
WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"})
_THROTTLED_TYPE = "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
_THROTTLED_MESSAGE = "The level of configured provisioned throughput for the table was exceeded."


def key(portal: str, line: int) -> str:
    return f"{portal}/{CONNECTOR}/{line}"


@dataclass(frozen=True)
class Waits:
    """How the checker's REST sessions wait: the handler's RestSession defaults, or shorter."""

    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    oauth_timeout: tuple[float, float] = OAUTH_TIMEOUT


AS_DEPLOYED = Waits()
FAST = Waits(Timeouts(connect=0.5, read=0.5), RetryPolicy(base_delay=0.01, max_delay=0.05))


class World:
    """The stack, the portal and the checker of one row, with the levers a fault pulls."""

    def __init__(
        self,
        stack: Stack,
        checker: ModuleType,
        log: io.StringIO,
        monkeypatch: pytest.MonkeyPatch,
        mode: str = "secret",
    ) -> None:
        self.stack = stack
        # "secret": pairs in the secret, targets in TARGETS (a small stack); "fleet": pairs in
        # the token table (apps in the secret), targets in the registry.
        self.mode = mode
        self.fleet = mode == "fleet"
        self._tokens = boto3.resource("dynamodb", region_name=REGION).Table(e2e.TOKENS_TABLE)
        self.portal: LocalPortal = stack.portal
        self.checker = checker
        self.log = log
        self._monkeypatch = monkeypatch
        self._table = boto3.resource("dynamodb", region_name=REGION).Table(stack.table)
        self._dynamodb = boto3.client("dynamodb", region_name=REGION)  # another writer
        self._sm = boto3.client("secretsmanager", region_name=REGION)
        self.tuning = FAST
        self.remaining_ms = 120_000
        self.portals = [A]
        self.monitored = [t for t in _env_targets() if t]
        self.outcomes: list[dict[str, Any] | Exception] = []
        self.durations: list[float] = []  # seconds each invocation took
        self.peaks: list[float] = []  # MB each invocation added at its peak, once asked for
        self._measure_memory = False
        self.original_secret = ""  # the healthy secret, as the world fixture leaves it
        self.original_pairs: list[dict[str, Any]] = []  # and the token table's items
        self.secret_versions_before = 0
        self.ok_run_ids: list[str] = []
        self.sent: list[dict[str, Any]] = []  # every alert SNS delivered in this row
        self.known_secrets: set[str] = set()  # every token and client secret the row saw
        self.throttled = 0  # DynamoDB requests answered with a throttling error
        self.per_run: list[Callable[[], None]] = []  # re-armed before every invocation
        self._secret_hooks: list[tuple[str, Callable[..., Any]]] = []
        self._client_hooks: list[tuple[Any, str, Callable[..., Any]]] = []
        self._invoking = False
        self._throttle: Callable[[str, str], bool] | None = None
        self._dynamodb_of_checker = boto3.client(
            "dynamodb", region_name=REGION, config=clients.CONFIGS["dynamodb"]
        )
        self._sns_of_checker = boto3.client(
            "sns", region_name=REGION, config=clients.CONFIGS["sns"]
        )
        monkeypatch.setattr(checker, "tuning", self._wiring)
        monkeypatch.setattr(DynamoHandler, "call_action", self._throttled_call_action())
        self._remember_secret()

    # ---- running the handler -------------------------------------------------------------
    def invoke(self) -> dict[str, Any] | Exception:
        """One scheduled invocation; a raised exception is returned (the Lambda failed)."""
        for arm in self.per_run:
            arm()
        context = LambdaContext(remaining_ms=self.remaining_ms)
        outcome: dict[str, Any] | Exception
        started = time.monotonic()
        self._invoking = True
        if self._measure_memory:
            tracemalloc.start()
        try:
            outcome = self.checker.lambda_handler(scheduled_event(), context)
            self.ok_run_ids.append(context.aws_request_id)
        except Exception as exc:
            outcome = exc
        finally:
            self._invoking = False
            if self._measure_memory:
                self.peaks.append(tracemalloc.get_traced_memory()[1] / 2**20)
                tracemalloc.stop()
        self.durations.append(time.monotonic() - started)
        self.outcomes.append(outcome)
        self._remember_secret()
        self.known_secrets |= self.portal.issued_secrets()  # tokens as issued, stored or not
        return outcome

    def _wiring(self) -> Wiring:
        """The checker wired as the handler wires it, but for the row's levers: its AWS clients
        (the row's hooks on a new Secrets Manager client each invocation, as the handler reads
        the secret anew), the portal client with the row's timeouts, shorter pauses."""
        return Wiring(
            aws=self._aws_client,
            portal_client=self._client,
            oauth_timeout=self.tuning.oauth_timeout,
            sleep=_shorter(time.sleep),  # its pauses between write and re-read retries
        )

    def _aws_client(self, service: str) -> Any:
        if service == "dynamodb":
            return self._dynamodb_of_checker
        if service == "sns":
            return self._sns_of_checker
        client = boto3.client(service, region_name=REGION, config=clients.CONFIGS[service])
        if service == "secretsmanager":
            for event, handler in self._secret_hooks:
                client.meta.events.register(event, handler)
        return client

    def _client(self, portal: str, tokens: TokenSource) -> ConnectorChecks:
        session = RestSession(
            portal,
            tokens,
            ca_bundle=self.stack.portal.ca_file,
            timeouts=self.tuning.timeouts,
            retry=self.tuning.retry,
        )
        return ConnectorChecks(session)

    # ---- what came out -------------------------------------------------------------------
    def alerts(self) -> list[dict[str, Any]]:
        """Alerts SNS delivered since the last call."""
        new = self.stack.alerts()
        self.sent += new
        return new

    def states(self) -> dict[str, dict[str, Any]]:
        return {item["sk"]: item for item in self.items("STATE")}

    def items(self, pk: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._table.query(
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": pk},
            ConsistentRead=True,
        )["Items"]
        return found

    def table(self, *, leases: bool = False) -> list[dict[str, Any]]:
        """Every item of the table (the refresh leases only if asked), in key order."""
        items = self._table.scan(ConsistentRead=True)["Items"]
        kept = (i for i in items if leases or i["pk"] != "LOCK")
        return sorted(kept, key=lambda i: (i["pk"], i["sk"]))

    def log_lines(self) -> list[str]:
        return [line for line in self.log.getvalue().splitlines() if line.strip()]

    def targets(self) -> list[str]:
        """The targets the monitor should hold a status for: the last good TARGETS (a slip
        of the TARGETS value changes nothing stored)."""
        return list(self.monitored)

    # ---- the secret ----------------------------------------------------------------------
    def secret_text(self) -> str:
        text: str = self._sm.get_secret_value(SecretId=self.stack.secret_id)["SecretString"]
        return text

    def put_secret_text(self, text: str) -> None:
        self._sm.put_secret_value(SecretId=self.stack.secret_id, SecretString=text)

    def secret(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.secret_text())
        return document

    def secret_versions(self) -> int:
        """How many versions the secret has had (each write-back is one)."""
        found = self._sm.list_secret_version_ids(
            SecretId=self.stack.secret_id, IncludeDeprecated=True, MaxResults=100
        )
        return len(found["Versions"])

    def put_secret(self, document: dict[str, Any]) -> None:
        self.put_secret_text(json.dumps(document))
        self._remember_secret()

    def edit_entry(self, portal: str, **changes: Any) -> None:
        """Change fields of one portal's pair where it is kept; None removes the field."""
        if self.fleet:
            item = self._tokens.get_item(Key={"pk": "PORTAL", "sk": portal})["Item"]
            for name, value in changes.items():
                if value is None:
                    item.pop(name, None)
                else:
                    item[name] = value
            self._tokens.put_item(Item=item)
            self._remember_pairs()
            return
        document = self.secret()
        entry = document["portals"][portal]
        for name, value in changes.items():
            if value is None:
                entry.pop(name, None)
            else:
                entry[name] = value
        self.put_secret(document)

    def reauthorise(self, portal: str) -> None:
        """What a person does after auth is lost: install again, store the new pair."""
        fresh = self.portal.credentials(portal)
        if self.fleet:
            pair = {k: fresh[k] for k in ("access_token", "refresh_token", "client_endpoint")}
            self.edit_entry(portal, **pair, expires_at=None, refreshed_at=None)
            return
        document = self.secret()
        document["portals"][portal] = fresh
        self.put_secret(document)

    def pairs(self) -> dict[str, dict[str, Any]]:
        """Each portal's entry where its pair is kept: the secret's, or the token table's."""
        if not self.fleet:
            entries: dict[str, dict[str, Any]] = self.secret()["portals"]
            return entries
        items = self._tokens.query(
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": "PORTAL"},
            ConsistentRead=True,
        )["Items"]
        return {str(i["sk"]): {k: v for k, v in i.items() if k not in ("pk", "sk")} for i in items}

    def pairs_text(self) -> str:
        """Where the pairs are kept, as text: the secret's value, or the token table's items as
        {"portals": {domain: item}} (a corrupt secret is compared as the text it is)."""
        if not self.fleet:
            return self.secret_text()
        return json.dumps({"portals": self.pairs()}, sort_keys=True, default=int)

    def pair_writes(self) -> int:
        """Pair stores so far: secret versions, or the table items' versions together."""
        if not self.fleet:
            return self.secret_versions()
        return sum(int(entry.get("version", 0)) for entry in self.pairs().values())

    def restore_pairs(self) -> None:
        """The secret, and the token table's items, as the world fixture left them."""
        self.put_secret_text(self.original_secret)
        if self.fleet:
            for item in self.original_pairs:
                self._tokens.put_item(Item=item)

    def refuse_pair_writes(self) -> None:
        """The store of a refreshed pair is refused (AccessDenied), wherever pairs are kept."""
        if not self.fleet:
            self.secrets_manager_denies("PutSecretValue")
            return

        def deny(params: dict[str, Any], **_: Any) -> None:
            # the refreshed pair's write (a PORTAL item's), not the refresh claim's
            pair_write = params.get("Key", {}).get("pk") == {"S": "PORTAL"}
            if params.get("TableName") == e2e.TOKENS_TABLE and pair_write:
                error = {"Code": "AccessDeniedException", "Message": "not authorized"}
                raise ClientError({"Error": error}, "UpdateItem")

        self.on_dynamodb("before-parameter-build.dynamodb.UpdateItem", deny)

    def move_to_the_fleet_stores(self) -> None:
        """Pairs into the token table, targets into the registry: a fleet's stack."""
        secret = SecretPairs(self.stack.secret_id, client=self._sm)
        table = TablePairs(e2e.TOKENS_TABLE, apps=secret.apps, client=self._dynamodb)
        lease = Lease(self.stack.table, client=self._dynamodb)
        move_to_table(secret, table, lease)
        assert sorted(self.pairs()) == sorted(self.portals)
        assert secret.portals() == [] if secret.load() is None else False
        self.set_targets(self.monitored)
        self._monkeypatch.setenv("TARGETS", "")
        self.checker.settings.cache_clear()
        self.checker.root.cache_clear()
        self._remember_pairs()

    def _remember_pairs(self) -> None:
        for entry in self.pairs().values():
            self.known_secrets |= {
                v for k in TOKEN_FIELDS if isinstance(v := entry.get(k), str) and v
            }

    def _remember_secret(self) -> None:
        try:
            document = json.loads(self.secret_text())
            entries = document["portals"].values()
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # a row made it corrupt on purpose; its tokens were remembered before
        for entry in entries:
            if isinstance(entry, dict):
                self.known_secrets |= {
                    v for k in TOKEN_FIELDS if isinstance(v := entry.get(k), str) and v
                }

    # ---- portals and targets -------------------------------------------------------------
    def add_portal(self, domain: str, lines: int, name: Callable[[int], str] | None = None) -> None:
        """A healthy portal with `lines` open lines, in the secret and in TARGETS."""
        self.portal.add_portal(
            domain,
            connectors={CONNECTOR: "My Connector"},
            lines={n: (name or "Line {}".format)(n) for n in range(1, lines + 1)},
        )
        for line in range(1, lines + 1):
            self.portal.connect(domain, CONNECTOR, line)
        document = self.secret()
        document["portals"][domain] = self.portal.credentials(domain)
        self.put_secret(document)
        self.portals.append(domain)
        if self.fleet:  # the new pair joins the others in the table
            secret = SecretPairs(self.stack.secret_id, client=self._sm)
            table = TablePairs(e2e.TOKENS_TABLE, apps=secret.apps, client=self._dynamodb)
            move_to_table(secret, table, Lease(self.stack.table, client=self._dynamodb))
            self._remember_pairs()
        self.set_targets([*self.targets(), *(key(domain, n) for n in range(1, lines + 1))])

    def set_targets(self, keys: list[str]) -> None:
        """What the monitor is asked to watch: TARGETS, or the registry's entries."""
        self.monitored = list(keys)
        if not self.fleet:
            self.deploy_targets(",".join(keys))
            return
        registry = Registry(self.stack.table, client=self._dynamodb)
        for entry in registry.entries():
            registry.remove(entry.key)
        for text in keys:
            entry = parse_entry(text)
            assert not isinstance(entry, ConfigIssue), entry
            registry.add(entry, added_by="fault matrix", at=datetime.now(UTC))

    def deploy_targets(self, value: str) -> None:
        """Deploy this TARGETS value as it is, slip or not (the targets to monitor stay)."""
        self._monkeypatch.setenv("TARGETS", value)
        self.checker.settings.cache_clear()
        self.checker.root.cache_clear()  # a new deployment's cold start

    def forget_inventory(self, portal: str) -> None:
        """The next run validates `portal`'s targets again (its cached inventory is gone)."""
        self._table.delete_item(Key={"pk": "INVENTORY", "sk": portal})

    def validate_again(self, portal: str) -> None:
        """The next run reads `portal`'s inventory again (its round is owed, as one that could
        not be read leaves it), its cached record kept."""
        self._table.update_item(
            Key={"pk": "INVENTORY", "sk": portal},
            UpdateExpression="SET round_owed = :yes",
            ExpressionAttributeValues={":yes": True},
        )

    def rounds_due(self) -> None:
        """Every portal's inventory round falls before the next run, as after a long outage:
        no run recorded since, every record older than an interval."""
        self._table.delete_item(Key={"pk": "RUN", "sk": "LATEST"})
        for item in self.items("INVENTORY"):
            self._table.update_item(
                Key={"pk": "INVENTORY", "sk": item["sk"]},
                UpdateExpression="SET validated_at = :long_ago",
                ExpressionAttributeValues={":long_ago": "2000-01-01T00:00:00.000000Z"},
            )

    def inventory(self, portal: str) -> dict[str, Any]:
        return next(i for i in self.items("INVENTORY") if i["sk"] == portal)

    def configure(self, name: str, value: str) -> None:
        """Deploy the checker with this environment variable (a new cold start)."""
        self._monkeypatch.setenv(name, value)
        self.checker.settings.cache_clear()
        self.checker.root.cache_clear()

    def measure_memory(self) -> None:
        """From the next invocation on, record how much memory each one adds at its peak."""
        self._measure_memory = True

    def edit_state(self, target: str, **fields: Any) -> None:
        """Change fields of a stored STATE item behind the monitor's back."""
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = {f":v{i}": value for i, value in enumerate(fields.values())}
        self._table.update_item(
            Key={"pk": "STATE", "sk": target},
            UpdateExpression="SET "
            + ", ".join(f"{n} = {v}" for n, v in zip(names, values, strict=True)),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    # ---- AWS faults ----------------------------------------------------------------------
    def on_secrets_manager(self, event: str, handler: Callable[..., Any]) -> None:
        """Hook the token store's client (a new one each invocation) from the next run on."""
        self._secret_hooks.append((event, handler))

    def on_dynamodb(self, event: str, handler: Callable[..., Any], *, first: bool = False) -> None:
        self._hook(self._dynamodb_of_checker, event, handler, first=first)

    def on_sns(self, event: str, handler: Callable[..., Any]) -> None:
        self._hook(self._sns_of_checker, event, handler, first=False)

    def _hook(self, client: Any, event: str, handler: Callable[..., Any], *, first: bool) -> None:
        register = client.meta.events.register_first if first else client.meta.events.register
        register(event, handler)
        self._client_hooks.append((client, event, handler))

    def throttle_dynamodb(
        self,
        times: int | None = None,
        operations: frozenset[str] | None = None,
        touching: str | None = None,
    ) -> None:
        """DynamoDB answers ProvisionedThroughputExceededException to the checker's requests:
        the first `times` of them (None: all), of `operations` (None: any), whose body holds
        `touching` (None: any; "HISTORY#" is a hot history partition); the SDK retries.

        Refused inside moto's DynamoDB front, so a refused write is not applied. (A before-send
        hook cannot do this: botocore calls every before-send handler, moto's stub included,
        and only then picks the first answer, so the "throttled" write would land.)"""
        left = [times]

        def refuse(operation: str, body: str) -> bool:
            if not self._invoking or (operations is not None and operation not in operations):
                return False
            if touching is not None and touching not in body:
                return False
            if left[0] is not None:
                if left[0] <= 0:
                    return False
                left[0] -= 1
            self.throttled += 1
            return True

        self._throttle = refuse

    def _throttled_call_action(self) -> Callable[[Any], Any]:
        original = DynamoHandler.call_action

        def call_action(handler: Any) -> Any:
            body = handler.raw_body
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
            if self._throttle is not None and self._throttle(handler._get_action(), text):
                raise JsonRESTError(_THROTTLED_TYPE, _THROTTLED_MESSAGE)
            return original(handler)

        return call_action

    def fail_sns(self, times: int | None = None) -> None:
        """SNS unreachable for the next `times` publishes (None: until cleared)."""
        left = [times]

        def refuse(**_: Any) -> None:
            if left[0] is not None:
                if left[0] <= 0:
                    return
                left[0] -= 1
            raise EndpointConnectionError(endpoint_url=f"https://sns.{REGION}.amazonaws.com/")

        self.on_sns("before-call.sns.Publish", refuse)

    def secrets_manager_unreachable(self, operation: str = "GetSecretValue") -> None:
        def refuse(**_: Any) -> None:
            url = f"https://secretsmanager.{REGION}.amazonaws.com/"
            raise EndpointConnectionError(endpoint_url=url)

        self.on_secrets_manager(f"before-call.secrets-manager.{operation}", refuse)

    def secrets_manager_denies(self, operation: str) -> None:
        def deny(**_: Any) -> None:
            error = {"Code": "AccessDeniedException", "Message": "not authorized"}
            raise ClientError({"Error": error}, operation)

        self.on_secrets_manager(f"before-call.secrets-manager.{operation}", deny)

    def bump_version_before_next_save(self, target: str) -> None:
        """Another writer stores `target` between this run's load and its save (once)."""
        done = [False]

        def bump(**_: Any) -> None:
            if done[0]:
                return
            done[0] = True
            self._dynamodb.update_item(
                TableName=self.stack.table,
                Key={"pk": {"S": "STATE"}, "sk": {"S": target}},
                UpdateExpression="ADD version :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )

        self.on_dynamodb("before-call.dynamodb.TransactWriteItems", bump)

    def clear(self) -> None:
        """Every injected fault gone: portal faults, hooks, per-run re-arming, timings."""
        for domain in self.portals:
            self.portal.clear_faults(domain)
        for client, event, handler in self._client_hooks:
            client.meta.events.unregister(event, handler)
        self._client_hooks.clear()
        self._secret_hooks.clear()
        self._throttle = None
        self.per_run.clear()
        self.tuning = FAST
        self.remaining_ms = 120_000
        self._measure_memory = False


def _shorter(sleep: Callable[[float], None]) -> Callable[[float], None]:
    """The same pauses, ten times shorter (their number and order unchanged)."""
    return lambda seconds: sleep(seconds / 10)


def _env_targets() -> list[str]:
    return os.environ.get("TARGETS", "").split(",")


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Name resolution answers only loopback; `.invalid` fails like a real DNS miss, and any
    other name is recorded as an escape attempt (and fails the test)."""
    real = socket.getaddrinfo
    escaped: list[str] = []

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is None or name == "localhost" or _loopback(str(name)):
            return real(host, *args, **kwargs)
        if not str(name).endswith(".invalid"):
            escaped.append(str(name))
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    yield escaped
    assert escaped == [], "a request tried to leave the machine"


def _loopback(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@pytest.fixture(params=["secret", "fleet"])
def world(
    request: pytest.FixtureRequest,
    stack: Stack,
    checker: ModuleType,
    log_stream: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> World:
    """Portals A (3 lines) and B (1 line) healthy, after one baseline run: all UP, no alert.
    Twice: a small stack (pairs in the secret, TARGETS), and a fleet's (pairs in the token
    table, targets in the registry)."""
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.001)
    world = World(stack, checker, log_stream, monkeypatch, mode=request.param)
    world.add_portal(B, lines=1)
    if world.fleet:
        world.move_to_the_fleet_stores()
    baseline = world.invoke()
    assert isinstance(baseline, dict), baseline
    assert (baseline["up"], baseline["unknown"], baseline["down"]) == (4, 0, 0)
    assert world.alerts() == []
    world.original_secret = world.secret_text()
    world.original_pairs = (
        [{"pk": "PORTAL", "sk": portal, **entry} for portal, entry in world.pairs().items()]
        if world.fleet
        else []
    )
    return world
