"""The fan-out end to end: the scheduled checker plans a fleet larger than its shard size into
shard orders on an SQS queue (moto), the worker handler takes them one per invocation as the
event source delivers them, and the snapshot API reports the run once every shard is in."""

from __future__ import annotations

import json
import re
from types import ModuleType
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from connector_monitor.aws.lease import Lease
from connector_monitor.aws.secret_pairs import SecretPairs
from connector_monitor.aws.token_table import TablePairs
from connector_monitor.cycle import CheckCycle
from connector_monitor.domain.shards import KeyRange
from connector_monitor.ports.work_queue import ShardOrder
from connector_monitor.tokens.moving import move_to_table
from local.bitrix24_portal import LocalPortal
from local.handlers import load_handler
from local.work_queue import deliver, sqs_event
from tests.e2e.conftest import (
    CONNECTOR,
    REGION,
    TOKENS_TABLE,
    Stack,
    scheduled_event,
    snapshot_api_environment,
)
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
    crash_the_first_shard(monkeypatch)
    for _ in range(2):  # two runs: the failure threshold
        schedule(checker)
        failing = deliver(fleet, checker.shard_handler, region=REGION, rounds=2)
        assert len(failing) == 1  # the first shard, reported failed, delivered twice
        drop_to_dead_letters(fleet)

    alerts = [a for a in stack.alerts() if a["event"] == "connector.down"]
    # each shard's portals that fail alike are one fleet message (portal *) listing them
    assert {a["portal"] for a in alerts} == {"*"}
    listed = re.findall(
        r"^- \S+ on line .+ at (\S+)$", "\n".join(a["message"] for a in alerts), re.M
    )
    down = set(listed)
    assert sum(int(a["targets"]) for a in alerts) == len(listed)  # each portal once
    states = watched(stack)
    first_shard = sorted(["example.bitrix24.com", *FLEET])[:10]
    assert down == set(FLEET) - set(first_shard)  # every other shard stored and alerted
    assert all(states[f"{d}/{CONNECTOR}/1"] == "DOWN" for d in down)


def crash_the_first_shard(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on the worker of the first shard (the range from the beginning) crashes."""
    original = CheckCycle.run

    def crash_on_the_first_shard(self: CheckCycle, *args: Any, **kwargs: Any) -> Any:
        scope = kwargs.get("scope")
        if scope is not None and scope.portals is not None and scope.portals.lo == "":
            raise RuntimeError("worker killed")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CheckCycle, "run", crash_on_the_first_shard)


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


def test_a_dead_shard_is_unknown_at_the_very_next_run(
    stack: Stack, fleet: str, checker: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule(checker)
    assert deliver(fleet, checker.shard_handler, region=REGION) == []
    crash_the_first_shard(monkeypatch)
    schedule(checker)
    assert len(deliver(fleet, checker.shard_handler, region=REGION, rounds=2)) == 1
    drop_to_dead_letters(fleet)

    schedule(checker)  # seconds later, not a schedule interval

    states = watched(stack)
    first_shard = sorted(["example.bitrix24.com", *FLEET])[:10]
    assert {k: v for k, v in states.items() if v == "UNKNOWN"} == {
        k: "UNKNOWN" for k in states if k.split("/")[0] in first_shard
    }
    assert sum(v == "UNKNOWN" for v in states.values()) == 3 + 9 * 2  # the stack's portal, 9 shops


def test_a_shard_that_fails_twice_lands_in_the_dead_letter_queue(
    stack: Stack, fleet: str, checker: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the template's redrive (maxReceiveCount 2) on the work queue
    sqs = boto3.client("sqs", region_name=REGION)
    dead = sqs.create_queue(QueueName="work-dlq")["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])
    redrive = {"deadLetterTargetArn": dead_arn["Attributes"]["QueueArn"], "maxReceiveCount": 2}
    sqs.set_queue_attributes(QueueUrl=fleet, Attributes={"RedrivePolicy": json.dumps(redrive)})
    crash_the_first_shard(monkeypatch)

    # When the first shard's worker fails, the next run is planned (the schedule's interval is
    # shorter than the 720 s visibility timeout), and then the queue delivers the order again
    first_run = schedule(checker)["run_id"]
    assert len(deliver(fleet, checker.shard_handler, region=REGION)) == 1
    schedule(checker)
    deliver(fleet, checker.shard_handler, region=REGION)  # the next run's orders, and the old

    # Then the old order, received twice, is in the dead-letter queue (its alarm's metric)
    deliver(fleet, checker.shard_handler, region=REGION)
    queued = sqs.get_queue_attributes(
        QueueUrl=dead, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]["ApproximateNumberOfMessages"]
    assert queued == "1"
    (message,) = sqs.receive_message(QueueUrl=dead, MaxNumberOfMessages=10)["Messages"]
    order = json.loads(message["Body"])
    assert (order["run_id"], order["index"], order["lo"]) == (first_run, 0, "")


def planned_orders(queue_url: str) -> list[dict[str, Any]]:
    """The planner's orders, taken off the queue as SQS hands them to the event source."""
    sqs = boto3.client("sqs", region_name=REGION)
    taken: list[dict[str, Any]] = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
        "Messages", []
    ):
        for message in messages:
            taken.append(message)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return sorted(taken, key=lambda m: int(json.loads(m["Body"])["index"]))


def order_event(message: dict[str, Any], receive_count: int = 1, **order: Any) -> dict[str, Any]:
    """A planned order as the event source delivers it (`receive_count`: its delivery), with
    the order's fields changed."""
    event = sqs_event(message, "arn:aws:sqs:eu-central-1:123456789012:work", REGION)
    record = event["Records"][0]
    record["body"] = json.dumps({**json.loads(record["body"]), **order})
    record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    return event


def test_a_planned_order_checks_exactly_its_range_of_portals(
    stack: Stack, fleet: str, checker: ModuleType
) -> None:
    # Given the first shard's order of a run just planned, as the queue delivers it
    schedule(checker)
    first = planned_orders(fleet)[0]
    order = ShardOrder.model_validate_json(first["Body"])

    # When the worker takes it
    answer = checker.shard_handler(order_event(first), LambdaContext("shard-worker"))

    # Then it succeeded, and the portals of its range, and only those, have statuses
    assert answer == {"batchItemFailures": []}
    checked = {key.split("/")[0] for key in watched(stack)}
    with_tokens = set(stack.secret()["portals"])  # the fleet and the stack's own portal
    assert checked == {p for p in with_tokens if order.portals.holds_portal(p)}
    assert len(checked) == 10
    assert set(watched(stack).values()) == {"UP"}


def test_an_order_the_run_did_not_plan_is_dropped_and_checks_nothing(
    stack: Stack, fleet: str, checker: ModuleType
) -> None:
    # Given the current run's first order, with an index or a range the plan does not hold
    schedule(checker)
    first = planned_orders(fleet)[0]
    forged = [
        order_event(first, index=7),
        order_event(first, hi=None),  # the whole fleet in one invocation
    ]

    # When the worker takes them, they are dropped (a retry cannot mend them): nothing checked
    for event in forged:
        answer = checker.shard_handler(event, LambdaContext("shard-worker"))
        assert answer == {"batchItemFailures": []}
    assert watched(stack) == {}
    assert health()[0] == 503  # and the run is not completed early


def test_a_failed_order_delivered_again_after_the_next_run_is_failed_for_the_dead_letters(
    stack: Stack, fleet: str, checker: ModuleType
) -> None:
    # Given a run's order whose first delivery failed, and the next run planned since
    schedule(checker)
    first = planned_orders(fleet)[0]
    schedule(checker)

    # When the queue delivers it again (after its visibility timeout: receive count 2)
    event = order_event(first, receive_count=2)

    # Then the invocation fails (its one order failed), which leaves the order queued for the
    # redrive to move to the dead-letter queue (maxReceiveCount 2), and checks nothing
    with pytest.raises(BatchProcessingError):
        checker.shard_handler(event, LambdaContext("shard-worker"))
    assert watched(stack) == {}
    # while a late first delivery of a replaced run is dropped as done: the next run has it
    late = checker.shard_handler(order_event(first), LambdaContext("shard-worker"))
    assert late == {"batchItemFailures": []}
    assert watched(stack) == {}


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


def test_a_shard_beside_a_previous_plans_shard_still_at_work_refreshes_none_of_its_portals(
    stack: Stack, fleet: str, checker: ModuleType, portal: LocalPortal
) -> None:
    """The pairs in the token table. A worker of the previous plan is still at work on a range
    that the new plan split differently: the new shard that overlaps it refreshes none of the
    shared portals (UNKNOWN this run, the refresh claim named; no refresh token spent twice),
    the other shards refresh theirs; once the old worker is done, the next run refreshes."""
    secret = SecretPairs(stack.secret_id, client=boto3.client("secretsmanager", region_name=REGION))
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    table = TablePairs(TOKENS_TABLE, apps=secret.apps, client=dynamodb)
    assert move_to_table(secret, table, Lease(stack.table, client=dynamodb)).moved
    schedule(checker)
    assert deliver(fleet, checker.shard_handler, region=REGION) == []
    old_worker = TablePairs(
        TOKENS_TABLE,
        apps=secret.apps,
        client=dynamodb,
        portals=KeyRange("shop05.bitrix24.test/", "shop09.bitrix24.test/"),
    )
    old_worker.load()
    with old_worker.own_lease("shop06.bitrix24.test").hold("tokens", ttl=60, wait=1):
        shared, apart = "shop06.bitrix24.test", "shop22.bitrix24.test"
        for domain in (shared, apart):
            portal.expire_access_tokens(domain)
        refreshes = {d: portal.refresh_count(d) for d in (shared, apart)}

        schedule(checker)
        assert deliver(fleet, checker.shard_handler, region=REGION) == []

        assert {d: portal.refresh_count(d) - n for d, n in refreshes.items()} == {
            shared: 0,
            apart: 1,
        }
        states = {str(i["sk"]): i for i in stack.items("STATE")}
        for line in LINES:
            blind = states[f"{shared}/{CONNECTOR}/{line}"]
            assert blind.get("cause") == "monitor_error", blind
            assert "another invocation holds the refresh claim" in blind["detail"]
            assert states[f"{apart}/{CONNECTOR}/{line}"].get("cause") is None
    old_worker.end_run()

    schedule(checker)
    assert deliver(fleet, checker.shard_handler, region=REGION) == []

    assert portal.refresh_count(shared) - refreshes[shared] == 1
    states = {str(i["sk"]): i for i in stack.items("STATE")}
    assert all(states[f"{shared}/{CONNECTOR}/{line}"]["state"] == "UP" for line in LINES)
    assert all(states[f"{shared}/{CONNECTOR}/{line}"].get("cause") is None for line in LINES)
