"""A target's history read back: incidents (start, end, duration, cause) and uptime over a window.

The history is what the checker stores on transitions: one record per alert it decided
(`connector.down`, its reminders and `connector.recovered`; `check.failed` and
`check.recovered`). Each alert names the start of its incident (the first bad answer), so an
incident is rebuilt from its opening alert, its closing alert or both: a recovery whose opening
record has already expired still gives the incident its start.

Two kinds of incident, never mixed up:
- DOWN: the portal answered and the connector was not working (`connector.down` ..
  `connector.recovered`). This is downtime.
- BLIND: the monitor could not see (`check.failed` .. `check.recovered`: auth lost, unpaid
  portal, rate limits, the portal failing...). Time in a blind spell is counted apart, as
  "not seen", and never as downtime nor as uptime, even inside a DOWN incident.

Uptime % = up / (up + down) over the *seen* part of the window; the blind share is reported
beside it. Answers below the failure threshold open no incident and count as up, as they
raised no alert. The window is counted whole: the history keeps no "first checked" record,
so a target added during the window counts as up before it was added.
Pure: no clock and no I/O; `now` is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from .alerts import AlertEvent
from .timestamps import FORMAT

DAY = timedelta(days=1)
WINDOWS: dict[str, timedelta] = {"24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY}
LONGEST = WINDOWS["30d"]  # what the history keeps (its records' TTL)


class IncidentKind(StrEnum):
    DOWN = "DOWN"  # the connector did not work: downtime
    BLIND = "BLIND"  # the monitor could not see: neither up nor down


OPENS = {AlertEvent.CONNECTOR_DOWN: IncidentKind.DOWN, AlertEvent.CHECK_FAILED: IncidentKind.BLIND}
CLOSES = {
    AlertEvent.CONNECTOR_RECOVERED: IncidentKind.DOWN,
    AlertEvent.CHECK_RECOVERED: IncidentKind.BLIND,
}
DOWN_CAUSE = "connector_down"


@dataclass(frozen=True)
class HistoryRecord:
    """One stored alert of a target's history, as the history reader needs it."""

    event: AlertEvent
    at: datetime  # when the alert was decided
    incident_since: datetime  # when its incident began
    cause: str | None = None  # why the monitor could not see (check.* alerts)
    reminder: bool = False  # a "still down" reminder of an open incident
    closing: bool = False  # closes the incident of a target no longer monitored


@dataclass(frozen=True)
class Incident:
    target: str  # portal/connector/line
    kind: IncidentKind
    start: datetime
    end: datetime | None  # None: still open
    cause: str
    closed_by_removal: bool = False  # the target stopped being monitored while it was open

    @property
    def open(self) -> bool:
        return self.end is None

    def duration(self, now: datetime) -> timedelta:
        return (self.end or now) - self.start

    def span(self, lo: datetime, hi: datetime) -> tuple[datetime, datetime] | None:
        """The part of this incident inside [lo, hi), if any."""
        start, end = max(self.start, lo), min(self.end or hi, hi)
        return (start, end) if start < end else None


@dataclass(frozen=True)
class Uptime:
    """Time of one window (or of several targets' windows added up), split three ways."""

    window: timedelta
    up: timedelta
    down: timedelta
    blind: timedelta

    @property
    def seen(self) -> timedelta:
        return self.up + self.down

    @property
    def percent(self) -> float | None:
        """Up over seen time; None when the monitor saw nothing of the window."""
        if self.seen <= timedelta(0):
            return None
        return 100.0 * (self.up / self.seen)

    @property
    def blind_percent(self) -> float:
        total = self.up + self.down + self.blind
        return 100.0 * (self.blind / total) if total > timedelta(0) else 0.0

    def __add__(self, other: Uptime) -> Uptime:
        return Uptime(
            self.window, self.up + other.up, self.down + other.down, self.blind + other.blind
        )


class DayMark(StrEnum):
    UP = "up"  # no downtime, nothing unseen
    DOWN = "down"  # some downtime
    BLIND = "blind"  # no downtime, but some of the day unseen


@dataclass(frozen=True)
class Day:
    start: datetime  # midnight UTC
    mark: DayMark
    uptime: Uptime


def incident_start(alert_id: str, fallback: datetime) -> tuple[datetime, bool]:
    """The incident start an alert's id names (`key|event|START[#n]`, see `alerts.make_alert`)
    and whether it is a reminder; `fallback` when the id does not have that shape."""
    tail = alert_id.rsplit("|", 1)[-1]
    moment, _, reminder = tail.partition("#")
    try:
        return datetime.strptime(moment, FORMAT).replace(tzinfo=UTC), bool(reminder)
    except ValueError:
        return fallback, False


def incidents(target: str, records: Iterable[HistoryRecord]) -> list[Incident]:
    """The incidents a target's history tells, oldest first. A closing record without its
    opening one (expired) still makes a closed incident; an opening without a closing one is
    open; reminders add nothing."""
    found: dict[tuple[IncidentKind, datetime], Incident] = {}
    for record in sorted(records, key=lambda r: (r.at, r.event in CLOSES)):
        if record.event in OPENS:
            kind = OPENS[record.event]
            key = (kind, record.incident_since)
            cause = DOWN_CAUSE if kind is IncidentKind.DOWN else record.cause or "unknown"
            if key not in found:
                found[key] = Incident(target, kind, record.incident_since, None, cause)
        elif record.event in CLOSES:
            kind = CLOSES[record.event]
            key = (kind, record.incident_since)
            opened = found.get(key)
            cause = DOWN_CAUSE if kind is IncidentKind.DOWN else record.cause or "unknown"
            found[key] = Incident(
                target,
                kind,
                record.incident_since,
                max(record.at, record.incident_since),
                opened.cause if opened else cause,
                closed_by_removal=record.closing,
            )
    return sorted(found.values(), key=lambda i: (i.start, i.kind))


def with_open_incidents(
    found: list[Incident],
    target: str,
    *,
    down_since: datetime | None,
    blind_since: datetime | None,
    cause: str | None,
) -> list[Incident]:
    """`found` completed by the incidents the target's status says are open (its opening
    record may be older than the history's reach, or not yet readable)."""
    result = list(found)
    for kind, since, why in (
        (IncidentKind.DOWN, down_since, DOWN_CAUSE),
        (IncidentKind.BLIND, blind_since, cause or "unknown"),
    ):
        if since is None:
            continue
        since = since.replace(microsecond=0)  # as the alert ids (and so `found`) write it
        if any(i.kind is kind and i.start == since for i in found):
            continue
        result.append(Incident(target, kind, since, None, why))
    return sorted(result, key=lambda i: (i.start, i.kind))


def uptime(found: Sequence[Incident], window: timedelta, now: datetime) -> Uptime:
    """One target's window ending at `now`: blind time first, downtime only where it was seen."""
    return _split(found, now - window, now)


def days(found: Sequence[Incident], now: datetime, count: int = 30) -> list[Day]:
    """The last `count` UTC days, oldest first (today so far last): one mark each, for bars."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    marked: list[Day] = []
    for back in range(count - 1, -1, -1):
        lo = today - back * DAY
        split = _split(found, lo, min(lo + DAY, now))
        mark = (
            DayMark.DOWN
            if split.down > timedelta(0)
            else DayMark.BLIND
            if split.blind > timedelta(0)
            else DayMark.UP
        )
        marked.append(Day(lo, mark, split))
    return marked


def combined_days(per_target: Sequence[Sequence[Day]]) -> list[Day]:
    """Several targets' days added up (a portal's bar): the worst mark of each day."""
    if not per_target:
        return []
    order = {DayMark.UP: 0, DayMark.BLIND: 1, DayMark.DOWN: 2}
    combined: list[Day] = []
    for same_day in zip(*per_target, strict=True):
        total = same_day[0].uptime
        for day in same_day[1:]:
            total = total + day.uptime
        mark = max((d.mark for d in same_day), key=order.__getitem__)
        combined.append(Day(same_day[0].start, mark, total))
    return combined


def _split(found: Sequence[Incident], lo: datetime, hi: datetime) -> Uptime:
    length = max(hi - lo, timedelta(0))
    blind = _union([s for i in found if i.kind is IncidentKind.BLIND if (s := i.span(lo, hi))])
    down_spans = [s for i in found if i.kind is IncidentKind.DOWN if (s := i.span(lo, hi))]
    down = _measure(_union(down_spans)) - _overlap(_union(down_spans), blind)
    blind_time = _measure(blind)
    return Uptime(length, length - blind_time - down, down, blind_time)


Span = tuple[datetime, datetime]


def _union(spans: Iterable[Span]) -> list[Span]:
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _measure(spans: Iterable[Span]) -> timedelta:
    return sum((end - start for start, end in spans), timedelta(0))


def _overlap(a: Sequence[Span], b: Sequence[Span]) -> timedelta:
    total = timedelta(0)
    for a_start, a_end in a:
        for b_start, b_end in b:
            start, end = max(a_start, b_start), min(a_end, b_end)
            if start < end:
                total += end - start
    return total
