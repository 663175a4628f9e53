"""The target registry end to end: entries added over the API (and the CLI), the checker reading
them beside TARGETS, discovery on the local portal, removal closing what was open.

The local portal answers `imconnector.status` for a pair never activated with all flags false
(as core imconnector/lib/rest/status.php does for a Status that was never saved), so the
discovery tests see what a live portal would: lines where the connector was never configured
are not targets.
"""

from __future__ import annotations

import json
import re
from types import ModuleType
from typing import Any

import boto3
import pytest
import requests

from connector_monitor.api.paging import encode_cursor
from local.api_server import ApiServer
from local.bitrix24_portal import LocalPortal
from local.handlers import load_handler
from monitorctl.cli import main as monitorctl
from tests.e2e.conftest import CONNECTOR, LINES, PORTAL, REGION, Stack, scheduled_event
from tests.events import LambdaContext, http_event, load_event

OTHER = "other.bitrix24.com"


@pytest.fixture
def api(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("STALE_AFTER_SECONDS", "0")
    return load_handler("snapshot_api")


@pytest.fixture
def served(api: ModuleType) -> Any:
    with ApiServer(api.lambda_handler) as server:
        yield server


def run(checker: ModuleType) -> dict[str, Any]:
    summary: dict[str, Any] = checker.lambda_handler(scheduled_event(), LambdaContext())
    return summary


def watched(stack: Stack) -> list[str]:
    return sorted(str(i["sk"]) for i in stack.items("STATE"))


def registry_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARGETS", "")


def test_entries_added_over_the_api_are_checked_by_the_next_run(
    stack: Stack, served: ApiServer, checker: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry_only(monkeypatch)
    added = requests.put(f"{served.url}/registry/{PORTAL}/{CONNECTOR}/12", timeout=5)
    again = requests.put(f"{served.url}/registry/{PORTAL}/MyConnector/12", timeout=5)

    assert added.status_code == 201
    assert added.json()["key"] == f"{PORTAL}/{CONNECTOR}/12"
    assert added.json()["added_by"].startswith("arn:aws:iam::")  # the signed caller
    assert again.status_code == 200  # the same entry (ids are lowercase): harmless

    summary = run(checker)

    assert (summary["targets"], summary["up"]) == (1, 1)
    assert watched(stack) == [f"{PORTAL}/{CONNECTOR}/12"]
    listing = requests.get(f"{served.url}/registry", timeout=5).json()
    assert [e["key"] for e in listing["entries"]] == [f"{PORTAL}/{CONNECTOR}/12"]


def test_a_watch_discovers_the_configured_lines_only(
    stack: Stack, served: ApiServer, checker: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry_only(monkeypatch)
    stack.portal.add_lines(PORTAL, {20: "Never configured"})
    assert requests.put(f"{served.url}/registry/*/{CONNECTOR}/*", timeout=5).status_code == 201

    summary = run(checker)

    assert watched(stack) == sorted(f"{PORTAL}/{CONNECTOR}/{line}" for line in LINES)
    assert summary["down"] == 0  # line 20 answered all flags false: not a target, no outage
    assert stack.alerts() == []


def test_removing_an_entry_closes_its_open_incident_once(
    stack: Stack, served: ApiServer, checker: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry_only(monkeypatch)
    requests.put(f"{served.url}/registry/{PORTAL}/{CONNECTOR}/14", timeout=5)
    requests.put(f"{served.url}/registry/{PORTAL}/{CONNECTOR}/12", timeout=5)
    stack.portal.disconnect(PORTAL, CONNECTOR, 14)
    run(checker)
    run(checker)
    assert [a["event"] for a in stack.alerts()] == ["connector.down"]

    gone = requests.delete(f"{served.url}/registry/{PORTAL}/{CONNECTOR}/14", timeout=5)
    missing = requests.delete(f"{served.url}/registry/{PORTAL}/{CONNECTOR}/14", timeout=5)
    run(checker)

    assert gone.status_code == 204 and not gone.content
    assert (missing.status_code, missing.json()["error"]) == (404, "NOT_FOUND")
    (closing,) = stack.alerts()
    assert "NO LONGER MONITORED" in closing["subject"]
    assert watched(stack) == [f"{PORTAL}/{CONNECTOR}/12"]


@pytest.mark.parametrize(
    ("path", "why"),
    [
        (f"/registry/{PORTAL}/my.connector/12", "cuts an id at its first dot"),
        (f"/registry/*/{CONNECTOR}/12", "needs '*' as the line"),
        (f"/registry/{PORTAL}/{CONNECTOR}/0", "positive"),
        (f"/registry/https:%2F%2F{PORTAL}/{CONNECTOR}/1", "not a portal domain"),
        (f"/registry/{PORTAL}/{CONNECTOR}/12.0", "line"),
    ],
)
def test_a_bad_entry_is_refused_with_the_reason_and_stores_nothing(
    stack: Stack, served: ApiServer, path: str, why: str
) -> None:
    answer = requests.put(f"{served.url}{path}", timeout=5)

    assert answer.status_code == 400
    assert answer.json()["error"] == "BAD_TARGET"
    assert why in answer.json()["message"]
    assert stack.items("REGISTRY") == []


def test_a_hand_written_item_is_a_configuration_problem_not_a_lost_fleet(
    stack: Stack, checker: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry_only(monkeypatch)
    table = boto3.resource("dynamodb", region_name=REGION).Table(stack.table)
    table.put_item(Item={"pk": "REGISTRY", "sk": "garbage", "portal": "x y"})
    assert monitorctl(["--table", stack.table, "targets", "add", f"{PORTAL}/{CONNECTOR}/12"]) == 0

    summary = run(checker)

    assert (summary["up"], summary["config_errors"]) == (1, 1)
    (problem,) = stack.items("CONFIG")
    assert problem["entry"] == "registry garbage"


def test_targets_and_the_registry_together_are_checked_once_each(
    stack: Stack, checker: ModuleType
) -> None:
    """The stack's TARGETS name lines 12, 14, 16; the registry repeats 12 and adds a watch."""
    assert (
        monitorctl(
            [
                "--table",
                stack.table,
                "targets",
                "add",
                f"{PORTAL}/{CONNECTOR}/12",
                f"{PORTAL}/{CONNECTOR}/*",
            ]
        )
        == 0
    )
    stack.portal.add_portal(OTHER, connectors={CONNECTOR: "C"}, lines={1: "L"})

    summary = run(checker)

    assert summary["targets"] == len(LINES)
    assert watched(stack) == sorted(f"{PORTAL}/{CONNECTOR}/{line}" for line in LINES)


def test_an_empty_registry_and_empty_targets_check_nothing_and_say_so(
    stack: Stack, checker: ModuleType, monkeypatch: pytest.MonkeyPatch, portal: LocalPortal
) -> None:
    run(checker)
    registry_only(monkeypatch)  # a redeploy with Targets emptied, the registry empty too

    summary = run(load_handler("checker"))

    assert summary["failed"] and "registry" in summary["failed"]
    assert len(watched(stack)) == len(LINES)  # nothing stored is forgotten


# ---- API Gateway's events (events/registry_*.json), as a signed editor's requests arrive ------
EDITOR = "arn:aws:iam::123456789012:user/registry-editor"
ENTRY = f"{PORTAL}/{CONNECTOR}/12"
STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def call(api: ModuleType, event: dict[str, Any]) -> tuple[int, Any]:
    """The status and the JSON body (None when empty) the caller sees."""
    response = api.lambda_handler(event, LambdaContext())
    body = response["body"]
    return response["statusCode"], json.loads(body) if body else None


def test_the_registry_events_are_iam_signed_requests_of_the_templates_routes() -> None:
    routes = {
        "registry_get": "GET /registry",
        "registry_put": "PUT /registry/{portal}/{connector}/{line}",
        "registry_delete": "DELETE /registry/{portal}/{connector}/{line}",
    }
    for name, route in routes.items():
        event = load_event(name)
        assert (event["version"], event["routeKey"]) == ("2.0", route)
        assert event["requestContext"]["routeKey"] == route
        assert event["requestContext"]["http"]["method"] == route.split(" ")[0]
        assert event["requestContext"]["authorizer"]["iam"]["userArn"] == EDITOR
        assert event["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 ")


def test_an_entry_put_is_listed_by_the_next_get_with_its_editor(
    stack: Stack, api: ModuleType
) -> None:
    added = call(api, load_event("registry_put"))
    again = call(api, load_event("registry_put"))
    code, listing = call(api, load_event("registry_get"))

    assert added[0] == 201
    assert added[1]["key"] == ENTRY
    assert (added[1]["line"], added[1]["added_by"]) == ("12", EDITOR)
    assert again == (200, added[1])  # adding twice is harmless
    assert code == 200
    assert listing["entries"] == [added[1]]
    assert STAMP.match(listing["entries"][0]["added_at"])
    assert listing["next_cursor"] is None


def test_an_entry_deleted_is_gone_from_the_listing_and_deleting_it_again_is_404(
    stack: Stack, api: ModuleType
) -> None:
    call(api, load_event("registry_put"))

    removed = call(api, load_event("registry_delete"))
    missing = call(api, load_event("registry_delete"))
    _, listing = call(api, load_event("registry_get"))

    assert removed == (204, None)
    assert missing[0] == 404
    assert missing[1] == {
        "error": "NOT_FOUND",
        "message": f"the registry holds no entry {ENTRY}",
    }
    assert listing["entries"] == []
    assert stack.items("REGISTRY") == []


def test_the_listing_pages_with_the_snapshots_paging_rule(stack: Stack, api: ModuleType) -> None:
    for line in (12, 14, 16):
        event = load_event("registry_put")
        event["rawPath"] = event["requestContext"]["http"]["path"] = f"/registry/{PORTAL}/c/{line}"
        event["pathParameters"] = {"portal": PORTAL, "connector": "c", "line": str(line)}
        assert call(api, event)[0] == 201

    code, first = call(api, http_event("registry_get", query={"limit": "2"}))
    _, rest = call(api, http_event("registry_get", query={"cursor": first["next_cursor"]}))
    too_many = call(api, http_event("registry_get", query={"limit": "1001"}))
    bad_cursor = call(api, http_event("registry_get", query={"cursor": "bm90IGEga2V5"}))

    assert code == 200
    assert [e["line"] for e in first["entries"] + rest["entries"]] == ["12", "14", "16"]
    assert rest["next_cursor"] is None
    assert (too_many[0], too_many[1]["error"]) == (400, "BAD_FILTER")
    assert (bad_cursor[0], bad_cursor[1]["error"]) == (400, "BAD_CURSOR")


def test_a_cursor_spelling_its_domain_in_upper_case_is_refused_not_restarted(
    stack: Stack, api: ModuleType
) -> None:
    """Keys are stored in lower case, so `EXAMPLE.bitrix24.com/c/12` is no key this API
    handed out: taken as it is, it sorts before every stored key ("E" < "e") and the listing
    would quietly start again from the first entry."""
    for line in (12, 14, 16):
        event = load_event("registry_put")
        event["rawPath"] = event["requestContext"]["http"]["path"] = f"/registry/{PORTAL}/c/{line}"
        event["pathParameters"] = {"portal": PORTAL, "connector": "c", "line": str(line)}
        assert call(api, event)[0] == 201
    shouted = encode_cursor(f"{PORTAL.upper()}/c/12")
    as_handed_out = encode_cursor(f"{PORTAL}/c/12")

    refused = call(api, http_event("registry_get", query={"cursor": shouted}))
    code, rest = call(api, http_event("registry_get", query={"cursor": as_handed_out}))

    assert refused == (
        400,
        {
            "error": "BAD_CURSOR",
            "message": "cursor is not valid here: pass next_cursor from the previous page",
        },
    )
    assert (code, [e["line"] for e in rest["entries"]]) == (200, ["14", "16"])


def test_an_unreadable_table_is_503_unavailable_on_every_registry_route(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TABLE_NAME", "no-such-table")
    api = load_handler("snapshot_api")

    for name in ("registry_get", "registry_put", "registry_delete"):
        code, body = call(api, load_event(name))
        assert (code, body["error"]) == (503, "UNAVAILABLE"), name
        assert "no-such-table" not in body["message"]


def test_labels_set_over_the_api_and_line_names_reach_alerts_and_the_snapshot(
    stack: Stack, served: ApiServer, checker: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry_only(monkeypatch)
    for line in (12, 14):
        requests.put(f"{served.url}/registry/{PORTAL}/{CONNECTOR}/{line}", timeout=5)
    labels = {"client": "Acme", "owner": "jane", "runbook": "https://wiki.example.com/acme"}
    answer = requests.put(f"{served.url}/registry/labels/{PORTAL}", json=labels, timeout=5)
    assert answer.status_code == 200
    assert answer.json() == {"portal": PORTAL, "labels": {**labels, "tier": None}}
    refused = requests.put(
        f"{served.url}/registry/labels/{PORTAL}", json={"runbook": "ftp://x"}, timeout=5
    )
    assert (refused.status_code, refused.json()["error"]) == (400, "BAD_TARGET")

    run(checker)
    for line in (12, 14):
        stack.portal.set_status(PORTAL, CONNECTOR, line, configured=False, error=False)
    run(checker)
    run(checker)

    (down,) = stack.alerts()  # both lines in one message
    assert (down["event"], down["cause"], down["targets"], down["line"]) == (
        "connector.down",
        "connector_down",
        "2",
        "*",
    )
    assert down["subject"] == f"CONNECTOR DOWN: {CONNECTOR} on 2 lines at {PORTAL}"
    assert "Client:    Acme (owner: jane)" in down["message"]
    assert "Runbook:   https://wiki.example.com/acme" in down["message"]
    # the lines' names as the portal lists them (imopenlines.config.list.get LINE_NAME,
    # bitrix24/b24restdocs api-reference/imopenlines/openlines/imopenlines-config-list-get.md)
    assert f"- {CONNECTOR} on line {LINES[12]} (12)" in down["message"]
    assert f"- {CONNECTOR} on line {LINES[14]} (14)" in down["message"]

    targets = requests.get(f"{served.url}/snapshot", timeout=5).json()["targets"]
    assert {(t["line"], t["line_name"]) for t in targets} == {(12, "Sales"), (14, "VIP")}
    assert all(t["labels"]["client"] == "Acme" for t in targets)
