"""The checker against a portal that behaves as a live one: it moves, it has other apps, its
connector list needs rights. Sources are cited per test; the local portal follows them."""

from __future__ import annotations

import io
import json
from types import ModuleType
from typing import Any

import requests

from local.handlers import LambdaContext
from tests.e2e.conftest import CONNECTOR, LINES, PORTAL, Stack, scheduled_event

NEW_ADDRESS = "renamed.bitrix24.com"


def invoke(checker: ModuleType) -> dict[str, Any]:
    result: dict[str, Any] = checker.lambda_handler(scheduled_event(), LambdaContext())
    return result


def test_a_portal_that_moved_is_followed_where_the_oauth_server_says(
    checker: ModuleType, stack: Stack, log_stream: io.StringIO
) -> None:
    """The old address answers 302 (bitrix24/b24restdocs settings/how-to-call-rest-api/
    change-domen.md). The monitor does not follow the redirect; it asks the OAuth server,
    whose refresh answer names the portal's REST address (client_endpoint) and identity
    (member_id, which survives the move: settings/oauth/index.md), and stores both."""
    invoke(checker)
    stack.portal.move(PORTAL, NEW_ADDRESS)

    summary = invoke(checker)

    assert (summary["up"], summary["unknown"]) == (len(LINES), 0)
    entry = stack.secret()["portals"][PORTAL]
    assert entry["client_endpoint"] == stack.portal.client_endpoint(NEW_ADDRESS)
    assert len(entry["member_id"]) == 32
    assert stack.portal.refresh_count(PORTAL) == 1
    assert stack.alerts() == []
    moved = [json.loads(line) for line in log_stream.getvalue().splitlines() if "moved" in line]
    assert any(NEW_ADDRESS in line["message"] for line in moved)
    again = invoke(checker)  # the stored address is used from now on: no redirect, no refresh
    assert again["up"] == len(LINES) and stack.portal.refresh_count(PORTAL) == 1


def test_the_monitor_has_its_own_app_so_the_connectors_backend_never_spends_its_tokens(
    checker: ModuleType, stack: Stack
) -> None:
    """The recommended set-up: a dedicated monitor app (imopenlines scope) on each portal.
    imconnector.status answers for a connector another app registered (core imconnector/lib/
    rest/status.php::getStatus() checks no ownership), and refresh tokens are single-use: an
    app whose tokens two programs share has them burnt by whichever refreshes second."""
    backend = stack.portal.credentials(PORTAL)  # the connector's own backend app
    monitor = stack.secret()["portals"][PORTAL]
    assert backend["client_id"] != monitor["client_id"]

    invoke(checker)
    answer = requests.get(
        backend["oauth_endpoint"],
        params={
            "grant_type": "refresh_token",
            "client_id": backend["client_id"],
            "client_secret": backend["client_secret"],
            "refresh_token": backend["refresh_token"],
        },
        timeout=5,
        verify=stack.portal.ca_file,
    )
    answer.raise_for_status()  # the backend refreshes as often as it likes
    summary = invoke(checker)

    assert (summary["up"], summary["unknown"]) == (len(LINES), 0)
    assert stack.secret()["portals"][PORTAL]["refresh_token"] == monitor["refresh_token"]
    items = {i["sk"]: i["state"] for i in stack.items("STATE")}
    assert set(items) == {f"{PORTAL}/{CONNECTOR}/{line}" for line in LINES}
