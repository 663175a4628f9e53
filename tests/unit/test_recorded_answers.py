"""The client against answers recorded from Bitrix24's own sources (tests/fixtures/bitrix24/,
each file names its source). The local portal serves the same files
(`local/bitrix24_portal/recorded.py`), so the double and the client cannot drift apart."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from connector_monitor.bitrix24.answers import (
    read_batch,
    read_connectors,
    read_envelope,
    read_lines,
    read_status,
)
from connector_monitor.bitrix24.limits import OperatingTime
from connector_monitor.bitrix24.oauth import read_refresh_answer
from connector_monitor.bitrix24.transport import HttpAnswer
from connector_monitor.domain.inventory import LineInfo
from connector_monitor.domain.portal_errors import ErrorKind, PortalError
from connector_monitor.domain.results import State
from connector_monitor.domain.targets import Target
from connector_monitor.tokens.credentials import PortalCredentials
from local.bitrix24_portal.recorded import Recorded, all_recorded, recorded

PORTAL = "portal.bitrix24.com"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def envelope(answer: Recorded) -> dict[str, object]:
    body = json.dumps(answer.body).encode()
    return read_envelope(PORTAL, answer.http_status, body, now=NOW.timestamp())


def test_every_recorded_answer_names_its_source() -> None:
    answers = all_recorded()
    assert len(answers) >= 15
    assert all("@" in a.source and a.http_status in range(200, 600) for a in answers)


def test_a_status_answer_is_up() -> None:
    result = envelope(recorded("imconnector.status"))["result"]
    checked = read_status(Target(PORTAL, "myconnector", 12), result, checked_at=NOW)
    assert checked.state is State.UP


def test_the_operating_time_of_a_successful_answer_is_read() -> None:
    payload = envelope(recorded("imconnector.status"))
    usage = OperatingTime()
    usage.note("imconnector.status", payload["time"])
    assert usage.reset_at(["imconnector.status"]) == 1738066200


def test_the_connector_list_and_the_lines() -> None:
    connectors = read_connectors(envelope(recorded("imconnector.list"))["result"])
    assert connectors == {"livechat", "telegrambot", "network", "myconnector"}
    lines = read_lines(envelope(recorded("imopenlines.config.list.get"))["result"])
    assert lines[15] == LineInfo("VIP Support Line", True)
    assert lines[17].active is False


def test_a_refused_connector_list_is_access_denied() -> None:
    with pytest.raises(PortalError) as caught:
        envelope(recorded("imconnector.list.access_denied"))
    assert (caught.value.kind, caught.value.http_status) == (ErrorKind.ACCESS_DENIED, 400)


@pytest.mark.parametrize(
    ("name", "ok", "failed"),
    [
        ("batch", {"t0", "t1"}, {}),
        ("batch.result_error", {"t0"}, {"t1": ErrorKind.BAD_REQUEST}),
        ("batch.length_exceeded", {f"t{i}" for i in range(50)}, {"t50": ErrorKind.BAD_REQUEST}),
    ],
)
def test_batch_answers(name: str, ok: set[str], failed: dict[str, ErrorKind]) -> None:
    answer = read_batch(PORTAL, envelope(recorded(name))["result"], http_status=200)
    assert set(answer.results) == ok
    assert {n: e.kind for n, e in answer.errors.items()} == failed


def test_a_batch_reports_each_commands_operating_time() -> None:
    result = envelope(recorded("batch"))["result"]
    usage = OperatingTime()
    usage.note_batch({"t0": "imconnector.status?CONNECTOR=myconnector&LINE=12"}, result)
    assert usage.methods["imconnector.status"].seconds == pytest.approx(0.03)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("error.expired_token", ErrorKind.TOKEN_EXPIRED),
        ("error.invalid_token", ErrorKind.TOKEN_EXPIRED),
        ("error.connection_error", ErrorKind.PORTAL_FAILING),
        ("error.error_core", ErrorKind.PORTAL_FAILING),
        ("error.operation_time_limit", ErrorKind.RATE_LIMITED),
        ("error.query_limit_exceeded", ErrorKind.RATE_LIMITED),
        ("error.portal_deleted", ErrorKind.PORTAL_UNAVAILABLE),
        ("error.wrong_auth_type", ErrorKind.ACCESS_DENIED),
        ("error.insufficient_scope", ErrorKind.ACCESS_DENIED),
    ],
)
def test_error_answers_are_classified(name: str, kind: ErrorKind) -> None:
    answer = recorded(name)
    assert set(answer.body) == {"error", "error_description"}  # no time block in an error
    with pytest.raises(PortalError) as caught:
        envelope(answer)
    assert caught.value.kind is kind
    assert caught.value.retry_after is None  # an error says nothing of operating_reset_at


def test_a_refresh_answer_gives_the_pair_the_endpoint_and_the_identity() -> None:
    answer = recorded("oauth.refresh")
    creds = PortalCredentials.from_secret_entry(
        PORTAL,
        {
            "client_id": "app.1",
            "client_secret": "s",
            "access_token": "old-a",
            "refresh_token": "old-r",
            "client_endpoint": "https://portal.bitrix24.com/rest/",
        },
    )
    http = HttpAnswer(answer.http_status, json.dumps(answer.body).encode())
    fresh = read_refresh_answer(creds, http, lambda: 1_780_000_000.0)
    assert (fresh.access_token, fresh.refresh_token) == (
        answer.body["access_token"],
        answer.body["refresh_token"],
    )
    assert fresh.expires_at == answer.body["expires"]
    assert fresh.member_id == answer.body["member_id"]
    assert fresh.client_endpoint == answer.body["client_endpoint"]
    refused = recorded("oauth.invalid_grant")
    with pytest.raises(PortalError) as caught:
        read_refresh_answer(creds, HttpAnswer(400, json.dumps(refused.body).encode()), lambda: 0)
    assert caught.value.kind is ErrorKind.AUTH_LOST
