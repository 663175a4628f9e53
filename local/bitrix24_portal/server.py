"""LocalPortal: the multi-portal REST + OAuth server and its control API (see the package doc)."""

from __future__ import annotations

import itertools
import json
import re
import secrets
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import suppress
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from local.bitrix24_portal.apps import (
    ALREADY_BOUND,
    APP_SCOPE,
    Delivery,
    bindable,
    check_handler,
    deliver,
    event_form,
)
from local.bitrix24_portal.protocol import (
    BATCH_LIMIT,
    DEFAULT_TIMEOUT_HOLD,
    DEFAULT_TRICKLE_PACE,
    HUGE_CODE_CHARS,
    MOVED_TO,
    NGINX_502,
    PortalFault,
    Reply,
    RestError,
    access_token,
    bracket_parse,
    connector_line,
    echo_token,
    endless,
    error_reply,
    flag,
    gzip_bomb,
    huge_body,
    intval,
    json_bool,
    json_reply,
    list_lines,
    method_name,
    param,
    parse_params,
    php_array,
    php_empty,
    time_block,
)
from local.bitrix24_portal.recorded import recorded
from local.bitrix24_portal.state import (
    Access,
    App,
    Binding,
    Code,
    Fault,
    Installation,
    Operating,
    PortalState,
    RecordedRequest,
)
from local.bitrix24_portal.tls import local_authority


class LocalPortal:
    """Multi-portal Bitrix24 REST + OAuth server (thread-safe; see the package doc)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token_ttl: float = 3600.0,
        *,
        tls: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        # HTTPS with a certificate from this process's local authority (`ca_file`), as portals
        # speak; plain HTTP on loopback otherwise.
        self.tls = tls
        self.token_ttl = token_ttl
        self.latency = 0.0
        self.rate_limit: tuple[int, float] | None = None
        # A method's operating time resets this long after its first call in a window.
        self.operating_reset_in = 600.0
        # Past this many seconds of a method's operating time, OPERATION_TIME_LIMIT (the core's
        # default: rest/lib/engine/access/loadlimiter.php; the docs' example says 480).
        self.operating_limit = 420.0
        # What the old access token does once its pair was refreshed. No source settles it
        # (notes in docs/bitrix24-rest-notes.md): "valid" (it lives until its own expiry: the
        # portal caches a token's check for an hour, rest/lib/oauth/storagecache.php) or
        # "expired" (the safe reading: it answers expired_token at once).
        self.old_token_after_refresh = "valid"
        # What an access token past its hour answers: expired_token (the portal's own check,
        # rest/lib/oauth/auth.php) or invalid_token (once the portal's cache forgot it and the
        # OAuth server no longer knows it); the monitor refreshes on both.
        self.expired_token_code = "expired_token"
        self._lock = threading.Lock()
        self._portals: dict[str, PortalState] = {}
        # The OAuth server's books: every application by client_id; the one portal a portal's
        # own application lives on; the portal and application of every live refresh token
        # (how oauth.bitrix.info tells which portal a refresh is for: the request names none).
        self._apps: dict[str, App] = {}
        self._home: dict[str, PortalState] = {}
        self._refresh_owner: dict[str, tuple[PortalState, str]] = {}
        # The portal of every access token (app.info on the OAuth server names no portal).
        self._access_owner: dict[str, PortalState] = {}
        # Authorization codes from /oauth/authorize/: single use, `code_ttl` seconds (30 s:
        # b24restdocs settings/oauth/index.md).
        self._codes: dict[str, Code] = {}
        self.code_ttl = 30.0
        self._binding_ids = itertools.count(1)
        self._installation_ids = itertools.count(1)
        self._deliveries: list[Delivery] = []
        self._requests: list[RecordedRequest] = []
        self._requests_by_domain: dict[str, list[RecordedRequest]] = {}
        # (domain or None, method or None) -> requests: request_count() without a scan
        self._request_counts: Counter[tuple[str | None, str | None]] = Counter()
        self._refreshes = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # lifecycle -----------------------------------------------------------------------------

    def start(self) -> LocalPortal:
        if self._server is not None:
            return self
        self._stopping = threading.Event()
        self._server = _Server((self.host, self.port), self)
        if self.tls:
            # The handshake happens in the request's own thread, on its first read: one slow
            # client does not hold the accepting thread.
            self._server.socket = (
                local_authority()
                .server_context()
                .wrap_socket(self._server.socket, server_side=True, do_handshake_on_connect=False)
            )
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes held requests (latency, "timeout"): they drop the socket
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def __enter__(self) -> LocalPortal:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("LocalPortal is not running: call start() first")
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def ca_file(self) -> str:
        """The PEM file of the authority that signed this portal's certificate (`tls` only):
        what the monitor is told to trust through `PORTAL_CA_BUNDLE`."""
        if not self.tls:
            raise RuntimeError("this LocalPortal speaks plain HTTP: start it with tls=True")
        return str(local_authority().ca_file)

    @property
    def oauth_endpoint(self) -> str:
        return f"{self.url}/oauth/token/"

    @property
    def server_endpoint(self) -> str:
        """The OAuth server's REST address (events' auth[server_endpoint]): app.info is there."""
        return f"{self.url}/rest/"

    @property
    def server_domain(self) -> str:
        """The OAuth server's domain, as its answers and the authorize redirect name it."""
        return f"{self.host}:{self.port}"

    def client_endpoint(self, domain: str) -> str:
        return f"{self.url}/{domain}/rest/"

    # portal set-up ---------------------------------------------------------------------------

    def add_portal(
        self,
        domain: str,
        connectors: dict[str, str] | None = None,
        lines: dict[int, str] | None = None,
        *,
        app: str | None = None,
    ) -> None:
        """A new portal. Its application is one of its own (a client id no other portal knows),
        or, with `app` (a client id from `add_shared_app`), that shared application: then
        `credentials(domain)` hands out pairs of the shared application."""
        if not domain or "/" in domain:
            raise ValueError(f"bad portal domain {domain!r}")
        with self._lock:
            if domain in self._portals:
                raise ValueError(f"portal {domain!r} already exists")
            owner = self._shared_app(app) if app is not None else self._new_app("")
            state = PortalState(
                domain=domain,
                client_id=owner.client_id,
                client_secret=owner.client_secret,
                member_id=secrets.token_hex(16),
                connectors={k.lower(): v for k, v in (connectors or {}).items()},
                lines={int(k): v for k, v in (lines or {}).items()},
            )
            self._portals[domain] = state
            self._installation(state, owner.client_id)
            if not owner.shared:
                self._home[owner.client_id] = state

    def credentials(self, domain: str, app: str | None = None) -> dict[str, str]:
        """A secret entry (the format of docs/ARCHITECTURE.md) with a freshly issued token pair:
        of the portal's application, or of `app` (the client id of any application installed
        on the portal: `add_app`, `install`)."""
        with self._lock:
            state = self._get(domain)
            client_id = state.client_id if app is None else app
            client_secret = state.secret_of(client_id)
            if client_secret is None:
                raise ValueError(f"application {app!r} is not installed on {domain!r}")
            return self._entry(domain, state, client_id, client_secret)

    def add_app(self, domain: str, name: str) -> dict[str, str]:
        """Install another application on the portal; its secret entry, with a fresh pair.

        The monitor's recommended set-up: a dedicated monitor app whose tokens nobody else
        spends, beside the connector's own backend app (imconnector.status answers for any
        connector id whichever app asks: core imconnector/lib/rest/status.php::getStatus())."""
        with self._lock:
            state = self._get(domain)
            app = self._new_app(name)
            state.apps[app.client_id] = app
            self._installation(state, app.client_id)
            self._home[app.client_id] = state
            return self._entry(domain, state, app.client_id, app.client_secret)

    def add_shared_app(self, name: str) -> tuple[str, str]:
        """A new application meant for many portals; its (client_id, client_secret).

        How an integrator works on Bitrix24: one application (one client id and secret),
        installed on every customer's portal, each installation with pairs of its own. Install
        it with `add_portal(domain, app=client_id)` (the portal's application) or
        `install(domain, client_id)` (beside the portal's own). The refresh request names no
        portal (grant_type, client_id, client_secret, refresh_token): the OAuth server finds
        the portal, and the application, by the refresh token, then checks that client_id and
        client_secret are that application's (invalid_client otherwise). Faults, `revoke`,
        `expire_access_tokens` and refresh counts stay per portal."""
        with self._lock:
            app = self._new_app(name, shared=True)
            return app.client_id, app.client_secret

    def install(self, domain: str, app: str) -> dict[str, str]:
        """Install the shared application `app` (a client id from `add_shared_app`) on a portal,
        beside the applications it has; its secret entry there, with a fresh pair (more pairs:
        `credentials(domain, app=app)`)."""
        with self._lock:
            state = self._get(domain)
            shared = self._shared_app(app)
            if state.secret_of(app) is not None:
                raise ValueError(f"application {app!r} is already installed on {domain!r}")
            state.apps[shared.client_id] = shared
            self._installation(state, shared.client_id)
            return self._entry(domain, state, shared.client_id, shared.client_secret)

    # applications: install, events, authorisation ---------------------------------------------

    def set_redirect_uri(self, app: str, uri: str | None) -> None:
        """The address the application registered: where /oauth/authorize/ sends the user back
        (None: the portal shows the code on its page instead)."""
        with self._lock:
            if app not in self._apps:
                raise KeyError(f"no application {app!r}")
            self._apps[app].redirect_uri = uri

    def authorize_url(self, domain: str, app: str, state: str = "") -> str:
        """The portal's authorisation page for `app` (b24restdocs settings/oauth/index.md)."""
        return f"{self.url}/{domain}/oauth/authorize/?" + urlencode(
            {"client_id": app, "state": state}
        )

    def install_app(
        self,
        domain: str,
        url: str,
        *,
        app: str | None = None,
        version: str = "1",
        language: str = "en",
        finished: bool = True,
        ca_bundle: str | None = None,
    ) -> Delivery:
        """Install an application on the portal as Bitrix24 does: its installation path `url`
        becomes its ONAPPINSTALL handler, and the portal posts ONAPPINSTALL there with a fresh
        token pair of the portal's (they work for REST and refresh like any other) and the
        installation's application_token. `app`: a shared application's client id (installed
        now if it was not), else the portal's own. `finished=False`: data[INSTALLED]=N and
        app.info says installed false, as before BX24.installFinish().

        `url` is https (trusting `ca_bundle`, or the system's authorities) or plain http on a
        loopback address."""
        with self._lock:
            state = self._get(domain)
            client_id = self._install_target(state, app)
            setup = self._installation(state, client_id)
            setup.version, setup.finished = version, finished
            binding = self._bind(state, client_id, "ONAPPINSTALL", url)
            data = {
                "VERSION": version,
                "ACTIVE": "Y",
                "INSTALLED": "Y" if finished else "N",
                "LANGUAGE_ID": language,
            }
            form = event_form("ONAPPINSTALL", binding.id, data, int(time.time()),
                              self._event_auth(state, client_id, refresh=True))  # fmt: skip
        return self._deliver("ONAPPINSTALL", url, form, ca_bundle)

    def update_app(
        self,
        domain: str,
        version: str,
        *,
        app: str | None = None,
        language: str = "en",
        ca_bundle: str | None = None,
    ) -> list[Delivery]:
        """A new version of the application: ONAPPUPDATE (with a refresh token, as
        ONAPPINSTALL) to every handler it bound for it; then its ONAPPINSTALL handler goes and
        the others stay (core rest/classes/general/rest_util.php::UpdateApp(): deleteAppInstaller;
        the docs' event-bind.md says every handler goes: notes in docs/bitrix24-rest-notes.md)."""
        with self._lock:
            state = self._get(domain)
            client_id = app or state.client_id
            setup = self._installation(state, client_id)
            data = {"VERSION": version, "PREVIOUS_VERSION": setup.version, "LANGUAGE_ID": language}
            setup.version = version
            posts = self._event_posts(state, client_id, "ONAPPUPDATE", data, refresh=True)
            state.bindings = [
                b for b in state.bindings if (b.client_id, b.event) != (client_id, "ONAPPINSTALL")
            ]
        return [self._deliver("ONAPPUPDATE", u, f, ca_bundle) for u, f in posts]

    def uninstall_app(
        self,
        domain: str,
        *,
        app: str | None = None,
        clean: bool = True,
        language: str = "en",
        ca_bundle: str | None = None,
    ) -> list[Delivery]:
        """The application is removed from the portal: its tokens there die, its handlers go,
        and ONAPPUNINSTALL (data[CLEAN], auth with no tokens: rest_provider.php sendAuth=false)
        goes to the handlers it had bound for it."""
        with self._lock:
            state = self._get(domain)
            client_id = app or state.client_id
            if state.secret_of(client_id) is None:
                raise ValueError(f"application {client_id!r} is not installed on {domain!r}")
            data = {"LANGUAGE_ID": language, "CLEAN": 1 if clean else 0}
            posts = self._event_posts(state, client_id, "ONAPPUNINSTALL", data, tokens=False)
            state.bindings = [b for b in state.bindings if b.client_id != client_id]
            state.installations.pop(client_id, None)
            state.apps.pop(client_id, None)
            for token, access in list(state.access.items()):
                if access.app == client_id:
                    del state.access[token]
                    self._access_owner.pop(token, None)
                    state.refresh.pop(access.refresh, None)
                    self._refresh_owner.pop(access.refresh, None)
        return [self._deliver("ONAPPUNINSTALL", u, f, ca_bundle) for u, f in posts]

    def delete_line(
        self, domain: str, line: int, *, ca_bundle: str | None = None
    ) -> list[Delivery]:
        """An open line is deleted: it and its connectors' flags go, and ONIMCONNECTORLINEDELETE
        (data = the line's id: imconnector/lib/rest/customconnectors.php::OnDeleteLine) goes to
        every application's handler for it."""
        with self._lock:
            state = self._get(domain)
            if state.lines.pop(int(line), None) is None:
                raise ValueError(f"portal {domain!r} has no open line {line}")
            state.flags = {k: v for k, v in state.flags.items() if k[1] != int(line)}
            posts = [
                post
                for client_id in dict.fromkeys(b.client_id for b in state.bindings)
                for post in self._event_posts(
                    state, client_id, "ONIMCONNECTORLINEDELETE", int(line)
                )
            ]
        return [self._deliver("ONIMCONNECTORLINEDELETE", u, f, ca_bundle) for u, f in posts]

    def bindings(self, domain: str, app: str | None = None) -> list[Binding]:
        """The portal's event handlers (one application's, or every one's)."""
        with self._lock:
            state = self._get(domain)
            return [b for b in state.bindings if app is None or b.client_id == app]

    def deliveries(self) -> list[Delivery]:
        """Every event the portals posted, in order."""
        with self._lock:
            return list(self._deliveries)

    def deny_connector_list(self, domain: str, denied: bool = True) -> None:
        """The app was installed by a user without the Open Lines permission to change
        connectors: imconnector.list answers ACCESS_DENIED (HTTP 400)."""
        with self._lock:
            self._get(domain).list_allowed = not denied

    def move(self, domain: str, to: str) -> None:
        """The portal changes its address to `to` (same Bitrix24, same tokens and member_id):
        REST on the old address answers 302 to the new one, and the OAuth server names the new
        REST endpoint as client_endpoint."""
        with self._lock:
            if to in self._portals:
                raise ValueError(f"portal {to!r} already exists")
            state = self._get(domain)
            state.moved_to = to
            self._portals[to] = state

    def set_operating(self, domain: str, method: str, seconds: float) -> None:
        """A method's operating time in the current window, as if it had been spent."""
        with self._lock:
            slot = self._get(domain).operating.setdefault(method_name(method), Operating())
            slot.seconds = seconds
            slot.reset_at = slot.reset_at or time.time() + self.operating_reset_in

    def add_lines(self, domain: str, lines: dict[int, str]) -> None:
        """Open lines created on the portal (no connector configured on them yet)."""
        with self._lock:
            self._get(domain).lines.update({int(k): v for k, v in lines.items()})

    def omit_lines(self, domain: str, lines: Iterable[int], listings: int = 1) -> None:
        """The next `listings` answers (pages) of imopenlines.config.list.get leave these lines
        out (a replica lagging, say); the lines still exist and their statuses answer as before."""
        with self._lock:
            state = self._get(domain)
            state.omitted.update({int(n): listings for n in lines})

    def delete_lines_after_next_page(self, domain: str, lines: Iterable[int]) -> None:
        """These lines are deleted right after the next page of open lines is served: between
        two pages of one read."""
        with self._lock:
            self._get(domain).deleted_after_page.update(int(n) for n in lines)

    def connect(self, domain: str, connector: str, line: int) -> None:
        self.set_status(domain, connector, line, configured=True, error=False)

    def disconnect(self, domain: str, connector: str, line: int) -> None:
        with self._lock:
            state = self._get(domain)
            key = (connector.lower(), int(line))
            state.flags[key] = (False, state.flags.get(key, (False, False))[1])

    def set_status(
        self, domain: str, connector: str, line: int, *, configured: bool, error: bool
    ) -> None:
        with self._lock:
            self._get(domain).flags[(connector.lower(), int(line))] = (configured, error)

    def expire_access_tokens(self, domain: str) -> None:
        with self._lock:
            for access in self._get(domain).access.values():
                access.expired = True

    def revoke(self, domain: str) -> None:
        """Every application's tokens on the portal die (re-authorisation needed); a shared
        application's pairs on other portals live on."""
        with self._lock:
            state = self._get(domain)
            for refresh in state.refresh:
                self._refresh_owner.pop(refresh, None)
            state.access.clear()
            state.refresh.clear()

    # faults --------------------------------------------------------------------------------

    def inject(
        self,
        domain: str,
        fault: PortalFault | str,
        *,
        count: int | None = None,
        method: str | None = None,
        delay: float = 0.0,
    ) -> None:
        kind = PortalFault(fault)
        if count is not None and count < 1:
            raise ValueError("count must be at least 1 (None = until cleared)")
        if kind is PortalFault.TIMEOUT and delay <= 0:
            delay = DEFAULT_TIMEOUT_HOLD
        if kind is PortalFault.GZIP_BOMB:
            gzip_bomb()  # made now (about a second), not while a client waits for it
        if kind is PortalFault.TRICKLE and delay <= 0:
            delay = DEFAULT_TRICKLE_PACE
        entry = Fault(kind, count, method_name(method) if method else None, max(0.0, delay))
        with self._lock:
            self._get(domain).faults.append(entry)

    def fail_command(
        self, domain: str, connector: str, line: int, error_code: PortalFault | str
    ) -> None:
        """imconnector.status for this pair fails with `error_code` (in a batch: result_error)."""
        with self._lock:
            self._get(domain).failed[(connector.lower(), int(line))] = str(error_code)

    def answer_only(self, domain: str, lines: set[int] | None) -> None:
        with self._lock:
            state = self._get(domain)
            state.answer_only = None if lines is None else frozenset(int(x) for x in lines)

    def clear_faults(self, domain: str | None = None) -> None:
        """Drop injected faults, failed commands and answer_only (one portal or all)."""
        with self._lock:
            states = [self._get(domain)] if domain is not None else self._portals.values()
            for state in states:
                state.faults.clear()
                state.failed.clear()
                state.answer_only = None

    # observation ---------------------------------------------------------------------------

    def requests(self, domain: str | None = None) -> list[RecordedRequest]:
        """The REST requests that reached the server (one portal's, or all), in order."""
        with self._lock:
            if domain is None:
                return list(self._requests)
            return list(self._requests_by_domain.get(domain, ()))

    def request_count(self, domain: str | None = None, method: str | None = None) -> int:
        """How many REST requests reached the server (one portal's, one method's): a counter,
        not a scan of the requests."""
        wanted = method_name(method) if method else None
        with self._lock:
            return self._request_counts[(domain, wanted)]

    def refresh_count(self, domain: str | None = None) -> int:
        """Token refreshes the OAuth server granted (for one portal, or all)."""
        with self._lock:
            return self._get(domain).refreshes if domain is not None else self._refreshes

    def issued_secrets(self, domain: str | None = None) -> set[str]:
        """Every token this server ever issued, the client secrets and the installations'
        application tokens (for leak searches)."""
        with self._lock:
            states = [self._get(domain)] if domain is not None else self._portals.values()
            return {
                s
                for state in states
                for s in (
                    *state.issued,
                    state.client_secret,
                    *(app.client_secret for app in state.apps.values()),
                    *(setup.application_token for setup in state.installations.values()),
                )
            }

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()
            self._requests_by_domain.clear()
            self._request_counts.clear()

    def state(self) -> dict[str, Any]:
        """What GET /_control/state shows: everything but tokens and secrets."""
        with self._lock:
            return {
                "url": self.url if self._server else None,
                "latency": self.latency,
                "rate_limit": self.rate_limit,
                "portals": {d: self._describe(s) for d, s in self._portals.items()},
            }

    # internals: state ----------------------------------------------------------------------

    def _get(self, domain: str) -> PortalState:
        try:
            return self._portals[domain]
        except KeyError:
            raise KeyError(f"unknown portal {domain!r}") from None

    def _new_app(self, name: str, *, shared: bool = False) -> App:
        tail = name if name and not shared else secrets.token_hex(4)
        app = App(name, f"local.{secrets.token_hex(7)}.{tail}", secrets.token_urlsafe(36), shared)
        self._apps[app.client_id] = app
        return app

    def _shared_app(self, client_id: str) -> App:
        app = self._apps.get(client_id)
        if app is None or not app.shared:
            raise KeyError(f"no shared application {client_id!r} (see add_shared_app)")
        return app

    def _entry(
        self, domain: str, state: PortalState, client_id: str, client_secret: str
    ) -> dict[str, str]:
        access, refresh = self._issue(state, client_id)
        return {
            "client_id": client_id,
            "client_secret": client_secret,
            "access_token": access,
            "refresh_token": refresh,
            "client_endpoint": self.client_endpoint(domain),
            "oauth_endpoint": self.oauth_endpoint,
        }

    def _issue(self, state: PortalState, app: str = "") -> tuple[str, str]:
        access, refresh = secrets.token_hex(35), secrets.token_hex(35)
        client_id = app or state.client_id
        state.issued |= {access, refresh}
        state.access[access] = Access(issued_at=time.time(), refresh=refresh, app=client_id)
        state.refresh[refresh] = access
        self._refresh_owner[refresh] = (state, client_id)
        self._access_owner[access] = state
        return access, refresh

    def _installation(self, state: PortalState, client_id: str) -> Installation:
        setup = state.installations.get(client_id)
        if setup is None:
            setup = Installation(next(self._installation_ids), secrets.token_hex(16))
            state.installations[client_id] = setup
        return setup

    def _install_target(self, state: PortalState, app: str | None) -> str:
        if app is None or state.secret_of(app) is not None:
            return app or state.client_id
        state.apps[app] = self._shared_app(app)
        return app

    def _bind(self, state: PortalState, client_id: str, event: str, handler: str) -> Binding:
        for bound in state.bindings:
            if (bound.client_id, bound.event, bound.handler) == (client_id, event, handler):
                return bound
        binding = Binding(next(self._binding_ids), client_id, event, handler)
        state.bindings.append(binding)
        return binding

    def _event_auth(
        self, state: PortalState, client_id: str, *, refresh: bool = False, tokens: bool = True
    ) -> dict[str, Any]:
        """An event's auth block (rest/lib/event/sender.php::getAuth, completed by the OAuth
        server that delivers it); without `tokens`, the portal's address and identity only."""
        domain = state.moved_to or state.domain
        token = self._installation(state, client_id).application_token
        if not tokens:
            return {
                "domain": domain,
                "server_endpoint": self.server_endpoint,
                "client_endpoint": self.client_endpoint(domain),
                "member_id": state.member_id,
                "application_token": token,
            }
        access, refresh_token = self._issue(state, client_id)
        auth: dict[str, Any] = {
            "access_token": access,
            "expires": int(time.time() + self.token_ttl),
            "expires_in": int(self.token_ttl),
            "scope": APP_SCOPE,
            "domain": domain,
            "server_endpoint": self.server_endpoint,
            "status": "L",
            "client_endpoint": self.client_endpoint(domain),
            "member_id": state.member_id,
            "user_id": 1,
        }
        if refresh:
            auth["refresh_token"] = refresh_token
        auth["application_token"] = token
        return auth

    def _event_posts(
        self,
        state: PortalState,
        client_id: str,
        event: str,
        data: Any,
        *,
        refresh: bool = False,
        tokens: bool = True,
    ) -> list[tuple[str, list[tuple[str, str]]]]:
        """(handler, form) of every handler `client_id` bound for `event` on the portal."""
        now = int(time.time())
        return [
            (
                b.handler,
                event_form(
                    event,
                    b.id,
                    data,
                    now,
                    self._event_auth(state, client_id, refresh=refresh, tokens=tokens),
                ),
            )
            for b in state.bindings
            if b.client_id == client_id and b.event == event
        ]

    def _deliver(
        self, event: str, url: str, form: list[tuple[str, str]], ca_bundle: str | None
    ) -> Delivery:
        """Outside the lock: the handler may well call the portal back (app.info, event.bind)."""
        delivery = deliver(event, url, form, ca_bundle=ca_bundle)
        with self._lock:
            self._deliveries.append(delivery)
        return delivery

    def _record(self, request: RecordedRequest) -> None:
        self._requests.append(request)
        self._requests_by_domain.setdefault(request.domain, []).append(request)
        for key in (
            (None, None),
            (request.domain, None),
            (None, request.method),
            (request.domain, request.method),
        ):
            self._request_counts[key] += 1

    def _describe(self, state: PortalState) -> dict[str, Any]:
        return {
            "client_endpoint": self.client_endpoint(state.domain) if self._server else None,
            "connectors": state.connectors,
            "lines": {str(k): v for k, v in sorted(state.lines.items())},
            "status": [
                {"connector": c, "line": ln, "configured": cf, "error": er, "status": cf and not er}
                for (c, ln), (cf, er) in sorted(state.flags.items())
            ],
            "faults": [
                {"fault": f.fault.value, "remaining": f.remaining, "method": f.method}
                for f in state.faults
            ],
            "failed_commands": [
                {"connector": c, "line": ln, "error": code}
                for (c, ln), code in sorted(state.failed.items())
            ],
            "answer_only": None if state.answer_only is None else sorted(state.answer_only),
            "requests": self._request_counts[(state.domain, None)],
            "refreshes": state.refreshes,
            "handlers": [
                {"app": b.client_id, "event": b.event, "handler": b.handler} for b in state.bindings
            ],
        }

    def _hold(self, seconds: float) -> bool:
        """Wait without blocking stop(); False when the server is stopping."""
        if seconds > 0:
            return not self._stopping.wait(seconds)
        return not self._stopping.is_set()

    # internals: HTTP -----------------------------------------------------------------------

    def _handle(
        self, verb: str, target: str, content_type: str, body: bytes, authorization: str = ""
    ) -> Reply | None:
        parts = urlsplit(target)
        path = unquote(parts.path)
        if path.startswith("/_control/"):
            return self._control(verb, path, body)
        if not self._hold(self.latency):
            return None
        try:
            params = parse_params(parts.query, content_type, body)
        except ValueError as exc:
            return error_reply("INVALID_REQUEST", str(exc))
        if path.rstrip("/") == "/oauth/token":
            return self._oauth(params)
        if path.rstrip("/") in ("/rest/app.info", "/rest/app.info.json"):
            return self._server_app_info(access_token(params, authorization))
        authorize = re.fullmatch(r"/([^/]+)/oauth/authorize/?", path)
        if authorize is not None:
            return self._authorize(authorize.group(1), params)
        match = re.fullmatch(r"/([^/]+)/rest/([^/]+?)(?:\.json)?/?", path)
        if match is None:
            return json_reply(404, {"error": "NOT_FOUND", "error_description": "Unknown path"})
        token = access_token(params, authorization)
        return self._rest(match.group(1), method_name(match.group(2)), path, params, token)

    def _rest(
        self, domain: str, method: str, path: str, params: dict[str, Any], token: str | None
    ) -> Reply | None:
        now = time.time()
        with self._lock:
            state = self._portals.get(domain)
            if state is None:
                return json_reply(404, {"error": "NOT_FOUND", "error_description": "No portal"})
            if state.moved_to not in (None, domain):  # before the auth check, as a web server
                moved = self.client_endpoint(state.moved_to) + method
                return Reply(302, b"", headers={"Location": moved})
            self._record(RecordedRequest(domain, method, path, params, now))
            fault = state.take_fault(method)
            limit = self.rate_limit
            if fault is None and limit and not state.bucket.admit(limit[0], limit[1], now):
                return error_reply("QUERY_LIMIT_EXCEEDED")

        def answer() -> Reply:
            return self._rest_answer(state, method, params, token, now)

        if fault is None:
            return answer()
        if fault.fault is PortalFault.ECHO_TOKEN:
            return echo_token(method, params, str(token or ""))
        if fault.fault is PortalFault.REDIRECT:
            return Reply(302, b"", headers={"Location": f"https://{MOVED_TO}/rest/{method}"})
        return self._serve_fault(fault, answer, now)

    def _rest_answer(
        self, state: PortalState, method: str, params: dict[str, Any], token: Any, start: float
    ) -> Reply:
        try:
            with self._lock:
                access = self._check_auth(state, token)
                if method == "batch":
                    result = self._batch(state, params, access)
                    timing = time_block(start, time.time())  # batch has no operating time
                else:
                    self._check_operating(state, method)
                    result = self._call(state, method, params, access)
                    timing = self._spend(state, method, start, time.time())
        except RestError as exc:
            return json_reply(exc.status, {"error": exc.code, "error_description": exc.description})
        return json_reply(200, {"result": result, "time": timing})

    def _check_operating(self, state: PortalState, method: str) -> None:
        """OPERATION_TIME_LIMIT once a method's time went past the limit (rest.php::processCall
        checks before the call; the call that crossed the line completed)."""
        slot = state.operating.get(method)
        if slot is not None and time.time() >= slot.reset_at:
            del state.operating[method]
        elif slot is not None and slot.seconds > self.operating_limit:
            raise RestError("OPERATION_TIME_LIMIT")

    def _spend(
        self, state: PortalState, method: str, start: float, finish: float
    ) -> dict[str, Any]:
        """The answer's time block, with the method's operating time after this call."""
        slot = state.operating.setdefault(method, Operating())
        if not slot.reset_at:
            slot.reset_at = start + self.operating_reset_in
        slot.seconds += finish - start
        block = time_block(start, finish)
        block["operating_reset_at"] = int(slot.reset_at)
        block["operating"] = round(slot.seconds, 6)
        return block

    def _check_auth(self, state: PortalState, token: Any) -> Access:
        if not token:
            raise RestError("NO_AUTH_FOUND")
        access = state.access.get(str(token))
        if access is None:
            raise RestError("invalid_token")
        if access.expired or time.time() - access.issued_at >= self.token_ttl:
            raise RestError(self.expired_token_code)
        return access

    def _serve_fault(self, fault: Fault, answer: Callable[[], Reply], start: float) -> Reply | None:
        if fault.fault is not PortalFault.TRICKLE and not self._hold(fault.delay):
            return None
        kind = fault.fault
        if kind is PortalFault.TIMEOUT:
            return answer()
        if kind is PortalFault.DROP:
            return None
        if kind is PortalFault.HTML:
            return Reply(502, NGINX_502.encode(), "text/html")
        if kind is PortalFault.TRUNCATED:
            full = answer().body
            return Reply(200, full[: max(1, len(full) // 2)])
        if kind is PortalFault.NOT_JSON:
            return Reply(200, b"Service is temporarily unavailable, try later", "text/plain")
        if kind is PortalFault.WRONG_SHAPE:
            return json_reply(200, {"result": "unexpected", "time": time_block(start, start)})
        if kind is PortalFault.HTTP_500:
            return Reply(500, b"", "text/plain")
        if kind is PortalFault.TRICKLE:
            return Reply(200, b"", stream=endless(b" "), pace=fault.delay)
        if kind is PortalFault.HUGE:
            return Reply(200, b"", stream=huge_body())
        if kind is PortalFault.GZIP_BOMB:
            return Reply(200, gzip_bomb(), headers={"Content-Encoding": "gzip"})
        if kind is PortalFault.HUGE_ERROR_CODE:
            return json_reply(400, {"error": "E" * HUGE_CODE_CHARS, "error_description": "?"})
        if kind is PortalFault.REDIRECT:
            return Reply(302, b"", headers={"Location": f"https://{MOVED_TO}/oauth/token/"})
        if kind in (PortalFault.HTTP_502, PortalFault.HTTP_503):
            return Reply(kind.http_status, f"{kind.http_status} error".encode(), "text/plain")
        # Error bodies are error and error_description only: no time block (rest.php:
        # appendDebugInfo() runs on the success path alone).
        return error_reply(kind.value)

    # internals: REST methods ---------------------------------------------------------------

    def _call(self, state: PortalState, method: str, params: dict[str, Any], access: Access) -> Any:
        if method in ("event.bind", "event.get", "event.unbind", "app.info"):
            return self._app_method(state, method, params, access)
        if method == "imconnector.status":
            return self._status(state, params)
        if method == "imconnector.list":
            # imconnector/lib/rest/common.php::list(): Open Lines "Connectors: modify" needed
            if not state.list_allowed:
                denied = recorded("imconnector.list.access_denied")
                body = denied.body
                raise RestError(body["error"], body["error_description"], denied.http_status)
            return dict(state.connectors) or []
        if method == "imconnector.activate":
            return self._activate(state, params)
        if method == "imopenlines.config.list.get":
            return self._list_lines(state, params)
        if method == "server.time":
            return datetime.now(UTC).isoformat(timespec="seconds")
        if method == "batch":
            raise RestError("ERROR_BATCH_METHOD_NOT_ALLOWED")
        raise RestError("ERROR_METHOD_NOT_FOUND")

    def _list_lines(self, state: PortalState, params: dict[str, Any]) -> list[dict[str, str]]:
        listed = {n: name for n, name in state.lines.items() if not state.omitted.get(n)}
        state.omitted = {n: left - 1 for n, left in state.omitted.items() if left > 1}
        page = list_lines(listed, param(params, "PARAMS", {}))
        for line in state.deleted_after_page:
            state.lines.pop(line, None)
            state.flags = {k: v for k, v in state.flags.items() if k[1] != line}
        state.deleted_after_page = set()
        return page

    def _app_method(
        self, state: PortalState, method: str, params: dict[str, Any], access: Access
    ) -> Any:
        """event.bind, event.get, event.unbind (core rest/lib/api/event.php) and the portal's
        own app.info (b24restdocs api-reference/common/system/app-info.md), for the
        application the token was issued to."""
        client_id = access.app or state.client_id
        if method == "app.info":
            setup = self._installation(state, client_id)
            return {
                "ID": str(setup.id),
                "CODE": client_id,
                "VERSION": intval(setup.version),
                "STATUS": "L",
                "INSTALLED": setup.finished,
                "PAYMENT_EXPIRED": "N",
                "DAYS": None,
                "LICENSE": "com_project",
            }
        if method == "event.get":
            return [
                {
                    "event": b.event,
                    "handler": b.handler,
                    "auth_type": str(b.user_id),
                    "offline": 0,
                }
                for b in state.bindings
                if b.client_id == client_id
            ]
        event = str(param(params, "EVENT") or "").strip().upper()
        handler = str(param(params, "HANDLER") or "")
        if not event:
            raise RestError("ERROR_ARGUMENT", "Argument 'EVENT' is null or empty")
        if not handler:
            raise RestError("ERROR_ARGUMENT", "Argument 'HANDLER' is null or empty")
        user = intval(param(params, "AUTH_TYPE", 0))
        if method == "event.unbind":
            kept = [
                b for b in state.bindings
                if not (b.client_id == client_id and b.event == event and b.handler == handler
                        and (param(params, "AUTH_TYPE") is None or b.user_id == user))
            ]  # fmt: skip
            count = len(state.bindings) - len(kept)
            state.bindings = kept
            return {"count": count}
        check_handler(handler)
        if not bindable(event):
            raise RestError("ERROR_EVENT_NOT_FOUND", "Event not found")
        for bound in state.bindings:
            if (bound.client_id, bound.event, bound.handler, bound.user_id) == (
                client_id,
                event,
                handler,
                user,
            ):
                # EventTable::checkUniq, relayed by eventBind() as ERROR_CORE (HTTP 400)
                raise RestError("ERROR_CORE", ALREADY_BOUND)
        state.bindings.append(Binding(next(self._binding_ids), client_id, event, handler, user))
        return True

    def _activate(self, state: PortalState, params: dict[str, Any]) -> bool:
        """imconnector/lib/rest/status.php::activate(): CONNECTOR, LINE and ACTIVE must be set;
        any non-empty ACTIVE activates (PHP `empty()`: "", "0", 0 and false do not), "N" too."""
        for name in ("LINE", "ACTIVE"):
            if param(params, name) is None:
                raise RestError("ERROR_ARGUMENT", f"Argument '{name}' is null or empty")
        connector, line = connector_line(params)
        flags = state.flags.get((connector, line), (False, False))
        active = not php_empty(param(params, "ACTIVE"))
        state.flags[(connector, line)] = (True, False) if active else (False, flags[1])
        return True

    def _status(self, state: PortalState, params: dict[str, Any]) -> dict[str, Any]:
        connector, line = connector_line(params)
        code = state.failed.get((connector, line))
        if code is not None:
            raise RestError(code)
        configured, error = state.flags.get((connector, line), (False, False))
        return {
            "LINE": line,
            "CONNECTOR": connector,
            "ERROR": error,
            "CONFIGURED": configured,
            "STATUS": configured and not error,
        }

    def _batch(self, state: PortalState, params: dict[str, Any], access: Access) -> dict[str, Any]:
        commands = params.get("cmd") or {}
        if isinstance(commands, list):
            commands = {str(i): c for i, c in enumerate(commands)}
        if not isinstance(commands, dict):
            raise RestError("ERROR_ARGUMENT", "Argument 'cmd' must be an array")
        halt = flag(params.get("halt", 0))
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        times: dict[str, Any] = {}
        for count, (name, command) in enumerate(commands.items()):
            if count >= BATCH_LIMIT:
                # rest_provider.php::methodsBatch(): past 50, an error per command, HTTP 200
                exceeded = RestError("ERROR_BATCH_LENGTH_EXCEEDED")
                errors[str(name)] = {
                    "error": exceeded.code,
                    "error_description": exceeded.description,
                }
                if halt:
                    break
                continue
            head, _, query = str(command).partition("?")
            method = method_name(head)
            sub = bracket_parse(parse_qsl(query, keep_blank_values=True))
            sub.pop("auth", None)
            if (
                state.answer_only is not None
                and method == "imconnector.status"
                and intval(param(sub, "LINE", 0)) not in state.answer_only
            ):
                continue
            started = time.time()
            try:
                self._check_operating(state, method)
                results[str(name)] = self._call(state, method, sub, access)
                times[str(name)] = self._spend(state, method, started, time.time())
            except RestError as exc:
                errors[str(name)] = {"error": exc.code, "error_description": exc.description}
            if halt and errors:
                break
        return {
            "result": php_array(results),
            "result_error": php_array(errors),
            "result_total": [],
            "result_next": [],
            "result_time": php_array(times),
        }

    # internals: OAuth ----------------------------------------------------------------------

    def _oauth(self, params: dict[str, Any]) -> Reply | None:
        with self._lock:
            state = self._oauth_portal(params)
            fault = state.take_fault("oauth") if state is not None else None

        def answer() -> Reply:
            return self._oauth_answer(params)

        return answer() if fault is None else self._serve_fault(fault, answer, time.time())

    def _oauth_portal(self, params: dict[str, Any]) -> PortalState | None:
        """The portal a refresh is for (whose "oauth" faults it meets): the one that issued the
        refresh token; for a token the server does not know, the portal whose own application
        the client id is (a shared application has none)."""
        owner = self._refresh_owner.get(str(params.get("refresh_token", "")))
        if owner is not None:
            return owner[0]
        code = self._codes.get(str(params.get("code", "")))
        if code is not None:
            return code.state
        return self._home.get(str(params.get("client_id", "")))

    def _oauth_answer(self, params: dict[str, Any]) -> Reply:
        grant = params.get("grant_type")
        if grant not in ("refresh_token", "authorization_code"):
            return json_reply(
                400, {"error": "invalid_request", "error_description": "grant_type not supported"}
            )
        with self._lock:
            # First the application (client_id and client_secret), then the refresh token or
            # the code, which names the portal and must have been issued to that application.
            client_id = str(params.get("client_id", ""))
            app = self._apps.get(client_id)
            presented = str(params.get("client_secret", "")).encode()
            if app is None or not secrets.compare_digest(presented, app.client_secret.encode()):
                return error_reply("invalid_client")
            if grant == "authorization_code":
                return self._exchange_code(client_id, str(params.get("code", "")))
            token = str(params.get("refresh_token", ""))
            owner = self._refresh_owner.get(token)
            if owner is None or owner[1] != client_id or token not in owner[0].refresh:
                return error_reply("invalid_grant")
            state = owner[0]
            del self._refresh_owner[token]
            old_access = state.refresh.pop(token)
            if old_access in state.access and self.old_token_after_refresh == "expired":
                state.access[old_access].expired = True
            access, refresh = self._issue(state, client_id)
            state.refreshes += 1
            self._refreshes += 1
            return json_reply(200, self._token_answer(state, access, refresh))

    def _exchange_code(self, client_id: str, code: str) -> Reply:
        """grant_type=authorization_code: a code lives `code_ttl` seconds and is spent by its
        first exchange, right or wrong; a bad one is invalid_grant (b24restdocs
        settings/oauth/index.md, settings/oauth/error-codes.md). The answer is the refresh's."""
        found = self._codes.pop(code, None) if code else None
        if found is None or found.client_id != client_id or time.time() >= found.expires_at:
            return error_reply("invalid_grant")
        access, refresh = self._issue(found.state, client_id)
        return json_reply(200, self._token_answer(found.state, access, refresh))

    def _token_answer(self, state: PortalState, access: str, refresh: str) -> dict[str, Any]:
        return {
            "access_token": access,
            "client_endpoint": self.client_endpoint(state.moved_to or state.domain),
            "domain": self.server_domain,  # the OAuth server, not the portal
            "expires": int(time.time() + self.token_ttl),
            "expires_in": int(self.token_ttl),
            "member_id": state.member_id,
            "refresh_token": refresh,
            "scope": APP_SCOPE,
            "server_endpoint": self.server_endpoint,
            "status": "L",
            "user_id": 1,
        }

    def _server_app_info(self, token: str | None) -> Reply:
        """app.info on the OAuth server (`server_endpoint` + app.info): which application and
        which installation the access token belongs to (bitrix24/b24pysdk
        b24pysdk/api/requesters/bitrix_oauth_requester.py calls it with `auth`;
        b24pysdk/api/responses/bitrix_app_info_response.py reads the answer)."""
        with self._lock:
            if not token:
                return error_reply("NO_AUTH_FOUND")
            state = self._access_owner.get(token)
            access = state.access.get(token) if state is not None else None
            if state is None or access is None:
                return error_reply("invalid_token")
            if access.expired or time.time() - access.issued_at >= self.token_ttl:
                return error_reply("expired_token")
            client_id = access.app or state.client_id
            setup = self._installation(state, client_id)
            domain = state.moved_to or state.domain
            expires = datetime.fromtimestamp(access.issued_at + self.token_ttl, UTC)
            result = {
                "client_id": client_id,
                "scope": APP_SCOPE,
                "expires": expires.isoformat(timespec="seconds"),
                "install": {
                    "installed": setup.finished,
                    "version": setup.version,
                    "status": "L",
                    "scope": APP_SCOPE,
                    "domain": domain,
                    "uri": f"{self.url}/{domain}",
                    "client_endpoint": self.client_endpoint(domain),
                    "member_id": state.member_id,
                    "member_type": "user",
                },
                "user_id": str(access.user_id),
            }
            now = time.time()
            return json_reply(200, {"result": result, "time": time_block(now, now)})

    def _authorize(self, domain: str, params: dict[str, Any]) -> Reply:
        """The portal's /oauth/authorize/?client_id=…&state=…, as a signed-in administrator
        meets it: no form, straight back to the application's redirect URI with code, state,
        domain, member_id, scope and server_domain (b24restdocs settings/oauth/index.md). What
        cannot be authorised is shown on the portal's own page, with no redirect."""
        with self._lock:
            state = self._portals.get(domain)
            client_id = str(params.get("client_id") or "")
            app = self._apps.get(client_id)
            if state is None or app is None or state.secret_of(client_id) is None:
                return Reply(400, _page("The application is not installed on this Bitrix24."),
                             "text/html; charset=utf-8")  # fmt: skip
            code = secrets.token_hex(16)
            self._codes[code] = Code(state, client_id, time.time() + self.code_ttl)
            answer = {
                "code": code,
                "state": str(params.get("state") or ""),
                "domain": state.moved_to or state.domain,
                "member_id": state.member_id,
                "scope": APP_SCOPE,
                "server_domain": self.server_domain,
            }
            if app.redirect_uri is None:
                # No return address registered: the portal shows the code to the user.
                return Reply(200, _page(f"Authorization code: {code}"), "text/html; charset=utf-8")
            glue = "&" if urlsplit(app.redirect_uri).query else "?"
            return Reply(
                302, b"", headers={"Location": app.redirect_uri + glue + urlencode(answer)}
            )

    # internals: control API ----------------------------------------------------------------

    def _control(self, verb: str, path: str, body: bytes) -> Reply:
        parts = path.strip("/").split("/")
        if parts == ["_control", "state"]:
            return json_reply(200, self.state())
        if verb != "POST" or len(parts) != 3:
            return json_reply(404, {"error": "NOT_FOUND", "message": "unknown control path"})
        domain, action = parts[1], parts[2]
        with self._lock:
            known = domain in self._portals
        if not known:
            return json_reply(404, {"error": "NOT_FOUND", "message": f"no portal {domain}"})
        try:
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise ValueError("body must be a JSON object")
            return self._control_action(domain, action, data)
        except (ValueError, TypeError, KeyError) as exc:
            return json_reply(400, {"error": "BAD_REQUEST", "message": str(exc)})

    def _lifecycle(self, domain: str, action: str, data: dict[str, Any]) -> list[Delivery]:
        """The control API's install, update, uninstall and delete_line: the events they post."""
        app, ca = data.get("app"), data.get("ca_bundle")
        if action == "install":
            return [self.install_app(domain, str(data["url"]), app=app, ca_bundle=ca,
                                     version=str(data.get("version", "1")))]  # fmt: skip
        if action == "update":
            return self.update_app(domain, str(data["version"]), app=app, ca_bundle=ca)
        if action == "uninstall":
            clean = json_bool(data.get("clean", True))
            return self.uninstall_app(domain, app=app, clean=clean, ca_bundle=ca)
        return self.delete_line(domain, int(data["line"]), ca_bundle=ca)

    def _control_action(self, domain: str, action: str, data: dict[str, Any]) -> Reply:
        if action == "status":
            configured, error = json_bool(data["configured"]), json_bool(data.get("error", False))
            self.set_status(domain, str(data["connector"]), int(data["line"]),
                            configured=configured, error=error)  # fmt: skip
        elif action == "fault":
            self.inject(domain, str(data["fault"]), count=data.get("count"),
                        method=data.get("method"), delay=float(data.get("delay", 0.0)))  # fmt: skip
        elif action == "clear":
            self.clear_faults(domain)
        elif action == "expire":
            self.expire_access_tokens(domain)
        elif action == "revoke":
            self.revoke(domain)
        elif action == "credentials":
            return json_reply(200, self.credentials(domain, data.get("app")))
        elif action in ("install", "update", "uninstall", "delete_line"):
            return json_reply(200, {"deliveries": [_shown(d) for d in self._lifecycle(
                domain, action, data)]})  # fmt: skip
        else:
            return json_reply(404, {"error": "NOT_FOUND", "message": f"no action {action}"})
        with self._lock:
            described = self._describe(self._portals[domain])
        return json_reply(200, {"ok": True, "portal": described})


def _shown(delivery: Delivery) -> dict[str, Any]:
    """A delivery as the control API shows it: no form (it holds tokens)."""
    return {"event": delivery.event, "url": delivery.url, "status": delivery.status,
            "error": delivery.error}  # fmt: skip


def _page(text: str) -> bytes:
    return f"<html><body><p>{text}</p></body></html>".encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for held requests

    def __init__(self, address: tuple[str, int], portal: LocalPortal) -> None:
        self.portal = portal
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (as the monitor does on a hostile answer) is no error; anything
        else is printed as usual."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Unblock handler threads parked on keep-alive connections."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60
    # Without it every keep-alive answer waits ~40 ms for the client's delayed ACK on loopback,
    # which looks like portal latency and slows every test.
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return "nginx"

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines carry tokens in query strings."""

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        portal = cast(_Server, self.server).portal
        reply = portal._handle(
            self.command,
            self.path,
            self.headers.get("Content-Type", ""),
            body,
            self.headers.get("Authorization", ""),
        )
        if reply is None:
            self._drop()
            return
        try:
            if reply.pace > 0:
                self._trickle(portal, reply)
            elif reply.stream is not None:
                self._stream(reply)
            else:
                self._head(reply, {"Content-Length": str(len(reply.body))})
                self.wfile.write(reply.body)
        except OSError:
            self.close_connection = True

    def _head(self, reply: Reply, extra: dict[str, str]) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        for name, value in {**reply.headers, **extra}.items():
            self.send_header(name, value)
        self.end_headers()

    def _stream(self, reply: Reply) -> None:
        """The head, then the stream until it ends or the client hangs up; no Content-Length,
        so the end of the body is the end of the connection."""
        assert reply.stream is not None
        self.close_connection = True
        self._head(reply, {"Connection": "close"})
        for chunk in reply.stream:
            self.wfile.write(chunk)

    def _trickle(self, portal: LocalPortal, reply: Reply) -> None:
        """Every byte of the answer, from the status line on, `pace` seconds apart, forever
        (until the client hangs up or the server stops)."""
        self.close_connection = True
        head = (
            f"HTTP/1.1 {reply.status} OK\r\nContent-Type: {reply.content_type}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        stream = itertools.chain(head, itertools.chain.from_iterable(reply.stream or ()))
        for byte in stream:
            if not portal._hold(reply.pace):
                break
            self.wfile.write(bytes([byte]))
            self.wfile.flush()

    def _drop(self) -> None:
        self.close_connection = True
        with suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
