"""The inbound function wired as the template wires it: the local portal installs the monitor's
application and posts its events over HTTP to the handler (behind a local stand-in for the
inbound API), the handler asks the local OAuth server's app.info, binds events on the portal
over HTTPS, and keeps the pair in moto's token table.

Forms: as the local portal posts them (local/bitrix24_portal/apps.py, sources there) and the
recorded ones in tests/fixtures/bitrix24/app_events/ (each with a .source file).
"""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import boto3
import pytest
import requests
from moto import mock_aws

from connector_monitor.domain.app_events import token_digest
from local.api_server import ApiServer
from local.bitrix24_portal import LocalPortal
from local.bitrix24_portal.tls import local_authority
from local.handlers import LambdaContext, load_handler
from local.template import environment_of, table_definition
from monitorctl import cli as monitorctl
from tests.e2e.conftest import TEST_CREDENTIALS

REGION = "eu-central-1"
PORTAL = "client.bitrix24.test"
TOKENS = "monitor-tokens"
KEY = "0f7c6a52-9d1e-4c3b-8a77-2b1f3e4d5c6a"  # the stack id's random part, on AWS
ROUTES = ("POST /app/{key}/install", "POST /app/{key}/events", "GET /app/{key}/authorized")
ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "bitrix24" / "app_events"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class World:
    portal: LocalPortal
    api: ApiServer
    client_id: str
    alerts_queue: str
    operations_queue: str
    secret_id: str
    logs: io.StringIO

    @property
    def install_url(self) -> str:
        return f"{self.api.url}/app/{KEY}/install"

    @property
    def events_url(self) -> str:
        return f"{self.api.url}/app/{KEY}/events"

    def item(self, portal: str = PORTAL) -> dict[str, Any] | None:
        table = boto3.resource("dynamodb", region_name=REGION).Table(TOKENS)
        return table.get_item(Key={"pk": "PORTAL", "sk": portal}).get("Item")

    def items(self) -> list[dict[str, Any]]:
        return boto3.resource("dynamodb", region_name=REGION).Table(TOKENS).scan()["Items"]

    def notices(self, queue: str) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs", region_name=REGION)
        found = []
        for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            envelope = json.loads(message["Body"])
            attributes = {k: v["Value"] for k, v in envelope["MessageAttributes"].items()}
            found.append(
                {"subject": envelope["Subject"], "message": envelope["Message"], **attributes}
            )
        return found


def capture_logs(handler: Any, monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """Everything the handler, the library and the libraries under them (botocore, urllib3)
    log, at DEBUG, into one stream the tests search for tokens."""
    stream = io.StringIO()
    for name in (handler.logger.name, "connector_monitor"):
        for each in logging.getLogger(name).handlers:
            if isinstance(each, logging.StreamHandler):
                monkeypatch.setattr(each, "stream", stream)
    root = logging.getLogger()
    catch_all = logging.StreamHandler(stream)
    monkeypatch.setattr(root, "handlers", [*root.handlers, catch_all])
    monkeypatch.setattr(root, "level", logging.DEBUG)
    return stream


def subscribed_queue(sns: Any, sqs: Any, topic: str, name: str) -> str:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return url


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, atomic_moto_items: None) -> Iterator[World]:
    for key, value in TEST_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    with LocalPortal(tls=True) as portal, mock_aws():
        portal.add_portal(PORTAL, connectors={"myconnector": "My"}, lines={12: "Sales"})
        client_id, client_secret = portal.add_shared_app("monitor")
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName=TOKENS, **table_definition("TokenTable")
        )
        sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
        alerts = sns.create_topic(Name="alerts")["TopicArn"]
        operations = sns.create_topic(Name="operations")["TopicArn"]
        secret = {
            "apps": {"monitor": {"client_id": client_id, "client_secret": client_secret}},
            "portals": {},
        }
        sm = boto3.client("secretsmanager", region_name=REGION)
        secret_id = sm.create_secret(Name="monitor/tokens", SecretString=json.dumps(secret))["ARN"]
        monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")  # the most a log could ever say
        handler = load_handler("inbound")
        logs = capture_logs(handler, monkeypatch)
        api = ApiServer(handler.lambda_handler, routes=ROUTES).start()
        env = environment_of(
            "InboundFunction",
            resources={
                "TokenTable": TOKENS,
                "Topic": alerts,
                "OperationsTopic": operations,
                "PortalSecret": secret_id,
            },
            extra={
                "INBOUND_URL": f"{api.url}/app/{KEY}",
                # the local OAuth server stands for oauth.bitrix.info; its authority for the
                # public CAs (both never set on AWS)
                "AUTH_SERVERS": portal.server_endpoint,
                "PORTAL_CA_BUNDLE": str(local_authority().ca_file),
            },
        )
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        try:
            yield World(
                portal,
                api,
                client_id,
                subscribed_queue(sns, sqs, alerts, "alerts"),
                subscribed_queue(sns, sqs, operations, "operations"),
                secret_id,
                logs,
            )
        finally:
            api.stop()


def installed_form(world: World) -> list[tuple[str, str]]:
    """The install form the portal posted (its application token included)."""
    (delivery,) = [d for d in world.portal.deliveries() if d.event == "ONAPPINSTALL"]
    return list(delivery.form)


def test_a_portal_installs_the_monitor_its_pair_is_stored_and_its_events_bound(
    world: World,
) -> None:
    delivery = world.portal.install_app(PORTAL, world.install_url, app=world.client_id)

    assert delivery.status == 200, delivery.answer
    assert json.loads(delivery.answer) == {"portal": PORTAL, "stored": True, "bound": True}
    form = dict(installed_form(world))
    item = world.item()
    assert item is not None
    assert item["access_token"] == form["auth[access_token]"]
    assert item["refresh_token"] == form["auth[refresh_token]"]
    assert item["member_id"] == form["auth[member_id]"] and item["app"] == "monitor"
    assert item["token_hash"] == token_digest(form["auth[application_token]"])
    assert form["auth[application_token]"] not in json.dumps(world.items(), default=str)
    bound = {(b.event, b.handler) for b in world.portal.bindings(PORTAL, world.client_id)}
    assert {
        ("ONAPPUNINSTALL", world.events_url),
        ("ONAPPUPDATE", world.events_url),
        ("ONIMCONNECTORLINEDELETE", world.events_url),
    } <= bound
    # the stored pair works on the portal
    answer = requests.post(
        world.portal.client_endpoint(PORTAL) + "imconnector.status",
        data={"auth": item["access_token"], "CONNECTOR": "myconnector", "LINE": 12},
        verify=str(local_authority().ca_file),
        timeout=5,
    )
    assert answer.status_code == 200, answer.text


def test_the_uninstall_forgets_the_portal_with_one_uninstalled_notice(world: World) -> None:
    world.portal.install_app(PORTAL, world.install_url, app=world.client_id)

    deliveries = world.portal.uninstall_app(PORTAL, app=world.client_id)

    assert [d.status for d in deliveries] == [200]
    assert json.loads(deliveries[0].answer) == {"portal": PORTAL, "uninstalled": True}
    assert world.items() == []
    (notice,) = world.notices(world.alerts_queue)
    assert "uninstalled" in notice["subject"].lower() and notice["event"] != "connector.down"
    assert notice["portal"] == PORTAL
    form = dict(installed_form(world))
    said = (
        world.logs.getvalue() + json.dumps(notice) + "".join(d.answer.decode() for d in deliveries)
    )
    assert "installed on" in world.logs.getvalue()  # the logs were captured
    for field in ("access_token", "refresh_token", "application_token"):
        assert form[f"auth[{field}]"] not in said, field


def test_an_uninstall_with_a_wrong_application_token_is_forbidden_and_changes_nothing(
    world: World,
) -> None:
    world.portal.install_app(PORTAL, world.install_url, app=world.client_id)
    form = dict(installed_form(world))
    forged = (FIXTURES / "ONAPPUNINSTALL.form").read_text().strip()
    pairs = dict(parse_qsl(forged))
    pairs["auth[member_id]"] = form["auth[member_id]"]
    pairs["auth[domain]"] = PORTAL
    pairs["auth[application_token]"] = "0" * 32

    answer = requests.post(world.events_url, data=urlencode(pairs), headers=FORM, timeout=10)

    assert answer.status_code == 403 and answer.json()["error"] == "FORBIDDEN"
    assert world.item() is not None and world.notices(world.alerts_queue) == []


def test_an_update_binds_the_events_again_and_a_deleted_line_is_marked(world: World) -> None:
    world.portal.install_app(PORTAL, world.install_url, app=world.client_id)

    updates = world.portal.update_app(PORTAL, "2", app=world.client_id)
    deleted = world.portal.delete_line(PORTAL, 12)

    assert [json.loads(d.answer) for d in updates] == [{"portal": PORTAL, "bound": True}]
    assert [json.loads(d.answer) for d in deleted] == [{"portal": PORTAL, "line_deleted": 12}]
    item = world.item()
    assert item is not None and set(item["deleted_lines"]) == {"12"}  # the checker's signal


def test_a_forged_server_endpoint_is_never_called_and_nothing_is_stored(world: World) -> None:
    trap = socket.create_server(("127.0.0.1", 0))
    trap.setblocking(False)
    forged = (FIXTURES / "ONAPPINSTALL.form").read_text().strip()
    pairs = dict(parse_qsl(forged))
    pairs["auth[server_endpoint]"] = f"https://127.0.0.1:{trap.getsockname()[1]}/rest/"

    answer = requests.post(world.install_url, data=urlencode(pairs), headers=FORM, timeout=10)

    assert answer.status_code == 403 and answer.json()["error"] == "NOT_GENUINE"
    with pytest.raises(BlockingIOError):
        trap.accept()  # nobody knocked
    trap.close()
    assert world.items() == []
    assert pairs["auth[access_token]"] not in answer.text


def test_the_authorisation_server_down_stores_nothing_and_tells_operations(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    down = f"https://127.0.0.1:{closed.getsockname()[1]}/rest/"
    closed.close()
    monkeypatch.setenv("AUTH_SERVERS", down)
    pairs = dict(parse_qsl((FIXTURES / "ONAPPINSTALL.form").read_text().strip()))
    pairs["auth[server_endpoint]"] = down

    answer = requests.post(world.install_url, data=urlencode(pairs), headers=FORM, timeout=20)

    assert answer.status_code == 503 and answer.json()["error"] == "AUTH_SERVER_UNREACHABLE"
    assert world.items() == []
    (notice,) = world.notices(world.operations_queue)
    assert notice["portal"] == "some-domain.bitrix24.com" and "not verified" in notice["subject"]
    assert world.notices(world.alerts_queue) == []
    for secret in (pairs["auth[access_token]"], pairs["auth[refresh_token]"]):
        assert secret not in answer.text + json.dumps(notice)


def test_json_is_refused_with_415_and_an_oversize_body_with_413(world: World) -> None:
    body = json.dumps({"event": "ONAPPINSTALL"})
    as_json = requests.post(
        world.install_url, data=body, headers={"Content-Type": "application/json"}, timeout=10
    )
    oversize = requests.post(world.install_url, data="x=" + "a" * 20_000, headers=FORM, timeout=10)
    assert (as_json.status_code, oversize.status_code) == (415, 413)
    assert world.items() == []


def authorize_link(world: World) -> str:
    out = io.StringIO()
    portal_url = f"{world.portal.url}/{PORTAL}"
    command = [
        "--secret",
        world.secret_id,
        "portals",
        "authorize",
        PORTAL,
        "--portal-url",
        portal_url,
    ]
    assert monitorctl.main(command, out=out) == 0
    return out.getvalue().strip()


def test_a_portal_is_re_authorised_without_reinstalling(world: World) -> None:
    # monitorctl portals authorize (ARCHITECTURE, README): the administrator follows the link,
    # the portal sends them back with a code, the stack trades it and stores the new pair.
    world.portal.install_app(PORTAL, world.install_url, app=world.client_id)
    before = world.item()
    assert before is not None
    world.portal.set_redirect_uri(world.client_id, f"{world.api.url}/app/{KEY}/authorized")
    link = authorize_link(world)
    assert link.startswith(f"{world.portal.url}/{PORTAL}/oauth/authorize/?client_id=")

    answer = requests.get(link, verify=str(local_authority().ca_file), timeout=20)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"portal": PORTAL, "authorized": True}
    after = world.item()
    assert after is not None
    assert after["access_token"] != before["access_token"]
    assert after["refresh_token"] != before["refresh_token"]
    assert after["token_hash"] == before["token_hash"]  # the install's events still pass
    assert after["access_token"] not in answer.text


def test_a_callback_with_a_forged_state_is_refused_and_the_code_never_traded(world: World) -> None:
    world.portal.install_app(PORTAL, world.install_url, app=world.client_id)
    before = world.item()
    world.portal.set_redirect_uri(world.client_id, f"{world.api.url}/app/{KEY}/authorized")
    link = authorize_link(world)
    _, mac = dict(parse_qsl(link.split("?", 1)[1]))["state"].split(".")
    forged = link.replace(mac, ("A" if mac[0] != "A" else "B") + mac[1:])
    issued = world.portal.issued_secrets(PORTAL)

    answer = requests.get(forged, verify=str(local_authority().ca_file), timeout=20)

    assert answer.status_code == 403 and answer.json()["error"] == "NOT_AUTHORIZED"
    assert world.item() == before
    assert world.portal.issued_secrets(PORTAL) == issued  # no pair was issued for the code


def test_the_sample_api_gateway_event_reaches_verification(world: World) -> None:
    # events/inbound_install.json: the ONAPPINSTALL fixture as API Gateway hands it over
    # (payload 2.0, the form base64-encoded). Its server, oauth.bitrix.info, is not the one
    # this test's stack trusts, so the handler refuses it after reading it, calling nobody.
    event = json.loads((ROOT / "events" / "inbound_install.json").read_text())
    answer = load_handler("inbound").lambda_handler(event, LambdaContext("inbound"))
    assert answer["statusCode"] == 403
    assert json.loads(answer["body"])["error"] == "NOT_GENUINE"
    assert world.items() == []
