"""OAuth refresh of a portal's token pair (refresh_token grant).

The refresh URL carries the client secret and the refresh token in its query string (that is how
the Bitrix24 OAuth server takes them), so no text that may hold the URL leaves this module: a
`requests` exception is replaced by a `PortalError` that says only what kind of failure it was
(`raise ... from None`), and urllib3's debug line, which prints the request URL, is redacted.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from .credentials import PortalCredentials
from .errors import ErrorKind, PortalError, classify

_SECRET_PARAMS = re.compile(r"(client_secret|refresh_token|access_token|auth|code)=[^&\s\"']*")


def redact_url_secrets(text: str) -> str:
    """Replace the values of secret-bearing query parameters in `text` by `***`."""
    return _SECRET_PARAMS.sub(r"\1=***", text)


class _RedactQuerySecrets(logging.Filter):
    """urllib3 logs `GET /oauth/token/?...&client_secret=...` at DEBUG: strip the values."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url_secrets(a) if isinstance(a, str) and "=" in a else a for a in record.args
            )
        elif isinstance(record.msg, str) and "=" in record.msg:
            record.msg = redact_url_secrets(record.msg)
        return True


def _install_urllib3_redaction() -> None:
    target = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _RedactQuerySecrets) for f in target.filters):
        target.addFilter(_RedactQuerySecrets())


_install_urllib3_redaction()


def refresh_tokens(
    creds: PortalCredentials,
    *,
    session: requests.Session,
    timeout: tuple[float, float],
    now: Callable[[], float] = time.time,
) -> PortalCredentials:
    """Trade `creds.refresh_token` for a new pair; return `creds` with the new tokens.

    Errors are `PortalError`s: invalid_grant / invalid_client / wrong_client (even in a 200
    body) are AUTH_LOST; 5xx, timeouts and connection errors PORTAL_FAILING; an answer that is
    not JSON or lacks the tokens BAD_ANSWER. No message ever holds a token, a secret or the URL.
    """
    params = {
        "grant_type": "refresh_token",
        "client_id": creds.client_id,
        "client_secret": creds.client_secret,
        "refresh_token": creds.refresh_token,
    }
    portal = creds.portal
    try:
        response = session.get(creds.oauth_endpoint, params=params, timeout=timeout)
    except requests.Timeout:
        raise PortalError(
            ErrorKind.PORTAL_FAILING, portal, description="the OAuth server timed out"
        ) from None
    except requests.ConnectionError:
        raise PortalError(
            ErrorKind.PORTAL_FAILING, portal, description="could not connect to the OAuth server"
        ) from None
    except requests.RequestException as exc:
        raise PortalError(
            ErrorKind.PORTAL_FAILING,
            portal,
            description=f"the OAuth request failed ({type(exc).__name__})",
        ) from None

    status = response.status_code
    body = _json_object(response)
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
        code_s = str(code) if code else None
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
    return creds.with_tokens(access, refresh, _expires_at(body, now))


def _json_object(response: requests.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:  # also requests' JSONDecodeError; its text would be the body
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
    for secret in (creds.client_secret, creds.refresh_token, creds.access_token):
        if secret:
            text = text.replace(secret, "***")
    return redact_url_secrets(text)
