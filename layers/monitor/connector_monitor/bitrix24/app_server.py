"""The inbound function's calls out of the stack: `app.info` on the authorisation server (is
this install genuine?) and `event.bind` on the portal once it is. Both go through the bounded
transport (deadline, size cap, no redirects); no message ever holds a token or a URL.

`app.info` answers, for the token it is called with, the application's `client_id` and its
`install` block (installed, domain, member_id, status, client_endpoint): bitrix24/b24restdocs
api-reference/common/system/app-info.md; bitrix24/b24pysdk
b24pysdk/api/responses/bitrix_app_info_response.py reads the same fields.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from ..deadline import Deadline, DeadlineExceeded
from ..domain.app_events import (
    AppEventName,
    AppInfo,
    CodeGrant,
    Installation,
    NotGenuine,
    scopes,
)
from ..ports.installs import AuthServerUnreachable, BindFailed
from ..tokens.credentials import AppCredentials
from .redaction import install_urllib3_redaction
from .transport import HttpSession, TransportError, exchange, new_session, require_safe_endpoint

ANSWER_LIMIT = 16 * 1024  # app.info is about 600 bytes; an event.bind answer less
TIMEOUTS = (3.05, 5.0)  # connect, read
# The refusals of a token, not of the server: the token is not one the server issued or knows.
# bitrix24/b24restdocs api-reference/common/... (NO_AUTH_FOUND, invalid_token, expired_token).
_TOKEN_REFUSED = frozenset({"NO_AUTH_FOUND", "INVALID_TOKEN", "EXPIRED_TOKEN", "WRONG_CLIENT"})
# event.bind of a handler already bound answers ERROR_CORE "Handler already binded" (the core's
# rest module, EventTable::checkFields).
_ALREADY_BOUND = "handler already binded"

_log = logging.getLogger(__name__)

install_urllib3_redaction()


class BoundedAppServer:
    """`ports.installs.AuthServer` and `EventBinder` over one guarded session."""

    def __init__(
        self,
        session: HttpSession | None = None,
        *,
        ca_bundle: str | None = None,
        deadline: Callable[[], Deadline] = lambda: Deadline.after(10.0),
    ) -> None:
        self._session = session or new_session(ca_bundle=ca_bundle)
        self._deadline = deadline

    # -- AuthServer ------------------------------------------------------------------------------

    def app_info(self, server: str, access_token: str) -> AppInfo:
        body, status = self._post(server, "app.info", {"auth": access_token}, "authorisation")
        if body is None:
            raise AuthServerUnreachable(
                f"the authorisation server answered HTTP {status} without a JSON object"
            )
        code = body.get("error")
        if code:
            if str(code).upper() in _TOKEN_REFUSED:
                raise NotGenuine("the authorisation server does not know the token")
            raise AuthServerUnreachable(
                f"the authorisation server refused app.info (HTTP {status})"
            )
        return _app_info(body.get("result"))

    def exchange_code(self, token_url: str, app: AppCredentials, code: str) -> CodeGrant:
        """The authorization_code grant (bitrix24/b24restdocs settings/oauth/index.md, step 2):
        the client secret goes in the body of a POST, never in a URL a log could keep."""
        params = {
            "grant_type": "authorization_code",
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "code": code,
        }
        body, status = self._post(token_url, "", params, "authorisation")
        if body is None:
            raise AuthServerUnreachable(
                f"the authorisation server answered HTTP {status} without a JSON object"
            )
        if body.get("error") or status >= 400:
            raise NotGenuine("the authorisation server refused the code")
        access, refresh = body.get("access_token"), body.get("refresh_token")
        member_id = body.get("member_id")
        if not all(isinstance(v, str) and 0 < len(v) <= 512 for v in (access, refresh, member_id)):
            raise NotGenuine("the authorisation server's answer lacks the pair or member_id")
        expires_in = body.get("expires_in")
        return CodeGrant(
            access_token=str(access),
            refresh_token=str(refresh),
            expires_in=expires_in if isinstance(expires_in, int) and expires_in > 0 else None,
            member_id=str(member_id),
            client_endpoint=_endpoint(body.get("client_endpoint")),
        )

    # -- EventBinder -----------------------------------------------------------------------------

    def bind(
        self, installation: Installation, handler: str, events: tuple[AppEventName, ...]
    ) -> None:
        for event in events:
            params = {"event": event.value, "handler": handler, "auth": installation.access_token}
            try:
                body, status = self._post(
                    installation.client_endpoint, "event.bind", params, "portal"
                )
            except AuthServerUnreachable as exc:
                raise BindFailed(
                    f"{installation.portal}: event.bind {event.value}: {exc}"
                ) from None
            if body is not None and body.get("result"):
                continue
            description = str((body or {}).get("error_description") or "").lower()
            if _ALREADY_BOUND in description:
                continue
            code = str((body or {}).get("error") or f"HTTP {status}")[:64]
            raise BindFailed(f"{installation.portal}: event.bind {event.value} refused ({code})")

    # -- one call --------------------------------------------------------------------------------

    def _post(
        self, base: str, method: str, params: dict[str, str], who: str
    ) -> tuple[dict[str, Any] | None, int]:
        try:
            url = require_safe_endpoint(base + method, f"the {who} server's address")
            answer = exchange(
                self._session,
                "POST",
                url,
                deadline=self._deadline(),
                timeouts=TIMEOUTS,
                max_bytes=ANSWER_LIMIT,
                data=params,
            )
        except (TransportError, DeadlineExceeded) as exc:
            raise AuthServerUnreachable(f"the {who} server: {exc}") from None
        if answer.status >= 500 or 300 <= answer.status < 400:
            raise AuthServerUnreachable(f"the {who} server answered HTTP {answer.status}")
        return _json_object(answer.body), answer.status


def _json_object(text: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def _app_info(result: object) -> AppInfo:
    """The answer's fields the verification reads; a result without them proves nothing."""
    if not isinstance(result, dict):
        raise NotGenuine("app.info answered no result")
    install = result.get("install")
    client_id = result.get("client_id")
    if not isinstance(install, dict) or not isinstance(client_id, str):
        raise NotGenuine("app.info answered no client_id or install block")
    domain, member_id = install.get("domain"), install.get("member_id")
    if not isinstance(domain, str) or not isinstance(member_id, str):
        raise NotGenuine("app.info names no domain or member_id")
    endpoint = install.get("client_endpoint")
    status = install.get("status")
    return AppInfo(
        client_id=client_id[:128],
        installed=install.get("installed") is True,
        domain=domain[:260],
        member_id=member_id[:64],
        status=status[:4] if isinstance(status, str) else None,
        client_endpoint=_endpoint(endpoint),
        scope=scopes(result.get("scope") if isinstance(result.get("scope"), str) else None),
    )


def _endpoint(value: object) -> str | None:
    if not isinstance(value, str) or not value or len(value) > 300:
        return None
    try:
        return require_safe_endpoint(value, "client_endpoint")
    except TransportError:
        _log.warning("app.info named a client_endpoint that is not https; the form's is used")
        return None
