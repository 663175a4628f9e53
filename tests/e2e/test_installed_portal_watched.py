"""Issue 19, item 7: the registry's `*/connector/*` watch covers every installed portal, so an
install is monitored from the next run with no other step. A portal installs the application
(the local portal posts ONAPPINSTALL, as Bitrix24 does), its pair lands in the fleet's token
table as the install writes it, and the next scheduled run checks its lines."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import boto3
import pytest

from connector_monitor.aws.token_table import TablePairs
from connector_monitor.tokens.credentials import PortalCredentials, apps_of
from local.bitrix24_portal import LocalPortal
from local.bitrix24_portal.tls import local_authority
from tests.e2e.conftest import CONNECTOR, PORTAL, REGION, TOKENS_TABLE, Stack, scheduled_event
from tests.events import LambdaContext
from tests.integration.test_local_portal_apps import Receiver

NEW = "installed.bitrix24.test"
APP = "monitor"


@pytest.fixture
def watched_fleet(stack: Stack, portal: LocalPortal, monkeypatch: pytest.MonkeyPatch) -> str:
    """One portal in the secret, the fleet's application in its "apps", a `*/connector/*`
    registry watch and no TARGETS; a second portal that has not installed the application."""
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
    table = boto3.resource("dynamodb", region_name=REGION).Table(stack.table)
    table.put_item(
        Item={
            "pk": "REGISTRY",
            "sk": f"*/{CONNECTOR}/*",
            "portal": "*",
            "connector": CONNECTOR,
            "line": "*",
            "added_at": "2026-12-06T06:00:00.000000Z",
            "added_by": "test",
        }
    )
    monkeypatch.setenv("TARGETS", "")
    portal.add_portal(NEW, connectors={CONNECTOR: "Mine"}, lines={7: "Sales", 8: "VIP"})
    portal.connect(NEW, CONNECTOR, 7)
    return client_id


def run(checker: ModuleType) -> None:
    checker.lambda_handler(scheduled_event(), LambdaContext())


def checked_portals(stack: Stack) -> set[str]:
    return {str(item["sk"]).split("/")[0] for item in stack.items("STATE")}


def store_as_the_install_does(stack: Stack, form: dict[str, str]) -> None:
    """The pair the ONAPPINSTALL form carries, written to the token table under the fleet's
    application, as the stack's install function stores it."""
    apps = apps_of(stack.secret())
    pair = PortalCredentials(
        portal=form["auth[domain]"],
        client_id=apps[APP].client_id,
        client_secret=apps[APP].client_secret,
        access_token=form["auth[access_token]"],
        refresh_token=form["auth[refresh_token]"],
        client_endpoint=form["auth[client_endpoint]"],
        oauth_endpoint=apps[APP].oauth_endpoint,
        expires_at=int(form["auth[expires]"]),
        member_id=form["auth[member_id]"],
    )
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    table = TablePairs(TOKENS_TABLE, apps=lambda: apps, client=dynamodb)
    assert table.put_new(pair.portal, APP, pair)


def test_a_portal_installed_between_runs_is_checked_at_the_next_run(
    stack: Stack, portal: LocalPortal, checker: ModuleType, watched_fleet: str
) -> None:
    run(checker)
    assert checked_portals(stack) == {PORTAL}

    receiver = Receiver()
    try:
        delivery = portal.install_app(
            NEW, receiver.url(), app=watched_fleet, ca_bundle=str(local_authority().ca_file)
        )
        [(_, form)] = receiver.posts
    finally:
        receiver.close()
    assert delivery.delivered
    store_as_the_install_does(stack, dict(form))

    run(checker)  # the same warm checker: nothing was redeployed or reconfigured

    states: dict[str, Any] = {str(i["sk"]): i["state"] for i in stack.items("STATE")}
    assert checked_portals(stack) == {PORTAL, NEW}
    assert states[f"{NEW}/{CONNECTOR}/7"] == "UP"
    assert f"{NEW}/{CONNECTOR}/8" not in states  # never configured: not a target
