"""Real-shaped application event forms, as a portal posts them to a handler.

Shape: bitrix24/b24restdocs api-reference/common/events/on-app-install.md (the ONAPPINSTALL
fields: event, event_handler_id, data[VERSION], data[ACTIVE], data[INSTALLED], data[LANGUAGE_ID],
ts, auth[access_token|expires|expires_in|scope|domain|server_endpoint|status|client_endpoint|
member_id|user_id|refresh_token|application_token]) and on-app-uninstall.md (data[CLEAN], auth
without tokens); bitrix24/b24phpsdk tests/Unit/Services/RemoteEventsFabricTest.php (a raw body:
form-encoded with bracket keys, `event_handler_id` after `event`). Values are made up.
"""

from __future__ import annotations

from urllib.parse import urlencode

MEMBER_ID = "a223c6b3710f85df22e9377d6c4f7553"
APPLICATION_TOKEN = "51856fefc120afa4b628cc82d3935cce"
SERVER = "https://oauth.bitrix.info/rest/"


def install_auth(domain: str = "example.bitrix24.com", **changes: str) -> dict[str, str]:
    auth = {
        "access_token": "s6p6eclrvim6da22ft9ch94ekreb52lv",
        "expires": "1767707920",
        "expires_in": "3600",
        "scope": "imopenlines",
        "domain": domain,
        "server_endpoint": SERVER,
        "status": "L",
        "client_endpoint": f"https://{domain}/rest/",
        "member_id": MEMBER_ID,
        "user_id": "1",
        "refresh_token": "4s386p3q0tr8dy89xvmt96234v3dljg8",
        "application_token": APPLICATION_TOKEN,
    }
    auth.update(changes)
    return {k: v for k, v in auth.items() if v != "<drop>"}


def form(
    event: str, auth: dict[str, str], data: dict[str, str] | None = None, ts: int = 1767704320
) -> bytes:
    pairs = [("event", event), ("event_handler_id", "0")]
    pairs += [(f"data[{k}]", v) for k, v in (data or {}).items()]
    pairs.append(("ts", str(ts)))
    pairs += [(f"auth[{k}]", v) for k, v in auth.items()]
    return urlencode(pairs).encode()


def install_form(
    domain: str = "example.bitrix24.com", ts: int = 1767704320, **changes: str
) -> bytes:
    data = {"VERSION": "1", "ACTIVE": "Y", "INSTALLED": "Y", "LANGUAGE_ID": "en"}
    return form("ONAPPINSTALL", install_auth(domain, **changes), data, ts)


def uninstall_form(
    domain: str = "example.bitrix24.com", token: str = APPLICATION_TOKEN, member_id: str = MEMBER_ID
) -> bytes:
    auth = {
        "domain": domain,
        "server_endpoint": SERVER,
        "status": "L",
        "client_endpoint": f"https://{domain}/rest/",
        "member_id": member_id,
        "application_token": token,
    }
    return form("ONAPPUNINSTALL", auth, {"CLEAN": "0", "LANGUAGE_ID": "en"})


def line_delete_form(
    line: str = "107", token: str = APPLICATION_TOKEN, member_id: str = MEMBER_ID
) -> bytes:
    """ONIMCONNECTORLINEDELETE: `data` is the line id itself, no refresh token
    (tests/fixtures/bitrix24/app_events/ONIMCONNECTORLINEDELETE.form and its .source)."""
    auth = {
        "access_token": "9d8008440000007ca8c95362050a514e8cd",
        "domain": "example.bitrix24.com",
        "server_endpoint": SERVER,
        "status": "L",
        "client_endpoint": "https://example.bitrix24.com/rest/",
        "member_id": member_id,
        "application_token": token,
    }
    pairs = [("event", "ONIMCONNECTORLINEDELETE"), ("event_handler_id", "563"), ("data", line)]
    pairs += [("ts", "1767704500"), *((f"auth[{k}]", v) for k, v in auth.items())]
    return urlencode(pairs).encode()
