"""The local portal installs applications as Bitrix24 does, over HTTPS on 127.0.0.1: it posts
ONAPPINSTALL (and ONAPPUPDATE, ONAPPUNINSTALL, ONIMCONNECTORLINEDELETE) to the application's
handlers as form bodies of the recorded shape (tests/fixtures/bitrix24/app_events/, each with
its source), answers event.bind/get/unbind as the core does, and, as the authorisation server,
app.info and the authorization-code grant behind the portal's /oauth/authorize/."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
import requests

from local.bitrix24_portal import DEMO_DOMAIN, LocalPortal
from local.bitrix24_portal.__main__ import parse, start
from local.bitrix24_portal.tls import local_authority

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bitrix24" / "app_events"
CONNECTOR = "myconnector"
_names = itertools.count()


def fixture_form(event: str) -> list[tuple[str, str]]:
    return parse_qsl((FIXTURES / f"{event}.form").read_text().strip(), keep_blank_values=True)


def fixture_answer(name: str) -> dict[str, Any]:
    recorded: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return recorded


def keys(form: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> list[str]:
    return [key for key, _ in form]


class Receiver:
    """An application's handler: an HTTPS server on 127.0.0.1 (the local authority's
    certificate) that keeps every form posted to it and answers 200, or calls `on_post`."""

    def __init__(self, tls: bool = True) -> None:
        self.posts: list[tuple[str, list[tuple[str, str]]]] = []
        self.on_post: Any = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                form = parse_qsl(body, keep_blank_values=True)
                receiver.posts.append((self.path, form))
                if receiver.on_post is not None:
                    receiver.on_post(dict(form))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls:
            self.server.socket = (
                local_authority().server_context().wrap_socket(self.server.socket, server_side=True)
            )
        self.base = f"{'https' if tls else 'http'}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def url(self, path: str = "/install") -> str:
        return self.base + path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def portal() -> Iterator[LocalPortal]:
    with LocalPortal(tls=True) as server:
        yield server


@pytest.fixture(scope="module")
def ca() -> str:
    return str(local_authority().ca_file)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    app = Receiver()
    yield app
    app.close()


@pytest.fixture
def domain(portal: LocalPortal) -> str:
    name = f"app{next(_names)}.bitrix24.test"
    portal.add_portal(name, connectors={CONNECTOR: "Mine"}, lines={1: "Sales", 2: "VIP"})
    portal.connect(name, CONNECTOR, 1)
    return name


def rest(ca: str, endpoint: str, method: str, token: str, **params: Any) -> requests.Response:
    return requests.post(endpoint + method, data={**params, "auth": token}, timeout=5, verify=ca)


def app_info(portal: LocalPortal, ca: str, token: str | None) -> requests.Response:
    data = {"auth": token} if token is not None else {}
    return requests.post(portal.server_endpoint + "app.info", data=data, timeout=5, verify=ca)


def installed(
    portal: LocalPortal, domain: str, receiver: Receiver, ca: str, **kw: Any
) -> dict[str, str]:
    delivery = portal.install_app(domain, receiver.url(), ca_bundle=ca, **kw)
    assert delivery.delivered, delivery.error
    return dict(delivery.form)


# ONAPPINSTALL ----------------------------------------------------------------------------------


def test_install_posts_onappinstall_with_the_recorded_keys_in_order(
    portal: LocalPortal, domain: str, receiver: Receiver, ca: str
) -> None:
    delivery = portal.install_app(domain, receiver.url(), ca_bundle=ca, version="3")

    assert delivery.status == 200
    [(path, form)] = receiver.posts
    assert path == "/install"
    assert keys(form) == keys(fixture_form("ONAPPINSTALL"))
    sent = dict(form)
    assert sent["event"] == "ONAPPINSTALL"
    assert (sent["data[VERSION]"], sent["data[ACTIVE]"], sent["data[INSTALLED]"]) == (
        "3", "Y", "Y"
    )  # fmt: skip
    assert sent["auth[domain]"] == domain
    assert sent["auth[client_endpoint]"] == portal.client_endpoint(domain)
    assert sent["auth[server_endpoint]"] == portal.server_endpoint
    assert sent["auth[expires_in]"] == "3600"


def test_the_installs_tokens_are_the_portals_own_for_rest_and_refresh(
    portal: LocalPortal, domain: str, receiver: Receiver, ca: str
) -> None:
    sent = installed(portal, domain, receiver, ca)
    secret = portal.credentials(domain)  # the application's client id and secret

    status = rest(ca, sent["auth[client_endpoint]"], "imconnector.status",
                  sent["auth[access_token]"], CONNECTOR=CONNECTOR, LINE=1)  # fmt: skip
    assert status.status_code == 200 and status.json()["result"]["STATUS"] is True
    refreshed = requests.get(
        portal.oauth_endpoint,
        params={
            "grant_type": "refresh_token",
            "client_id": secret["client_id"],
            "client_secret": secret["client_secret"],
            "refresh_token": sent["auth[refresh_token]"],
        },
        timeout=5,
        verify=ca,
    )
    assert refreshed.status_code == 200
    assert refreshed.json()["member_id"] == sent["auth[member_id]"]


def test_a_shared_application_installs_beside_the_portals_own(
    portal: LocalPortal, domain: str, receiver: Receiver, ca: str
) -> None:
    client_id, _ = portal.add_shared_app("monitor")
    sent = installed(portal, domain, receiver, ca, app=client_id)

    info = app_info(portal, ca, sent["auth[access_token]"]).json()["result"]
    assert info["client_id"] == client_id
    assert portal.credentials(domain, app=client_id)["client_id"] == client_id


def test_the_install_handler_may_call_the_portal_back_while_it_is_posted_to(
    portal: LocalPortal, domain: str, receiver: Receiver, ca: str
) -> None:
    # As the stack's install function does: app.info, then event.bind, before it answers.
    answers: list[int] = []
    receiver.on_post = lambda form: answers.extend(
        [
            app_info(portal, ca, form["auth[access_token]"]).status_code,
            rest(
                ca,
                form["auth[client_endpoint]"],
                "event.bind",
                form["auth[access_token]"],
                event="ONAPPUNINSTALL",
                handler=receiver.url("/events"),
            ).status_code,
        ]
    )
    assert portal.install_app(domain, receiver.url(), ca_bundle=ca).delivered
    assert answers == [200, 200]


def test_an_unfinished_install_says_installed_n_and_app_info_agrees(
    portal: LocalPortal, domain: str, receiver: Receiver, ca: str
) -> None:
    sent = installed(portal, domain, receiver, ca, finished=False)

    assert sent["data[INSTALLED]"] == "N"
    info = app_info(portal, ca, sent["auth[access_token]"]).json()["result"]
    assert info["install"]["installed"] is False


def test_the_application_token_is_the_installations_and_counts_as_a_secret(
    portal: LocalPortal, domain: str, receiver: Receiver, ca: str
) -> None:
    first = installed(portal, domain, receiver, ca)
    again = installed(portal, domain, receiver, ca)  # reinstalled: the same installation

    assert first["auth[application_token]"] == again["auth[application_token]"]
    assert first["auth[access_token]"] != again["auth[access_token]"]
    assert first["auth[application_token]"] in portal.issued_secrets(domain)
    assert first["auth[application_token]"] not in json.dumps(portal.state())


def test_events_go_over_plain_http_to_loopback_only(portal: LocalPortal, domain: str) -> None:
    plain = Receiver(tls=False)
    try:
        assert portal.install_app(domain, plain.url()).delivered
    finally:
        plain.close()
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        portal.install_app(domain, "http://handler.example.com/install")


def test_an_untrusted_handler_certificate_is_a_failed_delivery(
    portal: LocalPortal, domain: str, receiver: Receiver
) -> None:
    delivery = portal.install_app(domain, receiver.url())  # the system's authorities only

    assert not delivery.delivered
    assert delivery.status is None and delivery.error == "SSLError"
    assert receiver.posts == []


# app.info on the authorisation server ----------------------------------------------------------


def test_app_info_names_the_application_and_its_installation(
    portal: LocalPortal, domain: str, receiver: Receiver, ca: str
) -> None:
    sent = installed(portal, domain, receiver, ca, version="2")

    answer = app_info(portal, ca, sent["auth[access_token]"])

    assert answer.status_code == 200
    body = answer.json()
    recorded = fixture_answer("app.info")["body"]
    assert set(body) == set(recorded)
    assert set(body["result"]) == set(recorded["result"])
    assert set(body["result"]["install"]) == set(recorded["result"]["install"])
    install = body["result"]["install"]
    assert body["result"]["client_id"] == portal.credentials(domain)["client_id"]
    assert (install["installed"], install["version"], install["status"]) == (True, "2", "L")
    assert install["domain"] == domain == sent["auth[domain]"]
    assert install["member_id"] == sent["auth[member_id]"]
    assert install["client_endpoint"] == sent["auth[client_endpoint]"]


def test_app_info_also_answers_get_with_the_token_in_the_query(
    portal: LocalPortal, domain: str, ca: str
) -> None:
    # b24pysdk calls GET {server}/rest/app.info/?auth=…
    token = portal.credentials(domain)["access_token"]
    answer = requests.get(
        portal.server_endpoint + "app.info/", params={"auth": token}, timeout=5, verify=ca
    )
    assert answer.status_code == 200 and answer.json()["result"]["install"]["domain"] == domain


@pytest.mark.parametrize("name", ["app.info.invalid_token", "app.info.expired_token"])
def test_app_info_refuses_unknown_and_expired_tokens_as_recorded(
    portal: LocalPortal, domain: str, ca: str, name: str
) -> None:
    token = portal.credentials(domain)["access_token"]
    if name.endswith("expired_token"):
        portal.expire_access_tokens(domain)
    else:
        token = "0" * 70
    recorded = fixture_answer(name)

    answer = app_info(portal, ca, token)

    assert answer.status_code == recorded["http_status"]
    assert answer.json() == recorded["body"]


def test_app_info_without_a_token_finds_no_auth(portal: LocalPortal, ca: str) -> None:
    answer = app_info(portal, ca, None)
    assert answer.status_code == 401 and answer.json()["error"] == "NO_AUTH_FOUND"


# event.bind, event.get, event.unbind -----------------------------------------------------------


@pytest.fixture
def token(portal: LocalPortal, domain: str) -> str:
    return portal.credentials(domain)["access_token"]


def bind(portal: LocalPortal, ca: str, domain: str, token: str, **params: str) -> requests.Response:
    return rest(ca, portal.client_endpoint(domain), "event.bind", token, **params)


def test_bind_get_unbind_answer_as_recorded(
    portal: LocalPortal, domain: str, token: str, ca: str
) -> None:
    handler = "https://127.0.0.1:9/events"
    endpoint = portal.client_endpoint(domain)

    bound = bind(portal, ca, domain, token, event="onAppUninstall", handler=handler)
    listed = rest(ca, endpoint, "event.get", token)
    unbound = rest(ca, endpoint, "event.unbind", token, event="ONAPPUNINSTALL",
                   handler=handler)  # fmt: skip
    again = rest(ca, endpoint, "event.unbind", token, event="ONAPPUNINSTALL",
                 handler=handler)  # fmt: skip

    assert (bound.status_code, bound.json()["result"]) == (200, True)
    assert listed.json()["result"] == [
        {"event": "ONAPPUNINSTALL", "handler": handler, "auth_type": "0", "offline": 0}
    ]
    assert [set(row) for row in listed.json()["result"]] == [
        set(row) for row in fixture_answer("event.get")["body"]["result"]
    ]
    assert unbound.json()["result"] == fixture_answer("event.unbind")["body"]["result"]
    assert again.json()["result"] == {"count": 0}
    assert rest(ca, endpoint, "event.get", token).json()["result"] == []


def test_binding_the_same_handler_twice_is_handler_already_binded(
    portal: LocalPortal, domain: str, token: str, ca: str
) -> None:
    handler = "https://127.0.0.1:9/events"
    assert bind(portal, ca, domain, token, event="ONAPPUNINSTALL", handler=handler).ok
    recorded = fixture_answer("event.bind.already_binded")

    twice = bind(portal, ca, domain, token, event="ONAPPUNINSTALL", handler=handler)

    assert twice.status_code == recorded["http_status"]
    assert twice.json() == recorded["body"]
    assert len(portal.bindings(domain)) == 1


def test_each_application_sees_only_its_own_handlers(
    portal: LocalPortal, domain: str, token: str, ca: str
) -> None:
    other = portal.add_app(domain, "other")["access_token"]
    assert bind(portal, ca, domain, token, event="ONAPPUNINSTALL",
                handler="https://127.0.0.1:9/a").ok  # fmt: skip
    assert bind(portal, ca, domain, other, event="ONAPPUNINSTALL",
                handler="https://127.0.0.1:9/a").ok  # fmt: skip

    listed = rest(ca, portal.client_endpoint(domain), "event.get", other).json()
    assert [row["handler"] for row in listed["result"]] == ["https://127.0.0.1:9/a"]
    assert len(portal.bindings(domain)) == 2


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"event": "ONNOSUCHEVENT", "handler": "https://127.0.0.1:9/e"}, "ERROR_EVENT_NOT_FOUND"),
        (
            {"event": "ONAPPUNINSTALL", "handler": "https://localhost:9/e"},
            "ERROR_WRONG_HANDLER_URL",
        ),
        ({"event": "ONAPPUNINSTALL", "handler": "ftp://127.0.0.1/e"}, "ERROR_UNSUPPORTED_PROTOCOL"),
        ({"event": "ONAPPUNINSTALL"}, "ERROR_ARGUMENT"),
        ({"handler": "https://127.0.0.1:9/e"}, "ERROR_ARGUMENT"),
    ],
)
def test_bad_bindings_are_refused_with_the_cores_codes(
    portal: LocalPortal, domain: str, token: str, ca: str, params: dict[str, str], code: str
) -> None:
    answer = bind(portal, ca, domain, token, **params)

    assert answer.status_code == 400
    assert answer.json()["error"] == code
    assert portal.bindings(domain) == []


def test_event_not_found_is_as_recorded(
    portal: LocalPortal, domain: str, token: str, ca: str
) -> None:
    recorded = fixture_answer("event.bind.event_not_found")
    answer = bind(portal, ca, domain, token, event="ONNOSUCHEVENT", handler="https://a.b/")
    assert (answer.status_code, answer.json()) == (recorded["http_status"], recorded["body"])


def test_bind_needs_a_live_token(portal: LocalPortal, domain: str, ca: str) -> None:
    answer = bind(portal, ca, domain, "0" * 70, event="ONAPPUNINSTALL", handler="https://a.b/")
    assert (answer.status_code, answer.json()["error"]) == (401, "invalid_token")


# the other events -------------------------------------------------------------------------------


def bound_to(
    portal: LocalPortal, domain: str, receiver: Receiver, ca: str, event: str
) -> dict[str, str]:
    sent = installed(portal, domain, receiver, ca)
    answer = bind(portal, ca, domain, sent["auth[access_token]"], event=event,
                  handler=receiver.url("/events"))  # fmt: skip
    assert answer.ok, answer.text
    receiver.posts.clear()
    return sent


def test_uninstall_posts_onappuninstall_without_tokens_and_kills_them(
    portal: LocalPortal, domain: str, receiver: Receiver, ca: str
) -> None:
    sent = bound_to(portal, domain, receiver, ca, "ONAPPUNINSTALL")

    [delivery] = portal.uninstall_app(domain, clean=False, ca_bundle=ca)

    assert delivery.delivered
    [(path, form)] = receiver.posts
    assert path == "/events"
    assert keys(form) == keys(fixture_form("ONAPPUNINSTALL"))
    posted = dict(form)
    assert posted["data[CLEAN]"] == "0"
    assert posted["auth[application_token]"] == sent["auth[application_token]"]
    assert not any(sent[k] in dict(form).values() for k in ("auth[access_token]",
                                                             "auth[refresh_token]"))  # fmt: skip
    assert app_info(portal, ca, sent["auth[access_token]"]).json()["error"] == "invalid_token"
    assert portal.bindings(domain) == []


def test_update_posts_onappupdate_with_a_refresh_token(
    portal: LocalPortal, domain: str, receiver: Receiver, ca: str
) -> None:
    bound_to(portal, domain, receiver, ca, "ONAPPUPDATE")

    [delivery] = portal.update_app(domain, "2", ca_bundle=ca)

    assert delivery.delivered
    [(_, form)] = receiver.posts
    assert keys(form) == keys(fixture_form("ONAPPUPDATE"))
    assert (dict(form)["data[VERSION]"], dict(form)["data[PREVIOUS_VERSION]"]) == ("2", "1")
    # The installer's handler goes, the others stay (rest_util.php::UpdateApp)
    assert [b.event for b in portal.bindings(domain)] == ["ONAPPUPDATE"]


def test_deleting_a_line_posts_its_id_and_the_line_is_gone(
    portal: LocalPortal, domain: str, receiver: Receiver, ca: str
) -> None:
    sent = bound_to(portal, domain, receiver, ca, "ONIMCONNECTORLINEDELETE")

    [delivery] = portal.delete_line(domain, 2, ca_bundle=ca)

    assert delivery.delivered
    [(_, form)] = receiver.posts
    assert keys(form) == keys(fixture_form("ONIMCONNECTORLINEDELETE"))
    assert dict(form)["data"] == "2"
    lines = rest(ca, sent["auth[client_endpoint]"], "imopenlines.config.list.get",
                 sent["auth[access_token]"]).json()["result"]  # fmt: skip
    assert [line["ID"] for line in lines] == ["1"]


def test_an_event_nobody_bound_goes_nowhere(
    portal: LocalPortal, domain: str, receiver: Receiver, ca: str
) -> None:
    installed(portal, domain, receiver, ca)
    receiver.posts.clear()
    assert portal.delete_line(domain, 1, ca_bundle=ca) == []
    assert receiver.posts == []
    with pytest.raises(ValueError, match="no open line 1"):
        portal.delete_line(domain, 1)


# /oauth/authorize/ and the authorization-code grant ---------------------------------------------


@pytest.fixture
def shared(portal: LocalPortal, domain: str) -> tuple[str, str]:
    client_id, client_secret = portal.add_shared_app("monitor")
    portal.install(domain, client_id)
    portal.set_redirect_uri(client_id, "https://127.0.0.1:9/authorized")
    return client_id, client_secret


def authorize(portal: LocalPortal, domain: str, client_id: str, ca: str) -> requests.Response:
    url = portal.authorize_url(domain, client_id, state="xyz")
    return requests.get(url, allow_redirects=False, timeout=5, verify=ca)


def exchange(portal: LocalPortal, ca: str, client: tuple[str, str], code: str) -> requests.Response:
    query = {"grant_type": "authorization_code", "client_id": client[0],
             "client_secret": client[1], "code": code}  # fmt: skip
    return requests.get(portal.oauth_endpoint, params=query, timeout=5, verify=ca)


def test_authorize_redirects_with_the_recorded_parameters(
    portal: LocalPortal, domain: str, shared: tuple[str, str], ca: str
) -> None:
    answer = authorize(portal, domain, shared[0], ca)

    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    assert location._replace(query="").geturl() == "https://127.0.0.1:9/authorized"
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert list(query) == list(fixture_answer("oauth.authorize.redirect")["body"])
    assert query["state"] == "xyz" and query["domain"] == domain
    assert query["server_domain"] == portal.server_domain


def test_the_code_buys_one_working_pair_once(
    portal: LocalPortal, domain: str, shared: tuple[str, str], ca: str
) -> None:
    location = authorize(portal, domain, shared[0], ca).headers["Location"]
    code = parse_qs(urlsplit(location).query)["code"][0]

    first = exchange(portal, ca, shared, code)
    second = exchange(portal, ca, shared, code)

    assert first.status_code == 200
    assert set(fixture_answer("oauth.authorization_code")["body"]) <= set(first.json())
    pair = first.json()
    status = rest(ca, pair["client_endpoint"], "imconnector.status",
                  pair["access_token"], CONNECTOR=CONNECTOR, LINE=1)  # fmt: skip
    assert status.json()["result"]["STATUS"] is True
    assert (second.status_code, second.json()["error"]) == (400, "invalid_grant")


def test_a_code_past_its_life_or_of_another_app_is_invalid_grant(
    portal: LocalPortal, domain: str, shared: tuple[str, str], ca: str
) -> None:
    portal.code_ttl = 0.0
    try:
        location = authorize(portal, domain, shared[0], ca).headers["Location"]
    finally:
        portal.code_ttl = 30.0
    stale = parse_qs(urlsplit(location).query)["code"][0]
    location = authorize(portal, domain, shared[0], ca).headers["Location"]
    fresh = parse_qs(urlsplit(location).query)["code"][0]
    other = portal.add_shared_app("other")

    assert exchange(portal, ca, shared, stale).json()["error"] == "invalid_grant"
    assert exchange(portal, ca, other, fresh).json()["error"] == "invalid_grant"
    assert exchange(portal, ca, (shared[0], "wrong"), "x").json()["error"] == "invalid_client"


def test_an_application_not_installed_gets_the_portals_error_page_and_no_redirect(
    portal: LocalPortal, domain: str, ca: str
) -> None:
    stranger, _ = portal.add_shared_app("stranger")
    portal.set_redirect_uri(stranger, "https://127.0.0.1:9/authorized")

    answer = authorize(portal, domain, stranger, ca)

    assert answer.status_code == 400 and "Location" not in answer.headers
    assert "text/html" in answer.headers["Content-Type"]


def test_without_a_redirect_uri_the_portal_shows_the_code(
    portal: LocalPortal, domain: str, ca: str
) -> None:
    client_id, client_secret = portal.add_shared_app("no-address")
    portal.install(domain, client_id)

    page = authorize(portal, domain, client_id, ca)

    assert page.status_code == 200 and "Location" not in page.headers
    code = page.text.split("Authorization code: ")[1].split("<")[0]
    assert exchange(portal, ca, (client_id, client_secret), code).status_code == 200


# the control API and the command line ------------------------------------------------------------


def test_the_control_api_installs_and_shows_no_tokens(
    portal: LocalPortal, domain: str, receiver: Receiver, ca: str
) -> None:
    answer = requests.post(
        f"{portal.url}/_control/{domain}/install",
        json={"url": receiver.url(), "ca_bundle": ca},
        timeout=5,
        verify=ca,
    )

    assert answer.status_code == 200
    assert answer.json() == {
        "deliveries": [
            {"event": "ONAPPINSTALL", "url": receiver.url(), "status": 200, "error": None}
        ]
    }
    [(_, form)] = receiver.posts
    assert dict(form)["auth[access_token]"] not in answer.text


def test_the_control_api_refuses_a_plain_http_handler_elsewhere(
    portal: LocalPortal, domain: str, ca: str
) -> None:
    answer = requests.post(
        f"{portal.url}/_control/{domain}/install",
        json={"url": "http://handler.example.com/install"},
        timeout=5,
        verify=ca,
    )
    assert answer.status_code == 400 and answer.json()["error"] == "BAD_REQUEST"


def test_install_to_on_the_command_line_installs_on_the_demo_portal(
    receiver: Receiver, ca: str
) -> None:
    args = parse(["--port", "0", "--tls", "--install-to", receiver.url(), "--ca-bundle", ca,
                  "--redirect-uri", "https://127.0.0.1:9/authorized"])  # fmt: skip
    portal, shown = start(args)
    try:
        [(_, form)] = receiver.posts
        sent = dict(form)
        assert sent["event"] == "ONAPPINSTALL" and sent["auth[domain]"] == DEMO_DOMAIN
        assert shown["install"] == {"url": receiver.url(), "status": 200, "error": None}
        info = app_info(portal, ca, sent["auth[access_token]"]).json()["result"]
        assert info["client_id"] == shown["app"]["client_id"]
        redirect = requests.get(shown["app"]["authorize"], allow_redirects=False, timeout=5,
                                verify=ca)  # fmt: skip
        assert redirect.headers["Location"].startswith("https://127.0.0.1:9/authorized?code=")
    finally:
        portal.stop()
