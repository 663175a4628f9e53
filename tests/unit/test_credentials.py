"""A portal's credentials as the secret holds them, and reading an OAuth refresh answer (no I/O)."""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qsl

import pytest

from connector_monitor.bitrix24.oauth import refresh_tokens
from connector_monitor.bitrix24.redaction import REDACTED, redact_url_secrets
from connector_monitor.bitrix24.transport import (
    ConnectFailed,
    HttpAnswer,
    HttpRequest,
    HttpSession,
    NoAnswer,
    TransportError,
)
from connector_monitor.deadline import Deadline
from connector_monitor.domain.portal_errors import ErrorKind, PortalError
from connector_monitor.tokens.credentials import DEFAULT_OAUTH_ENDPOINT, PortalCredentials
from connector_monitor.tokens.errors import UnusableCredentials

PORTAL = "example.bitrix24.com"
SECRETS = ("cs-0123456789abcdef", "at-0123456789abcdef", "rt-0123456789abcdef")


def entry(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "client_id": "local.65f0a1b2c3d4e5.12345678",
        "client_secret": SECRETS[0],
        "access_token": SECRETS[1],
        "refresh_token": SECRETS[2],
        "client_endpoint": "https://example.bitrix24.com/rest/",
        "oauth_endpoint": "https://oauth.bitrix24.tech/oauth/token/",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def creds(**changes: Any) -> PortalCredentials:
    return PortalCredentials.from_secret_entry(PORTAL, entry(**changes))


# --- the secret entry ----------------------------------------------------------------------


def test_reads_a_complete_entry() -> None:
    c = creds(expires_at=1_800_000_000)
    assert (c.portal, c.client_id) == (PORTAL, "local.65f0a1b2c3d4e5.12345678")
    assert (c.client_secret, c.access_token, c.refresh_token) == SECRETS
    assert c.oauth_endpoint == "https://oauth.bitrix24.tech/oauth/token/"
    assert c.expires_at == 1_800_000_000


def test_endpoints_default_per_design() -> None:
    c = creds(client_endpoint=None, oauth_endpoint=None)
    assert c.client_endpoint == f"https://{PORTAL}/rest/"
    assert c.oauth_endpoint == DEFAULT_OAUTH_ENDPOINT


def test_client_endpoint_gains_its_trailing_slash() -> None:
    assert creds(client_endpoint="http://127.0.0.1:8099/p/rest").client_endpoint == (
        "http://127.0.0.1:8099/p/rest/"
    )


@pytest.mark.parametrize("missing", ["client_id", "client_secret", "access_token", "refresh_token"])
@pytest.mark.parametrize("how", ["absent", "empty", "not a string"])
def test_a_partial_entry_names_what_is_missing_and_nothing_else(missing: str, how: str) -> None:
    value = {"absent": None, "empty": "", "not a string": 12345}[how]
    with pytest.raises(UnusableCredentials) as caught:
        creds(**{missing: value})
    message = str(caught.value)
    assert PORTAL in message and missing in message
    assert not any(secret in message for secret in SECRETS)


@pytest.mark.parametrize("value", [None, "text", ["a"], 3])
def test_an_entry_that_is_not_an_object_is_rejected(value: object) -> None:
    with pytest.raises(UnusableCredentials, match=f"{PORTAL} is not a JSON object"):
        PortalCredentials.from_secret_entry(PORTAL, value)


def test_a_non_string_endpoint_is_rejected() -> None:
    with pytest.raises(UnusableCredentials, match="non-string endpoint"):
        creds(oauth_endpoint={"url": "x"})


@pytest.mark.parametrize(
    ("raw", "expected"), [(1_800_000_000, 1_800_000_000), (1.8e9 + 0.7, 1_800_000_000), ("x", None)]
)
def test_expires_at_is_whole_epoch_seconds_or_nothing(raw: object, expected: int | None) -> None:
    assert creds(expires_at=raw).expires_at == expected


def test_unknown_fields_are_kept_apart() -> None:
    original = entry(installed_by="ops@example.com", app={"v": 3}, expires_at=1_800_000_000)
    c = PortalCredentials.from_secret_entry(PORTAL, original)
    assert dict(c.extra) == {"installed_by": "ops@example.com", "app": {"v": 3}}


def test_new_tokens_keep_everything_else() -> None:
    c = creds(installed_by="ops")
    fresh = c.with_tokens("at-new", "rt-new", 1_800_003_600)
    assert (fresh.access_token, fresh.refresh_token, fresh.expires_at) == (
        "at-new",
        "rt-new",
        1_800_003_600,
    )
    assert (fresh.client_secret, fresh.client_endpoint, dict(fresh.extra)) == (
        c.client_secret,
        c.client_endpoint,
        {"installed_by": "ops"},
    )
    assert c.access_token == SECRETS[1]  # frozen: the old object is unchanged


def test_repr_shows_no_token_or_client_secret() -> None:
    text = repr(creds(installed_by="rt-in-extra-0123456789"))
    assert PORTAL in text
    assert not any(secret in text for secret in (*SECRETS, "rt-in-extra-0123456789"))


# --- the OAuth answer ----------------------------------------------------------------------


class OneAnswer(HttpSession):
    """A session that answers every request with one canned answer (unit tests open no socket),
    and records what was asked."""

    def __init__(self, status: int, body: object, content_type: str = "application/json") -> None:
        super().__init__()
        raw = body if isinstance(body, str) else json.dumps(body)
        self.answer = HttpAnswer(status=status, body=raw.encode(), content_type=content_type)
        self.requests: list[tuple[HttpRequest, tuple[float, float]]] = []

    def send(self, request: HttpRequest, **kwargs: Any) -> HttpAnswer:
        self.requests.append((request, kwargs["timeouts"]))
        return self.answer

    @property
    def asked(self) -> list[tuple[str, dict[str, Any]]]:
        """(URL without the query, the request's query parameters and timeout)."""
        found = []
        for request, timeouts in self.requests:
            path, _, query = request.target.partition("?")
            url = f"{request.scheme}://{request.host}{path}"
            found.append((url, {"params": dict(parse_qsl(query)), "timeout": timeouts}))
        return found


def refresh(session: HttpSession) -> PortalCredentials:
    return refresh_tokens(
        creds(),
        session=session,
        deadline=Deadline.after(60),
        timeouts=(1.0, 2.0),
        now=lambda: 1_800_000_000,
    )


def test_sends_the_refresh_grant_to_the_portals_oauth_server() -> None:
    session = OneAnswer(200, {"access_token": "at2", "refresh_token": "rt2", "expires": 1})
    refresh(session)
    url, kwargs = session.asked[0]
    assert url == "https://oauth.bitrix24.tech/oauth/token/"
    assert kwargs["params"] == {
        "grant_type": "refresh_token",
        "client_id": "local.65f0a1b2c3d4e5.12345678",
        "client_secret": SECRETS[0],
        "refresh_token": SECRETS[2],
    }
    assert kwargs["timeout"] == (1.0, 2.0)


def test_expiry_comes_from_expires_else_from_expires_in() -> None:
    both = {"access_token": "a", "refresh_token": "r", "expires": 1_800_003_000, "expires_in": 9}
    assert refresh(OneAnswer(200, both)).expires_at == 1_800_003_000
    only_in = {"access_token": "a", "refresh_token": "r", "expires_in": "3600"}
    assert refresh(OneAnswer(200, only_in)).expires_at == 1_800_003_600
    assert refresh(OneAnswer(200, {"access_token": "a", "refresh_token": "r"})).expires_at is None


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (200, {"error": "wrong_client", "error_description": "Wrong client"}, ErrorKind.AUTH_LOST),
        (400, {"error": "invalid_grant"}, ErrorKind.AUTH_LOST),
        (401, {"error": "invalid_client"}, ErrorKind.AUTH_LOST),
        (503, {"error": "QUERY_LIMIT_EXCEEDED"}, ErrorKind.RATE_LIMITED),
        (500, "<html>oops</html>", ErrorKind.PORTAL_FAILING),
        (502, {"unexpected": True}, ErrorKind.PORTAL_FAILING),
        (200, "not json", ErrorKind.BAD_ANSWER),
        (200, ["access_token"], ErrorKind.BAD_ANSWER),
        (200, {"access_token": "a"}, ErrorKind.BAD_ANSWER),
        (200, {"access_token": "", "refresh_token": "r"}, ErrorKind.BAD_ANSWER),
    ],
)
def test_a_failed_refresh_is_classified(status: int, body: object, kind: ErrorKind) -> None:
    with pytest.raises(PortalError) as caught:
        refresh(OneAnswer(status, body))
    assert caught.value.kind is kind
    assert caught.value.portal == PORTAL


def test_a_server_echoing_our_secrets_does_not_put_them_in_the_error() -> None:
    echo = f"bad refresh_token={SECRETS[2]} for client_secret {SECRETS[0]}"
    with pytest.raises(PortalError) as caught:
        refresh(OneAnswer(400, {"error": "invalid_grant", "error_description": echo}))
    text = f"{caught.value} {caught.value.detail}"
    assert not any(secret in text for secret in SECRETS)


@pytest.mark.parametrize("status", [200, 400])
def test_a_secret_echoed_as_the_error_code_is_cut_out_too(status: int) -> None:
    """Found by tests/properties/test_reply_fuzz.py: the code is the server's text as well."""
    with pytest.raises(PortalError) as caught:
        refresh(OneAnswer(status, {"error": SECRETS[2], "error_description": ""}))
    text = f"{caught.value} {caught.value.detail} {caught.value.code}"
    assert not any(secret in text for secret in SECRETS)


class Raising(HttpSession):
    def __init__(self, exc: Exception) -> None:
        super().__init__()
        self.exc = exc

    def send(self, request: HttpRequest, **kwargs: Any) -> HttpAnswer:
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (NoAnswer("no answer within 2.00 s"), "timed out"),
        (ConnectFailed("the connection was refused"), "could not connect"),
        (TransportError("the answer's compressed body is corrupt"), "corrupt"),
    ],
)
def test_transport_failures_are_portal_failing_without_the_url(
    exc: TransportError, words: str
) -> None:
    with pytest.raises(PortalError) as caught:
        refresh(Raising(exc))
    assert caught.value.kind is ErrorKind.PORTAL_FAILING
    assert words in str(caught.value)
    assert not any(secret in f"{caught.value} {caught.value.detail}" for secret in SECRETS)


def test_urls_in_log_arguments_lose_their_secret_values(caplog: pytest.LogCaptureFixture) -> None:
    line = (
        "/oauth/token/?grant_type=refresh_token&client_id=x&client_secret=SEC-3&refresh_token=RT-7"
    )
    assert redact_url_secrets(line) == (
        "/oauth/token/?grant_type=refresh_token&client_id=x"
        f"&client_secret={REDACTED}&refresh_token={REDACTED}"
    )
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        logging.getLogger("urllib3.connectionpool").debug('"%s %s %s" %s', "GET", line, "HTTP", 200)
    assert "SEC-3" not in caplog.text and "RT-7" not in caplog.text
    assert f"client_secret={REDACTED}" in caplog.text
