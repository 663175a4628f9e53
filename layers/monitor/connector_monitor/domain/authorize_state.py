"""The `state` of a re-authorisation link (`monitorctl portals authorize DOMAIN`): which portal
and application the link is for and until when, signed with a key derived from that
application's client_secret, so the callback accepts a code only for a link the stack issued,
for that portal, in time. Pure: HMAC-SHA256, constant-time comparison."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

STATE_LIMIT = 512  # characters of a state the callback reads at all
LINK_LIFETIME = 15 * 60  # seconds a link may be followed (the code itself lives 30 s)
_PURPOSE = b"connector-monitor/authorize-state/v1"


class BadState(Exception):
    """The state is not one the stack issued, or it is for another portal, or too old."""


@dataclass(frozen=True)
class AuthorizeState:
    portal: str
    app: str  # the application's name in the secret's "apps"
    expires_at: int


def state_key(client_secret: str) -> bytes:
    """The signing key: derived, so the client secret itself never signs anything visible."""
    return hmac.new(client_secret.encode(), _PURPOSE, hashlib.sha256).digest()


def sign_state(state: AuthorizeState, key: bytes) -> str:
    payload = json.dumps(
        {"p": state.portal, "a": state.app, "e": state.expires_at, "n": secrets.token_hex(8)},
        separators=(",", ":"),
    ).encode()
    body = _b64(payload)
    return f"{body}.{_b64(hmac.new(key, body.encode(), hashlib.sha256).digest())}"


def claimed_app(text: str) -> str:
    """The application a state names, before it is verified (to find the key to verify with)."""
    return str(_payload(text)[0]["a"])


def read_state(text: str, key: bytes, now: float) -> AuthorizeState:
    payload, body, mac = _payload(text)
    expected = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected.encode(), mac.encode()):
        raise BadState("the state is not signed by this stack")
    if payload["e"] < now:
        raise BadState("the authorisation link has expired; print a new one")
    return AuthorizeState(str(payload["p"]), str(payload["a"]), int(payload["e"]))


def _payload(text: str) -> tuple[dict[str, Any], str, str]:
    if not isinstance(text, str) or len(text) > STATE_LIMIT or text.count(".") != 1:
        raise BadState("the state is malformed")
    body, mac = text.split(".")
    try:
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise BadState("the state is malformed") from None
    if not (
        isinstance(payload, dict)
        and isinstance(payload.get("p"), str)
        and isinstance(payload.get("a"), str)
        and isinstance(payload.get("e"), int)
    ):
        raise BadState("the state is malformed")
    return payload, body, mac


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
