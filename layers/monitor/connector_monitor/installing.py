"""The inbound function's service: a portal installs the monitor's application (ONAPPINSTALL)
and later tells it about the installation (ONAPPUNINSTALL, ONAPPUPDATE, ONIMCONNECTORLINEDELETE).

Install: read the form strictly → the server it names on the allow-list (else no call at all) →
`app.info` there with the token received → client_id ours, member_id and domain the form's,
installed → store (never over a newer pair) → bind the events. Nothing is stored or called on
the portal before the authorisation server vouched for the token; the authorisation server
unreachable: nothing stored, a 503 that says so, and an operations notice (Bitrix24 never sends
an event twice).

Events: authenticated by the stored digest of the installation's application token (the only
proof an event is genuine: bitrix24/b24restdocs api-reference/common/events/on-app-install.md,
auth[application_token]; tests/fixtures/bitrix24/app_events/*.form.source). Unknown or wrong:
403, nothing changed.

Every answer is `InboundAnswer`; none quotes the body, a token or a URL.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .domain import app_notices
from .domain.alerts import Alert
from .domain.app_events import (
    BOUND_EVENTS,
    AppAuth,
    AppEvent,
    AppEventName,
    BadForm,
    Installation,
    NotGenuine,
    allowed_server,
    deleted_line,
    host_name,
    installation,
    parse_form,
    read_event,
    reauthorisation,
    same_token,
    server_for,
    token_url,
    verify_install,
)
from .domain.authorize_state import (
    STATE_LIMIT,
    BadState,
    claimed_app,
    read_state,
    state_key,
)
from .ports.alerts import Publisher, PublishError
from .ports.installs import (
    AuthServer,
    AuthServerUnreachable,
    BindFailed,
    EventBinder,
    InstallStore,
    InstallStoreError,
    KnownInstall,
)
from .tokens.credentials import AppCredentials

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InboundAnswer:
    status: int
    body: dict[str, Any] = field(default_factory=dict)


def _refusal(status: int, code: str, message: str) -> InboundAnswer:
    return InboundAnswer(status, {"error": code, "message": message})


@dataclass(frozen=True)
class InstallRules:
    apps: Callable[[], Mapping[str, AppCredentials]]  # our applications, by name in the secret
    auth_servers: tuple[str, ...]  # the authorisation servers' REST addresses we trust
    events_url: str  # where the portal posts the events we bind


class Installing:
    def __init__(
        self,
        rules: InstallRules,
        *,
        store: InstallStore,
        auth_server: AuthServer,
        binder: EventBinder,
        alerts: Publisher,
        operations: Publisher,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._rules = rules
        self._store = store
        self._auth_server = auth_server
        self._binder = binder
        self._alerts = alerts
        self._operations = operations
        self._clock = clock

    # -- POST .../install -------------------------------------------------------------------------

    def install(self, body: bytes, content_type: str) -> InboundAnswer:
        try:
            event = read_event(parse_form(body, content_type))
            if event.known is not AppEventName.INSTALL:
                raise BadForm("the install route takes ONAPPINSTALL only")
            if not event.auth.has_pair:
                raise BadForm("the install carries no token pair")
        except BadForm as exc:
            logger.warning("install refused: %s", exc)
            return _refusal(exc.status, "BAD_FORM", str(exc))
        portal = event.auth.domain
        try:
            verified = self._verify(event)
        except NotGenuine as exc:
            logger.warning("install on %s refused: %s", portal, exc, extra={"portal": portal})
            return _refusal(403, "NOT_GENUINE", f"the install is not verified: {exc}")
        except InstallStoreError as exc:
            logger.error("install on %s not verified: %s", portal, exc, extra={"portal": portal})
            return _refusal(503, "UNAVAILABLE", "the stack's applications could not be read")
        except AuthServerUnreachable as exc:
            logger.error("install on %s unverified: %s", portal, exc, extra={"portal": portal})
            self._notify(
                self._operations, app_notices.install_unverified(portal, str(exc), self._now())
            )
            return _refusal(
                503,
                "AUTH_SERVER_UNREACHABLE",
                "the authorisation server did not answer, so the install could not be verified "
                "and nothing was stored; reinstall the application once it answers",
            )
        try:
            stored = self._store.store_install(verified)
        except InstallStoreError as exc:
            logger.error("install on %s not stored: %s", portal, exc, extra={"portal": portal})
            return _refusal(503, "NOT_STORED", "the install was verified but could not be stored")
        if not stored:
            logger.info("install on %s older than the stored one: kept the stored pair", portal)
            return InboundAnswer(200, {"portal": portal, "stored": False, "bound": False})
        logger.info("installed on %s", portal, extra={"portal": portal})
        return InboundAnswer(200, {"portal": portal, "stored": True, "bound": self._bind(verified)})

    def _verify(self, event: AppEvent) -> Installation:
        auth = event.auth
        server = allowed_server(auth.server_endpoint, self._rules.auth_servers)
        info = self._auth_server.app_info(server, auth.access_token or "")
        names = {app.client_id: name for name, app in self._rules.apps().items()}
        verify_install(auth, info, tuple(names))
        return installation(auth, event.ts, server, info, names[info.client_id])

    def _bind(self, verified: Installation) -> bool:
        try:
            self._binder.bind(verified, self._rules.events_url, BOUND_EVENTS)
        except BindFailed as exc:
            logger.warning(
                "events not bound on %s: %s",
                verified.portal,
                exc,
                extra={"portal": verified.portal},
            )
            notice = app_notices.events_not_bound(verified.portal, self._now())
            self._notify(self._operations, notice)
            return False
        return True

    # -- GET .../authorized (re-authorisation without reinstalling) -------------------------------

    def authorized(self, query: Mapping[str, str]) -> InboundAnswer:
        """Where the portal sends the administrator back with a code after
        `monitorctl portals authorize DOMAIN`: the state signed by this stack for this portal,
        the code traded at a trusted authorisation server, the new token vouched for by its
        app.info exactly as an install's, and stored under the same rules."""
        try:
            portal, app, server, code = self._callback(query)
        except (BadForm, BadState, NotGenuine) as exc:
            logger.warning("authorisation callback refused: %s", exc)
            return _refusal(
                403 if not isinstance(exc, BadForm) else 400, "NOT_AUTHORIZED", str(exc)
            )
        except InstallStoreError as exc:
            logger.error("authorisation callback: %s", exc)
            return _refusal(503, "UNAVAILABLE", "the stack's applications could not be read")
        try:
            grant = self._auth_server.exchange_code(token_url(server), app, code)
            info = self._auth_server.app_info(server, grant.access_token)
            if grant.member_id != query.get("member_id"):
                raise NotGenuine("the code was issued for another member_id")
            verified = reauthorisation(portal, grant, server, info, app.name, int(self._clock()))
            verify_install(_auth_of(verified), info, (app.client_id,))
        except NotGenuine as exc:
            logger.warning("authorisation of %s refused: %s", portal, exc, extra={"portal": portal})
            return _refusal(403, "NOT_AUTHORIZED", f"the authorisation is not verified: {exc}")
        except AuthServerUnreachable as exc:
            logger.error(
                "authorisation of %s unverified: %s", portal, exc, extra={"portal": portal}
            )
            return _refusal(
                503,
                "AUTH_SERVER_UNREACHABLE",
                "the authorisation server did not answer; nothing was stored: authorise again",
            )
        try:
            stored = self._store.store_install(verified)
        except InstallStoreError as exc:
            logger.error(
                "authorisation of %s not stored: %s", portal, exc, extra={"portal": portal}
            )
            return _refusal(503, "NOT_STORED", "the authorisation could not be stored")
        logger.info("re-authorised on %s", portal, extra={"portal": portal})
        return InboundAnswer(200, {"portal": portal, "authorized": stored})

    def _callback(self, query: Mapping[str, str]) -> tuple[str, AppCredentials, str, str]:
        """The callback's parameters checked, and the state's signature, before any call."""
        for name in ("code", "state", "domain", "member_id", "server_domain"):
            value = query.get(name)
            if not isinstance(value, str) or not value or len(value) > STATE_LIMIT:
                raise BadForm(f"{name} is missing or too long")
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,256}", query["code"]):
            raise BadForm("code is not a code")
        apps = self._rules.apps()
        app = apps.get(claimed_app(query["state"]))
        if app is None:
            raise BadState("the state names no application of this stack")
        state = read_state(query["state"], state_key(app.client_secret), self._clock())
        if host_name(query["domain"]) != state.portal:
            raise BadState("the state was issued for another portal")
        return (
            state.portal,
            app,
            server_for(query["server_domain"], self._rules.auth_servers),
            query["code"],
        )

    # -- POST .../events --------------------------------------------------------------------------

    def event(self, body: bytes, content_type: str) -> InboundAnswer:
        try:
            event = read_event(parse_form(body, content_type))
        except BadForm as exc:
            logger.warning("event refused: %s", exc)
            return _refusal(exc.status, "BAD_FORM", str(exc))
        try:
            known = self._store.known(event.auth.member_id)
        except InstallStoreError as exc:
            logger.error("event %s not read: %s", event.name, exc)
            return _refusal(503, "UNAVAILABLE", "the installation could not be read")
        if known is None or not same_token(known.token_hash, event.auth.application_token):
            logger.warning("event %s refused: unknown installation or wrong token", event.name)
            return _refusal(403, "FORBIDDEN", "the event is not from a known installation")
        kind = event.known
        if kind is AppEventName.UNINSTALL:
            return self._uninstalled(event, known)
        if kind is AppEventName.UPDATE:
            return self._updated(event, known)
        if kind is AppEventName.LINE_DELETE:
            return self._line_deleted(event, known)
        logger.info("event %s for %s ignored", event.name, known.portal)
        return InboundAnswer(200, {"portal": known.portal, "ignored": True})

    def _uninstalled(self, event: AppEvent, known: KnownInstall) -> InboundAnswer:
        try:
            self._store.forget(event.auth.member_id, known.portal)
        except InstallStoreError as exc:
            logger.error("uninstall of %s not stored: %s", known.portal, exc)
            return _refusal(503, "UNAVAILABLE", "the uninstall could not be stored")
        logger.info("uninstalled from %s", known.portal, extra={"portal": known.portal})
        self._notify(self._alerts, app_notices.uninstalled(known.portal, self._now()))
        return InboundAnswer(200, {"portal": known.portal, "uninstalled": True})

    def _line_deleted(self, event: AppEvent, known: KnownInstall) -> InboundAnswer:
        """Marked on the portal's token item: the checker's next run reads the portal's
        inventory at once and retires the line if it no longer lists it."""
        try:
            line = deleted_line(event)
        except BadForm as exc:
            logger.warning("line delete on %s refused: %s", known.portal, exc)
            return _refusal(exc.status, "BAD_FORM", str(exc))
        try:
            self._store.note_line_deleted(
                event.auth.member_id, known.portal, line, int(self._clock())
            )
        except InstallStoreError as exc:
            logger.error("line delete on %s not stored: %s", known.portal, exc)
            return _refusal(503, "UNAVAILABLE", "the line's deletion could not be stored")
        logger.info("line %s deleted on %s", line, known.portal, extra={"portal": known.portal})
        return InboundAnswer(200, {"portal": known.portal, "line_deleted": line})

    def _updated(self, event: AppEvent, known: KnownInstall) -> InboundAnswer:
        """An update removes the application's handlers: bind them again, with the token the
        event brought (fresher than the stored one) or else the stored one."""
        bound = Installation(
            portal=known.portal,
            member_id=event.auth.member_id,
            app="",
            access_token=event.auth.access_token or known.access_token,
            refresh_token="",
            client_endpoint=known.client_endpoint,
            server_endpoint="",
            installed_at=event.ts,
            expires_at=None,
            token_hash=known.token_hash,
            app_status=None,
            scope=(),
        )
        return InboundAnswer(200, {"portal": known.portal, "bound": self._bind(bound)})

    # -- notices ----------------------------------------------------------------------------------

    def _notify(self, channel: Publisher, alert: Alert) -> None:
        try:
            channel.publish(alert)
        except PublishError as exc:
            logger.error("notice %s not published: %s", alert.subject, exc)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


def _auth_of(verified: Installation) -> AppAuth:
    """The identity a re-authorisation claims, checked by the install's own rule."""
    return AppAuth(domain=verified.portal, member_id=verified.member_id, application_token="")
