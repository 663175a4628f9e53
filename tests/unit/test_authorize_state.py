"""The signed state of a re-authorisation link (connector_monitor.domain.authorize_state)."""

from __future__ import annotations

import pytest

from connector_monitor.domain.authorize_state import (
    AuthorizeState,
    BadState,
    claimed_app,
    read_state,
    sign_state,
    state_key,
)

KEY = state_key("the-apps-client-secret")
STATE = AuthorizeState("example.bitrix24.com", "monitor", expires_at=2000)


def test_a_state_signed_by_the_stack_reads_back_until_it_expires() -> None:
    text = sign_state(STATE, KEY)
    assert claimed_app(text) == "monitor"
    assert read_state(text, KEY, now=1999) == STATE
    with pytest.raises(BadState, match="expired"):
        read_state(text, KEY, now=2001)


def test_two_links_for_one_portal_differ_and_neither_shows_the_secret() -> None:
    first, second = sign_state(STATE, KEY), sign_state(STATE, KEY)
    assert first != second
    assert "the-apps-client-secret" not in first


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # another signature
        lambda t: sign_state(AuthorizeState("other.bitrix24.com", "monitor", 2000), state_key("x")),
        lambda t: t.split(".")[0],  # no signature
        lambda t: "x" * 600,  # too long to read
        lambda t: "e30." + t.split(".")[1],  # {} as the payload
    ],
)
def test_a_state_the_stack_did_not_sign_is_refused(tamper: object) -> None:
    text = tamper(sign_state(STATE, KEY))  # type: ignore[operator]
    with pytest.raises(BadState):
        read_state(text, KEY, now=1000)
