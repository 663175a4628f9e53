"""The inbound forms read strictly, and the rules that decide whether an install is genuine and
newer than the stored pair (connector_monitor.domain.app_events)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from connector_monitor.domain.app_events import (
    BODY_LIMIT,
    AppInfo,
    BadForm,
    NotGenuine,
    allowed_server,
    installation,
    parse_form,
    read_event,
    same_token,
    supersedes,
    token_digest,
    verify_install,
)
from tests.app_forms import APPLICATION_TOKEN, MEMBER_ID, SERVER, install_form, uninstall_form

FORM = "application/x-www-form-urlencoded"
OURS = ("app.65f0a1b2c3d4e5.12345678",)


def info(**changes: object) -> AppInfo:
    base = AppInfo(
        client_id=OURS[0],
        installed=True,
        domain="example.bitrix24.com",
        member_id=MEMBER_ID,
        status="L",
        client_endpoint="https://example.bitrix24.com/rest/",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_real_install_form_reads_as_an_install_with_its_pair() -> None:
    event = read_event(parse_form(install_form(), FORM + "; charset=utf-8"))
    assert event.name == "ONAPPINSTALL"
    assert event.ts == 1767704320
    assert event.auth.domain == "example.bitrix24.com"
    assert event.auth.member_id == MEMBER_ID
    assert event.auth.has_pair and event.auth.expires_in == 3600
    assert event.auth.server_endpoint == SERVER
    assert event.data["INSTALLED"] == "Y"
    assert "access_token" not in repr(event) and APPLICATION_TOKEN not in repr(event)


def test_an_uninstall_has_no_pair() -> None:
    event = read_event(parse_form(uninstall_form(), FORM))
    assert event.name == "ONAPPUNINSTALL" and not event.auth.has_pair
    assert event.data["CLEAN"] == "0"


def test_json_is_refused_as_unsupported_media() -> None:
    with pytest.raises(BadForm) as refused:
        parse_form(json.dumps({"event": "ONAPPINSTALL"}).encode(), "application/json")
    assert refused.value.status == 415


def test_an_oversize_body_is_refused_before_it_is_read() -> None:
    with pytest.raises(BadForm) as refused:
        parse_form(install_form() + b"&x=" + b"a" * BODY_LIMIT, FORM)
    assert refused.value.status == 413


@pytest.mark.parametrize(
    "body",
    [
        b"event=ONAPPINSTALL&auth[a][b][c]=1",  # deeper than two brackets
        b"event=ONAPPINSTALL&auth[]=1",  # a list
        b"event=ONAPPINSTALL&event=ONAPPUNINSTALL",  # a key twice
        b"auth=1&auth[domain]=x",  # a value and a parent
        b"event=ONAPPINSTALL&" + b"&".join(b"f%d=1" % i for i in range(100)),  # too many fields
        b"ev%0Aent=ONAPPINSTALL",  # a key that is not a bracket key
        b"event=" + b"A" * 2000,  # a value too long
        "event=ONAPPINSTALL&x=\u00e9".encode(),  # not ASCII
    ],
)
def test_hostile_forms_are_refused_with_a_clear_error(body: bytes) -> None:
    with pytest.raises(BadForm) as refused:
        parse_form(body, FORM)
    assert refused.value.status == 400
    assert body.decode(errors="replace")[:20] not in str(refused.value)


@pytest.mark.parametrize(
    "domain",
    ["evil.com\r\nX-Injected: 1", "evil.com/path", "https://evil.com", "a b.com", ""],
)
def test_a_domain_that_is_not_a_host_name_is_refused(domain: str) -> None:
    with pytest.raises(BadForm, match="domain"):
        read_event(parse_form(install_form(domain=domain), FORM))


@pytest.mark.parametrize("scope", ["imopenlines,im", "imopenlines im", "im, imopenlines"])
def test_a_scope_written_with_spaces_or_commas_reads_the_same(scope: str) -> None:
    event = read_event(parse_form(install_form(scope=scope), FORM))
    assert event.auth.scope == ("im", "imopenlines")


def test_an_install_without_tokens_makes_no_installation() -> None:
    event = read_event(
        parse_form(install_form(access_token="<drop>", refresh_token="<drop>"), FORM)
    )
    assert not event.auth.has_pair
    with pytest.raises(BadForm, match="no token pair"):
        installation(event.auth, event.ts, SERVER, info(), "monitor")


def test_a_server_off_the_allow_list_is_never_asked() -> None:
    trusted = (SERVER, "https://oauth.bitrix24.tech/rest/")
    assert allowed_server("https://OAUTH.bitrix.info/rest", trusted) == SERVER
    for forged in ("https://oauth.bitrix.info.evil.com/rest/", "https://evil.com/rest/", None):
        with pytest.raises(NotGenuine):
            allowed_server(forged, trusted)


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"client_id": "app.someone.else"}, "another application"),
        ({"member_id": "0" * 32}, "member_id"),
        ({"domain": "other.bitrix24.com"}, "domain"),
        ({"installed": False}, "not installed"),
    ],
)
def test_an_install_the_server_does_not_vouch_for_is_not_genuine(
    changes: dict[str, object], why: str
) -> None:
    auth = read_event(parse_form(install_form(), FORM)).auth
    verify_install(auth, info(), OURS)  # the genuine one passes
    with pytest.raises(NotGenuine, match=why):
        verify_install(auth, info(**changes), OURS)


def test_the_application_token_is_kept_as_a_digest_and_compared_in_constant_time() -> None:
    digest = token_digest(APPLICATION_TOKEN)
    assert APPLICATION_TOKEN not in digest
    assert same_token(digest, APPLICATION_TOKEN)
    assert not same_token(digest, APPLICATION_TOKEN[:-1] + "0")


def test_a_replayed_or_older_install_never_replaces_a_newer_pair() -> None:
    event = read_event(parse_form(install_form(ts=2000), FORM))
    new = installation(event.auth, event.ts, SERVER, info(), "monitor")
    assert new.expires_at == 5600 and new.token_hash == token_digest(APPLICATION_TOKEN)
    assert supersedes(new, None, None)  # nothing stored, or a pair moved in by hand
    assert supersedes(new, 1000, 4600)  # a later install
    assert not supersedes(new, 2000, 5600)  # the same install again
    assert not supersedes(new, 3000, 6600)  # an older one arriving late
    assert not supersedes(new, 1000, 9000)  # a refresh after the stored install is newer
    # a pair just traded for a single-use code cannot be a replay: it replaces even a pair
    # stored in the same second
    assert supersedes(replace(new, replayable=False), 2000, 5600)
