"""Alert wording and grouping: what lands in a person's inbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector_monitor.domain.alerts import AlertEvent, Facts, combine, make_alert
from connector_monitor.domain.results import Cause
from connector_monitor.domain.targets import Target
from connector_monitor.domain.text import MESSAGE_LIMIT

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


def test_lost_authorisation_names_the_command_that_stores_a_fleet_portals_new_pair() -> None:
    ((message, _),) = combine([alert(AlertEvent.CHECK_FAILED, 7)])
    assert "in the secret" in message.message  # a small stack's portal
    assert "`monitorctl tokens set a.bitrix24.com`" in message.message  # a fleet portal's
    # the way that needs no tokens copied by hand: the stack's own re-authorisation link
    assert "`monitorctl portals authorize a.bitrix24.com`" in message.message


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


def config_alert(line: int, portal: str = "a.bitrix24.com"):  # type: ignore[no-untyped-def]
    facts = Facts(
        detail="open line 99 does not exist on the portal",
        status=None,
        configured=None,
        error=None,
        cause=Cause.CONFIGURATION,
        incident_since=T0,
        now=T0,
    )
    return make_alert(AlertEvent.CHECK_FAILED, Target(portal, "tg", line), facts)


def test_misconfigured_targets_on_a_healthy_portal_do_not_read_as_an_outage() -> None:
    messages = combine([config_alert(n) for n in range(1, 6)])
    (message, members) = messages[0]
    assert len(messages) == 1 and len(members) == 5
    assert message.subject == "MISCONFIGURED: 5 targets at a.bitrix24.com"
    assert "misconfigured (the portal itself answers)" in message.message
    assert "CHECK FAILED" not in message.subject


def test_blindness_and_misconfiguration_on_one_portal_are_two_messages() -> None:
    blind = [alert(AlertEvent.CHECK_FAILED, n) for n in (1, 2)]
    wrong = [config_alert(n) for n in (3, 4)]
    subjects = sorted(m.subject for m, _ in combine(blind + wrong))
    assert subjects == [
        "CHECK FAILED: 2 targets at a.bitrix24.com",
        "MISCONFIGURED: 2 targets at a.bitrix24.com",
    ]


def test_an_alert_message_is_bounded_whatever_the_detail() -> None:
    facts = Facts(
        detail="x" * 1_000_000,
        status=None,
        configured=None,
        error=None,
        cause=Cause.BAD_ANSWER,
        incident_since=T0,
        now=T0,
    )
    made = make_alert(AlertEvent.CHECK_FAILED, Target("a.bitrix24.com", "tg", 1), facts)
    assert len(made.message) <= MESSAGE_LIMIT
    grouped, _ = combine([made, *[alert(AlertEvent.CHECK_FAILED, n) for n in range(2, 200)]])[0]
    assert len(grouped.message) <= MESSAGE_LIMIT
