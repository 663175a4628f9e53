"""The one paging rule of the API's listings: page sizes and cursors."""

from __future__ import annotations

import pytest

from connector_monitor.api.errors import BadFilter
from connector_monitor.api.paging import MAX_LIMIT, check_limit, decode_cursor, encode_cursor

KEY = "example.bitrix24.com/myconnector/12"


def accept_any(key: str) -> bool:
    return True


@pytest.mark.parametrize("limit", [1, MAX_LIMIT])
def test_a_page_holds_one_to_max_limit_items(limit: int) -> None:
    assert check_limit(limit) == limit


@pytest.mark.parametrize("limit", [0, -1, MAX_LIMIT + 1])
def test_another_page_size_is_a_bad_filter(limit: int) -> None:
    with pytest.raises(BadFilter, match=f"limit must be between 1 and 1000, not {limit}"):
        check_limit(limit)


def test_a_cursor_stands_for_its_key_and_carries_no_padding() -> None:
    cursor = encode_cursor(KEY)

    assert "=" not in cursor
    assert decode_cursor(cursor, accept_any) == KEY


@pytest.mark.parametrize("cursor", ["!!not base64!!", "gA"])
def test_what_does_not_decode_to_text_is_no_cursor(cursor: str) -> None:
    assert decode_cursor(cursor, accept_any) is None


def test_a_key_the_listing_does_not_accept_is_no_cursor() -> None:
    assert decode_cursor(encode_cursor(KEY), lambda key: key != KEY) is None
