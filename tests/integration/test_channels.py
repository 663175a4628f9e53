"""Channels: alerts reach Slack, Telegram or a webhook through the forwarder function, and SNS
filter policies on the `cause` attribute route them. Alerts are published by the monitor's own
publisher to a moto topic; what SNS delivers is handed to the forwarder as Lambda receives it;
a local HTTP server on 127.0.0.1 stands in for Slack, Telegram and the webhook."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from cfnlint.api import lint_file

from connector_monitor.aws.publisher import AlertPublisher
from connector_monitor.domain.alerts import Alert, AlertEvent, Facts, make_alert
from connector_monitor.domain.channels import policy_matches
from connector_monitor.domain.client_context import AlertContext
from connector_monitor.domain.labels import PortalLabels
from connector_monitor.domain.results import Cause
from connector_monitor.domain.targets import Target
from connector_monitor.forwarding import ForwardError
from local.handlers import load_handler
from tests.events import LambdaContext

POLICIES = json.loads(
    (Path(__file__).parents[2] / "functions" / "forwarder" / "filter-policies.json").read_text()
)
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ACME = "acme.bitrix24.com"
TOKEN = "123456:bot-token-that-must-never-show"


class Receiver:
    """Slack, Telegram or a webhook: records each POST, answers `status`."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                receiver.posts.append((self.path, json.loads(self.rfile.read(size))))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.server.shutdown()


def alert(cause: Cause | None, portal: str = ACME, line: int = 2) -> Alert:
    event = AlertEvent.CONNECTOR_DOWN if cause is None else AlertEvent.CHECK_FAILED
    facts = Facts("detail", False if cause is None else None, False, False, cause, T0, T0)
    context = AlertContext(
        labels={ACME: PortalLabels(client="Acme")}, line_names={f"{ACME}/2": "Support"}
    )
    return make_alert(event, Target(portal, "myconnector", line), facts, context)


def delivered(alerts: list[Alert], policy: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """What SNS delivers to a subscription with `policy`, as Lambda's SNS records."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    name = f"q{len(sqs.list_queues().get('QueueUrls', []))}"
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]
    attributes = {"FilterPolicy": json.dumps(policy)} if policy else {}
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn["QueueArn"], Attributes=attributes)
    publisher = AlertPublisher(topic, client=sns)
    for each in alerts:
        publisher.publish(each)
    records = []
    while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get(
        "Messages", []
    ):
        for message in messages:
            records.append({"EventSource": "aws:sns", "Sns": json.loads(message["Body"])})
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return records


def forwarder(monkeypatch: pytest.MonkeyPatch, channel: str, secret: dict[str, str]) -> ModuleType:
    arn = boto3.client("secretsmanager").create_secret(
        Name=f"channel-{channel}", SecretString=json.dumps(secret)
    )["ARN"]
    monkeypatch.setenv("CHANNEL", channel)
    monkeypatch.setenv("CHANNEL_SECRET_ARN", arn)
    return load_handler("forwarder")


def test_slack_gets_the_subject_and_the_alert_as_sent(
    moto_account: None, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = delivered([alert(None)])
    app = forwarder(monkeypatch, "slack", {"url": f"{receiver.url}/services/T0/B0/x"})

    assert app.lambda_handler({"Records": records}, LambdaContext()) == {"forwarded": 1}

    ((path, body),) = receiver.posts
    assert path == "/services/T0/B0/x"
    assert body["text"] == "CONNECTOR DOWN: myconnector on line Support (2) at acme.bitrix24.com"
    section = body["blocks"][1]["text"]["text"]
    assert "Client:    Acme" in section and "Open line: Support (2)" in section


def test_telegram_gets_plain_text_in_its_chat(
    moto_account: None, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = delivered([alert(Cause.PORTAL_UNPAID)])
    url = f"{receiver.url}/bot{TOKEN}/sendMessage"
    app = forwarder(monkeypatch, "telegram", {"url": url, "chat_id": "-100200300"})

    app.lambda_handler({"Records": records}, LambdaContext())

    ((path, body),) = receiver.posts
    assert path == f"/bot{TOKEN}/sendMessage"  # Bot API sendMessage
    assert body["chat_id"] == "-100200300"
    assert body["text"].startswith("PORTAL UNPAID: myconnector on line Support (2) at ")
    assert "parse_mode" not in body  # an alert's text is never read as markup
    assert len(body["text"]) <= 4096


def test_a_webhook_gets_the_alert_and_its_attributes_as_json(
    moto_account: None, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = delivered([alert(Cause.AUTH_LOST, line=7)])
    app = forwarder(monkeypatch, "webhook", {"url": f"{receiver.url}/hooks/monitor"})

    app.lambda_handler({"Records": records}, LambdaContext())

    ((_, body),) = receiver.posts
    assert {k: body[k] for k in ("event", "portal", "line", "severity", "cause", "targets")} == {
        "event": "check.failed",
        "portal": ACME,
        "line": "7",
        "severity": "warning",
        "cause": "auth_lost",
        "targets": "1",
    }
    assert body["subject"].startswith("APP REVOKED: ")
    assert "What to do:" in body["message"]


@pytest.mark.parametrize("refusal", ["status", "unreachable"])
def test_a_refused_post_fails_the_invocation_without_naming_the_url(
    moto_account: None,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    refusal: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    records = delivered([alert(None)])
    url = f"{receiver.url}/bot{TOKEN}/sendMessage"
    if refusal == "status":
        receiver.status = 429
    else:
        url = f"http://127.0.0.1:1/bot{TOKEN}/sendMessage"  # nothing listens there
    app = forwarder(monkeypatch, "telegram", {"url": url, "chat_id": "1"})

    with pytest.raises(ForwardError) as failed:
        app.lambda_handler({"Records": records}, LambdaContext())

    assert TOKEN not in str(failed.value) and TOKEN not in caplog.text
    assert "retries" in str(failed.value) or "could not be reached" in str(failed.value)


def test_filter_policies_route_alerts_on_their_cause(moto_account: None) -> None:
    """The README's examples: unpaid and deleted portals to the account manager, outages to
    on-call; moto evaluates each policy as SNS does, and so does the pure check."""
    alerts = [
        alert(Cause.PORTAL_UNPAID),
        alert(Cause.PORTAL_DELETED, "gone.bitrix24.com"),
        alert(None, "other.bitrix24.com"),
        alert(Cause.AUTH_LOST),
        alert(Cause.RATE_LIMITED, "other.bitrix24.com"),
    ]

    def causes(policy: str) -> list[str]:
        records = delivered(alerts, POLICIES[policy])
        return sorted(r["Sns"]["MessageAttributes"]["cause"]["Value"] for r in records)

    assert causes("account-manager") == ["portal_deleted", "portal_unpaid"]
    assert causes("on-call") == ["connector_down"]
    assert causes("client-acme") == ["auth_lost", "portal_unpaid"]
    for name, policy in POLICIES.items():
        chosen = sorted(a.reason for a in alerts if policy_matches(policy, a.attributes))
        assert chosen == causes(name), name


def test_the_forwarder_s_template_is_valid_and_subscribes_with_the_filter_policy() -> None:
    template = Path(__file__).parents[2] / "functions" / "forwarder" / "template.yaml"
    assert [str(m) for m in lint_file(template)] == []  # cfn-lint, SAM transform included
    text = template.read_text()
    assert "FilterPolicyScope: MessageAttributes" in text
    assert "secretsmanager:GetSecretValue" in text and "DeadLetterQueue" in text
