"""The registry's requests, as the API's routes and the CLI make them: validate an entry, add,
remove, list a page. No HTTP here (the handler shapes answers) and no DynamoDB (the adapter,
`aws/registry.py`, does that)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from .aws.records import iso, parse_iso
from .aws.registry import RegisteredEntry
from .domain.targets import ANY, Target, TargetError, Watch, check_entry, parse_entry
from .domain.text import clip
from .domain.timestamps import stamp
from .snapshot import BadCursor, BadTarget, TargetNotFound, decode_key, encode_cursor
from .views import RegistryEntryView, RegistryView

MAX_LIMIT = 1000
SHOWN_PART = 253  # a part of a hand-written item, as the listing shows it


class RegistryStore(Protocol):
    """What the service needs of the registry (`aws.registry.Registry` is the real one)."""

    def page(
        self, *, limit: int, after: str | None = None
    ) -> tuple[list[RegisteredEntry], str | None]: ...

    def add(self, entry: Target | Watch, *, added_by: str, at: datetime) -> bool: ...

    def remove(self, key: str) -> bool: ...


def entry_of(portal: str, connector: str, line: str) -> Target | Watch:
    """The entry a path names; `BadTarget` with the reason when it names none."""
    checked = check_entry(portal, connector, line, f"{portal}/{connector}/{line}")
    if isinstance(checked, TargetError):
        raise BadTarget(checked.reason)
    return checked


def entry_from_text(text: str) -> Target | Watch:
    """An entry written as `portal/connector/line` (the CLI's arguments)."""
    checked = parse_entry(text)
    if isinstance(checked, TargetError):
        raise BadTarget(f"'{clip(text, 200)}': {checked.reason}")
    return checked


@dataclass(frozen=True)
class RegistryService:
    store: RegistryStore

    def page(self, *, limit: int = MAX_LIMIT, cursor: str | None = None) -> RegistryView:
        after = self._after(cursor) if cursor is not None else None
        entries, last = self.store.page(limit=limit, after=after)
        return RegistryView(
            entries=[entry_view(e) for e in entries],
            next_cursor=encode_cursor(last) if last else None,
        )

    def add(self, entry: Target | Watch, *, by: str, at: datetime) -> bool:
        """True when added, False when it was there already."""
        return self.store.add(entry, added_by=by, at=at)

    def remove(self, entry: Target | Watch) -> None:
        if not self.store.remove(entry.key):
            raise TargetNotFound(f"the registry holds no entry {entry.key}")

    @staticmethod
    def _after(cursor: str) -> str:
        key = decode_key(cursor)
        checked = parse_entry(key) if key is not None else None
        if checked is None or isinstance(checked, TargetError) or checked.key != key:
            raise BadCursor("cursor is not valid here: pass next_cursor from the previous page")
        return key


def entry_view(registered: RegisteredEntry) -> RegistryEntryView:
    entry = registered.entry
    if entry is not None:
        line = ANY if isinstance(entry, Watch) else str(entry.line)
        portal, connector = entry.portal, entry.connector
    else:
        portal, connector, line = ([*registered.key.split("/", 2), "", ""])[:3]
    return RegistryEntryView(
        key=clip(registered.key, 3 * SHOWN_PART),
        portal=clip(portal, SHOWN_PART),
        connector=clip(connector, SHOWN_PART),
        line=clip(line, SHOWN_PART),
        added_at=_stamped(registered.added_at),
        added_by=registered.added_by or None,
        problem=registered.problem,
    )


def view_of(entry: Target | Watch, *, by: str, at: datetime) -> RegistryEntryView:
    return entry_view(RegisteredEntry(entry.key, iso(at), by, entry=entry))


def _stamped(stored: str) -> str | None:
    """A stored time as the API writes times (to the second); None if there is none."""
    try:
        return stamp(parse_iso(stored))
    except ValueError:
        return None
