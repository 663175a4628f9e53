"""The install and events routes' service (connector_monitor.installing) over in-memory ports:
what is verified, stored, bound, answered and published for each form, and that no refusal
stores anything, calls out when it must not, or quotes a token. The adapters are tested against
moto and the local portal (tests/integration/test_install_store.py, tests/e2e/test_inbound.py).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import pytest

from connector_monitor.domain.alerts import Alert, AlertEvent
from connector_monitor.domain.app_events import (
    AppEventName,
    AppInfo,
    Installation,
    NotGenuine,
    supersedes,
)
from connector_monitor.installing import Installing, InstallRules
from connector_monitor.ports.installs import (
    AuthServerUnreachable,
    BindFailed,
    KnownInstall,
)
from connector_monitor.tokens.credentials import AppCredentials
from tests.app_forms import (
    APPLICATION_TOKEN,
    MEMBER_ID,
    SERVER,
    form,
    install_auth,
    install_form,
    line_delete_form,
    uninstall_form,
)

FORM = "application/x-www-form-urlencoded"
CLIENT_ID = "app.65f0a1b2c3d4e5.12345678"
EVENTS_URL = "https://api.example.com/app/k3y/events"
SECRETS = (
    "s6p6eclrvim6da22ft9ch94ekreb52lv",
    "4s386p3q0tr8dy89xvmt96234v3dljg8",
    APPLICATION_TOKEN,
)


@dataclass
class AuthorisationServer:
    answer: AppInfo | Exception
    asked: list[str] = field(default_factory=list)

    def app_info(self, server: str, access_token: str) -> AppInfo:
        self.asked.append(server)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@dataclass
class Store:
    installs: dict[str, Installation] = field(default_factory=dict)
    forgotten: list[str] = field(default_factory=list)
    deleted_lines: list[tuple[str, str, int, int]] = field(default_factory=list)

    def store_install(self, installation: Installation) -> bool:
        old = self.installs.get(installation.portal)
        if old is not None and not supersedes(installation, old.installed_at, old.expires_at):
            return False
        self.installs[installation.portal] = installation
        return True

    def known(self, member_id: str) -> KnownInstall | None:
        for i in self.installs.values():
            if i.member_id == member_id:
                return KnownInstall(i.portal, i.token_hash, i.client_endpoint, i.access_token)
        return None

    def note_line_deleted(self, member_id: str, portal: str, line: int, at: int) -> None:
        self.deleted_lines.append((member_id, portal, line, at))

    def forget(self, member_id: str, portal: str) -> None:
        self.forgotten.append(portal)
        self.installs.pop(portal, None)


@dataclass
class Binder:
    fail: bool = False
    bound: list[tuple[str, str, tuple[AppEventName, ...]]] = field(default_factory=list)

    def bind(
        self, installation: Installation, handler: str, events: tuple[AppEventName, ...]
    ) -> None:
        if self.fail:
            raise BindFailed("event.bind refused (ACCESS_DENIED)")
        self.bound.append((installation.portal, handler, events))


@dataclass
class Channel:
    sent: list[Alert] = field(default_factory=list)

    def publish(self, alert: Alert) -> str:
        self.sent.append(alert)
        return "id"


def genuine(**changes: object) -> AppInfo:
    info = AppInfo(
        CLIENT_ID,
        True,
        "example.bitrix24.com",
        MEMBER_ID,
        "L",
        "https://example.bitrix24.com/rest/",
    )
    return AppInfo(**{**info.__dict__, **changes})  # type: ignore[arg-type]


@dataclass
class World:
    server: AuthorisationServer
    store: Store
    binder: Binder
    alerts: Channel
    operations: Channel
    service: Installing


def world(answer: AppInfo | Exception | None = None, *, bind_fails: bool = False) -> World:
    server = AuthorisationServer(answer if answer is not None else genuine())
    store, binder, alerts, operations = Store(), Binder(bind_fails), Channel(), Channel()
    service = Installing(
        InstallRules(
            lambda: {"monitor": AppCredentials("monitor", CLIENT_ID, "app-secret")},
            (SERVER,),
            EVENTS_URL,
        ),
        store=store,
        auth_server=server,
        binder=binder,
        alerts=alerts,
        operations=operations,
        clock=lambda: 1767704400.0,
    )
    return World(server, store, binder, alerts, operations, service)


def leaks(w: World, answer_body: dict[str, object], caplog: pytest.LogCaptureFixture) -> list[str]:
    said = (
        json.dumps(answer_body)
        + caplog.text
        + "".join(a.message + a.subject for a in w.alerts.sent + w.operations.sent)
    )
    return [s for s in SECRETS if s in said]


def test_a_genuine_install_is_verified_stored_and_its_events_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    w = world()
    answer = w.service.install(install_form(), FORM)
    assert answer.status == 200 and answer.body == {
        "portal": "example.bitrix24.com",
        "stored": True,
        "bound": True,
    }
    assert w.server.asked == [SERVER]
    stored = w.store.installs["example.bitrix24.com"]
    assert (
        stored.access_token == SECRETS[0] and stored.app == "monitor" and stored.app_status == "L"
    )
    assert w.binder.bound == [
        (
            "example.bitrix24.com",
            EVENTS_URL,
            (AppEventName.UNINSTALL, AppEventName.UPDATE, AppEventName.LINE_DELETE),
        )
    ]
    assert leaks(w, answer.body, caplog) == []


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (install_form(access_token="<drop>", refresh_token="<drop>"), FORM, 400),
        (
            json.dumps({"event": "ONAPPINSTALL", "auth": install_auth()}).encode(),
            "application/json",
            415,
        ),
        (install_form() + b"&pad=" + b"x" * 17000, FORM, 413),
        (install_form() + b"&auth[x][y][z]=1", FORM, 400),
        (install_form(domain="evil.com\r\nSet-Cookie: a=b"), FORM, 400),
        (form("ONAPPUNINSTALL", install_auth()), FORM, 400),  # another event on the install route
    ],
    ids=[
        "without tokens",
        "json",
        "oversize",
        "deep brackets",
        "CR/LF in the domain",
        "not an install",
    ],
)
def test_a_bad_form_is_refused_before_any_call_and_nothing_is_stored(
    body: bytes, content_type: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    w = world()
    answer = w.service.install(body, content_type)
    assert answer.status == status and answer.body["error"] == "BAD_FORM"
    assert w.server.asked == [] and w.store.installs == {} and w.binder.bound == []
    assert leaks(w, answer.body, caplog) == []


def test_a_forged_server_endpoint_is_never_called(caplog: pytest.LogCaptureFixture) -> None:
    w = world()
    answer = w.service.install(
        install_form(server_endpoint="https://oauth.evil.example/rest/"), FORM
    )
    assert answer.status == 403 and answer.body["error"] == "NOT_GENUINE"
    assert w.server.asked == [] and w.store.installs == {}


@pytest.mark.parametrize(
    "answer",
    [
        genuine(client_id="app.someone.else"),
        genuine(member_id="0" * 32),
        genuine(domain="other.bitrix24.com"),
        genuine(installed=False),
        NotGenuine("the authorisation server does not know the token"),
    ],
    ids=["client_id", "member_id", "domain", "not installed", "unknown token"],
)
def test_an_install_the_server_does_not_vouch_for_stores_nothing_and_calls_no_portal(
    answer: AppInfo | Exception, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    w = world(answer)
    refused = w.service.install(install_form(), FORM)
    assert refused.status == 403
    assert w.store.installs == {} and w.binder.bound == []  # the portal is never called
    assert leaks(w, refused.body, caplog) == []


def test_the_authorisation_server_down_stores_nothing_says_so_and_tells_operations(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    w = world(AuthServerUnreachable("the authorisation server: timed out"))
    answer = w.service.install(install_form(), FORM)
    assert answer.status == 503 and answer.body["error"] == "AUTH_SERVER_UNREACHABLE"
    assert w.store.installs == {} and w.binder.bound == [] and w.alerts.sent == []
    (notice,) = w.operations.sent
    assert notice.portal == "example.bitrix24.com" and "reinstall" in notice.message
    assert leaks(w, answer.body, caplog) == []


def test_a_duplicate_or_older_install_keeps_the_stored_pair_and_binds_nothing() -> None:
    w = world()
    assert w.service.install(install_form(ts=2000), FORM).body["stored"] is True
    again = w.service.install(install_form(ts=2000, access_token="other0access"), FORM)
    older = w.service.install(install_form(ts=1000, access_token="older0access"), FORM)
    assert (
        again.body
        == older.body
        == {"portal": "example.bitrix24.com", "stored": False, "bound": False}
    )
    assert w.store.installs["example.bitrix24.com"].access_token == SECRETS[0]
    assert len(w.binder.bound) == 1


def test_an_install_whose_binding_fails_is_still_stored_and_says_so() -> None:
    w = world(bind_fails=True)
    answer = w.service.install(install_form(), FORM)
    assert answer.status == 200 and answer.body["stored"] is True and answer.body["bound"] is False
    (notice,) = w.operations.sent  # an uninstall would go unseen: someone must know
    assert "not bound" in notice.subject and notice.portal == "example.bitrix24.com"
    assert w.alerts.sent == []


def test_an_uninstall_with_the_installs_token_forgets_the_portal_and_says_uninstalled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    w = world()
    w.service.install(install_form(), FORM)
    answer = w.service.event(uninstall_form(), FORM)
    assert answer.status == 200 and answer.body == {
        "portal": "example.bitrix24.com",
        "uninstalled": True,
    }
    assert w.store.installs == {} and w.store.forgotten == ["example.bitrix24.com"]
    (notice,) = w.alerts.sent
    assert "uninstalled" in notice.subject.lower() and notice.event is AlertEvent.CHECK_FAILED
    assert notice.event is not AlertEvent.CONNECTOR_DOWN
    assert leaks(w, answer.body, caplog) == []


@pytest.mark.parametrize(
    "body",
    [uninstall_form(token="0" * 32), uninstall_form(member_id="f" * 32)],
    ids=["wrong application token", "unknown member_id"],
)
def test_an_event_without_the_installs_token_is_forbidden_and_changes_nothing(body: bytes) -> None:
    w = world()
    w.service.install(install_form(), FORM)
    answer = w.service.event(body, FORM)
    assert answer.status == 403 and answer.body["error"] == "FORBIDDEN"
    assert "example.bitrix24.com" in w.store.installs and w.alerts.sent == []


def test_an_update_binds_the_events_again() -> None:
    w = world()
    w.service.install(install_form(), FORM)
    update = form("ONAPPUPDATE", install_auth(), {"VERSION": "2", "PREVIOUS_VERSION": "1"})
    answer = w.service.event(update, FORM)
    assert answer.status == 200 and answer.body["bound"] is True
    assert len(w.binder.bound) == 2


def test_other_events_are_acknowledged_and_ignored() -> None:
    w = world()
    w.service.install(install_form(), FORM)
    auth = {k: v for k, v in install_auth().items() if "token" not in k or k == "application_token"}
    answer = w.service.event(form("ONAPPPAYMENT", auth, {"CODE": "x"}), FORM)
    assert answer.status == 200 and answer.body["ignored"] is True
    assert "example.bitrix24.com" in w.store.installs


def test_a_line_delete_is_marked_on_the_portals_item_with_the_time_it_arrived() -> None:
    w = world()
    w.service.install(install_form(), FORM)

    answer = w.service.event(line_delete_form("107"), FORM)

    assert answer.status == 200 and answer.body == {
        "portal": "example.bitrix24.com",
        "line_deleted": 107,
    }
    assert w.store.deleted_lines == [(MEMBER_ID, "example.bitrix24.com", 107, 1767704400)]
    assert "example.bitrix24.com" in w.store.installs and w.alerts.sent == []


@pytest.mark.parametrize(
    "body",
    [line_delete_form(token="0" * 32), line_delete_form(member_id="f" * 32)],
    ids=["wrong application token", "unknown member_id"],
)
def test_a_forged_line_delete_is_forbidden_and_marks_nothing(body: bytes) -> None:
    w = world()
    w.service.install(install_form(), FORM)

    answer = w.service.event(body, FORM)

    assert answer.status == 403 and w.store.deleted_lines == []


@pytest.mark.parametrize("line", ["0", "x12", "", "99999999999"])
def test_a_line_delete_that_names_no_line_is_refused_and_marks_nothing(line: str) -> None:
    w = world()
    w.service.install(install_form(), FORM)

    answer = w.service.event(line_delete_form(line), FORM)

    assert answer.status == 400 and answer.body["error"] == "BAD_FORM"
    assert w.store.deleted_lines == []
