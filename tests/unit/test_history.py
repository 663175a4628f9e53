"""Incidents and uptime from a target's history: what `GET /history`, the status page and
`monitorctl history` report. The records are made the way the checker makes them (the state
machine's alerts), so a change of the alert ids' shape fails here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector_monitor.domain.alerts import Alert, AlertEvent
from connector_monitor.domain.history import (
    DayMark,
    HistoryRecord,
    IncidentKind,
    days,
    incident_start,
    incidents,
    uptime,
    with_open_incidents,
)
from connector_monitor.domain.results import Cause, CheckResult, State
from connector_monitor.domain.targets import Target
from connector_monitor.domain.transitions import TargetStatus, Thresholds, advance

TARGET = Target("client.bitrix24.com", "myconnector", 12)
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)


def record(alert: Alert) -> HistoryRecord:
    """A stored alert read back, as the history reader reads it."""
    since, reminder = incident_start(alert.id, alert.created_at)
    cause = alert.cause.value if alert.cause else None
    return HistoryRecord(alert.event, alert.created_at, since, cause, reminder, alert.closing)


def run(answers: list[tuple[datetime, State]], renotify: timedelta | None = None) -> list[Alert]:
    """Feed answers through the state machine (threshold 2); every alert it decided."""
    status: TargetStatus | None = None
    alerts: list[Alert] = []
    for at, state in answers:
        if state is State.UNKNOWN:
            result = CheckResult.unknown(TARGET, Cause.AUTH_LOST, "token revoked", checked_at=at)
        else:
            up = state is State.UP
            result = CheckResult.from_flags(
                TARGET, configured=True, error=not up, status=up, checked_at=at
            )
        step = advance(status, result, Thresholds(failure=2, renotify=renotify))
        status, alerts = step.status, alerts + list(step.alerts)
    return alerts


def every(start: datetime, count: int, state: State, step: timedelta = H) -> list:
    return [(start + i * step, state) for i in range(count)]


def test_an_outage_is_one_incident_from_its_first_bad_answer_to_its_recovery() -> None:
    start = NOW - 10 * H
    answers = every(start, 2, State.UP) + every(start + 2 * H, 3, State.DOWN)
    alerts = run([*answers, (start + 5 * H, State.UP)])
    (incident,) = incidents(TARGET.key, [record(a) for a in alerts])
    assert incident.kind is IncidentKind.DOWN
    assert incident.start == start + 2 * H  # the first DOWN answer, not the alert's time
    assert incident.end == start + 5 * H
    assert incident.duration(NOW) == 3 * H
    assert incident.cause == "connector_down"


def test_reminders_add_no_incident_and_an_unanswered_down_stays_open() -> None:
    alerts = run(every(NOW - 10 * H, 10, State.DOWN), renotify=2 * H)
    assert len([a for a in alerts if a.event is AlertEvent.CONNECTOR_DOWN]) > 1  # reminders
    (incident,) = incidents(TARGET.key, [record(a) for a in alerts])
    assert incident.open and incident.start == NOW - 10 * H
    assert incident.duration(NOW) == 10 * H


def test_a_recovery_whose_opening_record_expired_still_gives_the_whole_incident() -> None:
    alerts = run([*every(NOW - 6 * H, 2, State.DOWN), (NOW - H, State.UP)])
    recovery = [record(a) for a in alerts if a.event is AlertEvent.CONNECTOR_RECOVERED]
    (incident,) = incidents(TARGET.key, recovery)
    assert (incident.start, incident.end) == (NOW - 6 * H, NOW - H)


def test_blind_time_is_counted_apart_never_as_downtime() -> None:
    # 2 h DOWN, then 4 h the monitor could not see (auth lost), then UP again.
    answers = every(NOW - 10 * H, 2, State.DOWN) + every(NOW - 8 * H, 4, State.UNKNOWN)
    answers += [(NOW - 4 * H, State.UP)]
    found = incidents(TARGET.key, [record(a) for a in run(answers)])
    assert {i.kind for i in found} == {IncidentKind.DOWN, IncidentKind.BLIND}
    blind = next(i for i in found if i.kind is IncidentKind.BLIND)
    assert blind.cause == "auth_lost" and blind.end == NOW - 4 * H
    day = uptime(found, timedelta(days=1), NOW)
    assert day.blind == 4 * H  # its own bucket
    assert day.down == 2 * H  # the DOWN incident minus the blind spell inside it
    assert day.up == 18 * H
    assert day.percent is not None and round(day.percent, 3) == round(100 * 18 / 20, 3)
    assert round(day.blind_percent, 3) == round(100 * 4 / 24, 3)


def test_windows_count_only_what_falls_inside_them() -> None:
    alerts = run(
        [
            *every(NOW - 3 * timedelta(days=1), 2, State.DOWN),
            (NOW - 3 * timedelta(days=1) + 2 * H, State.UP),
        ]
    )
    found = incidents(TARGET.key, [record(a) for a in alerts])
    assert uptime(found, timedelta(days=1), NOW).percent == 100.0
    week = uptime(found, timedelta(days=7), NOW)
    assert week.down == 2 * H and week.up == 7 * 24 * H - 2 * H


def test_a_window_the_monitor_never_saw_has_no_percentage() -> None:
    found = incidents(TARGET.key, [record(a) for a in run(every(NOW - 30 * H, 31, State.UNKNOWN))])
    day = uptime(found, timedelta(days=1), NOW)
    assert day.percent is None and day.blind == 24 * H and day.down == timedelta(0)


def test_days_mark_downtime_before_blindness_and_end_with_today() -> None:
    answers = [
        *every(NOW - 2 * timedelta(days=1), 2, State.DOWN),
        (NOW - 2 * timedelta(days=1) + 3 * H, State.UP),
    ]
    answers += [*every(NOW - 5 * H, 3, State.UNKNOWN), (NOW - H, State.UP)]
    marks = days(incidents(TARGET.key, [record(a) for a in run(answers)]), NOW, count=4)
    assert [d.mark for d in marks] == [DayMark.UP, DayMark.DOWN, DayMark.UP, DayMark.BLIND]
    assert marks[-1].start == datetime(2026, 12, 6, tzinfo=UTC)


def test_the_status_completes_an_open_incident_older_than_the_history() -> None:
    since = NOW - timedelta(days=40)
    found = with_open_incidents([], TARGET.key, down_since=since, blind_since=None, cause=None)
    (incident,) = found
    assert incident.open and incident.start == since and incident.kind is IncidentKind.DOWN
    assert uptime(found, timedelta(days=30), NOW).percent == 0.0


def test_an_alert_id_of_another_shape_falls_back_to_its_time() -> None:
    assert incident_start("something else", NOW) == (NOW, False)


def test_the_status_of_an_incident_the_history_holds_adds_no_second_one() -> None:
    # A real run's clock has microseconds; the alert ids keep whole seconds.
    start = NOW - 5 * H + timedelta(microseconds=654321)
    alerts = run(every(start, 3, State.DOWN))
    found = incidents(TARGET.key, [record(a) for a in alerts])
    completed = with_open_incidents(
        found, TARGET.key, down_since=start, blind_since=None, cause=None
    )
    assert completed == found and len(found) == 1
