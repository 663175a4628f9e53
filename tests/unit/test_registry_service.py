"""The registry service on an in-memory store: entries, views, pages, removal."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import pytest

from connector_monitor.api.errors import BadCursor, BadFilter, BadTarget, NotFound
from connector_monitor.api.paging import encode_cursor
from connector_monitor.api.registry_service import (
    RegistryService,
    entry_from_text,
    entry_of,
    view_of,
)
from connector_monitor.domain.targets import Target, Watch
from connector_monitor.ports.registry import RegisteredEntry

AT = datetime(2026, 11, 24, 12, 0, 5, 987654, tzinfo=UTC)
PORTAL = "example.bitrix24.com"
BY = "arn:aws:iam::123456789012:user/editor"


@dataclass
class MemoryRegistry:
    """The registry port in memory, in key order like the table's partition."""

    entries: dict[str, RegisteredEntry] = field(default_factory=dict)

    def page(
        self, *, limit: int, after: str | None = None
    ) -> tuple[list[RegisteredEntry], str | None]:
        keys = sorted(k for k in self.entries if after is None or k > after)
        taken = keys[:limit]
        return [self.entries[k] for k in taken], (taken[-1] if len(keys) > limit else None)

    def add(self, entry: Target | Watch, *, added_by: str, at: datetime) -> bool:
        if entry.key in self.entries:
            return False
        self.entries[entry.key] = RegisteredEntry(entry.key, at, added_by, entry=entry)
        return True

    def remove(self, key: str) -> bool:
        return self.entries.pop(key, None) is not None


def test_an_entry_added_is_listed_with_who_and_when_to_the_second() -> None:
    service = RegistryService(MemoryRegistry())

    assert service.add(entry_of(PORTAL, "MyConnector", "12"), by=BY, at=AT) is True
    assert service.add(entry_of(PORTAL, "myconnector", "12"), by=BY, at=AT) is False

    (listed,) = service.page().entries
    assert (listed.key, listed.line, listed.added_at, listed.added_by, listed.problem) == (
        f"{PORTAL}/myconnector/12",
        "12",
        "2026-11-24T12:00:05Z",
        BY,
        None,
    )


def test_the_answer_to_an_add_is_the_entry_as_the_listing_shows_it() -> None:
    service = RegistryService(MemoryRegistry())
    entry = entry_of("*", "myconnector", "*")
    local_time = AT.astimezone(timezone(timedelta(hours=3)))

    service.add(entry, by=BY, at=local_time)

    assert view_of(entry, by=BY, at=local_time) == service.page().entries[0]


def test_a_hand_written_item_is_shown_with_its_problem_and_no_time() -> None:
    broken = RegisteredEntry("x y/c", None, "", problem="not a portal domain")
    service = RegistryService(MemoryRegistry({broken.key: broken}))

    (listed,) = service.page().entries

    assert (listed.portal, listed.connector, listed.line) == ("x y", "c", "")
    assert (listed.added_at, listed.added_by, listed.problem) == (None, None, "not a portal domain")


def test_pages_cover_the_registry_once_in_key_order() -> None:
    service = RegistryService(MemoryRegistry())
    for line in range(1, 6):
        service.add(entry_of(PORTAL, "c", str(line)), by=BY, at=AT)

    keys, cursor = [], None
    while True:
        page = service.page(limit=2, cursor=cursor)
        keys += [e.key for e in page.entries]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert keys == [f"{PORTAL}/c/{line}" for line in range(1, 6)]


@pytest.mark.parametrize(
    "cursor",
    ["!!not base64!!", encode_cursor("no slashes"), encode_cursor(f" {PORTAL}/c/1")],
)
def test_a_cursor_that_is_no_entry_key_is_refused(cursor: str) -> None:
    with pytest.raises(BadCursor, match="cursor is not valid here"):
        RegistryService(MemoryRegistry()).page(cursor=cursor)


def test_a_page_size_out_of_range_is_refused() -> None:
    with pytest.raises(BadFilter, match="limit must be between 1 and 1000"):
        RegistryService(MemoryRegistry()).page(limit=1001)


def test_removing_what_is_not_there_is_not_found() -> None:
    service = RegistryService(MemoryRegistry())
    entry = entry_from_text(f"{PORTAL}/c/1")
    service.add(entry, by=BY, at=AT)

    service.remove(entry)

    with pytest.raises(NotFound, match=f"the registry holds no entry {PORTAL}/c/1"):
        service.remove(entry)


@pytest.mark.parametrize("text", [f"{PORTAL}/c/0", "*/c/1", "nothing"])
def test_a_text_that_names_no_entry_is_a_bad_target(text: str) -> None:
    with pytest.raises(BadTarget, match=re.escape(f"'{text}'")):
        entry_from_text(text)
