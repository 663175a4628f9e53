"""What a Bitrix24 portal posts to the monitor as an application (ONAPPINSTALL, ONAPPUNINSTALL,
ONAPPUPDATE, ONIMCONNECTORLINEDELETE), read strictly, and the rules that decide whether an
install is genuine and whether it is newer than the pair already stored.

The form is `application/x-www-form-urlencoded` with PHP bracket keys (`auth[access_token]=…`,
`data[CLEAN]=1`): bitrix24/b24restdocs events/index.md, "Event handler" (the handler receives
`event`, `event_handler_id`, `data`, `ts`, `auth[...]`). The body is hostile until verified: it
is bounded in bytes, fields, key length, value length and bracket depth before anything reads
it, and every field the monitor keeps is checked for shape (a domain is a host name and nothing
else: no CR/LF, no path).

Pure: no I/O. The application token is kept only as its SHA-256 digest.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl, urlsplit

FORM_TYPE = "application/x-www-form-urlencoded"
BODY_LIMIT = 16 * 1024  # a real ONAPPINSTALL is about 1 KB
FIELD_LIMIT = 64  # fields in one form (an install has about 15)
KEY_LIMIT = 64  # characters of one key, brackets included
VALUE_LIMIT = 1024  # characters of one value (a token is 70 or so)
DEPTH_LIMIT = 2  # auth[access_token] is depth 1; nothing Bitrix24 sends goes deeper than 2
DOMAIN_LIMIT = 253
MEMBER_ID_LIMIT = 64
TOKEN_LIMIT = 512

_KEY = re.compile(r"^([A-Za-z0-9_]+)((?:\[[A-Za-z0-9_]*\])*)$")
_SEGMENT = re.compile(r"\[([A-Za-z0-9_]*)\]")
_HOST = re.compile(
    r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?)*(?::[0-9]{1,5})?$"
)
_MEMBER_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")
_TOKEN = re.compile(r"^[A-Za-z0-9._-]{1,512}$")
_SCOPE = re.compile(r"[\s,]+")


class BadForm(Exception):
    """The body is not a form the monitor reads. `status`: 413 too large, 415 not a form,
    400 otherwise. The message never quotes the body."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class NotGenuine(Exception):
    """The authorisation server does not vouch for this install (or for this event)."""


class AppEventName(StrEnum):
    INSTALL = "ONAPPINSTALL"
    UNINSTALL = "ONAPPUNINSTALL"
    UPDATE = "ONAPPUPDATE"
    LINE_DELETE = "ONIMCONNECTORLINEDELETE"


# The events the monitor binds after an install (ONAPPINSTALL is the application's own handler).
BOUND_EVENTS = (AppEventName.UNINSTALL, AppEventName.UPDATE, AppEventName.LINE_DELETE)


def parse_form(body: bytes, content_type: str) -> dict[str, Any]:
    """The bracket-key form as nested dicts, or BadForm. Limits are checked before parsing:
    bytes, then the number of fields, then each key's length, shape and depth, each value's
    length. A key given twice, or both as a value and as a bracket parent, is refused."""
    if content_type.split(";")[0].strip().lower() != FORM_TYPE:
        raise BadForm(f"the body must be {FORM_TYPE}", 415)
    if len(body) > BODY_LIMIT:
        raise BadForm(f"the body is larger than {BODY_LIMIT} bytes", 413)
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise BadForm("the body is not URL-encoded ASCII") from None
    if text.count("&") + 1 > FIELD_LIMIT:
        raise BadForm(f"the form has more than {FIELD_LIMIT} fields")
    try:
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            errors="strict",
            max_num_fields=FIELD_LIMIT,
        )
    except (ValueError, UnicodeDecodeError):
        raise BadForm("the form is not well formed") from None
    form: dict[str, Any] = {}
    for key, value in pairs:
        if len(key) > KEY_LIMIT:
            raise BadForm(f"a key is longer than {KEY_LIMIT} characters")
        if len(value) > VALUE_LIMIT:
            raise BadForm(f"a value is longer than {VALUE_LIMIT} characters")
        _place(form, _path(key), value)
    return form


def _path(key: str) -> list[str]:
    match = _KEY.match(key)
    if match is None:
        raise BadForm("a key is not a bracket key of letters, digits and _")
    segments = _SEGMENT.findall(match.group(2))
    if len(segments) > DEPTH_LIMIT:
        raise BadForm(f"a key nests deeper than {DEPTH_LIMIT} brackets")
    if any(s == "" for s in segments):
        raise BadForm("a key has an empty bracket (lists are not part of these events)")
    return [match.group(1), *segments]


def _place(form: dict[str, Any], path: list[str], value: str) -> None:
    node = form
    for name in path[:-1]:
        child = node.setdefault(name, {})
        if not isinstance(child, dict):
            raise BadForm("a key is given both as a value and as a bracket parent")
        node = child
    if path[-1] in node:
        raise BadForm("a key is given twice")
    node[path[-1]] = value


@dataclass(frozen=True)
class AppAuth:
    """The `auth[...]` block. Token fields never show in a repr; an uninstall has no tokens."""

    domain: str
    member_id: str
    application_token: str = field(repr=False)
    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_in: int | None = None
    scope: tuple[str, ...] = ()
    server_endpoint: str | None = None
    client_endpoint: str | None = None
    status: str | None = None

    @property
    def has_pair(self) -> bool:
        return bool(self.access_token and self.refresh_token)


@dataclass(frozen=True)
class AppEvent:
    name: str  # upper case; one of AppEventName, or another event (ignored)
    ts: int  # epoch seconds, as the portal stamped it
    auth: AppAuth
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def known(self) -> AppEventName | None:
        try:
            return AppEventName(self.name)
        except ValueError:
            return None


def read_event(form: Mapping[str, Any]) -> AppEvent:
    """The event a parsed form carries, every field the monitor uses checked; or BadForm."""
    name = _text(form.get("event"), "event").upper()
    if not re.fullmatch(r"[A-Z0-9_]{1,64}", name):
        raise BadForm("event is not an event name")
    auth = form.get("auth")
    if not isinstance(auth, Mapping):
        raise BadForm("the form has no auth block")
    data = form.get("data", {})
    return AppEvent(
        name=name,
        ts=_whole(form.get("ts"), "ts"),
        auth=_auth(auth),
        data=data if isinstance(data, Mapping) else {"value": data},
    )


def _auth(auth: Mapping[str, Any]) -> AppAuth:
    access = _optional_token(auth.get("access_token"), "auth[access_token]")
    refresh = _optional_token(auth.get("refresh_token"), "auth[refresh_token]")
    expires = auth.get("expires_in")
    status = auth.get("status")
    return AppAuth(
        domain=host_name(_text(auth.get("domain"), "auth[domain]")),
        member_id=_member_id(auth.get("member_id")),
        application_token=_token(auth.get("application_token"), "auth[application_token]"),
        access_token=access,
        refresh_token=refresh,
        expires_in=_whole(expires, "auth[expires_in]") if expires not in (None, "") else None,
        scope=scopes(auth.get("scope")),
        server_endpoint=_endpoint(auth.get("server_endpoint"), "auth[server_endpoint]"),
        client_endpoint=_endpoint(auth.get("client_endpoint"), "auth[client_endpoint]"),
        status=status if isinstance(status, str) and re.fullmatch(r"[A-Z]{1,4}", status) else None,
    )


def host_name(value: str) -> str:
    """A portal's domain as the monitor keys it: a lower-case host name (with a port for local
    runs), nothing else: no scheme, path, space, CR or LF."""
    domain = value.strip().lower().rstrip(".")
    if not _HOST.match(domain):
        raise BadForm("auth[domain] is not a host name")
    return domain


def scopes(value: object) -> tuple[str, ...]:
    """A scope list as Bitrix24 writes it: comma-separated (app.info), or with spaces."""
    if not isinstance(value, str):
        return ()
    return tuple(sorted({s for s in _SCOPE.split(value.strip().lower()) if s}))


def deleted_line(event: AppEvent) -> int:
    """The open line an ONIMCONNECTORLINEDELETE names: `data` is the line's id itself
    (bitrix24/b24restdocs api-reference/imopenlines/imconnector/events/
    on-im-connector-line-delete.md), read as `{"value": id}` by `read_event`."""
    line = _whole(event.data.get("value"), "data (the line id)")
    if not 0 < line < 2**31:
        raise BadForm("data is not a line id")
    return line


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadForm(f"{what} is missing")
    return value


def _whole(value: object, what: str) -> int:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{1,12}", value):
        raise BadForm(f"{what} is not a whole number")
    return int(value)


def _member_id(value: object) -> str:
    if not isinstance(value, str) or not _MEMBER_ID.match(value):
        raise BadForm("auth[member_id] is missing or not an id")
    return value


def _token(value: object, what: str) -> str:
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise BadForm(f"{what} is missing or not a token")
    return value


def _optional_token(value: object, what: str) -> str | None:
    return None if value in (None, "") else _token(value, what)


def _endpoint(value: object, what: str) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise BadForm(f"{what} is not a URL")
    try:
        parts = urlsplit(value)
    except ValueError:
        raise BadForm(f"{what} is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise BadForm(f"{what} is not a URL")
    host_name(parts.netloc)  # no CR/LF, credentials or oddities in the host
    return value if value.endswith("/") else value + "/"


# -- verification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppInfo:
    """What the authorisation server's `app.info` says about the token it was handed
    (bitrix24/b24pysdk b24pysdk/api/responses/bitrix_app_info_response.py)."""

    client_id: str
    installed: bool
    domain: str
    member_id: str
    status: str | None = None
    client_endpoint: str | None = None
    scope: tuple[str, ...] = ()


def allowed_server(server_endpoint: str | None, allowed: tuple[str, ...]) -> str:
    """The authorisation server to ask, if it is on the allow-list; else NotGenuine (and no
    call is made: a forged server_endpoint would otherwise vouch for itself)."""
    wanted = (server_endpoint or "").rstrip("/").lower()
    for server in allowed:
        if server.rstrip("/").lower() == wanted:
            return server if server.endswith("/") else server + "/"
    raise NotGenuine("auth[server_endpoint] is not an authorisation server the stack trusts")


def verify_install(auth: AppAuth, info: AppInfo, client_ids: tuple[str, ...]) -> None:
    """The rule b24pysdk applies (RenewedOAuthToken.validate_against_app_info: client_id,
    member_id and domain), and `installed`: the token is one of our application's, issued for
    this very portal, and the application is installed there. Fails closed."""
    if info.client_id not in client_ids:
        raise NotGenuine("the token belongs to another application")
    if not hmac.compare_digest(info.member_id.encode(), auth.member_id.encode()):
        raise NotGenuine("the authorisation server names another member_id")
    if host_name_or_none(info.domain) != auth.domain:
        raise NotGenuine("the authorisation server names another domain")
    if not info.installed:
        raise NotGenuine("the authorisation server says the application is not installed")


def host_name_or_none(value: str) -> str | None:
    try:
        return host_name(value)
    except BadForm:
        return None


def token_digest(application_token: str) -> str:
    """What the store keeps of the application token: enough to recognise it, never it."""
    return hashlib.sha256(application_token.encode()).hexdigest()


def same_token(stored_digest: str, application_token: str) -> bool:
    """Constant-time: whether `application_token` is the one whose digest was stored."""
    return hmac.compare_digest(stored_digest.encode(), token_digest(application_token).encode())


# -- ordering ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Installation:
    """A verified install, as the token store keeps it (tokens beside it, never the app token)."""

    portal: str
    member_id: str
    app: str  # the name of the application in the secret's "apps" the token belongs to
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    client_endpoint: str
    server_endpoint: str
    installed_at: int  # the event's ts
    expires_at: int | None
    token_hash: str | None  # None: a re-authorisation, which keeps the installation's digest
    app_status: str | None
    scope: tuple[str, ...]
    # A form can be replayed; a pair just traded for a single-use code cannot, and is newer
    # than any pair stored before it.
    replayable: bool = True


def installation(auth: AppAuth, ts: int, server: str, info: AppInfo, app: str) -> Installation:
    """The record a verified install stores. The REST address is the authorisation server's,
    which it vouched for, before the form's."""
    access, refresh = auth.access_token, auth.refresh_token
    if not (access and refresh):
        raise BadForm("the install carries no token pair")
    endpoint = info.client_endpoint or auth.client_endpoint or f"https://{auth.domain}/rest/"
    return Installation(
        portal=auth.domain,
        member_id=auth.member_id,
        app=app,
        access_token=access,
        refresh_token=refresh,
        client_endpoint=endpoint if endpoint.endswith("/") else endpoint + "/",
        server_endpoint=server,
        installed_at=ts,
        expires_at=ts + auth.expires_in if auth.expires_in else None,
        token_hash=token_digest(auth.application_token),
        app_status=info.status or auth.status,
        scope=info.scope or auth.scope,
    )


def supersedes(
    new: Installation, stored_installed_at: int | None, stored_expires: int | None
) -> bool:
    """Whether `new` may replace the stored pair: an install later than the stored one, whose
    pair expires no earlier than the stored pair (a refresh after the stored install made a
    newer pair than a replay of it could carry). A pair stored without an install time (moved
    in by hand) is replaced by any genuine install. A re-authorisation's pair always is."""
    if not new.replayable:
        return True
    if stored_installed_at is not None and new.installed_at <= stored_installed_at:
        return False
    return stored_expires is None or new.expires_at is None or new.expires_at >= stored_expires


@dataclass(frozen=True)
class CodeGrant:
    """The authorisation server's answer to an authorization code (bitrix24/b24restdocs
    settings/oauth/index.md, step 2)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int | None
    member_id: str
    client_endpoint: str | None


def server_for(server_domain: str, allowed: tuple[str, ...]) -> str:
    """The trusted authorisation server a callback's `server_domain` names, or NotGenuine."""
    for server in allowed:
        if urlsplit(server).netloc.lower() == server_domain.strip().lower():
            return server if server.endswith("/") else server + "/"
    raise NotGenuine("server_domain is not an authorisation server the stack trusts")


def token_url(server: str) -> str:
    """Where an authorisation server trades codes: `/oauth/token/` on its host."""
    parts = urlsplit(server)
    return f"{parts.scheme}://{parts.netloc}/oauth/token/"


def reauthorisation(
    portal: str, grant: CodeGrant, server: str, info: AppInfo, app: str, now: int
) -> Installation:
    """What a verified re-authorisation stores: the new pair, as of now."""
    endpoint = info.client_endpoint or grant.client_endpoint or f"https://{portal}/rest/"
    return Installation(
        portal=portal,
        member_id=grant.member_id,
        app=app,
        access_token=grant.access_token,
        refresh_token=grant.refresh_token,
        client_endpoint=endpoint if endpoint.endswith("/") else endpoint + "/",
        server_endpoint=server,
        installed_at=now,
        expires_at=now + grant.expires_in if grant.expires_in else None,
        token_hash=None,
        app_status=info.status,
        scope=info.scope,
        replayable=False,
    )
