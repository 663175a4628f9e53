"""The history's reader: a target's `HISTORY#` items by key range (a query, page by page).

The items are written by the state repository with each transition (`records.history_item`):
partition `HISTORY#portal/connector/line`, sort key `time#event`, so the records since a
moment are one key range. Eventually consistent reads: half the price, and a record written
a second ago is next minute's news anyway.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from ..domain.history import HistoryRecord
from ..domain.targets import Target
from ..ports.state_store import StateStoreError
from . import clients
from .dynamodb import describe_error, query_items
from .records import HISTORY_PREFIX, history_record_from_item, iso

# A target's history holds an item per alert: a steady target has none, a flapping one a few a
# day. Past this many records in one read the oldest are dropped (a hostile or broken portal
# flapping every run for 30 days is 17,280 items, ~30 MB to read): the newest matter most.
MAX_RECORDS = 2000


class HistoryReadError(StateStoreError):
    """DynamoDB could not be read."""


class HistoryReader:
    """`api.history_service.HistoryStore` over the state table."""

    def __init__(self, table_name: str, *, client: Any | None = None) -> None:
        self.table_name = table_name
        self._client = client or clients.client("dynamodb")
        self.calls = 0

    def records(self, target: Target, since: datetime) -> list[HistoryRecord]:
        """The target's records from `since` on, oldest first (at most MAX_RECORDS, newest)."""
        items = query_items(self._call, self.table_name, HISTORY_PREFIX + target.key, lo=iso(since))
        found: deque[HistoryRecord] = deque(maxlen=MAX_RECORDS)
        for item in items:
            try:
                found.append(history_record_from_item(item))
            except (KeyError, ValueError):  # an item written by hand or by a future version
                continue
        return list(found)

    def _call(self, operation: str, **params: Any) -> Any:
        self.calls += 1
        try:
            return getattr(self._client, operation)(**params)
        except ClientError as exc:
            raise HistoryReadError(describe_error("read the history", exc)) from None
        except Exception as exc:  # endpoint unreachable, credentials, ...
            raise HistoryReadError(f"DynamoDB {operation} failed: {type(exc).__name__}") from None
