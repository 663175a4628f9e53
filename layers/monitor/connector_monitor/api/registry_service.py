"""The registry's requests, as the API's routes and the CLI make them: validate an entry, add,
remove, list a page. No HTTP here (the routes shape answers) and no DynamoDB (the store behind
the port `ports/registry.py` does that)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..domain.labels import LabelError, PortalLabels
from ..domain.targets import ANY, ConfigIssue, Target, Watch, check_entry, check_target, parse_entry
from ..domain.text import clip
from ..domain.timestamps import stamp
from ..ports.registry import RegisteredEntry, RegistryStore
from .errors import BadCursor, BadTarget, NotFound
from .paging import MAX_LIMIT, check_limit, decode_cursor, encode_cursor
from .views import LabelsView, PortalLabelsView, RegistryEntryView, RegistryView

SHOWN_PART = 253  # a part of a hand-written item, as the listing shows it


def entry_of(portal: str, connector: str, line: str) -> Target | Watch:
    """The entry a path names; `BadTarget` with the reason when it names none."""
    checked = check_entry(portal, connector, line, f"{portal}/{connector}/{line}")
    if isinstance(checked, ConfigIssue):
        raise BadTarget(checked.reason)
    return checked


def entry_from_text(text: str) -> Target | Watch:
    """An entry written as `portal/connector/line` (the CLI's arguments)."""
    checked = parse_entry(text)
    if isinstance(checked, ConfigIssue):
        raise BadTarget(f"'{clip(text, 200)}': {checked.reason}")
    return checked


@dataclass(frozen=True)
class RegistryService:
    store: RegistryStore

    def page(self, *, limit: int = MAX_LIMIT, cursor: str | None = None) -> RegistryView:
        after = cursor_key(cursor) if cursor is not None else None
        entries, last = self.store.page(limit=check_limit(limit), after=after)
        return RegistryView(
            entries=[entry_view(e) for e in entries],
            next_cursor=encode_cursor(last) if last else None,
        )

    def add(self, entry: Target | Watch, *, by: str, at: datetime) -> bool:
        """True when added, False when it was there already."""
        return self.store.add(entry, added_by=by, at=at)

    def remove(self, entry: Target | Watch) -> None:
        if not self.store.remove(entry.key):
            raise NotFound(f"the registry holds no entry {entry.key}")

    def set_labels(
        self, portal: str, labels: dict[str, object], *, by: str, at: datetime
    ) -> PortalLabelsView:
        """Replace a portal's client labels (an empty object removes them)."""
        domain = portal_of(portal)
        try:
            parsed = PortalLabels.from_fields(labels)
        except LabelError as exc:
            raise BadTarget(str(exc)) from None
        self.store.set_labels(domain, parsed, by=by, at=at)
        return labels_view(domain, parsed)

    def labels_of(self, portals: list[str]) -> dict[str, PortalLabels]:
        return self.store.labels_of(portals)


def portal_of(text: str) -> str:
    """A portal's domain as the registry keys it; `BadTarget` when it is not one."""
    checked = check_target(text, "x", 1, text)
    if isinstance(checked, ConfigIssue):
        raise BadTarget(checked.reason)
    return checked.portal


def labels_view(portal: str, labels: PortalLabels) -> PortalLabelsView:
    return PortalLabelsView(portal=portal, labels=LabelsView(**labels.as_dict()))


def cursor_key(cursor: str) -> str:
    """The key a cursor stands for; it must be an entry's key as stored."""
    key = decode_cursor(cursor, is_entry_key)
    if key is None:
        raise BadCursor("cursor is not valid here: pass next_cursor from the previous page")
    return key


def is_entry_key(key: str) -> bool:
    checked = parse_entry(key)
    return not isinstance(checked, ConfigIssue) and checked.key == key


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
        added_at=stamp(registered.added_at) if registered.added_at is not None else None,
        added_by=registered.added_by or None,
        problem=registered.problem,
    )


def view_of(entry: Target | Watch, *, by: str, at: datetime) -> RegistryEntryView:
    """The view of an entry just added (or found there) by `by` at `at`."""
    return entry_view(RegisteredEntry(entry.key, at, by, entry=entry))
