"""The one paging rule of the API's listings (the snapshot's targets, the registry's entries):
a page holds 1 to `MAX_LIMIT` items in key order, and its cursor stands for the last key read,
base64url without padding."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from .errors import BadFilter

MAX_LIMIT = 1000


def check_limit(limit: int) -> int:
    """`limit` when a page may hold that many items; `BadFilter` otherwise."""
    if not 1 <= limit <= MAX_LIMIT:
        raise BadFilter(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    return limit


def encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, is_key: Callable[[str], bool]) -> str | None:
    """The key `cursor` stands for when it is one `is_key` accepts (a key of the listing, as
    stored); None when it is not a cursor this API handed out for the listing."""
    try:
        key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return key if is_key(key) else None
