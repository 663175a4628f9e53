"""The local Bitrix24 portal answers as a live one does, over real HTTP: the shapes of the answers
recorded in tests/fixtures/bitrix24/ (each with its source) and the core's behaviour as read in
its `rest` and `imconnector` modules (yuliai/bitrix-modules, a mirror of the Bitrix24 core)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any

import pytest
import requests

from local.bitrix24_portal import ERRORS, LocalPortal, PortalFault
from local.bitrix24_portal.recorded import oauth_fields, recorded, time_fields

CONNECTOR = "myconnector"
TIME_KEYS = {"start", "finish", "duration", "processing", "date_start", "date_finish"}
OPERATING_KEYS = {"operating", "operating_reset_at"}
_names = itertools.count()


@pytest.fixture
def portal(shared_portal: LocalPortal) -> LocalPortal:
    return shared_portal


@pytest.fixture
def domain(portal: LocalPortal) -> str:
    name = f"p{next(_names)}.bitrix24.test"
    portal.add_portal(
        name, connectors={"MyConnector": "My Connector"}, lines={12: "Sales", 14: "VIP"}
    )
    portal.connect(name, CONNECTOR, 12)
    return name


@pytest.fixture
def creds(portal: LocalPortal, domain: str) -> dict[str, str]:
    return portal.credentials(domain)


def call(creds: dict[str, str], method: str, params: dict[str, Any] | None = None, **kw: Any):
    body = {**(params or {}), "auth": creds["access_token"]}
    return requests.post(creds["client_endpoint"] + method, json=body, timeout=kw.pop("timeout", 5))


def refresh(creds: dict[str, str], token: str | None = None, **overrides: str):
    query = {
        "grant_type": "refresh_token",
        "client_id": creds["client_id"],
        "client_secret": creds["client_secret"],
        "refresh_token": token or creds["refresh_token"],
        **overrides,
    }
    return requests.get(creds["oauth_endpoint"], params=query, timeout=5)


def status_cmds(lines: range | list[int]) -> dict[str, str]:
    return {f"l{n}": f"imconnector.status?CONNECTOR={CONNECTOR}&LINE={n}" for n in lines}


# REST shapes ---------------------------------------------------------------------------------


def test_credentials_have_the_secret_shape(portal: LocalPortal, domain: str) -> None:
    creds = portal.credentials(domain)
    assert set(creds) == {
        "client_id",
        "client_secret",
        "access_token",
        "refresh_token",
        "client_endpoint",
        "oauth_endpoint",
    }
    assert creds["client_endpoint"] == f"{portal.url}/{domain}/rest/"
    assert creds["oauth_endpoint"] == f"{portal.url}/oauth/token/"


def test_status_answers_the_documented_shape(creds: dict[str, str]) -> None:
    response = call(creds, "imconnector.status", {"CONNECTOR": "MyConnector", "LINE": "12"})
    assert response.status_code == 200
    body = response.json()
    assert body["result"] == {
        "LINE": 12,
        "CONNECTOR": "myconnector",
        "ERROR": False,
        "CONFIGURED": True,
        "STATUS": True,
    }
    assert set(body["time"]) >= TIME_KEYS


def test_unknown_pair_and_missing_line_answer_all_false(creds: dict[str, str]) -> None:
    all_false = {"ERROR": False, "CONFIGURED": False, "STATUS": False}
    for params, line in (
        ({"CONNECTOR": "typo", "LINE": 12}, 12),
        ({"CONNECTOR": CONNECTOR, "LINE": 99}, 99),
        ({"CONNECTOR": CONNECTOR}, 0),
    ):
        result = call(creds, "imconnector.status", params).json()["result"]
        assert result == {**all_false, "LINE": line, "CONNECTOR": params["CONNECTOR"]}


def test_empty_connector_is_an_argument_error(creds: dict[str, str]) -> None:
    response = call(creds, "imconnector.status", {"CONNECTOR": "", "LINE": 12})
    assert response.status_code == 400
    assert response.json() == {
        "error": "ERROR_ARGUMENT",
        "error_description": "Argument 'CONNECTOR' is null or empty",
    }


def test_status_is_configured_and_not_error(portal: LocalPortal, domain: str, creds: dict) -> None:
    portal.set_status(domain, CONNECTOR, 14, configured=True, error=True)
    result = call(creds, "imconnector.status", {"CONNECTOR": CONNECTOR, "LINE": 14}).json()
    assert result["result"] | {"LINE": 0} == {
        "LINE": 0,
        "CONNECTOR": CONNECTOR,
        "ERROR": True,
        "CONFIGURED": True,
        "STATUS": False,
    }
    response = call(
        creds, "imconnector.activate", {"CONNECTOR": CONNECTOR, "LINE": 14, "ACTIVE": 1}
    )
    assert response.json()["result"] is True
    result = call(creds, "imconnector.status", {"CONNECTOR": CONNECTOR, "LINE": 14}).json()
    assert result["result"]["STATUS"] is True
    portal.disconnect(domain, CONNECTOR, 14)
    result = call(creds, "imconnector.status", {"CONNECTOR": CONNECTOR, "LINE": 14}).json()
    assert result["result"]["CONFIGURED"] is False


def test_connector_list_is_a_dict_or_an_empty_list(portal: LocalPortal, creds: dict) -> None:
    assert call(creds, "imconnector.list").json()["result"] == {"myconnector": "My Connector"}
    bare = f"bare{next(_names)}.bitrix24.test"
    portal.add_portal(bare)
    assert call(portal.credentials(bare), "imconnector.list").json()["result"] == []


def test_open_lines_list_form_encoded_with_bracket_keys(creds: dict[str, str]) -> None:
    # form body, .json suffix, auth in the query string, like CRest and the PHP SDK send it
    response = requests.post(
        creds["client_endpoint"] + "imopenlines.config.list.get.json",
        params={"auth": creds["access_token"]},
        data=[
            ("PARAMS[select][]", "ID"),
            ("PARAMS[select][]", "LINE_NAME"),
            ("PARAMS[order][ID]", "DESC"),
        ],
        timeout=5,
    )
    assert response.status_code == 200
    assert response.json()["result"] == [
        {"ID": "14", "LINE_NAME": "VIP"},
        {"ID": "12", "LINE_NAME": "Sales"},
    ]
    paged = call(creds, "imopenlines.config.list.get", {"PARAMS": {"limit": 1, "offset": 1}})
    assert paged.json()["result"] == [{"ID": "14", "LINE_NAME": "VIP", "ACTIVE": "Y"}]


def test_get_with_query_string_works(creds: dict[str, str]) -> None:
    response = requests.get(
        creds["client_endpoint"] + "imconnector.status",
        params={"CONNECTOR": CONNECTOR, "LINE": 12, "auth": creds["access_token"]},
        timeout=5,
    )
    assert response.json()["result"]["STATUS"] is True


def test_unknown_method_is_not_found(creds: dict[str, str]) -> None:
    response = call(creds, "crm.deal.list")
    assert (response.status_code, response.json()["error"]) == (404, "ERROR_METHOD_NOT_FOUND")


# batch ---------------------------------------------------------------------------------------


def test_batch_of_50_succeeds_with_empty_sections_as_lists(creds: dict[str, str]) -> None:
    response = call(creds, "batch", {"halt": 0, "cmd": status_cmds(range(1, 51))})
    assert response.status_code == 200
    body = response.json()
    assert set(body["time"]) >= TIME_KEYS
    sections = body["result"]
    assert len(sections["result"]) == 50
    assert sections["result"]["l12"]["STATUS"] is True
    assert sections["result"]["l13"]["STATUS"] is False
    assert sections["result_error"] == []
    assert sections["result_total"] == []
    assert sections["result_next"] == []
    assert set(sections["result_time"]["l1"]) >= TIME_KEYS


def test_batch_of_51_runs_50_and_refuses_the_rest_in_result_error(creds: dict[str, str]) -> None:
    """Core rest/classes/general/rest_provider.php::methodsBatch(): BATCH_MAX_LENGTH 50; the
    commands past it fail one by one, the batch answers HTTP 200 (the docs' batch page agrees;
    their error table's 400 does not)."""
    response = call(creds, "batch", {"halt": 0, "cmd": status_cmds(range(1, 53))})
    assert response.status_code == 200
    sections = response.json()["result"]
    assert len(sections["result"]) == 50
    assert set(sections["result_error"]) == {"l51", "l52"}
    assert (
        sections["result_error"]["l51"]
        == recorded("batch.length_exceeded").body["result"]["result_error"]["t50"]
    )


def test_a_successful_answer_carries_operating_time_and_an_error_none(
    portal: LocalPortal, domain: str, creds: dict[str, str]
) -> None:
    """Core rest.php: appendDebugInfo() (time, with operating and operating_reset_at where the
    load limiter runs, as on the cloud) only on success; error bodies are error and
    error_description alone."""
    ok = call(creds, "imconnector.status", {"CONNECTOR": CONNECTOR, "LINE": 12}).json()
    assert tuple(ok["time"]) == time_fields()
    assert ok["time"]["operating_reset_at"] > time.time()
    portal.inject(domain, "OPERATION_TIME_LIMIT", count=1)
    failed = call(creds, "imconnector.status", {"CONNECTOR": CONNECTOR, "LINE": 12})
    assert failed.status_code == 429
    assert set(failed.json()) == {"error", "error_description"}
    batch = call(creds, "batch", {"cmd": status_cmds([12])}).json()
    assert set(batch["result"]["result_time"]["l12"]) == TIME_KEYS | OPERATING_KEYS
    assert set(batch["time"]) == TIME_KEYS  # the batch call itself is not counted


def test_operating_time_past_the_limit_blocks_the_method_until_reset(
    portal: LocalPortal, domain: str, creds: dict[str, str]
) -> None:
    portal.set_operating(domain, "imconnector.status", portal.operating_limit + 1)
    blocked = call(creds, "imconnector.status", {"CONNECTOR": CONNECTOR, "LINE": 12})
    assert (blocked.status_code, blocked.json()["error"]) == (429, "OPERATION_TIME_LIMIT")
    assert call(creds, "imconnector.list").status_code == 200  # other methods are not
    in_batch = call(creds, "batch", {"cmd": status_cmds([12])}).json()["result"]
    assert in_batch["result_error"]["l12"]["error"] == "OPERATION_TIME_LIMIT"


def test_failed_command_lands_in_result_error_only(
    portal: LocalPortal, domain: str, creds: dict[str, str]
) -> None:
    portal.fail_command(domain, CONNECTOR, 14, "ACCESS_DENIED")
    cmd = {**status_cmds([12, 14]), "nested": "batch?halt=0"}
    sections = call(creds, "batch", {"halt": 0, "cmd": cmd}).json()["result"]
    assert list(sections["result"]) == ["l12"]
    assert sections["result_error"]["l14"] == {
        "error": "ACCESS_DENIED",
        "error_description": ERRORS["ACCESS_DENIED"][1],
    }
    assert sections["result_error"]["nested"]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"
    direct = call(creds, "imconnector.status", {"CONNECTOR": CONNECTOR, "LINE": 14})
    assert (direct.status_code, direct.json()["error"]) == (401, "ACCESS_DENIED")


def test_batch_form_encoded_with_list_cmd_and_answer_only(
    portal: LocalPortal, domain: str, creds: dict[str, str]
) -> None:
    portal.answer_only(domain, {14})
    response = requests.post(
        creds["client_endpoint"] + "batch",
        data={
            "halt": "0",
            "cmd[0]": f"imconnector.status?CONNECTOR={CONNECTOR}&LINE=12",
            "cmd[1]": f"imconnector.status?CONNECTOR={CONNECTOR}&LINE=14",
            "auth": creds["access_token"],
        },
        timeout=5,
    )
    sections = response.json()["result"]
    assert sections["result"] == {"1": sections["result"]["1"]}
    assert sections["result"]["1"]["LINE"] == 14
    assert sections["result_error"] == []
    portal.answer_only(domain, None)
    again = call(creds, "batch", {"cmd": status_cmds([12, 14])}).json()["result"]["result"]
    assert set(again) == {"l12", "l14"}


# OAuth and tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize("old_token", ["valid", "expired"])
def test_refresh_rotates_the_pair(
    portal: LocalPortal, domain: str, creds: dict[str, str], old_token: str
) -> None:
    """What the old access token does after a refresh is not settled by any source: "valid"
    (stateless tokens cached for their hour: core rest/lib/oauth/storagecache.php) is the local
    portal's default, "expired" the safe reading; both are served."""
    portal.old_token_after_refresh = old_token
    response = refresh(creds)
    assert response.status_code == 200
    answer = response.json()
    assert tuple(sorted(answer)) == oauth_fields()
    assert answer["refresh_token"] != creds["refresh_token"]
    assert answer["access_token"] != creds["access_token"]
    assert answer["client_endpoint"] == creds["client_endpoint"]
    assert answer["domain"] != domain  # the OAuth server's, not the portal's
    assert answer["expires_in"] == 3600
    assert answer["expires"] == pytest.approx(time.time() + 3600, abs=5)
    assert answer["scope"] == "imopenlines"
    assert portal.refresh_count(domain) == 1

    reused = refresh(creds)
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
    old = call(creds, "imconnector.list")
    if old_token == "valid":
        assert old.status_code == 200
    else:
        assert (old.status_code, old.json()["error"]) == (401, "expired_token")
    new = {**creds, "access_token": answer["access_token"]}
    assert call(new, "imconnector.list").status_code == 200
    # the same endpoint takes a form POST
    posted = requests.post(
        creds["oauth_endpoint"],
        data={
            "grant_type": "refresh_token",
            "client_id": creds["client_id"],
            "client_secret": creds["client_secret"],
            "refresh_token": answer["refresh_token"],
        },
        timeout=5,
    )
    assert posted.status_code == 200
    assert portal.refresh_count(domain) == 2


def test_concurrent_refreshes_with_one_token_have_one_winner(portal: LocalPortal, creds: dict):
    statuses: list[int] = []
    workers = [threading.Thread(target=lambda: statuses.append(refresh(creds).status_code))
               for _ in range(6)]  # fmt: skip
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=5)
    assert sorted(statuses) == [200, 400, 400, 400, 400, 400]


def test_refresh_with_a_wrong_secret_is_invalid_client(portal: LocalPortal, creds: dict) -> None:
    response = refresh(creds, client_secret="nope")
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    assert refresh(creds).status_code == 200  # the refresh token was not spent


def test_expired_tokens_answer_expired_token(
    portal: LocalPortal, domain: str, creds: dict[str, str]
) -> None:
    portal.expire_access_tokens(domain)
    response = call(creds, "imconnector.status", {"CONNECTOR": CONNECTOR, "LINE": 12})
    assert response.status_code == 401
    assert response.json()["error"] == "expired_token"
    fresh = portal.credentials(domain)  # tokens issued afterwards work
    assert call(fresh, "imconnector.list").status_code == 200
    portal.token_ttl = 0.05
    time.sleep(0.06)
    assert call(fresh, "imconnector.list").json()["error"] == "expired_token"


def test_missing_unknown_and_foreign_tokens(portal: LocalPortal, creds: dict[str, str]) -> None:
    missing = requests.post(creds["client_endpoint"] + "imconnector.list", json={}, timeout=5)
    assert (missing.status_code, missing.json()["error"]) == (401, "NO_AUTH_FOUND")
    unknown = call({**creds, "access_token": "0" * 70}, "imconnector.list")
    assert (unknown.status_code, unknown.json()["error"]) == (401, "invalid_token")
    other = f"other{next(_names)}.bitrix24.test"
    portal.add_portal(other)
    foreign = call({**creds, "client_endpoint": portal.client_endpoint(other)}, "imconnector.list")
    assert foreign.json()["error"] == "invalid_token"
    nowhere = call({**creds, "client_endpoint": portal.client_endpoint("nowhere.test")}, "x")
    assert nowhere.status_code == 404


def test_revoke_kills_access_and_refresh_tokens(
    portal: LocalPortal, domain: str, creds: dict[str, str]
) -> None:
    portal.revoke(domain)
    rest = call(creds, "imconnector.list")
    assert (rest.status_code, rest.json()["error"]) == (401, "invalid_token")
    oauth = refresh(creds)
    assert (oauth.status_code, oauth.json()["error"]) == (400, "invalid_grant")


# faults --------------------------------------------------------------------------------------

ERROR_FAULTS = [f for f in PortalFault if not f.is_transport]


@pytest.mark.parametrize("fault", ERROR_FAULTS, ids=str)
def test_error_faults_answer_code_and_status_then_heal(
    portal: LocalPortal, domain: str, creds: dict[str, str], fault: PortalFault
) -> None:
    portal.inject(domain, fault.value, count=1)
    response = call(creds, "imconnector.list")
    body = response.json()
    assert response.status_code == ERRORS[fault.value][0]
    assert body["error"] == fault.value
    assert body["error_description"]
    assert set(body) == {"error", "error_description"}  # no time block in an error
    assert call(creds, "imconnector.list").status_code == 200


def test_statuses_are_the_cores() -> None:
    """Every failed auth check is an OAuthException, 401 (core rest/lib/oauthexception.php),
    though the docs' table says 403 or 503 for some; PORTAL_DELETED is 403 (rest.php::init());
    ERROR_CORE is 400 (rest/lib/restexception.php)."""
    expected = {
        "expired_token": 401,
        "invalid_token": 401,
        "NO_AUTH_FOUND": 401,
        "insufficient_scope": 401,
        "OVERLOAD_LIMIT": 401,
        "CONNECTION_ERROR": 401,
        "QUERY_LIMIT_EXCEEDED": 503,
        "OPERATION_TIME_LIMIT": 429,
        "INTERNAL_SERVER_ERROR": 500,
        "WRONG_AUTH_TYPE": 403,
        "PORTAL_DELETED": 403,
        "ERROR_CORE": 400,
        "PAYMENT_REQUIRED": 402,
        "ERROR_BATCH_METHOD_NOT_ALLOWED": 405,
        "ERROR_MANIFEST_IS_NOT_AVAILABLE": 404,
    }
    assert {code: PortalFault(code).http_status for code in expected} == expected
    assert PortalFault("Expired_Token") is PortalFault.EXPIRED_TOKEN
    assert PortalFault("HTTP_502") is PortalFault.HTTP_502
    with pytest.raises(ValueError, match="bogus"):
        PortalFault("bogus")


def test_recorded_error_answers_are_served_as_recorded(
    portal: LocalPortal, domain: str, creds: dict[str, str]
) -> None:
    for name in ("error.connection_error", "error.error_core", "error.portal_deleted"):
        answer = recorded(name)
        portal.inject(domain, answer.body["error"], count=1)
        served = call(creds, "imconnector.list")
        assert (served.status_code, served.json()) == (answer.http_status, answer.body), name


# the core's checks, method by method ----------------------------------------------------------


@pytest.mark.parametrize(
    ("active", "on"),
    [("1", True), ("Y", True), ("N", True), ("false", True), ("0", False), ("", False)],
)
def test_activate_reads_active_as_php_empty(
    portal: LocalPortal, domain: str, creds: dict[str, str], active: str, on: bool
) -> None:
    """imconnector/lib/rest/status.php::activate(): `!empty($params['ACTIVE'])` activates, so
    "N" and "false" activate too (the docs' "or Y and N" advice is wrong)."""
    params = {"CONNECTOR": CONNECTOR, "LINE": 14, "ACTIVE": active}
    assert call(creds, "imconnector.activate", params).json()["result"] is True
    status = call(creds, "imconnector.status", {"CONNECTOR": CONNECTOR, "LINE": 14}).json()
    assert status["result"]["STATUS"] is on


@pytest.mark.parametrize("missing", ["LINE", "ACTIVE"])
def test_activate_without_line_or_active_is_an_argument_error(
    creds: dict[str, str], missing: str
) -> None:
    params = {"CONNECTOR": CONNECTOR, "LINE": 14, "ACTIVE": 1}
    del params[missing]
    response = call(creds, "imconnector.activate", params)
    assert (response.status_code, response.json()["error"]) == (400, "ERROR_ARGUMENT")
    assert missing in response.json()["error_description"]


def test_connector_list_needs_the_right_to_change_connectors(
    portal: LocalPortal, domain: str, creds: dict[str, str]
) -> None:
    portal.deny_connector_list(domain)
    denied = call(creds, "imconnector.list")
    answer = recorded("imconnector.list.access_denied")
    assert (denied.status_code, denied.json()) == (answer.http_status, answer.body)
    lines = call(creds, "imopenlines.config.list.get")  # anyone may list open lines
    assert lines.status_code == 200
    status = call(creds, "imconnector.status", {"CONNECTOR": CONNECTOR, "LINE": 12})
    assert status.json()["result"]["STATUS"] is True  # any user may ask a status


def test_the_token_may_come_as_auth_access_token_or_a_bearer_header(
    creds: dict[str, str],
) -> None:
    """Core rest/lib/oauth/auth.php::getAuthKey(): `Authorization: Bearer` first, then `auth`,
    then `access_token`."""
    url = creds["client_endpoint"] + "imconnector.list"
    token = creds["access_token"]
    as_param = requests.post(url, json={"access_token": token}, timeout=5)
    as_header = requests.post(url, json={}, headers={"Authorization": f"Bearer {token}"}, timeout=5)
    header_wins = requests.post(
        url, json={"auth": "0" * 70}, headers={"Authorization": f"bearer {token}"}, timeout=5
    )
    assert [r.status_code for r in (as_param, as_header, header_wins)] == [200, 200, 200]


def test_a_second_app_has_its_own_tokens_and_may_ask_about_any_connector(
    portal: LocalPortal, domain: str, creds: dict[str, str]
) -> None:
    """imconnector/lib/rest/status.php::getStatus() checks no ownership: a dedicated monitor
    app asks about the connector another app registered."""
    monitor = portal.add_app(domain, "monitor")
    assert monitor["client_id"] != creds["client_id"]
    status = call(monitor, "imconnector.status", {"CONNECTOR": CONNECTOR, "LINE": 12})
    assert status.json()["result"]["STATUS"] is True
    assert refresh(monitor).status_code == 200
    assert call(creds, "imconnector.list").status_code == 200  # the other app's pair lives on
    assert refresh(creds).status_code == 200


def test_a_moved_portal_redirects_rest_and_the_oauth_server_names_its_new_endpoint(
    portal: LocalPortal, domain: str, creds: dict[str, str]
) -> None:
    """bitrix24/b24restdocs settings/how-to-call-rest-api/change-domen.md: the old address
    answers 302 to the new one; the refresh answer's client_endpoint is the new address."""
    new = f"new{next(_names)}.bitrix24.test"
    portal.move(domain, new)
    old = requests.post(
        creds["client_endpoint"] + "imconnector.list",
        json={"auth": creds["access_token"]},
        allow_redirects=False,
        timeout=5,
    )
    assert old.status_code == 302
    assert old.headers["Location"] == portal.client_endpoint(new) + "imconnector.list"
    answer = refresh(creds).json()
    assert answer["client_endpoint"] == portal.client_endpoint(new)
    moved = {**creds, "client_endpoint": answer["client_endpoint"]}
    assert call({**moved, "access_token": answer["access_token"]}, "imconnector.list").ok


def test_drop_closes_without_an_answer(portal: LocalPortal, domain: str, creds: dict) -> None:
    portal.inject(domain, "drop", count=1)
    with pytest.raises(requests.ConnectionError):
        call(creds, "imconnector.list")
    assert call(creds, "imconnector.list").status_code == 200


@pytest.mark.parametrize(
    ("fault", "status", "content_type"),
    [
        ("html", 502, "text/html"),
        ("http_500", 500, "text/plain"),
        ("http_502", 502, "text/plain"),
        ("http_503", 503, "text/plain"),
        ("not_json", 200, "text/plain"),
        ("truncated", 200, "application/json"),
    ],
)
def test_transport_faults_answer_something_that_is_not_json(
    portal: LocalPortal, domain: str, creds: dict, fault: str, status: int, content_type: str
) -> None:
    portal.inject(domain, fault, count=1)
    response = call(creds, "imconnector.status", {"CONNECTOR": CONNECTOR, "LINE": 12})
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith(content_type)
    with pytest.raises(ValueError):  # noqa: PT011 - json's and requests' decode errors differ
        json.loads(response.text)
    if fault == "html":
        assert "<title>502 Bad Gateway</title>" in response.text
    if fault == "truncated":
        assert response.text.startswith('{"result": {"LINE": 12')


def test_wrong_shape_is_json_with_a_string_result(domain: str, portal: LocalPortal, creds: dict):
    portal.inject(domain, PortalFault.WRONG_SHAPE, count=1)
    response = call(creds, "imconnector.status", {"CONNECTOR": CONNECTOR, "LINE": 12})
    assert response.status_code == 200
    assert isinstance(response.json()["result"], str)


def test_timeout_holds_the_answer(portal: LocalPortal, domain: str, creds: dict) -> None:
    portal.inject(domain, "timeout", count=2, delay=0.3)
    with pytest.raises(requests.ReadTimeout):
        call(creds, "imconnector.list", timeout=0.1)
    started = time.monotonic()
    assert call(creds, "imconnector.list").status_code == 200  # held, then answered
    assert time.monotonic() - started >= 0.25


def test_fault_filtered_by_method_and_until_cleared(
    portal: LocalPortal, domain: str, creds: dict
) -> None:
    portal.inject(domain, "INTERNAL_SERVER_ERROR", method="batch")
    assert call(creds, "imconnector.list").status_code == 200
    for _ in range(2):
        assert call(creds, "batch", {"cmd": status_cmds([12])}).status_code == 500
    portal.clear_faults(domain)
    assert call(creds, "batch", {"cmd": status_cmds([12])}).status_code == 200


def test_oauth_faults_only_when_targeted(portal: LocalPortal, domain: str, creds: dict) -> None:
    portal.inject(domain, "http_503", count=1)  # REST only
    portal.inject(domain, "http_502", count=1, method="oauth")
    assert refresh(creds).status_code == 502
    assert call(creds, "imconnector.list").status_code == 503
    assert refresh(creds).status_code == 200


def test_rate_limit_counts_a_batch_as_one_request(
    portal: LocalPortal, domain: str, creds: dict
) -> None:
    portal.rate_limit = (3, 0.001)
    assert call(creds, "batch", {"cmd": status_cmds(range(1, 51))}).status_code == 200
    assert call(creds, "imconnector.list").status_code == 200
    assert call(creds, "imconnector.list").status_code == 200
    limited = call(creds, "imconnector.list")
    assert (limited.status_code, limited.json()["error"]) == (503, "QUERY_LIMIT_EXCEEDED")


def test_latency_is_added_to_every_request(portal: LocalPortal, creds: dict) -> None:
    portal.latency = 0.05
    started = time.monotonic()
    call(creds, "imconnector.list")
    assert time.monotonic() - started >= 0.05


# observation and control -----------------------------------------------------------------------


def test_requests_are_recorded_without_auth(portal: LocalPortal, domain: str, creds: dict) -> None:
    call(creds, "imconnector.status", {"CONNECTOR": CONNECTOR, "LINE": 12})
    call(creds, "batch", {"halt": 0, "cmd": status_cmds([12])})
    recorded = portal.requests(domain)
    assert [r.method for r in recorded] == ["imconnector.status", "batch"]
    assert recorded[0].params == {"CONNECTOR": CONNECTOR, "LINE": 12}
    assert recorded[0].path == f"/{domain}/rest/imconnector.status"
    assert all("auth" not in r.params for r in recorded)
    assert portal.request_count(domain) == 2
    assert portal.request_count(domain, "batch") == 1
    assert creds["access_token"] not in repr(recorded)


def test_control_api_flips_a_connector(portal: LocalPortal, domain: str, creds: dict) -> None:
    control = f"{portal.url}/_control/{domain}"
    flip = {"connector": CONNECTOR, "line": 12, "configured": True, "error": True}
    assert requests.post(f"{control}/status", json=flip, timeout=5).status_code == 200
    result = call(creds, "imconnector.status", {"CONNECTOR": CONNECTOR, "LINE": 12}).json()
    assert result["result"]["STATUS"] is False

    fault = {"fault": "http_502", "count": 1}
    assert requests.post(f"{control}/fault", json=fault, timeout=5).status_code == 200
    assert requests.post(f"{control}/clear", timeout=5).status_code == 200
    assert call(creds, "imconnector.list").status_code == 200

    bad = requests.post(f"{control}/fault", json={"fault": "nonsense"}, timeout=5)
    assert bad.status_code == 400
    state = requests.get(f"{portal.url}/_control/state", timeout=5)
    assert state.status_code == 200
    described = state.json()["portals"][domain]
    assert {"connector": CONNECTOR, "line": 12, "configured": True, "error": True,
            "status": False} in described["status"]  # fmt: skip
    assert creds["access_token"] not in state.text
    assert creds["client_secret"] not in state.text


def test_stop_is_fast_with_a_timeout_fault_pending() -> None:
    portal = LocalPortal()
    portal.start()
    portal.add_portal("slow.bitrix24.test")
    creds = portal.credentials("slow.bitrix24.test")
    portal.inject("slow.bitrix24.test", "timeout")  # default hold: 30 s
    outcome: list[BaseException | int] = []

    def client() -> None:
        try:
            outcome.append(call(creds, "imconnector.list", timeout=10).status_code)
        except requests.RequestException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=client)
    worker.start()
    deadline = time.monotonic() + 2
    while portal.request_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    portal.stop()
    assert time.monotonic() - started < 1.0
    worker.join(timeout=2)
    assert len(outcome) == 1
    assert isinstance(outcome[0], requests.ConnectionError)
