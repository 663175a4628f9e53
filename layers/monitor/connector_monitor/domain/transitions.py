"""The alert state machine: from a target's stored status and a new check result, the next
status and the alerts it owes. Pure: no clock, no I/O; `now` is the result's `checked_at`.

Rules, per target:
- UP and DOWN are *seen* answers; UNKNOWN means the monitor could not see. An UNKNOWN neither
  advances nor resets a streak of seen answers, so an UNKNOWN in the middle of an incident can
  neither fake a recovery nor open a second incident.
- `connector.down` once the last `failure` seen answers were DOWN; `connector.recovered` once
  the last `recovery` seen answers were UP after a down alert.
- `check.failed` once `failure` checks in a row were UNKNOWN (a configuration problem: at once,
  since asking again cannot fix it); `check.recovered` once `recovery` answers in a row were seen.
- Optional reminder while still down, every `renotify`.
- A target that leaves the configuration with an incident open gets one closing alert (the
  incident's recovery event, worded "no longer monitored"), so no page stays open forever.
- Answers are ordered by `checked_at`: one no newer than the stored status adds nothing (an
  overlapping run finishing late), unless the stored one is more than `CLOCK_SKEW` in its
  future, which only a clock that was wrong can explain.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from .alerts import Alert, AlertEvent, Facts, make_alert
from .client_context import NO_CONTEXT, AlertContext
from .results import Cause, CheckResult, State
from .targets import Subject


@dataclass(frozen=True)
class Thresholds:
    failure: int = 2
    recovery: int = 1
    renotify: timedelta | None = None

    def __post_init__(self) -> None:
        if self.failure < 1 or self.recovery < 1:
            raise ValueError("thresholds must be at least 1")
        if self.renotify is not None and self.renotify <= timedelta(0):
            raise ValueError("the re-notify interval must be positive (or None for off)")

    @property
    def streak_cap(self) -> int:
        """Streaks stop counting here, so a steady target's record stops changing."""
        return max(self.failure, self.recovery)


@dataclass(frozen=True)
class TargetStatus:
    """Everything the monitor remembers about one target between runs."""

    subject: Subject
    state: State
    since: datetime
    checked_at: datetime
    status: bool | None = None
    configured: bool | None = None
    error: bool | None = None
    cause: Cause | None = None
    detail: str | None = None
    line_name: str | None = None  # the open line's name, as the portal's inventory lists it
    seen_state: State | None = None  # the last UP/DOWN answer
    seen_since: datetime | None = None  # when the current run of seen_state answers began
    seen_streak: int = 0  # seen answers in a row equal to seen_state (UNKNOWN skipped)
    visible_streak: int = 0  # answers in a row that were seen (UNKNOWN resets)
    blind_streak: int = 0  # UNKNOWNs in a row
    down_since: datetime | None = None  # an open connector.down incident began then
    blind_since: datetime | None = None  # an open check.failed incident began then
    blind_cause: Cause | None = None  # why the open check.failed incident's target was blind
    reminders: int = 0  # reminders sent in the open down incident
    last_alert_at: datetime | None = None
    pending: tuple[Alert, ...] = ()  # decided, not yet published
    held_since: datetime | None = None  # a silence has held this target's alerts since then
    acked_since: datetime | None = None  # the down incident (its down_since) acknowledged
    acked_by: str | None = None
    version: int = 0  # optimistic concurrency: bumped by every stored write

    def same_as(self, other: TargetStatus | None) -> bool:
        """True when storing `self` over `other` would change nothing but `checked_at`."""
        return other is not None and replace(self, checked_at=other.checked_at) == other


# An overlapping run can finish after a newer one, but never this much later (a run lasts at
# most the function's timeout, two minutes).
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Step:
    status: TargetStatus
    alerts: tuple[Alert, ...] = field(default=())
    skew: timedelta | None = None  # how far in the future the stored status was, if it was


def advance(
    previous: TargetStatus | None,
    result: CheckResult,
    thresholds: Thresholds,
    context: AlertContext = NO_CONTEXT,
) -> Step:
    """Fold one check result into a target's status; return the new status and new alerts
    (worded with `context`: the client's labels, line names, where targets are listed)."""
    skew = None
    if previous is not None and result.checked_at <= previous.checked_at:
        ahead = previous.checked_at - result.checked_at
        if ahead <= CLOCK_SKEW:
            return Step(previous)  # an answer no newer than what is stored adds nothing
        skew = ahead  # stored by a run whose clock was wrong: the answer is the news
    subject = result.target if previous is None else previous.subject
    base = previous or TargetStatus(subject, result.state, result.checked_at, result.checked_at)
    status = _observe(base, result, thresholds.streak_cap)
    named = context.line_name(subject)
    if named is not None and named != status.line_name:
        status = replace(status, line_name=named)
    if result.state is State.UNKNOWN:
        status, alerts = _while_blind(status, result, thresholds, context)
    else:
        status, alerts = _while_seen(status, thresholds, context)
    if alerts:
        status = replace(status, pending=status.pending + alerts, last_alert_at=result.checked_at)
    return Step(status, alerts, skew)


def retire(
    status: TargetStatus,
    now: datetime,
    reason: str | None = None,
    context: AlertContext = NO_CONTEXT,
) -> Step:
    """A target that left the configuration, or whose line the portal deleted (`reason` says
    so): close its open incidents with one alert each, worded "no longer monitored".

    The status keeps its pending alerts (they are delivered first) and loses its incidents, so
    the next run, finding it still gone and with nothing pending, forgets it.
    """
    alerts: list[Alert] = []
    if status.down_since is not None:
        alerts.append(
            _closing(
                AlertEvent.CONNECTOR_RECOVERED, status, status.down_since, now, reason, context
            )
        )
    if status.blind_since is not None:
        alerts.append(
            _closing(AlertEvent.CHECK_RECOVERED, status, status.blind_since, now, reason, context)
        )
    if not alerts:
        return Step(status)
    closed = replace(
        status,
        down_since=None,
        blind_since=None,
        blind_cause=None,
        reminders=0,
        pending=status.pending + tuple(alerts),
        last_alert_at=now,
    )
    return Step(closed, tuple(alerts))


def has_open_incident(status: TargetStatus) -> bool:
    return status.down_since is not None or status.blind_since is not None


def _observe(base: TargetStatus, result: CheckResult, cap: int) -> TargetStatus:
    now = result.checked_at
    status = replace(
        base,
        state=result.state,
        since=now if base.state is not result.state else base.since,
        checked_at=now,
        status=result.status,
        configured=result.configured,
        error=result.error,
        cause=result.cause,
        detail=result.detail,
    )
    if result.state is State.UNKNOWN:
        return replace(status, blind_streak=min(base.blind_streak + 1, cap), visible_streak=0)
    same = base.seen_state is result.state
    return replace(
        status,
        seen_state=result.state,
        seen_since=base.seen_since if same else now,
        seen_streak=min(base.seen_streak + 1, cap) if same else 1,
        visible_streak=min(base.visible_streak + 1, cap),
        blind_streak=0,
    )


def _while_seen(
    status: TargetStatus, th: Thresholds, context: AlertContext
) -> tuple[TargetStatus, tuple[Alert, ...]]:
    alerts: list[Alert] = []
    if status.blind_since is not None and status.visible_streak >= th.recovery:
        alerts.append(
            _alert(AlertEvent.CHECK_RECOVERED, status, status.blind_since, context, cause=True)
        )
        status = replace(status, blind_since=None, blind_cause=None)
    if status.seen_state is State.DOWN:
        status, more = _down_answer(status, th, context)
        alerts += more
    elif status.down_since is not None and status.seen_streak >= th.recovery:
        alerts.append(_alert(AlertEvent.CONNECTOR_RECOVERED, status, status.down_since, context))
        status = replace(status, down_since=None, reminders=0)
    return status, tuple(alerts)


def _down_answer(
    status: TargetStatus, th: Thresholds, context: AlertContext
) -> tuple[TargetStatus, list[Alert]]:
    if status.down_since is None:
        if status.seen_streak < th.failure:
            return status, []
        began = status.seen_since or status.checked_at
        status = replace(status, down_since=began, reminders=0)
        return status, [_alert(AlertEvent.CONNECTOR_DOWN, status, began, context)]
    began = status.down_since
    if th.renotify is None or status.last_alert_at is None or status.acked_since == began:
        return status, []  # an acknowledged incident gets no reminders
    if status.checked_at - status.last_alert_at < th.renotify:
        return status, []
    status = replace(status, reminders=status.reminders + 1)
    reminder = _alert(AlertEvent.CONNECTOR_DOWN, status, began, context, status.reminders)
    return status, [reminder]


def _while_blind(
    status: TargetStatus, result: CheckResult, th: Thresholds, context: AlertContext
) -> tuple[TargetStatus, tuple[Alert, ...]]:
    needed = 1 if result.cause and result.cause.is_configuration else th.failure
    if status.blind_since is not None or status.blind_streak < needed:
        return status, ()
    began = status.since  # the first UNKNOWN of this blind spell
    status = replace(status, blind_since=began, blind_cause=result.cause)
    return status, (_alert(AlertEvent.CHECK_FAILED, status, began, context),)


def _closing(
    event: AlertEvent,
    status: TargetStatus,
    since: datetime,
    now: datetime,
    reason: str | None,
    context: AlertContext,
) -> Alert:
    facts = Facts(
        detail=reason,
        status=None,
        configured=None,
        error=None,
        cause=status.blind_cause or status.cause,
        incident_since=since,
        now=now,
        closing=True,
    )
    return make_alert(event, status.subject, facts, context)


def _alert(
    event: AlertEvent,
    status: TargetStatus,
    since: datetime,
    context: AlertContext,
    reminder: int = 0,
    *,
    cause: bool = False,
) -> Alert:
    """`cause`: the alert names the blind spell's cause (a recovery), not the latest one."""
    facts = Facts(
        detail=None if cause else status.detail,
        status=status.status,
        configured=status.configured,
        error=status.error,
        cause=status.blind_cause if cause else status.cause,
        incident_since=since,
        now=status.checked_at,
        reminder=reminder,
    )
    return make_alert(event, status.subject, facts, context)


def acknowledge(status: TargetStatus, published: set[str]) -> TargetStatus:
    """The status once the alerts with these ids have been published."""
    return replace(status, pending=tuple(a for a in status.pending if a.id not in published))
