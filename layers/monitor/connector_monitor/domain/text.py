"""Bounds on text that came from outside: every string a portal sends is cut before the monitor
stores, logs or publishes it, so no DynamoDB item (400 KB) or SNS message (256 KB) can overflow
whatever a portal answers."""

from __future__ import annotations

CODE_LIMIT = 64  # an error code (Bitrix24's longest is 31 characters)
DESCRIPTION_LIMIT = 300  # a portal's error_description
NAME_LIMIT = 60  # an open line's or a connector's display name
DETAIL_LIMIT = 500  # why a target is DOWN or UNKNOWN, as stored and served
MESSAGE_LIMIT = 6000  # one alert's text; SNS takes 256 KB, an email reader far less

ELLIPSIS = "…"


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, the cut marked with an ellipsis."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(ELLIPSIS))] + ELLIPSIS
