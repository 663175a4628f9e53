"""History and uptime for the API, the status page and monitorctl: a target's (or a portal's)
incidents and uptime, read from the history records and the targets' latest statuses.

Reading cost: one query per target (its `HISTORY#` partition, the last 30 days), run a few at a
time; a portal's targets come from the snapshot's reader. No clock here: `now` is passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ..domain.history import (
    DAY,
    LONGEST,
    WINDOWS,
    Day,
    HistoryRecord,
    Incident,
    Uptime,
    combined_days,
    days,
    incidents,
    uptime,
    with_open_incidents,
)
from ..domain.targets import Target
from ..domain.timestamps import stamp
from ..domain.transitions import TargetStatus
from .errors import NotFound
from .history_views import (
    DayView,
    IncidentView,
    PortalHistoryView,
    TargetHistoryView,
    UptimeView,
)
from .snapshot_service import StateReader

MAX_TARGETS = 1000  # targets one portal answer reads (each one query of its history)
READERS = 8  # history queries at a time


class HistoryStore(Protocol):
    """What the history is read from (the state table's `HISTORY#` items)."""

    def records(self, target: Target, since: datetime) -> list[HistoryRecord]: ...


@dataclass(frozen=True)
class TargetHistory:
    """One target's latest status (None: no longer watched) and its incidents."""

    target: Target
    status: TargetStatus | None
    incidents: list[Incident]

    def uptime(self, now: datetime) -> list[tuple[str, Uptime]]:
        return [(name, uptime(self.incidents, window, now)) for name, window in WINDOWS.items()]

    def days(self, now: datetime) -> list[Day]:
        return days(self.incidents, now)


@dataclass(frozen=True)
class HistoryService:
    reader: StateReader
    store: HistoryStore

    def target(self, target: Target, now: datetime) -> TargetHistoryView:
        status = self.reader.get_target(target)
        found = self.history_of(target, status, now)
        if status is None and not found.incidents:
            raise NotFound(f"no target {target.key} is watched, and it has no history")
        return target_history_view(found, now)

    def portal(self, portal: str, now: datetime) -> PortalHistoryView:
        statuses, truncated = self.portal_statuses(portal)
        if not statuses:
            raise NotFound(f"no target of {portal} is watched")
        histories = self.histories(statuses, now)
        views = [target_history_view(h, now) for h in histories]
        every = [i for h in histories for i in h.incidents]
        return PortalHistoryView(
            generated_at=stamp(now),
            portal=portal,
            uptime=[uptime_view(name, u) for name, u in together(histories, now)],
            days=[day_view(d) for d in combined_days([h.days(now) for h in histories])],
            targets=views,
            incidents=[incident_view(i, now) for i in newest_first(every)],
            truncated=truncated,
        )

    def portal_statuses(self, portal: str) -> tuple[list[TargetStatus], bool]:
        """The portal's watched targets (at most MAX_TARGETS) and whether there were more."""
        found: list[TargetStatus] = []
        after: str | None = None
        while len(found) < MAX_TARGETS:
            page, after = self.reader.page_targets(
                portal=portal, limit=MAX_TARGETS - len(found) + 1, after=after
            )
            found += page
            if after is None:
                break
        return found[:MAX_TARGETS], len(found) > MAX_TARGETS or after is not None

    def histories(self, statuses: Sequence[TargetStatus], now: datetime) -> list[TargetHistory]:
        """Each status's target with its incidents, the histories read a few at a time."""
        targets = [s.subject for s in statuses if isinstance(s.subject, Target)]
        by_key = {s.subject.key: s for s in statuses}
        with ThreadPoolExecutor(max_workers=READERS) as pool:
            return list(pool.map(lambda t: self.history_of(t, by_key.get(t.key), now), targets))

    def history_of(
        self, target: Target, status: TargetStatus | None, now: datetime
    ) -> TargetHistory:
        found = incidents(target.key, self.store.records(target, now - LONGEST - DAY))
        if status is not None:
            found = with_open_incidents(
                found,
                target.key,
                down_since=status.down_since,
                blind_since=status.blind_since,
                cause=status.cause.value if status.cause else None,
            )
        return TargetHistory(target, status, found)


def together(histories: Sequence[TargetHistory], now: datetime) -> list[tuple[str, Uptime]]:
    """Several targets' uptime per window, their target-time added up (a portal's uptime)."""
    per_target = [h.uptime(now) for h in histories]
    totals: list[tuple[str, Uptime]] = []
    for index, name in enumerate(WINDOWS):
        splits = [windows[index][1] for windows in per_target]
        total = splits[0]
        for split in splits[1:]:
            total = total + split
        totals.append((name, total))
    return totals


def newest_first(found: Sequence[Incident]) -> list[Incident]:
    return sorted(found, key=lambda i: (i.start, i.target), reverse=True)


def target_history_view(history: TargetHistory, now: datetime) -> TargetHistoryView:
    target = history.target
    return TargetHistoryView(
        portal=target.portal,
        connector=target.connector,
        line=target.line,
        state=history.status.state.value if history.status else None,
        uptime=[uptime_view(name, u) for name, u in history.uptime(now)],
        days=[day_view(d) for d in history.days(now)],
        incidents=[incident_view(i, now) for i in newest_first(history.incidents)],
    )


def uptime_view(name: str, split: Uptime) -> UptimeView:
    percent = split.percent
    return UptimeView(
        window=name,  # type: ignore[arg-type]  # one of WINDOWS' names
        percent=round(percent, 3) if percent is not None else None,
        up_seconds=int(split.up.total_seconds()),
        down_seconds=int(split.down.total_seconds()),
        blind_seconds=int(split.blind.total_seconds()),
        blind_percent=round(split.blind_percent, 3),
    )


def day_view(day: Day) -> DayView:
    percent = day.uptime.percent
    return DayView(
        date=day.start.strftime("%Y-%m-%d"),
        mark=day.mark.value,
        percent=round(percent, 3) if percent is not None else None,
    )


def incident_view(incident: Incident, now: datetime) -> IncidentView:
    portal, connector, line = incident.target.split("/")
    return IncidentView(
        portal=portal,
        connector=connector,
        line=int(line),
        kind=incident.kind.value,
        cause=incident.cause,
        start=stamp(incident.start),
        end=stamp(incident.end) if incident.end else None,
        duration_seconds=int(incident.duration(now).total_seconds()),
        open=incident.open,
        no_longer_monitored=incident.closed_by_removal,
    )
