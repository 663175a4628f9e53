"""Overlapping invocations of the checker on the same targets and the same secret.

EventBridge retries, a slow run overlapping the next schedule, a person invoking by hand: several
checkers can run at once. Whatever the interleaving, an incident is announced once, a recovery
once, the single-use refresh token is spent once per expiry and its successor is never lost, and
nothing is left pending. Two variants:

- threads: 4 concurrent `lambda_handler` calls per round in this process, moto in-process (with
  `atomic_moto_items`, so a conditional write is atomic as in DynamoDB);
- processes: 4 worker processes, each importing the handler like a Lambda sandbox, against
  `moto.server.ThreadedMotoServer` on 127.0.0.1 (`AWS_ENDPOINT_URL`).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import boto3
import pytest

from connector_monitor.bitrix24.oauth import refresh_tokens
from connector_monitor.bitrix24.transport import new_session
from connector_monitor.deadline import Deadline
from connector_monitor.domain.transitions import CLOCK_SKEW
from connector_monitor.tokens.credentials import PortalCredentials
from local.bitrix24_portal import LocalPortal
from local.handlers import LambdaContext
from local.template import resource, table_definition
from tests.e2e.conftest import (
    CONNECTOR,
    LINES,
    PORTAL,
    REGION,
    TEST_CREDENTIALS,
    Stack,
    checker_environment,
    load_handler,
    scheduled_event,
)

WORKERS = 4
LINE = 14  # the line that goes down and comes back


@dataclass(frozen=True)
class Round:
    """What changes on the portal before the round, and what the round should then see."""

    name: str
    change: Callable[[Stack], None]
    line_state: str  # the state every run of the round must report for LINE


def _nothing(_: Stack) -> None:
    pass


def _expire(stack: Stack) -> None:
    """The access token expires, as it does an hour after its refresh: the stored pair is aged
    by that hour too (the refresh budget allows one refresh per portal per 55 minutes)."""
    stack.portal.expire_access_tokens(PORTAL)
    document = stack.secret()
    entry = document["portals"][PORTAL]
    if "refreshed_at" in entry:
        entry["refreshed_at"] -= 3600
        stack.put_secret(document)


def _down(stack: Stack) -> None:
    stack.portal.disconnect(PORTAL, CONNECTOR, LINE)


def _down_and_expire(stack: Stack) -> None:
    _down(stack)
    _expire(stack)


def _up_and_expire(stack: Stack) -> None:
    stack.portal.connect(PORTAL, CONNECTOR, LINE)
    _expire(stack)


# FAILURE_THRESHOLD=2, RECOVERY_THRESHOLD=1 (the e2e stack's settings). Three expiries.
ROUNDS = [
    Round("all up", _nothing, "UP"),
    Round("line down, token expired", _down_and_expire, "DOWN"),
    Round("still down", _nothing, "DOWN"),
    Round("still down, token expired", _expire, "DOWN"),
    Round("back up, token expired", _up_and_expire, "UP"),
    Round("still up", _nothing, "UP"),
]
EXPIRIES = 3


def concurrently(invoke: Callable[[], dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """`count` calls started together (a barrier), each in its own thread; re-raise failures."""
    start = threading.Barrier(count)
    summaries: list[dict[str, Any]] = []
    failures: list[str] = []

    def one() -> None:
        start.wait(timeout=30)
        try:
            summaries.append(invoke())
        except BaseException:
            failures.append(traceback.format_exc())

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures[0]
    assert len(summaries) == count
    return summaries


def assert_everything_settled(stack: Stack) -> None:
    """No pending alert, no claim left on any target; every target UP."""
    for item in stack.items("STATE"):
        assert item["state"] == "UP", item["sk"]
        assert not item.get("pending"), f"{item['sk']} still has pending alerts"
        assert "claim_owner" not in item, f"{item['sk']} is still claimed"
        assert item.get("down_since") is None


def assert_the_stored_refresh_token_is_live(stack: Stack) -> None:
    """The secret holds the one unspent refresh token: trading it works (and spends it: call
    last). A working access token alone would not show that the refresh token was not lost."""
    entry = stack.secret()["portals"][PORTAL]
    creds = PortalCredentials.from_secret_entry(PORTAL, entry)
    with new_session(ca_bundle=stack.portal.ca_file) as session:
        fresh = refresh_tokens(
            creds, session=session, deadline=Deadline.after(30), timeouts=(3.0, 5.0)
        )
    assert fresh.refresh_token != creds.refresh_token


def play_rounds(
    stack: Stack, run_round: Callable[[], list[dict[str, Any]]]
) -> tuple[list[dict[str, Any]], list[tuple[str, str, str]]]:
    """Every round's summaries and every alert SNS delivered, as (round, event, line)."""
    summaries: list[dict[str, Any]] = []
    alerts: list[tuple[str, str, str]] = []
    for round_ in ROUNDS:
        round_.change(stack)
        results = run_round()
        for summary in results:
            assert summary["targets"] == len(LINES)
            assert summary["unknown"] == 0, f"{round_.name}: {summary['portal_errors']}"
            assert summary["down"] == (1 if round_.line_state == "DOWN" else 0), round_.name
        summaries += results
        alerts += [(round_.name, a["event"], a["line"]) for a in stack.alerts()]
    return summaries, alerts


def assert_one_alert_per_transition(alerts: list[tuple[str, str, str]]) -> None:
    events = [(event, line) for _, event, line in alerts]
    assert events == [("connector.down", str(LINE)), ("connector.recovered", str(LINE))], alerts
    down_round = next(name for name, event, _ in alerts if event == "connector.down")
    recovered_round = next(name for name, event, _ in alerts if event == "connector.recovered")
    # FAILURE_THRESHOLD=2: the second DOWN answer opens the incident. Overlapping runs of one
    # round may count as two answers (each stores its own), so round 2 or 3; never later.
    assert down_round in ("line down, token expired", "still down")
    assert recovered_round in ("back up, token expired", "still up")


# --- threads ------------------------------------------------------------------------------------


# The threads share one Powertools Metrics object: one run's flush can empty another's.
@pytest.mark.filterwarnings("ignore:No application metrics to publish")
@pytest.mark.parametrize(
    "latency",
    [
        pytest.param(0.02, id="in-lockstep"),  # every run loads before any run saves
        pytest.param(0.0, id="staggered"),  # some runs load what others just saved
    ],
)
def test_overlapping_invocations_alert_once_and_refresh_once_per_expiry(
    checker: ModuleType, stack: Stack, latency: float
) -> None:
    stack.portal.latency = latency

    def invoke() -> dict[str, Any]:
        summary: dict[str, Any] = checker.lambda_handler(scheduled_event(), LambdaContext())
        return summary

    summaries, alerts = play_rounds(stack, lambda: concurrently(invoke, WORKERS))

    assert_one_alert_per_transition(alerts)
    # Single-use refresh tokens: one refresh per expiry across all four runs (the others wait on
    # the lease and pick up the pair the first one stored), and the stored pair still works.
    assert stack.portal.refresh_count(PORTAL) == EXPIRIES
    stack.portal.latency = 0.0
    quiet = invoke()
    assert (quiet["up"], quiet["down"], quiet["unknown"]) == (len(LINES), 0, 0)
    assert quiet["alerts_published"] == 0 and quiet["alerts_pending"] == 0
    assert stack.alerts() == []
    assert stack.portal.refresh_count(PORTAL) == EXPIRIES
    assert_everything_settled(stack)
    history = stack.items(f"HISTORY#{PORTAL}/{CONNECTOR}/{LINE}")
    assert sorted(h["event"] for h in history) == ["connector.down", "connector.recovered"]
    assert sum(s["alerts_published"] for s in summaries) == 2
    assert_the_stored_refresh_token_is_live(stack)


# --- processes ------------------------------------------------------------------------------------


def _worker(
    env: dict[str, str],
    rounds: int,
    start: Any,  # multiprocessing.Barrier
    done: Any,
    out: Any,  # multiprocessing.Queue
) -> None:
    """One Lambda sandbox: import the handler once, then one invocation per round."""
    os.environ.update(env)
    try:
        handler = load_handler("checker")
    except BaseException:
        out.put(("error", traceback.format_exc()))
        raise
    for _ in range(rounds):
        start.wait(timeout=60)
        try:
            out.put(("ok", handler.lambda_handler(scheduled_event(), LambdaContext())))
        except BaseException:
            out.put(("error", traceback.format_exc()))
        done.wait(timeout=60)


@pytest.fixture
def moto_server(
    monkeypatch: pytest.MonkeyPatch, atomic_moto_items: None
) -> Iterator[dict[str, str]]:
    """A moto server in this process (so `atomic_moto_items` applies to it); the environment
    that points boto3, here and in the workers, at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", **TEST_CREDENTIALS}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield env
    server.stop()


@pytest.fixture
def server_stack(moto_server: dict[str, str], portal: LocalPortal) -> tuple[Stack, dict[str, str]]:
    """The e2e stack's resources, created in the moto server; names unique to this test."""
    suffix = uuid.uuid4().hex[:8]
    table = f"monitor-{suffix}"
    boto3.client("dynamodb").create_table(TableName=table, **table_definition())
    tokens = f"tokens-{suffix}"
    boto3.client("dynamodb").create_table(TableName=tokens, **table_definition("TokenTable"))
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic_arn = sns.create_topic(Name=f"alerts-{suffix}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"inbox-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    secret = {"portals": {PORTAL: portal.credentials(PORTAL)}}
    secret_id = boto3.client("secretsmanager").create_secret(
        Name=f"monitor/tokens-{suffix}", SecretString=json.dumps(secret)
    )["ARN"]
    env = {
        **moto_server,
        **checker_environment(
            table=table,
            tokens_table=tokens,
            topic_arn=topic_arn,
            secret_id=secret_id,
            targets=",".join(f"{PORTAL}/{CONNECTOR}/{line}" for line in LINES),
        ),
    }
    return Stack(table, topic_arn, queue_url, secret_id, portal), env


def test_overlapping_sandboxes_alert_once_and_refresh_once_per_expiry(
    server_stack: tuple[Stack, dict[str, str]],
) -> None:
    stack, env = server_stack
    stack.portal.latency = 0.02
    context = multiprocessing.get_context("spawn")  # a clean interpreter, like a new sandbox
    start, done = context.Barrier(WORKERS + 1), context.Barrier(WORKERS + 1)
    out = context.Queue()
    workers = [
        context.Process(target=_worker, args=(env, len(ROUNDS) + 1, start, done, out), daemon=True)
        for _ in range(WORKERS)
    ]
    for worker in workers:
        worker.start()

    def run_round() -> list[dict[str, Any]]:
        start.wait(timeout=120)  # the workers' first wait also covers their imports
        done.wait(timeout=120)
        outcomes = [out.get(timeout=10) for _ in range(WORKERS)]
        failures = [text for how, text in outcomes if how == "error"]
        assert not failures, failures[0]
        return [summary for _, summary in outcomes]

    try:
        summaries, alerts = play_rounds(stack, run_round)
        assert_one_alert_per_transition(alerts)
        assert stack.portal.refresh_count(PORTAL) == EXPIRIES
        stack.portal.latency = 0.0
        final = run_round()  # a last, quiet round: four more runs, nothing to say
        assert all((s["up"], s["down"], s["unknown"]) == (len(LINES), 0, 0) for s in final)
        assert all(s["alerts_pending"] == 0 for s in final)
        assert stack.alerts() == []
        assert stack.portal.refresh_count(PORTAL) == EXPIRIES
        assert_everything_settled(stack)
        assert sum(s["alerts_published"] for s in summaries + final) == 2
        assert_the_stored_refresh_token_is_live(stack)
    finally:
        start.abort()
        done.abort()
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()


# --- two writers of one item inside one run ------------------------------------------------------


@pytest.mark.filterwarnings("ignore:No application metrics to publish")  # the run raises
def test_a_repeated_bad_entry_is_reported_once_and_the_run_goes_on(
    checker: ModuleType, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TARGETS", f"{PORTAL}/{CONNECTOR}/12,{PORTAL}/typo,{PORTAL}/typo")
    summary = checker.lambda_handler(scheduled_event(), LambdaContext())
    assert (summary["up"], summary["config_errors"]) == (1, 1)
    assert [a["event"] for a in stack.alerts()] == ["check.failed"]
    assert [item["state"] for item in stack.items("STATE")] == ["UP"]


# --- guarantees the wiring must keep ------------------------------------------------------------
SECOND = "second.bitrix24.com"


def test_two_runs_refreshing_two_portals_of_one_secret_at_once_lose_no_pair(
    checker: ModuleType, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease in the checker's wiring, pinned: a write-back replaces the whole secret, so two
    overlapping runs that refresh different portals of it must take turns. Without the lease
    each run writes the document it read before the other's refresh landed, and one portal's
    new pair, its old refresh token already spent, is lost for good."""
    # Given two portals in one secret and an OAuth server slow enough (0.5 s) that two runs
    # are inside their refreshes at the same time
    portal = stack.portal
    portal.add_portal(SECOND, connectors={CONNECTOR: "Mine"}, lines={1: "Support"})
    portal.connect(SECOND, CONNECTOR, 1)
    document = stack.secret()
    document["portals"][SECOND] = portal.credentials(SECOND)
    stack.put_secret(document)
    runs = [checker.root().cycle(timedelta(minutes=2)).tokens for _ in range(2)]
    for tokens in runs:
        tokens.load()
    for domain in (PORTAL, SECOND):
        portal.inject(domain, "timeout", method="oauth", delay=0.5)

    # When one run refreshes the first portal while the other refreshes the second
    start = threading.Barrier(2)

    def refresh(tokens: Any, domain: str) -> None:
        start.wait(timeout=10)
        tokens.refresh(domain, tokens.credentials(domain), Deadline.after(30))

    threads = [
        threading.Thread(target=refresh, args=(tokens, domain))
        for tokens, domain in zip(runs, (PORTAL, SECOND), strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # Then each portal was refreshed once, and the secret holds each one's live refresh token
    assert (portal.refresh_count(PORTAL), portal.refresh_count(SECOND)) == (1, 1)
    portal.clear_faults()
    stored = stack.secret()["portals"]
    for domain in (PORTAL, SECOND):
        creds = PortalCredentials.from_secret_entry(domain, stored[domain])
        with new_session(ca_bundle=stack.portal.ca_file) as session:
            fresh = refresh_tokens(
                creds, session=session, deadline=Deadline.after(30), timeouts=(3.0, 5.0)
            )
        assert fresh.refresh_token != creds.refresh_token, f"{domain}: the stored pair was lost"


def test_an_alert_claim_outlives_the_invocation_the_template_allows(
    checker: ModuleType, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim shorter than a run would let a second run publish the same alert while the
    first still may: the claim the checker takes lasts past the function's timeout."""
    timeout = int(resource("CheckerFunction")["Properties"]["Timeout"])
    assert timedelta(seconds=timeout) < CLOCK_SKEW  # an overlapping run cannot look like skew
    stack.portal.disconnect(PORTAL, CONNECTOR, LINE)
    claimed: list[dict[str, Any]] = []

    def read_claim(**_: Any) -> None:
        item = (
            boto3.resource("dynamodb", region_name=REGION)
            .Table(stack.table)
            .get_item(
                Key={"pk": "STATE", "sk": f"{PORTAL}/{CONNECTOR}/{LINE}"}, ConsistentRead=True
            )["Item"]
        )
        claimed.append(item)

    checker.root().publisher._client.meta.events.register("before-call.sns.Publish", read_claim)
    started = datetime.now(UTC)
    for _ in range(2):  # FAILURE_THRESHOLD=2: the second run publishes connector.down
        checker.lambda_handler(scheduled_event(), LambdaContext(remaining_ms=timeout * 1000))

    (item,) = claimed
    until = datetime.strptime(item["claim_until"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert until - started >= timedelta(seconds=timeout)
