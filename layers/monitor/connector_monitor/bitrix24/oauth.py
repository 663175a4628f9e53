"""OAuth refresh of a portal's token pair (refresh_token grant).

The refresh URL carries the client secret and the refresh token in its query string (that is how
the Bitrix24 OAuth server takes them), so no text that may hold the URL leaves this module: a
transport error is replaced by a `PortalError` that says only what kind of failure it was
(`raise ... from None`), and urllib3's debug line, which prints the request URL, is redacted.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..deadline import Deadline, ExchangeCutOff
from ..domain.portal_errors import ErrorKind, PortalError, classify
from ..domain.text import CODE_LIMIT, clip
from ..tokens.credentials import PortalCredentials
from .redaction import install_urllib3_redaction, redact, redact_url_secrets
from .transport import (
    AnswerTooLarge,
    ConnectFailed,
    HttpAnswer,
    HttpSession,
    InvalidEndpoint,
    NoAnswer,
    TransportError,
    exchange,
    new_session,
    require_safe_endpoint,
)

# The most an OAuth answer may weigh: a real one is about 700 bytes.
OAUTH_ANSWER_LIMIT = 16 * 1024
ENDPOINT_LIMIT = 300  # a client_endpoint the OAuth server announces
MEMBER_ID_LIMIT = 64  # member_id is 32 hex digits
OAUTH_TIMEOUT = (3.05, 10.0)  # connect, read: seconds for a call to the portal's OAuth server

_log = logging.getLogger(__name__)

install_urllib3_redaction()


def oauth_refresh(
    session: HttpSession | None = None,
    *,
    ca_bundle: str | None = None,
    timeouts: tuple[float, float] = OAUTH_TIMEOUT,
    now: Callable[[], float] = time.time,
) -> Callable[[PortalCredentials, Deadline], PortalCredentials]:
    """The OAuth call the refresh policy is handed (`tokens.ports.OAuthRefresh`), over one
    session for the whole run (`ca_bundle`: as `transport.new_session`)."""
    guarded = session if session is not None else new_session(ca_bundle=ca_bundle)

    def refresh(creds: PortalCredentials, deadline: Deadline) -> PortalCredentials:
        return refresh_tokens(creds, session=guarded, deadline=deadline, timeouts=timeouts, now=now)

    return refresh


def refresh_tokens(
    creds: PortalCredentials,
    *,
    session: HttpSession,
    deadline: Deadline,
    timeouts: tuple[float, float],
    now: Callable[[], float] = time.time,
) -> PortalCredentials:
    """Trade `creds.refresh_token` for a new pair; return `creds` with the new tokens.

    The exchange ends by `deadline` whatever the server does, reads at most
    `OAUTH_ANSWER_LIMIT` bytes and follows no redirect. Errors are `PortalError`s:
    invalid_grant / invalid_client / wrong_client (even in a 200 body) are AUTH_LOST; 5xx,
    timeouts and connection errors PORTAL_FAILING; an answer that is not JSON or lacks the
    tokens BAD_ANSWER; an oauth_endpoint that is not https BAD_REQUEST (nothing is sent).
    `ExchangeCutOff` when the deadline cut the exchange off. No message ever holds a token,
    a secret or the URL.
    """
    params = {
        "grant_type": "refresh_token",
        "client_id": creds.client_id,
        "client_secret": creds.client_secret,
        "refresh_token": creds.refresh_token,
    }
    portal = creds.portal
    problem: tuple[ErrorKind, str] | None = None
    cut: str | None = None
    try:
        url = require_safe_endpoint(creds.oauth_endpoint, "oauth_endpoint in the secret")
        answer = exchange(
            session,
            "GET",
            url,
            deadline=deadline,
            timeouts=timeouts,
            max_bytes=OAUTH_ANSWER_LIMIT,
            params=params,
        )
    except InvalidEndpoint as exc:
        problem = (ErrorKind.BAD_REQUEST, str(exc))
    except ExchangeCutOff as exc:
        cut = f"{portal}: the OAuth server: {exc}"
    except AnswerTooLarge as exc:
        problem = (ErrorKind.BAD_ANSWER, f"the OAuth server's answer is too large: {exc}")
    except NoAnswer:
        problem = (ErrorKind.PORTAL_FAILING, "the OAuth server timed out")
    except ConnectFailed as exc:
        problem = (ErrorKind.PORTAL_FAILING, f"could not connect to the OAuth server: {exc}")
    except TransportError as exc:
        problem = (ErrorKind.PORTAL_FAILING, f"the OAuth server: {exc}")
    if cut is not None:
        raise ExchangeCutOff(cut)
    if problem is not None:
        raise PortalError(problem[0], portal, description=problem[1])
    return read_refresh_answer(creds, answer, now)


def read_refresh_answer(
    creds: PortalCredentials, answer: HttpAnswer, now: Callable[[], float]
) -> PortalCredentials:
    portal, status = creds.portal, answer.status
    if 300 <= status < 400:
        raise PortalError(
            ErrorKind.BAD_REQUEST,
            portal,
            description="the OAuth server answered with a redirect, which is not followed; "
            "check oauth_endpoint in the secret",
            http_status=status,
        )
    body = _json_object(answer.body)
    if body is None:
        kind = ErrorKind.PORTAL_FAILING if status >= 500 else ErrorKind.BAD_ANSWER
        raise PortalError(
            kind,
            portal,
            description="the OAuth server's answer is not a JSON object",
            http_status=status,
        )
    code = body.get("error")
    if code or status >= 400:
        # The code is the server's text too: one that echoes a secret must not carry it on.
        code_s = clip(_scrub(str(code), creds), CODE_LIMIT) if code else None
        raise PortalError(
            classify(code_s, status),
            portal,
            code=code_s,
            description=_scrub(str(body.get("error_description") or ""), creds),
            http_status=status,
        )
    access, refresh = body.get("access_token"), body.get("refresh_token")
    if not (isinstance(access, str) and access and isinstance(refresh, str) and refresh):
        raise PortalError(
            ErrorKind.BAD_ANSWER,
            portal,
            description="the OAuth answer lacks access_token or refresh_token",
            http_status=status,
        )
    return creds.with_tokens(
        access,
        refresh,
        _expires_at(body, now),
        refreshed_at=int(now()),
        client_endpoint=_client_endpoint(creds, body.get("client_endpoint")),
        member_id=_member_id(body.get("member_id")),
    )


def _client_endpoint(creds: PortalCredentials, announced: object) -> str | None:
    """Where the OAuth server says the portal's REST interface is now (a portal that changed
    its address is followed: bitrix24/b24restdocs settings/oauth/auto-renewal.md,
    client_endpoint), if it is one a token may be sent to; else None (keep the old one)."""
    if not isinstance(announced, str) or not announced or len(announced) > ENDPOINT_LIMIT:
        return None
    try:
        endpoint = require_safe_endpoint(announced, "client_endpoint")
    except InvalidEndpoint:
        _log.warning(
            "%s: the OAuth server named a client_endpoint that is not https; kept the old one",
            creds.portal,
            extra={"portal": creds.portal},
        )
        return None
    if endpoint.rstrip("/") != creds.client_endpoint.rstrip("/"):
        _log.warning(
            "%s: the portal moved: its REST interface is now %s (from the OAuth server)",
            creds.portal,
            endpoint,
            extra={"portal": creds.portal, "client_endpoint": endpoint},
        )
    return endpoint


def _member_id(value: object) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= MEMBER_ID_LIMIT and value.isalnum():
        return value
    return None


def _json_object(text: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):  # the decoder's text would quote the body
        return None
    return body if isinstance(body, dict) else None


def _expires_at(body: Mapping[str, Any], now: Callable[[], float]) -> int | None:
    expires = _number(body.get("expires"))
    if expires is not None and expires > 0:
        return int(expires)
    expires_in = _number(body.get("expires_in"))
    if expires_in is not None and expires_in > 0:
        return int(now() + expires_in)
    return None


def _number(value: object) -> float | None:
    """A finite number, or None: an absurd `expires` must not lose the pair just refreshed."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _scrub(text: str, creds: PortalCredentials) -> str:
    """A server's error text is foreign input: make sure it echoes none of our secrets."""
    secrets = (creds.client_secret, creds.refresh_token, creds.access_token)
    return redact_url_secrets(redact(text, secrets))
