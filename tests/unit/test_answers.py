"""Reading the portal's answers: every documented variant accepted, anything else a clear error."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import pytest

from connector_monitor.bitrix24.answers import (
    AnswerError,
    lines_params,
    parse_flag,
    php_query,
    read_batch,
    read_connectors,
    read_envelope,
    read_lines,
    read_status,
    status_command,
)
from connector_monitor.domain.inventory import LineInfo
from connector_monitor.domain.portal_errors import ErrorKind, PortalError
from connector_monitor.domain.results import Cause, State
from connector_monitor.domain.targets import Target

PORTAL = "a.bitrix24.com"
TARGET = Target(PORTAL, "myconnector", 12)
AT = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def status(**flags: Any) -> dict[str, Any]:
    return {"LINE": 12, "CONNECTOR": "myconnector", **flags}


# --- flags ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "flag"),
    [
        (True, True),
        (False, False),
        ("Y", True),
        ("N", False),
        ("y", True),
        (" n ", False),
        (1, True),
        (0, False),
        ("1", True),
        ("0", False),
        ("true", True),
        ("false", False),
        ("TRUE", True),
    ],
)
def test_flag_variants_are_read(raw: object, flag: bool) -> None:
    assert parse_flag(raw) is flag


@pytest.mark.parametrize("raw", [None, "", "maybe", 2, -1, 1.0, [], {}, "False!"])
def test_unreadable_flag_is_none_never_a_guess(raw: object) -> None:
    assert parse_flag(raw) is None


# --- imconnector.status -----------------------------------------------------------------------


def test_json_booleans_up() -> None:
    result = read_status(TARGET, status(STATUS=True, CONFIGURED=True, ERROR=False), checked_at=AT)
    assert (result.state, result.status, result.configured, result.error) == (
        State.UP,
        True,
        True,
        False,
    )
    assert result.checked_at == AT
    assert result.detail is None


def test_y_n_flags_down_with_the_reason() -> None:
    result = read_status(TARGET, status(STATUS="N", CONFIGURED="Y", ERROR="Y"), checked_at=AT)
    assert result.state is State.DOWN
    assert (result.configured, result.error) == (True, True)
    assert result.detail is not None
    assert "imconnector.activate" in result.detail


def test_one_zero_flags() -> None:
    result = read_status(TARGET, status(STATUS=1, CONFIGURED="1", ERROR=0), checked_at=AT)
    assert result.state is State.UP


def test_status_is_the_truth_even_against_the_other_flags() -> None:
    result = read_status(TARGET, status(STATUS=False, CONFIGURED=True, ERROR=False), checked_at=AT)
    assert result.state is State.DOWN


def test_lowercase_keys_and_string_line_are_accepted() -> None:
    answer = {
        "line": "12",
        "connector": "myconnector",
        "status": "Y",
        "configured": "Y",
        "error": "N",
    }
    assert read_status(TARGET, answer, checked_at=AT).state is State.UP


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (status(CONFIGURED=True, ERROR=False), "lacks STATUS"),
        (status(STATUS=True, ERROR=False), "lacks CONFIGURED"),
        (status(STATUS="maybe", CONFIGURED=True, ERROR=False), 'STATUS is unreadable ("maybe")'),
        (status(STATUS=True, CONFIGURED=True, ERROR=None), "ERROR is unreadable (null)"),
        ([], "a JSON array"),
        (None, "a JSON null"),
        ("ok", "a JSON string"),
        (
            {**status(STATUS=True, CONFIGURED=True, ERROR=False), "LINE": 14},
            "line 14 instead of 12",
        ),
        ({**status(STATUS=True, CONFIGURED=True, ERROR=False), "CONNECTOR": "x"}, "connector 'x'"),
    ],
)
def test_missing_or_garbled_answer_is_unknown_bad_answer(answer: object, why: str) -> None:
    result = read_status(TARGET, answer, checked_at=AT)
    assert result.state is State.UNKNOWN
    assert result.cause is Cause.BAD_ANSWER
    assert result.status is None
    assert result.detail is not None
    assert why in result.detail


# --- commands ---------------------------------------------------------------------------------


def test_status_command_always_sends_line_and_encodes() -> None:
    command = status_command(Target(PORTAL, "my.conn-1", 7))
    method, _, query = command.partition("?")
    assert method == "imconnector.status"
    assert dict(parse_qsl(query)) == {"CONNECTOR": "my.conn-1", "LINE": "7"}
    assert " " not in command


def test_php_query_nests_with_brackets_and_sends_booleans_as_1_0() -> None:
    query = php_query(
        {"PARAMS": {"select": ["ID", "ACTIVE"], "limit": 200}, "on": True, "x": False}
    )
    assert parse_qsl(query) == [
        ("PARAMS[select][0]", "ID"),
        ("PARAMS[select][1]", "ACTIVE"),
        ("PARAMS[limit]", "200"),
        ("on", "1"),
        ("x", "0"),
    ]


def test_lines_params_page_by_200_after_the_last_id_seen() -> None:
    # Keyset paging, not offsets: the method passes PARAMS to the ORM as they are (core
    # yuliai/bitrix-modules imopenlines/lib/config.php::getList(): ConfigTable::getList($params);
    # docs bitrix24/b24restdocs api-reference/imopenlines/openlines/imopenlines-config-list-get.md:
    # select, order, filter), so a line deleted between two pages cannot shift the next one.
    params = lines_params(after=400)["PARAMS"]
    assert params["limit"] == 200
    assert params["filter"] == {">ID": 400}
    assert params["order"] == {"ID": "ASC"}
    assert "offset" not in params
    assert params["select"] == ["ID", "LINE_NAME", "ACTIVE"]
    assert "filter" not in lines_params()["PARAMS"]  # the first page


# --- batch ------------------------------------------------------------------------------------


def test_batch_with_empty_sections_as_lists() -> None:
    answer = read_batch(PORTAL, {"result": [], "result_error": [], "result_total": []})
    assert answer.results == {}
    assert answer.errors == {}


def test_batch_failed_command_only_in_errors() -> None:
    answer = read_batch(
        PORTAL,
        {
            "result": {"t0": status(STATUS=True, CONFIGURED=True, ERROR=False)},
            "result_error": {
                "t1": {"error": "ACCESS_DENIED", "error_description": "no access"},
                "t2": "QUERY_LIMIT_EXCEEDED",
                "t3": {"what": 1},
            },
        },
        http_status=200,
    )
    assert set(answer.results) == {"t0"}
    assert answer.errors["t1"].kind is ErrorKind.ACCESS_DENIED
    assert answer.errors["t1"].description == "no access"
    assert answer.errors["t1"].http_status == 200
    assert answer.errors["t2"].kind is ErrorKind.RATE_LIMITED
    assert answer.errors["t3"].kind is ErrorKind.BAD_ANSWER


def test_batch_command_in_both_sections_counts_as_failed() -> None:
    answer = read_batch(
        PORTAL, {"result": {"t0": False}, "result_error": {"t0": {"error": "ERROR_ARGUMENT"}}}
    )
    assert answer.results == {}
    assert set(answer.errors) == {"t0"}


def test_batch_empty_result_means_nothing_answered() -> None:
    assert read_batch(PORTAL, []).results == {}


@pytest.mark.parametrize(
    "result", ["unexpected", 5, {"result_total": 3}, {"result": "x"}, {"result_error": 7}]
)
def test_batch_of_the_wrong_shape_is_an_answer_error(result: object) -> None:
    with pytest.raises(AnswerError):
        read_batch(PORTAL, result)


# --- discovery --------------------------------------------------------------------------------


def test_connectors_from_a_mapping_lowercased() -> None:
    assert read_connectors({"MyConnector": "My", "telegrambot": "Telegram"}) == {
        "myconnector",
        "telegrambot",
    }


def test_no_connectors_arrive_as_an_empty_list() -> None:
    assert read_connectors([]) == frozenset()


@pytest.mark.parametrize("result", ["x", None, 3, [{"name": "no id"}]])
def test_unreadable_connector_list(result: object) -> None:
    with pytest.raises(AnswerError):
        read_connectors(result)


def test_lines_ids_are_strings_turned_into_ints() -> None:
    lines = read_lines(
        [
            {"ID": "12", "LINE_NAME": "Sales", "ACTIVE": "Y"},
            {"ID": 14, "LINE_NAME": "VIP", "ACTIVE": "N"},
            {"ID": "15", "LINE_NAME": None, "ACTIVE": "?"},
        ]
    )
    assert lines == {
        12: LineInfo("Sales", active=True),
        14: LineInfo("VIP", active=False),
        15: LineInfo("", active=True),  # unreadable ACTIVE must not invent a config error
    }


def test_no_lines() -> None:
    assert read_lines([]) == {}


@pytest.mark.parametrize("result", ["x", None, [{"LINE_NAME": "no id"}], [{"ID": "abc"}], [5]])
def test_unreadable_line_list_fails_whole(result: object) -> None:
    with pytest.raises(AnswerError):
        read_lines(result)


# --- the REST envelope ------------------------------------------------------------------------


def envelope(status: int, body: bytes | str | object, **kw: Any) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body))
    return read_envelope(PORTAL, status, raw.encode() if isinstance(raw, str) else raw, **kw)


def failure(status: int, body: bytes | str | object, **kw: Any) -> PortalError:
    with pytest.raises(PortalError) as caught:
        envelope(status, body, **kw)
    assert caught.value.__cause__ is None
    return caught.value


def test_success_envelope() -> None:
    assert envelope(200, {"result": {"x": 1}, "time": {}})["result"] == {"x": 1}


def test_error_envelope_is_classified_by_code() -> None:
    err = failure(401, {"error": "expired_token", "error_description": "The access token expired"})
    assert err.kind is ErrorKind.TOKEN_EXPIRED
    assert (err.code, err.http_status) == ("expired_token", 401)


def test_error_in_a_200_body_counts() -> None:
    assert failure(200, {"error": "wrong_client"}).kind is ErrorKind.AUTH_LOST


@pytest.mark.parametrize(
    ("status", "body", "content_type", "kind", "words"),
    [
        (
            502,
            "<html><title>502 Bad Gateway</title></html>",
            "text/html",
            ErrorKind.PORTAL_FAILING,
            "HTML page",
        ),
        (200, "<!DOCTYPE html><p>maintenance", "", ErrorKind.BAD_ANSWER, "HTML page"),
        (200, '{"result": {"t0": {"STA', "application/json", ErrorKind.BAD_ANSWER, "truncated"),
        (200, "Service is temporarily unavailable", "text/plain", ErrorKind.BAD_ANSWER, "not JSON"),
        (500, "", "text/plain", ErrorKind.PORTAL_FAILING, "empty body"),
        (200, b"\xff\xfe\x00garbage", "", ErrorKind.BAD_ANSWER, "not JSON"),
        (200, "[1, 2]", "application/json", ErrorKind.BAD_ANSWER, "JSON array"),
        (200, '"ok"', "application/json", ErrorKind.BAD_ANSWER, "JSON string"),
        (200, '{"time": {}}', "application/json", ErrorKind.BAD_ANSWER, "neither result nor error"),
        (
            503,
            '{"time": {}}',
            "application/json",
            ErrorKind.PORTAL_FAILING,
            "without an error code",
        ),
        (403, "{}", "application/json", ErrorKind.ACCESS_DENIED, "without an error code"),
        (301, "", "text/html", ErrorKind.BAD_REQUEST, "redirect"),
    ],
)
def test_unreadable_answers_are_classified_never_raised_raw(
    status: int, body: str | bytes, content_type: str, kind: ErrorKind, words: str
) -> None:
    err = failure(status, body, content_type=content_type)
    assert err.kind is kind
    assert words in err.description
    assert err.http_status == status


def test_body_text_is_never_quoted() -> None:
    err = failure(502, "<html>secret-ish page text</html>", content_type="text/html")
    assert "secret-ish" not in err.detail


def test_operating_limit_says_when_to_retry() -> None:
    body = {"error": "OPERATION_TIME_LIMIT", "time": {"operating_reset_at": 1_000_030}}
    err = failure(429, body, now=1_000_000.0)
    assert err.kind is ErrorKind.RATE_LIMITED
    assert err.retry_after == pytest.approx(30.0)


def test_retry_after_header_when_the_portal_gives_no_reset_time() -> None:
    err = failure(503, {"error": "QUERY_LIMIT_EXCEEDED"}, retry_after_header="2")
    assert err.retry_after == 2.0
    assert failure(503, {"error": "QUERY_LIMIT_EXCEEDED"}).retry_after is None


def test_echoed_secrets_are_cut_out_of_the_description() -> None:
    token = "a1b2c3d4e5f6"
    body = {"error": "invalid_token", "error_description": f"token {token} is invalid"}
    err = failure(401, body, secrets=[token, ""])
    assert token not in err.detail
    assert "[redacted]" in err.description


@pytest.mark.parametrize(
    "raw",
    [
        b'{"result": {"result": {"s0": "ok %s"}}}',  # echoed as it is
        b'{"result": {"result": {"s0": "ok \\u0061%s"}}}',  # escaped: only decoding shows it
        b'{"result": {"%s": {"s0": "key\\/with a slash"}}}',  # in a key, among other escapes
    ],
)
def test_a_token_echoed_in_a_successful_answer_is_cut_out_however_it_is_written(
    raw: bytes,
) -> None:
    token = "a1b2c3d4e5f6"
    escaped = token[1:] if b"\\u0061%s" in raw else token  # "\u0061" decodes to its "a"
    payload = read_envelope(
        "p.bitrix24.com", 200, raw.replace(b"%s", escaped.encode()), secrets=[token]
    )
    assert token not in json.dumps(payload) and "[redacted]" in json.dumps(payload)


def test_an_answer_that_echoes_no_token_is_read_as_it_is() -> None:
    body = {"result": {"result": {"s0": {"STATUS": True}}}, "time": {"start": 1.5}}
    assert read_envelope("p.bitrix24.com", 200, json.dumps(body).encode(), secrets=["tok"]) == body
