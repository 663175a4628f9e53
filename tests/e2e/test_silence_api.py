"""Silences and acknowledgement end to end: made over the API (SigV4-signed, as the template
authorises them), the checker holding and releasing on moto and the local portal, SNS as a
subscriber sees it."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
import requests

from local.api_server import ApiServer
from local.handlers import load_handler
from tests.e2e.conftest import CONNECTOR, PORTAL, Stack, scheduled_event
from tests.events import LambdaContext


@pytest.fixture
def served(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("STALE_AFTER_SECONDS", "0")
    with ApiServer(load_handler("snapshot_api").lambda_handler) as server:
        yield server


def run(checker: ModuleType) -> dict[str, Any]:
    summary: dict[str, Any] = checker.lambda_handler(scheduled_event(), LambdaContext())
    return summary


def test_a_silenced_outage_is_held_then_announced_once_when_the_silence_is_removed(
    stack: Stack, served: ApiServer, checker: ModuleType
) -> None:
    made = requests.post(
        f"{served.url}/silences",
        json={"portal": PORTAL, "minutes": 60, "why": "bridge upgrade"},
        timeout=5,
    )
    assert made.status_code == 201, made.text
    silence = made.json()
    assert silence["active"] is True and silence["by"].startswith("arn:aws:iam::")

    run(checker)
    stack.portal.disconnect(PORTAL, CONNECTOR, 12)
    run(checker)
    summary = run(checker)  # the second DOWN: connector.down decided, and held

    assert summary["alerts_held"] == 1
    assert stack.alerts() == []
    history = stack.items(f"HISTORY#{PORTAL}/{CONNECTOR}/12")
    assert [h["event"] for h in history] == ["connector.down"]  # recorded, not lost
    listed = requests.get(f"{served.url}/silences", timeout=5).json()["silences"]
    assert [s["id"] for s in listed] == [silence["id"]]

    removed = requests.delete(f"{served.url}/silences/{silence['id']}", timeout=5)
    assert removed.status_code == 200
    run(checker)
    run(checker)

    (alert,) = stack.alerts()
    assert (alert["event"], alert["portal"], alert["line"]) == ("connector.down", PORTAL, "12")
    assert "A silence held this alert since" in alert["message"]
    assert requests.delete(f"{served.url}/silences/{silence['id']}", timeout=5).status_code == 404
    assert requests.delete(f"{served.url}/silences/%C2%84..", timeout=5).status_code == 404


def test_a_bad_silence_is_refused_with_the_reason(stack: Stack, served: ApiServer) -> None:
    for body, reason in [
        ({"minutes": 60, "why": "x"}, "needs a portal, a connector or a cause"),
        ({"portal": PORTAL, "why": "x"}, "either until"),
        ({"portal": PORTAL, "minutes": 5}, "why"),
        ({"portal": PORTAL, "minutes": 5, "why": "x", "extra": 1}, "extra"),
        ({"portal": PORTAL, "until": "2020-01-01T00:00:00Z", "why": "x"}, "not in the future"),
        ({"portal": PORTAL, "until": "2026-02-30T00:00:00Z", "why": "x"}, "is not a time"),
        ({"portal": PORTAL, "until": "2999-01-01T00:00:00Z", "why": "x"}, "90 days at most"),
        ({"portal": "*", "connector": "c", "line": 1, "minutes": 5, "why": "x"}, "portal and"),
        ({"portal": PORTAL, "minutes": 5, "why": "   "}, "say why"),
    ]:
        answer = requests.post(f"{served.url}/silences", json=body, timeout=5)
        assert answer.status_code == 400, body
        assert answer.json()["error"] == "BAD_REQUEST"
        assert reason in answer.json()["message"], answer.json()
    for content_type in ("text/plain", "multipart/form-data"):
        as_text = requests.post(
            f"{served.url}/silences",
            data='{"portal": "a.bitrix24.com", "minutes": 5, "why": "x"}',
            headers={"Content-Type": content_type},
            timeout=5,
        )
        # the resolver refuses any body that is not JSON before a route reads it
        assert (as_text.status_code, as_text.json()["error"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
        assert "application/json" in as_text.json()["message"]
    not_utf8 = requests.post(
        f"{served.url}/silences",
        data=b"\xff\x1dvV",
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert (not_utf8.status_code, not_utf8.json()["error"]) == (400, "BAD_REQUEST")
    assert requests.get(f"{served.url}/silences", timeout=5).json() == {"silences": []}


def test_an_acknowledged_outage_is_marked_and_its_recovery_still_announced(
    stack: Stack, served: ApiServer, checker: ModuleType
) -> None:
    # That its reminders stop is the state machine's (tests/unit/test_silences.py): reminders
    # are minutes apart, and this test does not wait.
    url = f"{served.url}/acknowledgements/{PORTAL}/{CONNECTOR}/12"
    assert requests.post(url, timeout=5).status_code == 404  # nothing open yet

    stack.portal.disconnect(PORTAL, CONNECTOR, 12)
    run(checker)
    run(checker)
    assert [a["event"] for a in stack.alerts()] == ["connector.down"]

    acked = requests.post(url, timeout=5)
    assert acked.status_code == 200, acked.text
    assert acked.json()["target"] == f"{PORTAL}/{CONNECTOR}/12"
    assert acked.json()["acknowledged_by"].startswith("arn:aws:iam::")
    (status,) = [i for i in stack.items("STATE") if i["sk"] == f"{PORTAL}/{CONNECTOR}/12"]
    assert status["acked_since"] == status["down_since"]

    stack.portal.connect(PORTAL, CONNECTOR, 12)
    run(checker)
    assert [a["event"] for a in stack.alerts()] == ["connector.recovered"]
    assert requests.post(url, timeout=5).status_code == 404  # nothing open any more
