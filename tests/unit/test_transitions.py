"""The alert state machine, transition by transition. Pure: microseconds, no I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from connector_monitor.domain.alerts import AlertEvent
from connector_monitor.domain.results import Cause, CheckResult, State
from connector_monitor.domain.targets import ConfigIssue, Target
from connector_monitor.domain.transitions import (
    CLOCK_SKEW,
    Step,
    TargetStatus,
    Thresholds,
    acknowledge,
    advance,
    has_open_incident,
    retire,
)

TARGET = Target("example.bitrix24.com", "myconnector", 12)
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)

DOWN = AlertEvent.CONNECTOR_DOWN.value
RECOVERED = AlertEvent.CONNECTOR_RECOVERED.value
FAILED = AlertEvent.CHECK_FAILED.value
SEEN_AGAIN = AlertEvent.CHECK_RECOVERED.value


def result(code: str, at: datetime) -> CheckResult:
    """U = STATUS true, D = CONFIGURED false, E = ERROR true, ? = portal failing, C = config."""
    if code == "U":
        return CheckResult.from_flags(
            TARGET, configured=True, error=False, status=True, checked_at=at
        )
    if code == "D":
        return CheckResult.from_flags(
            TARGET, configured=False, error=False, status=False, checked_at=at
        )
    if code == "E":
        return CheckResult.from_flags(
            TARGET, configured=True, error=True, status=False, checked_at=at
        )
    if code == "?":
        return CheckResult.unknown(TARGET, Cause.PORTAL_FAILING, "HTTP 502", checked_at=at)
    return CheckResult.unknown(TARGET, Cause.CONFIGURATION, "line 12 does not exist", checked_at=at)


def play(
    answers: str, thresholds: Thresholds | None = None
) -> tuple[list[list[str]], TargetStatus]:
    """Feed answers one run apart; return the events each run produced and the final status."""
    th = thresholds or Thresholds(failure=2, recovery=1)
    status: TargetStatus | None = None
    events: list[list[str]] = []
    for i, code in enumerate(answers):
        step = advance(status, result(code, T0 + i * STEP), th)
        events.append([a.event.value for a in step.alerts])
        status = step.status
    assert status is not None
    return events, status


def flat(events: list[list[str]]) -> list[str]:
    return [e for run in events for e in run]


def test_a_healthy_connector_never_alerts() -> None:
    events, status = play("UUUUU")
    assert flat(events) == []
    assert status.state is State.UP
    assert status.since == T0


def test_one_bad_answer_below_the_threshold_pages_nobody() -> None:
    events, status = play("UDU")
    assert flat(events) == []
    assert status.down_since is None


def test_down_alert_after_the_threshold_then_silence_then_one_recovery() -> None:
    events, status = play("UDDDDU")
    assert events == [[], [], [DOWN], [], [], [RECOVERED]]
    assert status.down_since is None
    assert status.state is State.UP


def test_the_incident_starts_at_the_first_down_answer() -> None:
    _, status = play("UDD")
    alert = status.pending[0]
    assert alert.event is AlertEvent.CONNECTOR_DOWN
    assert alert.id.endswith((T0 + STEP).strftime("%Y-%m-%dT%H:%M:%SZ"))


def test_threshold_of_one_alerts_on_the_first_down() -> None:
    events, _ = play("UD", Thresholds(failure=1))
    assert events == [[], [DOWN]]


def test_unknown_in_the_middle_of_an_incident_fakes_no_recovery_and_no_second_down() -> None:
    events, status = play("DD?DD?DU")
    assert flat(events) == [DOWN, RECOVERED]
    assert status.down_since is None


def test_unknown_does_not_reset_a_down_streak() -> None:
    # UNKNOWN neither advances nor resets the streak of seen answers.
    events, _ = play("UD?D")
    assert flat(events) == [DOWN]


def test_unknown_does_not_count_as_down() -> None:
    events, _ = play("U?D")
    assert flat(events) == []


def test_blind_for_the_threshold_raises_check_failed_once_then_check_recovered() -> None:
    events, status = play("U????U")
    assert events == [[], [], [FAILED], [], [], [SEEN_AGAIN]]
    assert status.blind_since is None


def test_the_recovery_of_a_blind_spell_names_the_spell_s_cause() -> None:
    """An account manager's subscription on `cause` gets the "seen again" too."""
    _, status = play("U??U")
    failed, seen = status.pending
    assert failed.attributes["cause"] == seen.attributes["cause"] == "portal_failing"
    assert seen.subject.startswith("CHECK OK after PORTAL FAILING: ")
    assert "Not seen:" in seen.message and "Outage" not in seen.message
    assert status.blind_cause is None


def test_blindness_is_never_connector_down() -> None:
    events, _ = play("?" * 10)
    assert flat(events) == [FAILED]


def test_a_configuration_error_raises_check_failed_at_once() -> None:
    events, status = play("CC")
    assert events == [[FAILED], []]
    assert status.pending[0].message.count("Targets parameter") == 1


def test_recovery_threshold_needs_consecutive_up_answers() -> None:
    events, _ = play("DDUDUU", Thresholds(failure=2, recovery=2))
    assert flat(events) == [DOWN, RECOVERED]
    assert events[5] == [RECOVERED]


def test_blind_then_seen_down_gives_check_recovered_and_then_down() -> None:
    events, _ = play("??DD")
    assert events == [[], [FAILED], [SEEN_AGAIN], [DOWN]]


def test_reminders_while_still_down_when_enabled() -> None:
    th = Thresholds(failure=2, recovery=1, renotify=timedelta(minutes=10))
    events, status = play("DDDDDDU", th)
    assert flat(events) == [DOWN, DOWN, DOWN, RECOVERED]
    reminders = [a for a in status.pending if "STILL DOWN" in a.subject]
    assert len(reminders) == 2
    assert len({a.id for a in status.pending}) == len(status.pending)


def test_no_reminders_by_default() -> None:
    events, _ = play("D" * 20)
    assert flat(events) == [DOWN]


def test_streaks_saturate_so_a_steady_target_stops_changing() -> None:
    _, before = play("UUUU")
    step = advance(before, result("U", T0 + 10 * STEP), Thresholds())
    assert step.status.same_as(before)
    assert step.status.checked_at != before.checked_at


def test_a_changed_answer_is_a_change_even_in_the_same_state() -> None:
    _, before = play("DDD")
    step = advance(before, result("E", T0 + 10 * STEP), Thresholds())
    assert not step.status.same_as(before)
    assert step.alerts == ()
    assert step.status.error is True


def test_alerts_stay_pending_until_acknowledged() -> None:
    _, status = play("UDDUDD")
    assert [a.event.value for a in status.pending] == [DOWN, RECOVERED, DOWN]
    first = status.pending[0].id
    remaining = acknowledge(status, {first})
    assert [a.id for a in remaining.pending] == [a.id for a in status.pending[1:]]


def test_a_second_incident_has_its_own_alert_id() -> None:
    _, status = play("DDUDD")
    downs = [a for a in status.pending if a.event is AlertEvent.CONNECTOR_DOWN]
    assert len(downs) == 2
    assert downs[0].id != downs[1].id


def test_down_alert_says_what_the_portal_answered_and_what_to_do() -> None:
    _, status = play("EE")
    alert = status.pending[0]
    assert alert.attributes == {
        "event": "connector.down",
        "portal": "example.bitrix24.com",
        "connector": "myconnector",
        "line": "12",
        "severity": "critical",
        "cause": "connector_down",
        "targets": "1",
    }
    assert alert.subject.startswith("CONNECTOR DOWN: myconnector on line 12 at ")
    assert "ERROR=true" in alert.message
    assert "imconnector.activate" in alert.message
    assert len(alert.subject) <= 100


def test_not_configured_alert_says_reconnect() -> None:
    _, status = play("DD")
    assert "CONFIGURED=false" in status.pending[0].message
    assert "reconnect" in status.pending[0].message


def test_bad_targets_entry_is_followed_like_a_target() -> None:
    bad = ConfigIssue(
        "x.bitrix24.com/tg/abc",
        "the open line 'abc' is not a whole number",
        "x.bitrix24.com",
        "tg",
        "abc",
    )
    first = advance(
        None, CheckResult.unknown(bad, Cause.CONFIGURATION, bad.reason, checked_at=T0), Thresholds()
    )
    assert [a.event for a in first.alerts] == [AlertEvent.CHECK_FAILED]
    assert first.alerts[0].attributes["line"] == "abc"
    again = advance(
        first.status,
        CheckResult.unknown(bad, Cause.CONFIGURATION, bad.reason, checked_at=T0 + STEP),
        Thresholds(),
    )
    assert again.alerts == ()


@pytest.mark.parametrize(("failure", "recovery"), [(0, 1), (1, 0)])
def test_thresholds_must_be_positive(failure: int, recovery: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Thresholds(failure, recovery)


def test_subject_is_ascii_and_short_even_for_odd_entries() -> None:
    bad = ConfigIssue("пример.рф/" + "x" * 200, "not a portal domain")
    step = advance(
        None, CheckResult.unknown(bad, Cause.CONFIGURATION, bad.reason, checked_at=T0), Thresholds()
    )
    subject = step.alerts[0].subject
    assert subject.isascii()
    assert len(subject) <= 100


# ---- a target that leaves the configuration -----------------------------------------------------


def test_a_removed_target_with_an_open_outage_gets_one_closing_alert() -> None:
    _, status = play("DD")  # connector.down sent
    status = acknowledge(status, {a.id for a in status.pending})

    step = retire(status, T0 + 10 * STEP)

    assert [a.event.value for a in step.alerts] == [RECOVERED]
    closing = step.alerts[0]
    assert closing.closing
    assert "NO LONGER MONITORED" in closing.subject
    assert "no longer monitored" in closing.message
    assert "does not say the connector works" in closing.message
    assert not has_open_incident(step.status)
    assert retire(step.status, T0 + 11 * STEP).alerts == ()  # once


def test_a_removed_target_that_was_blind_closes_its_check_failed() -> None:
    _, status = play("??")
    step = retire(status, T0 + 3 * STEP)
    assert [a.event.value for a in step.alerts] == [SEEN_AGAIN]
    assert step.alerts[0].closing


def test_a_removed_healthy_target_owes_nothing() -> None:
    _, status = play("UUD")
    assert retire(status, T0 + 4 * STEP) == Step(status)


def test_a_closing_alert_follows_the_pending_down_alert() -> None:
    _, status = play("DD")  # connector.down decided, not yet published
    step = retire(status, T0 + 3 * STEP)
    assert [a.event.value for a in step.status.pending] == [DOWN, RECOVERED]


# ---- clocks -------------------------------------------------------------------------------------


def test_an_answer_slightly_older_than_the_stored_one_adds_nothing() -> None:
    """An overlapping run that finishes late: its answer is no news."""
    _, status = play("U")
    late = advance(status, result("D", T0 - timedelta(minutes=2)), Thresholds())
    assert late == Step(status)


def test_a_status_stored_from_a_clock_a_day_ahead_does_not_freeze_the_target() -> None:
    _, status = play("U")
    ahead = replace(status, checked_at=T0 + timedelta(days=1))
    th = Thresholds(failure=2, recovery=1)

    first = advance(ahead, result("D", T0 + STEP), th)
    second = advance(first.status, result("D", T0 + 2 * STEP), th)

    assert first.skew is not None and first.skew > CLOCK_SKEW
    assert first.status.checked_at == T0 + STEP
    assert [a.event.value for a in second.alerts] == [DOWN]
    assert second.skew is None
