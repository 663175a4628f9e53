"""The fan-out end to end: the scheduled checker plans a fleet larger than its shard size into
shard orders on an SQS queue (moto), the worker handler takes them one per invocation as the
event source delivers them, and the snapshot API reports the run once every shard is in."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import boto3
import pytest

from connector_monitor.cycle import CheckCycle
from connector_monitor.ports.work_queue import ShardOrder
from local.bitrix24_portal import LocalPortal
from local.handlers import load_handler
from local.work_queue import deliver, sqs_event
from tests.e2e.conftest import CONNECTOR, REGION, Stack, scheduled_event, snapshot_api_environment
from tests.events import LambdaContext, http_event, load_event

FLEET = [f"shop{i:02d}.bitrix24.test" for i in range(25)]
LINES = (1, 2)


@pytest.fixture
def fleet(stack: Stack, portal: LocalPortal, monkeypatch: pytest.MonkeyPatch) -> str:
    """25 portals with tokens, watched by one registry entry; shards of 10 portals."""
    document = stack.secret()
    for domain in FLEET:
        portal.add_portal(domain, connectors={CONNECTOR: "C"}, lines={n: f"L{n}" for n in LINES})
        for line in LINES:
            portal.connect(domain, CONNECTOR, line)
        document["portals"][domain] = portal.add_app(domain, "monitor")
    stack.put_secret(document)
    table = boto3.resource("dynamodb", region_name=REGION).Table(stack.table)
    table.put_item(
        Item={
            "pk": "REGISTRY",
            "sk": f"*/{CONNECTOR}/*",
            "portal": "*",
            "connector": CONNECTOR,
            "line": "*",
            "added_at": "2026-11-30T12:00:00.000000Z",
            "added_by": "test",
        }
    )
    queue_url = boto3.client("sqs", region_name=REGION).create_queue(QueueName="work")["QueueUrl"]
    monkeypatch.setenv("TARGETS", "")
    monkeypatch.setenv("WORK_QUEUE_URL", queue_url)
    monkeypatch.setenv("SHARD_PORTALS", "10")
    return queue_url


def drop_to_dead_letters(queue_url: str) -> None:
    """What the queue's redrive does with an order received twice."""
    sqs = boto3.client("sqs", region_name=REGION)
    while messages := sqs.receive_message(QueueUrl=queue_url).get("Messages", []):
        for message in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def schedule(checker: ModuleType) -> dict[str, Any]:
    answer: dict[str, Any] = checker.lambda_handler(scheduled_event(), LambdaContext())
    return answer


def health() -> tuple[int, dict[str, Any]]:
    api = load_handler("snapshot_api")
    answer = api.lambda_handler(http_event("health_get"), LambdaContext("snapshot-api"))
    return answer["statusCode"], json.loads(answer["body"])


def watched(stack: Stack) -> dict[str, str]:
    return {str(i["sk"]): str(i["state"]) for i in stack.items("STATE")}


@pytest.fixture
def api_environment(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in snapshot_api_environment(stack.table).items():
        monkeypatch.setenv(key, value)


def test_a_fleet_beyond_one_shard_is_checked_by_workers_and_recorded_once(
    stack: Stack, fleet: str, checker: ModuleType, api_environment: None
) -> None:
    planned = schedule(checker)
    assert planned["targets"] == 0  # the planner checks no portal itself
    sqs = boto3.client("sqs", region_name=REGION)
    queued = sqs.get_queue_attributes(
        QueueUrl=fleet, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert queued["Attributes"]["ApproximateNumberOfMessages"] == "3"  # 26 portals, 10 a shard
    assert health()[0] == 503  # no run is finished yet

    assert deliver(fleet, checker.shard_handler, region=REGION) == []

    states = watched(stack)
    assert len(states) == 25 * 2 + 3  # the stack's own portal's three lines too
    assert set(states.values()) == {"UP"}
    status, body = health()
    assert (status, body["targets"]["total"], body["targets"]["up"]) == (200, 53, 53)


def test_a_shard_that_fails_costs_only_its_portals(
    stack: Stack,
    fleet: str,
    checker: ModuleType,
    portal: LocalPortal,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schedule(checker)  # the lines are discovered while every connector works
    assert deliver(fleet, checker.shard_handler, region=REGION) == []
    for domain in FLEET:
        portal.disconnect(domain, CONNECTOR, 1)  # then every line 1 goes down
    original = CheckCycle.run

    def crash_on_the_first_shard(self: CheckCycle, *args: Any, **kwargs: Any) -> Any:
        scope = kwargs.get("scope")
        if scope is not None and scope.portals is not None and scope.portals.lo == "":
            raise RuntimeError("worker killed")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CheckCycle, "run", crash_on_the_first_shard)
    for _ in range(2):  # two runs: the failure threshold
        schedule(checker)
        failing = deliver(fleet, checker.shard_handler, region=REGION, rounds=2)
        assert len(failing) == 1  # the first shard, reported failed, delivered twice
        drop_to_dead_letters(fleet)

    alerts = stack.alerts()
    down = {a["portal"] for a in alerts if a["event"] == "connector.down"}
    states = watched(stack)
    first_shard = sorted(["example.bitrix24.com", *FLEET])[:10]
    assert down == set(FLEET) - set(first_shard)  # every other shard stored and alerted
    assert all(states[f"{d}/{CONNECTOR}/1"] == "DOWN" for d in down)


def shard_event(**order: Any) -> dict[str, Any]:
    """events/shard_order.json, as the work queue's event source delivers an order, with the
    order's fields changed."""
    event = load_event("shard_order")
    body = json.loads(event["Records"][0]["body"])
    event["Records"][0]["body"] = json.dumps({**body, **order})
    return event


def test_the_sample_order_is_the_shape_the_local_queue_delivers() -> None:
    sample = load_event("shard_order")["Records"][0]
    delivered = sqs_event(
        {"MessageId": "m", "ReceiptHandle": "r", "Body": "{}"}, "arn:aws:sqs:q", REGION
    )["Records"][0]
    assert set(delivered) <= set(sample)
    assert set(delivered["attributes"]) <= set(sample["attributes"])
    order = ShardOrder.model_validate_json(sample["body"])  # what the worker parses
    assert (order.index, order.shards, order.portals.lo) == (0, 3, "")


def test_a_fresh_order_checks_exactly_its_range_of_portals(
    stack: Stack, fleet: str, checker: ModuleType
) -> None:
    # Given the first shard's order, as the queue delivers it, for a run that starts now
    now = datetime.now(UTC).isoformat()
    event = shard_event(run_id="by-hand", started_at=now)

    # When the worker takes it
    answer = checker.shard_handler(event, LambdaContext("shard-worker"))

    # Then it succeeded, and the portals of its range, and only those, have statuses
    assert answer == {"batchItemFailures": []}
    checked = {key.split("/")[0] for key in watched(stack)}
    with_tokens = set(stack.secret()["portals"])  # the fleet and the stack's own portal
    assert checked == {p for p in with_tokens if p + "/" < "shop08.bitrix24.test/"}
    assert "shop07.bitrix24.test" in checked
    assert "shop08.bitrix24.test" not in checked
    assert set(watched(stack).values()) == {"UP"}


def test_an_order_from_a_run_long_over_is_dropped_and_checks_nothing(
    stack: Stack, fleet: str, checker: ModuleType
) -> None:
    answer = checker.shard_handler(shard_event(), LambdaContext("shard-worker"))  # 2026-11-24
    assert answer == {"batchItemFailures": []}
    assert watched(stack) == {}


def test_a_malformed_order_is_dropped_and_not_redelivered(
    stack: Stack, fleet: str, checker: ModuleType
) -> None:
    answer = checker.shard_handler(shard_event(index=-1), LambdaContext("shard-worker"))
    assert answer == {"batchItemFailures": []}  # a retry cannot mend it
    assert watched(stack) == {}
