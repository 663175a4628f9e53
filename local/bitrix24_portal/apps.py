"""Applications on the local portal as Bitrix24 runs them: the events an application may bind,
the form an event arrives as, and its delivery to the application's handler.

Sources (docs/bitrix24-rest-notes.md, "Installing the application"):
- the core's rest module (yuliai/bitrix-modules): rest/lib/api/event.php (event.bind, event.get,
  event.unbind), rest/lib/event.php (EventTable::checkUniq: "Handler already binded"),
  rest/lib/handlerhelper.php (checkCallback), rest/lib/event/sender.php (what an event carries),
  rest/classes/general/rest_provider.php (OnAppInstall/OnAppUpdate send the refresh token,
  OnAppUninstall no tokens at all);
- bitrix24/b24restdocs api-reference/common/events/on-app-*.md and
  api-reference/imopenlines/imconnector/events/on-im-connector-line-delete.md (the payloads);
- bitrix24/b24phpsdk tests/Unit/Services/RemoteEventsFabricTest.php (a raw body as it arrives:
  form-encoded, bracket keys, `event_handler_id` after `event`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

from local.bitrix24_portal.protocol import RestError

# The scope the local portal's applications are granted (as the refresh answer says).
APP_SCOPE = "imopenlines"

# Events by the scope that offers them (the core's service descriptions: the global scope in
# rest/classes/general/rest_provider.php, imopenlines in imconnector/lib/rest/customconnectors.php).
# event.bind finds an event in the token's scopes plus the global one, else ERROR_EVENT_NOT_FOUND.
EVENTS_BY_SCOPE: dict[str, frozenset[str]] = {
    "": frozenset(
        {
            "ONAPPINSTALL",
            "ONAPPUNINSTALL",
            "ONAPPUPDATE",
            "ONAPPPAYMENT",
            "ONAPPTEST",
            "ONAPPMETHODCONFIRM",
        }
    ),
    "imopenlines": frozenset(
        {
            "ONIMCONNECTORLINEDELETE",
            "ONIMCONNECTORMESSAGEADD",
            "ONIMCONNECTORMESSAGEUPDATE",
            "ONIMCONNECTORMESSAGEDELETE",
            "ONIMCONNECTORSTATUSDELETE",
            "ONIMCONNECTORDIALOGSTART",
            "ONIMCONNECTORDIALOGFINISH",
        }
    ),
}

ALREADY_BOUND = "Unable to set event handler: Handler already binded"
DELIVERY_TIMEOUT = (3.05, 10.0)  # connect, read: the queue does not wait long for a handler
ANSWER_KEEP = 4096  # bytes of a handler's answer kept for the test to read


def bindable(event: str, scopes: tuple[str, ...] = (APP_SCOPE,)) -> bool:
    return any(event in EVENTS_BY_SCOPE.get(scope, frozenset()) for scope in ("", *scopes))


def check_handler(url: str) -> None:
    """rest/lib/handlerhelper.php::checkCallback(): a host with a dot past its first character
    (so not `localhost`), and http or https."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host.find(".") <= 0:
        raise RestError("ERROR_WRONG_HANDLER_URL", "Wrong handler URL")
    if parts.scheme not in ("http", "https"):
        raise RestError("ERROR_UNSUPPORTED_PROTOCOL", "Unsupported handler protocol")


def event_form(
    event: str, handler_id: int, data: Any, ts: int, auth: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """The body of an event as the queue posts it: PHP's http_build_query of
    {event, event_handler_id, data, ts, auth}, in that order."""
    pairs: list[tuple[str, str]] = [("event", event), ("event_handler_id", str(handler_id))]
    pairs += _flatten("data", data)
    pairs.append(("ts", str(ts)))
    pairs += _flatten("auth", dict(auth))
    return pairs


def _flatten(name: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, Mapping):
        return [pair for k, v in value.items() for pair in _flatten(f"{name}[{k}]", v)]
    if isinstance(value, list | tuple):
        return [pair for i, v in enumerate(value) for pair in _flatten(f"{name}[{i}]", v)]
    if isinstance(value, bool):
        return [(name, "1" if value else "")]
    return [(name, "" if value is None else str(value))]


@dataclass(frozen=True)
class Delivery:
    """One event posted to one handler: what was sent, and what came back (`status` None when
    nothing did: `error` says why)."""

    event: str
    url: str
    form: tuple[tuple[str, str], ...]
    status: int | None
    answer: bytes = b""
    error: str | None = None

    @property
    def body(self) -> str:
        return urlencode(self.form)

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def deliver(
    event: str,
    url: str,
    form: list[tuple[str, str]],
    *,
    ca_bundle: str | None = None,
    timeout: tuple[float, float] = DELIVERY_TIMEOUT,
) -> Delivery:
    """POST the event, form-encoded, to `url`: https (trusting `ca_bundle`, or the system's
    authorities), or plain http to a loopback address only. Never raises for the handler's
    faults: they are in the Delivery."""
    parts = urlsplit(url)
    if parts.scheme == "http" and not _loopback(parts.hostname or ""):
        raise ValueError("plain http is for a handler on 127.0.0.1 only; use https")
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url!r}")
    try:
        with requests.post(
            url,
            data=urlencode(form),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=timeout,
            allow_redirects=False,
            verify=ca_bundle if ca_bundle else True,
            stream=True,
        ) as answer:
            kept = answer.raw.read(ANSWER_KEEP, decode_content=True) or b""
            return Delivery(event, url, tuple(form), answer.status_code, kept)
    except requests.RequestException as exc:
        return Delivery(event, url, tuple(form), None, error=type(exc).__name__)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
