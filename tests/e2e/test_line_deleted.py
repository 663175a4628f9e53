"""Issue 19, "Line deleted: that line's targets retired": the portal deletes an open line and posts
ONIMCONNECTORLINEDELETE to the inbound function, which marks the line on the portal's token item;
the checker's next run reads the portal's inventory at once and retires the line on that one
inventory, so the deleted line never reads DOWN and never pages `connector.down`.

Both handlers are wired as the template wires them, on one moto account: the inbound function
behind a local stand-in for its API, the checker on the schedule's event. The local portal
installs the application and posts the event as Bitrix24 does (local/bitrix24_portal/server.py
`install_app`, `delete_line`; the event's shape: bitrix24/b24restdocs
api-reference/imopenlines/imconnector/events/on-im-connector-line-delete.md).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlencode

import boto3
import pytest
import requests

from local.api_server import ApiServer
from local.bitrix24_portal import LocalPortal
from local.handlers import load_handler
from local.template import environment_of
from tests.e2e.conftest import CONNECTOR, REGION, TOKENS_TABLE, Stack, scheduled_event
from tests.events import LambdaContext

CLIENT = "client.bitrix24.test"
KEY = "5b0c1e2d-7f3a-4c59-9e1b-3d2a4f6c8e70"
ROUTES = ("POST /app/{key}/install", "POST /app/{key}/events", "GET /app/{key}/authorized")
APP = "monitor"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def inbound(stack: Stack, portal: LocalPortal, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The inbound function's API on the stack's token table and secret (the application in its
    "apps"), a client portal with lines 7 and 8 both connected, watched by TARGETS
    `client/myconnector/*`, and the application installed there through the install route.
    Yields the application's client id."""
    client_id, client_secret = portal.add_shared_app(APP)
    document = stack.secret()
    document["apps"] = {
        APP: {
            "client_id": client_id,
            "client_secret": client_secret,
            "oauth_endpoint": portal.oauth_endpoint,
        }
    }
    stack.put_secret(document)
    portal.add_portal(CLIENT, connectors={CONNECTOR: "Mine"}, lines={7: "Sales", 8: "VIP"})
    portal.connect(CLIENT, CONNECTOR, 7)
    portal.connect(CLIENT, CONNECTOR, 8)
    monkeypatch.setenv("TARGETS", f"{CLIENT}/{CONNECTOR}/*")
    operations = boto3.client("sns", region_name=REGION).create_topic(Name="operations")
    handler = load_handler("inbound")
    api = ApiServer(handler.lambda_handler, routes=ROUTES).start()
    env = environment_of(
        "InboundFunction",
        resources={
            "TokenTable": TOKENS_TABLE,
            "Topic": stack.topic_arn,
            "OperationsTopic": operations["TopicArn"],
            "PortalSecret": stack.secret_id,
        },
        extra={"INBOUND_URL": f"{api.url}/app/{KEY}", "AUTH_SERVERS": portal.server_endpoint},
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        delivery = portal.install_app(CLIENT, f"{api.url}/app/{KEY}/install", app=client_id)
        assert delivery.status == 200, delivery.answer
        assert json.loads(delivery.answer)["bound"] is True
        yield client_id
    finally:
        api.stop()


def run(checker: ModuleType) -> None:
    checker.lambda_handler(scheduled_event(), LambdaContext())


def states(stack: Stack) -> dict[str, str]:
    return {str(i["sk"]): str(i["state"]) for i in stack.items("STATE")}


def lines_asked(portal: LocalPortal) -> set[int]:
    """The lines the client portal was asked the status of (alone or in a batch's commands)."""
    said = json.dumps([r.params for r in portal.requests(CLIENT)])
    return {int(n) for n in re.findall(r"LINE(?:%5D|\])?(?:=|\\?\": \\?\")(\d+)", said)}


def token_item() -> dict[str, Any]:
    table = boto3.resource("dynamodb", region_name=REGION).Table(TOKENS_TABLE)
    item = table.get_item(Key={"pk": "PORTAL", "sk": CLIENT}).get("Item")
    assert item is not None
    return item


def test_a_deleted_line_is_retired_at_the_next_run_and_never_reads_down(
    stack: Stack, portal: LocalPortal, checker: ModuleType, inbound: str
) -> None:
    run(checker)
    assert states(stack) == {f"{CLIENT}/{CONNECTOR}/7": "UP", f"{CLIENT}/{CONNECTOR}/8": "UP"}
    pair = {k: token_item()[k] for k in ("access_token", "refresh_token", "version")}
    assert lines_asked(portal) == {7, 8}

    deliveries = portal.delete_line(CLIENT, 8)

    assert [d.status for d in deliveries] == [200]
    assert json.loads(deliveries[0].answer) == {"portal": CLIENT, "line_deleted": 8}
    item = token_item()
    assert set(item["deleted_lines"]) == {"8"}
    assert {k: item[k] for k in pair} == pair  # the pair untouched
    portal.clear_requests()

    run(checker)

    assert states(stack) == {f"{CLIENT}/{CONNECTOR}/7": "UP"}  # line 8 not held, not DOWN
    assert stack.alerts() == []
    assert lines_asked(portal) == {7}


def test_a_deleted_lines_open_incident_closes_as_no_longer_monitored(
    stack: Stack, portal: LocalPortal, checker: ModuleType, inbound: str
) -> None:
    run(checker)
    portal.disconnect(CLIENT, CONNECTOR, 8)
    run(checker)
    run(checker)  # FailureThreshold 2: the incident opens
    assert [a["event"] for a in stack.alerts()] == ["connector.down"]

    portal.delete_line(CLIENT, 8)
    run(checker)

    (closing,) = stack.alerts()
    assert closing["subject"].startswith("NO LONGER MONITORED (LINE DELETED)")
    assert closing["line"] == "8" and "line-delete event" in closing["message"]
    assert states(stack) == {f"{CLIENT}/{CONNECTOR}/7": "UP"}


def test_a_delete_event_for_a_line_the_portal_still_lists_retires_nothing(
    stack: Stack, portal: LocalPortal, checker: ModuleType, inbound: str
) -> None:
    """A genuine event that names a line the inventory still lists (the event was wrong, or the
    id is in use again): the line stays a target."""
    run(checker)
    form = dict(parse_qsl(_install_form(portal)))
    event = {
        "event": "ONIMCONNECTORLINEDELETE",
        "event_handler_id": "1",
        "data": "8",
        "ts": form["ts"],
        **{k: v for k, v in form.items() if k.startswith("auth[") and "token" not in k},
        "auth[application_token]": form["auth[application_token]"],
    }
    answer = requests.post(
        _events_url(portal, inbound), data=urlencode(event), headers=FORM, timeout=10
    )
    assert answer.status_code == 200, answer.text

    run(checker)

    assert states(stack) == {f"{CLIENT}/{CONNECTOR}/7": "UP", f"{CLIENT}/{CONNECTOR}/8": "UP"}
    assert stack.alerts() == []


def test_a_forged_delete_event_is_forbidden_and_writes_nothing(
    stack: Stack, portal: LocalPortal, checker: ModuleType, inbound: str
) -> None:
    before = token_item()
    form = dict(parse_qsl(_install_form(portal)))
    forged = {
        "event": "ONIMCONNECTORLINEDELETE",
        "event_handler_id": "1",
        "data": "8",
        "ts": form["ts"],
        "auth[domain]": CLIENT,
        "auth[member_id]": form["auth[member_id]"],
        "auth[application_token]": "0" * 32,
    }

    answer = requests.post(
        _events_url(portal, inbound), data=urlencode(forged), headers=FORM, timeout=10
    )

    assert answer.status_code == 403 and answer.json()["error"] == "FORBIDDEN"
    assert token_item() == before and "deleted_lines" not in before


def _install_form(portal: LocalPortal) -> str:
    (delivery,) = [d for d in portal.deliveries() if d.event == "ONAPPINSTALL"]
    return urlencode(list(delivery.form))


def _install_url(portal: LocalPortal, client_id: str) -> str:
    return _events_url(portal, client_id).replace("/events", "/install")


def _events_url(portal: LocalPortal, client_id: str) -> str:
    (binding,) = [
        b for b in portal.bindings(CLIENT, client_id) if b.event == "ONIMCONNECTORLINEDELETE"
    ]
    return str(binding.handler)


def test_a_reinstall_after_the_delete_event_keeps_the_mark_and_the_line_is_retired(
    stack: Stack, portal: LocalPortal, checker: ModuleType, inbound: str
) -> None:
    run(checker)
    portal.delete_line(CLIENT, 8)
    before = token_item()["access_token"]
    time.sleep(1 - time.time() % 1)  # an install in the same second as the first is a replay

    again = portal.install_app(CLIENT, _install_url(portal, inbound), app=inbound)

    assert again.status == 200 and json.loads(again.answer)["stored"] is True
    item = token_item()
    assert item["access_token"] != before and set(item["deleted_lines"]) == {"8"}
    run(checker)
    assert states(stack) == {f"{CLIENT}/{CONNECTOR}/7": "UP"}
    assert stack.alerts() == []
