"""Silences: an operator mutes a portal, a connector, one target or a cause until a time. Pure.

While a silence covers a target its state and history go on as always; only the alerts are
held (recorded in the history, not published). When no silence covers it any more (the silence
expired or was removed), the target is *released*:
- an incident still open is announced once: one `connector.down` (or `check.failed` for a blind
  spell), whose body says since when a silence held it;
- a target that recovered meanwhile announces nothing: the operator muted it, the outage began
  and ended inside the silence, and a recovery notice for an outage never announced is noise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from .alerts import Alert, AlertEvent, Facts, make_alert
from .results import Cause
from .targets import ANY, ConfigIssue, Subject, check_target
from .text import MESSAGE_LIMIT, clip
from .timestamps import stamp
from .transitions import TargetStatus

WHY_LIMIT = 500  # a reason, not a document
BY_LIMIT = 200  # an IAM ARN or a person's name
ID_LIMIT = 64


class SilenceError(ValueError):
    """A silence that cannot be made: the message says what to fix."""


@dataclass(frozen=True)
class Matcher:
    """What a silence covers: every field given must match (None: any)."""

    portal: str | None = None
    connector: str | None = None
    line: int | None = None
    cause: Cause | None = None

    def __post_init__(self) -> None:
        if self.portal is None and self.connector is None and self.cause is None:
            raise SilenceError("a silence needs a portal, a connector or a cause to match")
        if self.line is not None and (self.portal is None or self.connector is None):
            raise SilenceError("a silence of one line needs its portal and connector too")

    def covers(self, subject: Subject, cause: Cause | None) -> bool:
        portal, connector, line = _names(subject)
        return (
            (self.portal is None or self.portal == portal)
            and (self.connector is None or self.connector == connector)
            and (self.line is None or str(self.line) == line)
            and (self.cause is None or self.cause is cause)
        )

    def __str__(self) -> str:
        where = "/".join(
            [
                self.portal or ANY,
                self.connector or ANY,
                ANY if self.line is None else str(self.line),
            ]
        )
        return where + (f" cause={self.cause.value}" if self.cause else "")


def matcher_of(
    portal: str | None = None,
    connector: str | None = None,
    line: str | int | None = None,
    cause: str | None = None,
) -> Matcher:
    """A matcher from an operator's words, spelt as targets are (any case, `*` for any)."""
    portal = None if portal in (None, "", ANY) else portal
    connector = None if connector in (None, "", ANY) else connector
    line = None if line in (None, "", ANY) else line
    try:
        reason = Cause(cause) if cause not in (None, "") else None
    except ValueError:
        known = ", ".join(c.value for c in Cause)
        raise SilenceError(f"unknown cause {str(cause)[:40]!r} (one of: {known})") from None
    shown = "/".join(str(part or ANY) for part in (portal, connector, line))
    checked = check_target(portal or "x.invalid", connector or "x", line or 1, shown)
    if isinstance(checked, ConfigIssue):
        raise SilenceError(checked.reason)
    return Matcher(
        portal=checked.portal if portal is not None else None,
        connector=checked.connector if connector is not None else None,
        line=checked.line if line is not None else None,
        cause=reason,
    )


@dataclass(frozen=True)
class Silence:
    id: str
    matcher: Matcher
    until: datetime
    by: str
    why: str
    created_at: datetime

    def __post_init__(self) -> None:
        if not self.id or len(self.id) > ID_LIMIT:
            raise SilenceError("a silence's id is 1 to 64 characters")
        if self.until <= self.created_at:
            raise SilenceError("a silence must end after it begins")
        if not self.why.strip():
            raise SilenceError("say why (who reads the list later needs to know)")
        object.__setattr__(self, "why", clip(self.why.strip(), WHY_LIMIT))
        object.__setattr__(self, "by", clip(self.by.strip() or "unknown", BY_LIMIT))

    def active(self, now: datetime) -> bool:
        return self.created_at <= now < self.until

    def covers(self, status: TargetStatus, now: datetime) -> bool:
        return self.active(now) and self.matcher.covers(status.subject, status.cause)


@dataclass(frozen=True)
class Silenced:
    """The run's statuses once the silences were applied."""

    statuses: list[TargetStatus]  # as they must be stored (held alerts out of `pending`)
    alerts: dict[str, tuple[Alert, ...]]  # per key: the alerts to record in the history
    held: int  # alerts held this run
    released: int  # targets released this run


def apply_silences(
    changed: Sequence[TargetStatus],
    decided: dict[str, tuple[Alert, ...]],
    stored: Iterable[TargetStatus],
    silences: Sequence[Silence],
    now: datetime,
) -> Silenced:
    """Hold the new alerts of silenced targets; release the targets no silence covers any more.

    `changed` are the statuses the run is about to store, `decided` their new alerts (by key),
    `stored` what the run loaded (a target held earlier may not have changed this run)."""
    latest = {s.subject.key: s for s in stored if s.held_since is not None}
    latest.update({s.subject.key: s for s in changed})
    out = {s.subject.key: s for s in changed}
    alerts = dict(decided)
    held = released = 0
    for key, status in latest.items():
        new = decided.get(key, ())
        if any(s.covers(status, now) for s in silences):
            if new:
                status = _hold(status, new)
                held += len(new)
                out[key] = status
        elif status.held_since is not None:
            status, announced = release(status, new, now)
            alerts[key] = tuple(a for a in new if a not in announced) + announced
            out[key] = status
            released += 1
    return Silenced(list(out.values()), {k: v for k, v in alerts.items() if v}, held, released)


def _hold(status: TargetStatus, new: tuple[Alert, ...]) -> TargetStatus:
    ids = {a.id for a in new}
    first = min(a.created_at for a in new)
    return replace(
        status,
        pending=tuple(a for a in status.pending if a.id not in ids),
        held_since=status.held_since or first,
    )


def release(
    status: TargetStatus, new: tuple[Alert, ...], now: datetime
) -> tuple[TargetStatus, tuple[Alert, ...]]:
    """A held target no silence covers any more: its open incidents announced once each (the
    run's own alerts about it are superseded), nothing if it recovered meanwhile."""
    assert status.held_since is not None
    ids = {a.id for a in new}
    announced: list[Alert] = []
    if status.down_since is not None:
        announced.append(_released(AlertEvent.CONNECTOR_DOWN, status, status.down_since, now))
    if status.blind_since is not None:
        announced.append(_released(AlertEvent.CHECK_FAILED, status, status.blind_since, now))
    pending = tuple(a for a in status.pending if a.id not in ids) + tuple(announced)
    released = replace(status, pending=pending, held_since=None)
    if announced:
        released = replace(released, last_alert_at=now)
    return released, tuple(announced)


def _released(event: AlertEvent, status: TargetStatus, since: datetime, now: datetime) -> Alert:
    assert status.held_since is not None
    facts = Facts(
        detail=status.detail,
        status=status.status,
        configured=status.configured,
        error=status.error,
        cause=status.cause,
        incident_since=since,
        now=now,
    )
    alert = make_alert(event, status.subject, facts)
    note = (
        f"A silence held this alert since {stamp(status.held_since)}; the silence has ended "
        "and the incident is still open."
    )
    return replace(
        alert,
        id=f"{alert.id}|released@{stamp(now)}",
        message=clip(f"{note}\n\n{alert.message}", MESSAGE_LIMIT),
    )


def _names(subject: Subject) -> tuple[str, str, str]:
    if isinstance(subject, ConfigIssue):
        return subject.portal, subject.connector, subject.line
    return subject.portal, subject.connector, str(subject.line)
