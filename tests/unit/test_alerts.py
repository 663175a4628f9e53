"""Alert wording and grouping: what lands in a person's inbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector_monitor.domain.alerts import AlertEvent, Facts, combine, make_alert
from connector_monitor.domain.results import Cause
from connector_monitor.domain.targets import Target

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def alert(event: AlertEvent, line: int, portal: str = "a.bitrix24.com", minutes: int = 0):  # type: ignore[no-untyped-def]
    facts = Facts(
        detail="a.bitrix24.com: auth_lost (invalid_token)",
        status=None,
        configured=None,
        error=None,
        cause=Cause.AUTH_LOST,
        incident_since=T0,
        now=T0 + timedelta(minutes=minutes),
    )
    return make_alert(event, Target(portal, "tg", line), facts)


def test_blindness_on_one_portal_is_one_message() -> None:
    alerts = [alert(AlertEvent.CHECK_FAILED, n) for n in range(1, 61)]
    messages = combine(alerts)
    assert len(messages) == 1
    message, members = messages[0]
    assert len(members) == 60
    assert message.attributes["connector"] == "*"
    assert message.attributes["line"] == "*"
    assert message.attributes["event"] == "check.failed"
    assert "60 targets" in message.subject
    assert "and 10 more" in message.message


def test_outages_are_never_merged() -> None:
    alerts = [alert(AlertEvent.CONNECTOR_DOWN, n) for n in range(1, 4)]
    assert [len(members) for _, members in combine(alerts)] == [1, 1, 1]


def test_groups_are_per_portal_and_event_in_time_order() -> None:
    alerts = [
        alert(AlertEvent.CHECK_FAILED, 1, "a.bitrix24.com"),
        alert(AlertEvent.CHECK_FAILED, 2, "b.bitrix24.com"),
        alert(AlertEvent.CONNECTOR_DOWN, 3, "a.bitrix24.com", minutes=-1),
    ]
    events = [(m.event.value, m.portal, len(ms)) for m, ms in combine(alerts)]
    assert events == [
        ("connector.down", "a.bitrix24.com", 1),
        ("check.failed", "a.bitrix24.com", 1),
        ("check.failed", "b.bitrix24.com", 1),
    ]


def test_a_single_check_failed_keeps_its_own_attributes() -> None:
    ((message, _),) = combine([alert(AlertEvent.CHECK_FAILED, 7)])
    assert message.attributes["line"] == "7"
    assert "re-authorise" in message.message


def test_a_down_alert_says_how_long_ago_and_a_recovery_how_long_it_lasted() -> None:
    base = Facts(None, False, False, False, None, incident_since=T0, now=T0 + timedelta(minutes=10))
    down = make_alert(AlertEvent.CONNECTOR_DOWN, Target("a.bitrix24.com", "tg", 1), base)
    assert "Since:     2026-11-24T12:00:00Z (10 min ago)" in down.message
    later = Facts(None, True, True, False, None, incident_since=T0, now=T0 + timedelta(hours=3))
    up = make_alert(AlertEvent.CONNECTOR_RECOVERED, Target("a.bitrix24.com", "tg", 1), later)
    assert "Outage:    2026-11-24T12:00:00Z to 2026-11-24T15:00:00Z (3 h 0 min)" in up.message
