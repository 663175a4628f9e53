"""The checker wired as the template wires it: moto for AWS, the local portal over HTTP."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from connector_monitor.aws.repository import StateRepository
from local.bitrix24_portal import LocalPortal
from local.bitrix24_portal.tls import local_authority
from local.handlers import load_handler
from local.template import environment_of, table_definition

ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-central-1"
PORTAL = "example.bitrix24.com"
TOKENS_TABLE = "monitor-tokens"
CONNECTOR = "myconnector"
LINES = {12: "Sales", 14: "VIP", 16: "Support"}


@dataclass
class Stack:
    """The deployed resources of one test, and ways to look at them."""

    table: str
    topic_arn: str
    queue_url: str
    secret_id: str
    portal: LocalPortal

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts SNS delivered since the last call (through an SQS subscription)."""
        sqs = boto3.client("sqs", region_name=REGION)
        found: list[dict[str, Any]] = []
        while True:
            answer = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            messages = answer.get("Messages", [])
            if not messages:
                return found
            for message in messages:
                envelope = json.loads(message["Body"])
                attributes = {k: v["Value"] for k, v in envelope["MessageAttributes"].items()}
                found.append(
                    {"subject": envelope["Subject"], "message": envelope["Message"], **attributes}
                )
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def secret(self) -> dict[str, Any]:
        sm = boto3.client("secretsmanager", region_name=REGION)
        return json.loads(sm.get_secret_value(SecretId=self.secret_id)["SecretString"])

    def put_secret(self, document: dict[str, Any]) -> None:
        sm = boto3.client("secretsmanager", region_name=REGION)
        sm.put_secret_value(SecretId=self.secret_id, SecretString=json.dumps(document))

    def items(self, pk: str) -> list[dict[str, Any]]:
        table = boto3.resource("dynamodb", region_name=REGION).Table(self.table)
        return table.query(
            KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": pk}
        )["Items"]


@pytest.fixture
def portal() -> Iterator[LocalPortal]:
    """The portal over HTTPS, as portals speak: its certificate comes from the local authority
    the stack's `PORTAL_CA_BUNDLE` trusts."""
    with LocalPortal(tls=True) as server:
        server.add_portal(PORTAL, connectors={CONNECTOR: "My Connector"}, lines=LINES)
        for line in LINES:
            server.connect(PORTAL, CONNECTOR, line)
        yield server


@pytest.fixture
def stack(
    portal: LocalPortal, monkeypatch: pytest.MonkeyPatch, atomic_moto_items: None
) -> Iterator[Stack]:
    for key, value in TEST_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(TableName="monitor", **table_definition())
        dynamodb.create_table(TableName=TOKENS_TABLE, **table_definition("TokenTable"))
        sns = boto3.client("sns", region_name=REGION)
        topic_arn = sns.create_topic(Name="alerts")["TopicArn"]
        sqs = boto3.client("sqs", region_name=REGION)
        queue_url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        # A dedicated monitor app, beside the connector's backend (the portal's first app):
        # the set-up README recommends.
        secret = {"portals": {PORTAL: portal.add_app(PORTAL, "monitor")}}
        sm = boto3.client("secretsmanager", region_name=REGION)
        secret_id = sm.create_secret(Name="monitor/tokens", SecretString=json.dumps(secret))["ARN"]
        env = checker_environment(
            table="monitor",
            topic_arn=topic_arn,
            secret_id=secret_id,
            targets=",".join(f"{PORTAL}/{CONNECTOR}/{line}" for line in LINES),
        )
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield Stack("monitor", topic_arn, queue_url, secret_id, portal)


@pytest.fixture
def log_stream(checker: ModuleType) -> Iterator[io.StringIO]:
    """Everything the checker and the library log during the test, as JSON lines."""
    stream = io.StringIO()
    names = [checker.logger.name, *[n for n in logging.root.manager.loggerDict if "." in n]]
    handlers = {
        h
        for name in names
        for h in logging.getLogger(name).handlers
        if isinstance(h, logging.StreamHandler)
    }
    previous = {h: h.setStream(stream) for h in handlers}
    yield stream
    for handler, old in previous.items():
        if old is not None:
            handler.setStream(old)


@pytest.fixture
def checker(stack: Stack) -> ModuleType:
    """A freshly imported checker handler (its cached settings and clients start empty)."""
    return load_handler("checker")


TEST_CREDENTIALS = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}


def checker_environment(
    *, table: str, topic_arn: str, secret_id: str, targets: str, tokens_table: str = ""
) -> dict[str, str]:
    """The checker's environment as template.yaml sets it, with default parameters (failure
    threshold 2, recovery 1, every 5 minutes) and these resources."""
    resources = {
        "Table": table,
        "TokenTable": tokens_table or TOKENS_TABLE,
        "Topic": topic_arn,
        "PortalSecret": secret_id,
    }
    environment = environment_of(
        "CheckerFunction", resources=resources, parameters={"Targets": targets}
    )
    # The local portal's authority (never set on AWS): the tests' portals speak HTTPS.
    return {**environment, "PORTAL_CA_BUNDLE": str(local_authority().ca_file)}


def snapshot_api_environment(table: str) -> dict[str, str]:
    """The snapshot function's environment as the template sets it (test credentials, no
    tracing), with staleness judged from the run records alone (STALE_AFTER_SECONDS=0)."""
    return {**TEST_CREDENTIALS, **environment_of("SnapshotApiFunction", resources={"Table": table})}


API_TABLE = "monitor"  # the snapshot API's table in the API's own tests


@pytest.fixture
def repository(monkeypatch: pytest.MonkeyPatch) -> Iterator[StateRepository]:
    """The snapshot API's table as the template defines it, in moto, its environment set as the
    template sets it, and the checker's way to write to it."""
    for key, value in snapshot_api_environment(API_TABLE).items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName=API_TABLE, **table_definition()
        )
        yield StateRepository(API_TABLE, client=boto3.client("dynamodb", region_name=REGION))


def scheduled_event() -> dict[str, Any]:
    return json.loads((ROOT / "events" / "schedule.json").read_text())
