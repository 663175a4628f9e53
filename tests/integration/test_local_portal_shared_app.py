"""One application installed on many portals, as an integrator's is on Bitrix24: one client id
and secret, a token pair per portal, and an OAuth server that finds the portal a refresh is for
by the refresh token alone (the request names no portal). Over real HTTP to the local portal."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import requests

from local.bitrix24_portal import LocalPortal

CONNECTOR = "myconnector"
_names = itertools.count()


@pytest.fixture
def portal(shared_portal: LocalPortal) -> LocalPortal:
    return shared_portal


@pytest.fixture
def app(portal: LocalPortal) -> tuple[str, str]:
    return portal.add_shared_app(f"monitor{next(_names)}")


def new_portal(portal: LocalPortal, app: str | None = None) -> str:
    domain = f"s{next(_names)}.bitrix24.test"
    portal.add_portal(domain, connectors={CONNECTOR: "My"}, lines={1: "Sales", 2: "VIP"}, app=app)
    portal.connect(domain, CONNECTOR, 1)
    return domain


def call(creds: dict[str, str], method: str, params: dict[str, Any] | None = None):
    body = {**(params or {}), "auth": creds["access_token"]}
    return requests.post(creds["client_endpoint"] + method, json=body, timeout=5)


def refresh(creds: dict[str, str], **overrides: str):
    """The refresh as the monitor sends it: no portal named anywhere."""
    query = {
        "grant_type": "refresh_token",
        "client_id": creds["client_id"],
        "client_secret": creds["client_secret"],
        "refresh_token": creds["refresh_token"],
        **overrides,
    }
    return requests.get(creds["oauth_endpoint"], params=query, timeout=5)


def error(response: requests.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]


def test_two_portals_sharing_one_app_refresh_independently(
    portal: LocalPortal, app: tuple[str, str]
) -> None:
    client_id, client_secret = app
    a, b = new_portal(portal, client_id), new_portal(portal, client_id)
    on_a, on_b = portal.credentials(a), portal.credentials(b)
    assert (on_a["client_id"], on_a["client_secret"]) == app
    assert (on_b["client_id"], on_b["client_secret"]) == app
    assert on_a["oauth_endpoint"] == on_b["oauth_endpoint"]
    total = portal.refresh_count()

    answer_a = refresh(on_a).json()
    assert answer_a["client_endpoint"] == portal.client_endpoint(a)
    assert (portal.refresh_count(a), portal.refresh_count(b)) == (1, 0)
    answer_b = refresh(on_b).json()
    assert answer_b["client_endpoint"] == portal.client_endpoint(b)
    assert answer_a["member_id"] != answer_b["member_id"]
    assert (portal.refresh_count(a), portal.refresh_count(b)) == (1, 1)
    assert portal.refresh_count() == total + 2

    new_a = {**on_a, **{k: answer_a[k] for k in ("access_token", "refresh_token")}}
    new_b = {**on_b, **{k: answer_b[k] for k in ("access_token", "refresh_token")}}
    assert call(new_a, "imconnector.list").status_code == 200
    assert call(new_b, "imconnector.list").status_code == 200
    # a pair is its portal's only: a's access token means nothing on b
    assert error(call({**new_a, "client_endpoint": new_b["client_endpoint"]}, "x")) == (
        401,
        "invalid_token",
    )
    # each portal's chain goes on by itself
    again_a = refresh(new_a).json()
    assert again_a["client_endpoint"] == portal.client_endpoint(a)
    assert (portal.refresh_count(a), portal.refresh_count(b)) == (2, 1)
    assert refresh(new_b).status_code == 200
    assert client_secret not in repr(portal.state())


def test_the_right_refresh_token_with_another_apps_secret_is_invalid_client(
    portal: LocalPortal, app: tuple[str, str]
) -> None:
    client_id, _ = app
    _, other_secret = portal.add_shared_app("other")
    own = new_portal(portal)  # a portal with an application of its own
    domain = new_portal(portal, client_id)
    creds = portal.credentials(domain)
    for secret in (other_secret, portal.credentials(own)["client_secret"], "", "nope", "é"):
        assert error(refresh(creds, client_secret=secret)) == (401, "invalid_client")
    assert error(refresh(creds, client_id="local.nobody")) == (401, "invalid_client")
    assert portal.refresh_count(domain) == 0
    assert refresh(creds).status_code == 200  # the refresh token was not spent


def test_a_refresh_token_is_good_only_with_the_app_it_was_issued_to(
    portal: LocalPortal, app: tuple[str, str]
) -> None:
    """Another application's own client id and secret, even one installed on the same portal,
    do not spend this application's refresh token."""
    client_id, _ = app
    domain = new_portal(portal)
    own = portal.credentials(domain)
    shared = portal.install(domain, client_id)
    for presented, token in ((own, shared), (shared, own)):
        wrong = refresh(presented, refresh_token=token["refresh_token"])
        assert error(wrong) == (400, "invalid_grant")
    assert refresh(own).status_code == 200
    assert refresh(shared).status_code == 200
    assert portal.refresh_count(domain) == 2


def test_a_spent_refresh_token_is_invalid_grant(portal: LocalPortal, app: tuple[str, str]) -> None:
    client_id, _ = app
    a, b = new_portal(portal, client_id), new_portal(portal, client_id)
    on_a, on_b = portal.credentials(a), portal.credentials(b)
    assert refresh(on_a).status_code == 200
    assert error(refresh(on_a)) == (400, "invalid_grant")
    assert error(refresh(on_a, refresh_token="0" * 70)) == (400, "invalid_grant")
    assert portal.refresh_count(a) == 1
    assert refresh(on_b).status_code == 200  # b's pair is untouched by a's
    assert error(refresh(on_b)) == (400, "invalid_grant")


def test_install_puts_the_shared_app_beside_the_portals_own(
    portal: LocalPortal, app: tuple[str, str]
) -> None:
    client_id, client_secret = app
    domain = new_portal(portal)
    own = portal.credentials(domain)
    shared = portal.install(domain, client_id)
    assert (shared["client_id"], shared["client_secret"]) == app
    assert own["client_id"] != client_id
    assert shared["client_endpoint"] == own["client_endpoint"]
    more = portal.credentials(domain, app=client_id)
    assert more["client_id"] == client_id
    assert more["refresh_token"] != shared["refresh_token"]
    for creds in (own, shared, more):
        status = call(creds, "imconnector.status", {"CONNECTOR": CONNECTOR, "LINE": 1}).json()
        assert status["result"]["STATUS"] is True
        assert refresh(creds).status_code == 200
    assert client_secret in portal.issued_secrets(domain)

    with pytest.raises(ValueError, match="already installed"):
        portal.install(domain, client_id)
    with pytest.raises(KeyError):
        portal.install(domain, "local.nobody")
    with pytest.raises(KeyError):  # a portal's own application is no shared one
        portal.install(new_portal(portal), own["client_id"])
    with pytest.raises(KeyError):
        portal.add_portal("x.bitrix24.test", app=own["client_id"])
    with pytest.raises(ValueError, match="not installed"):
        portal.credentials(new_portal(portal), app=client_id)


def test_faults_expiry_and_revocation_stay_per_portal(
    portal: LocalPortal, app: tuple[str, str]
) -> None:
    client_id, _ = app
    a, b = new_portal(portal, client_id), new_portal(portal, client_id)
    on_a, on_b = portal.credentials(a), portal.credentials(b)

    portal.inject(a, "http_502", count=1, method="oauth")
    assert refresh(on_b).status_code == 200
    assert refresh(on_a).status_code == 502
    on_b = portal.credentials(b)

    portal.expire_access_tokens(a)
    assert error(call(on_a, "imconnector.list")) == (401, "expired_token")
    assert call(on_b, "imconnector.list").status_code == 200

    portal.old_token_after_refresh = "expired"
    answer = refresh(on_b).json()
    assert error(call(on_b, "imconnector.list")) == (401, "expired_token")
    assert call({**on_b, "access_token": answer["access_token"]}, "imconnector.list").ok

    portal.revoke(a)
    assert error(refresh(on_a)) == (400, "invalid_grant")
    assert error(call(on_a, "imconnector.list")) == (401, "invalid_token")
    assert refresh({**on_b, "refresh_token": answer["refresh_token"]}).status_code == 200


def test_control_api_hands_out_a_pair_of_the_shared_app(
    portal: LocalPortal, app: tuple[str, str]
) -> None:
    client_id, _ = app
    domain = new_portal(portal)
    portal.install(domain, client_id)
    control = f"{portal.url}/_control/{domain}/credentials"
    own = requests.post(control, timeout=5).json()
    shared = requests.post(control, json={"app": client_id}, timeout=5).json()
    assert own["client_id"] != client_id
    assert shared["client_id"] == client_id
    assert refresh(shared).status_code == 200
    assert requests.post(control, json={"app": "local.nobody"}, timeout=5).status_code == 400


def test_request_count_stays_right(portal: LocalPortal, app: tuple[str, str]) -> None:
    client_id, _ = app
    a, b = new_portal(portal, client_id), new_portal(portal, client_id)
    on_a, on_b = portal.credentials(a), portal.credentials(b)
    before = {
        "all": portal.request_count(),
        "batch": portal.request_count(method="batch"),
        "list": portal.request_count(method="imconnector.list"),
    }
    cmd = {"cmd": {"l1": f"imconnector.status?CONNECTOR={CONNECTOR}&LINE=1"}}
    for _ in range(3):
        assert call(on_a, "batch", cmd).status_code == 200
    assert call(on_a, "imconnector.list.json").status_code == 200
    assert call(on_b, "IMCONNECTOR.LIST").status_code == 200
    assert call({**on_b, "access_token": "0" * 70}, "batch", cmd).status_code == 401
    assert refresh(on_a).status_code == 200  # OAuth calls are not REST requests

    assert portal.request_count(a) == 4
    assert portal.request_count(a, "batch") == 3
    assert portal.request_count(a, method="imconnector.list") == 1
    assert portal.request_count(b) == 2
    assert portal.request_count(b, "batch") == 1
    assert portal.request_count(b, "server.time") == 0
    assert portal.request_count("nowhere.test") == 0
    assert portal.request_count() == before["all"] + 6
    assert portal.request_count(method="batch") == before["batch"] + 4
    assert portal.request_count(method="imconnector.list") == before["list"] + 2
    assert [r.method for r in portal.requests(a)] == ["batch"] * 3 + ["imconnector.list"]
    assert [r.method for r in portal.requests(b)] == ["imconnector.list", "batch"]
    assert len(portal.requests()) == portal.request_count()
    assert portal.state()["portals"][a]["requests"] == 4

    portal.clear_requests()
    assert (portal.request_count(), portal.request_count(a), portal.request_count(a, "batch")) == (
        0,
        0,
        0,
    )
    assert portal.requests(a) == []
    assert call(on_b, "imconnector.list").status_code == 200
    assert (portal.request_count(), portal.request_count(b)) == (1, 1)
