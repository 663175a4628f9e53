"""Silences and acknowledgement, pure: what is held, what is released, what an acknowledged
incident stops sending. Microseconds, no I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from connector_monitor.domain.alerts import Alert, AlertEvent
from connector_monitor.domain.results import Cause, CheckResult, State
from connector_monitor.domain.silences import (
    Matcher,
    Silence,
    SilenceError,
    apply_silences,
    matcher_of,
)
from connector_monitor.domain.targets import Target
from connector_monitor.domain.transitions import TargetStatus, Thresholds, advance

PORTAL = "client.bitrix24.com"
TARGET = Target(PORTAL, "myconnector", 12)
OTHER = Target("other.bitrix24.com", "myconnector", 12)
T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)
TH = Thresholds(failure=1, recovery=1, renotify=timedelta(minutes=10))


def answer(target: Target, code: str, at: datetime) -> CheckResult:
    if code == "?":
        return CheckResult.unknown(target, Cause.ACCESS_DENIED, "PAYMENT_REQUIRED", checked_at=at)
    up = code == "U"
    return CheckResult.from_flags(target, configured=True, error=False, status=up, checked_at=at)


def silence(matcher: Matcher, *, until: datetime = T0 + timedelta(hours=1)) -> Silence:
    return Silence("s1", matcher, until, "arn:aws:iam::1:user/ops", "maintenance", T0 - STEP)


class World:
    """One target run after run through the state machine and the silences, as the cycle does:
    what is stored, and what is published (pending alerts, delivered at once)."""

    def __init__(self, target: Target = TARGET) -> None:
        self.target = target
        self.status: TargetStatus | None = None
        self.published: list[Alert] = []
        self.history: list[Alert] = []
        self.held = 0

    def run(self, code: str, at: datetime, silences: list[Silence]) -> None:
        step = advance(self.status, answer(self.target, code, at), TH)
        decided = {self.target.key: step.alerts} if step.alerts else {}
        stored = [self.status] if self.status else []
        outcome = apply_silences([step.status], decided, stored, silences, at)
        (status,) = outcome.statuses
        self.held += outcome.held
        self.history += outcome.alerts.get(self.target.key, ())
        self.published += status.pending
        self.status = replace(status, pending=())


def test_a_silenced_outage_is_held_and_its_history_kept() -> None:
    world = World()
    mute = [silence(matcher_of(portal=PORTAL))]
    world.run("U", T0, mute)
    world.run("D", T0 + STEP, mute)
    world.run("D", T0 + 4 * STEP, mute)  # a reminder would be due: held too

    assert world.published == []
    assert [a.event for a in world.history] == [AlertEvent.CONNECTOR_DOWN] * 2
    assert world.held == 2
    assert world.status is not None and world.status.state is State.DOWN  # state goes on
    assert world.status.held_since == T0 + STEP


def test_a_target_still_down_when_the_silence_ends_is_announced_once() -> None:
    world = World()
    mute = [silence(matcher_of(portal=PORTAL), until=T0 + 2 * STEP)]
    world.run("D", T0, mute)
    world.run("D", T0 + STEP, mute)
    world.run("D", T0 + 2 * STEP, mute)  # the silence ended at this moment
    world.run("D", T0 + 3 * STEP, mute)

    (announced,) = world.published
    assert announced.event is AlertEvent.CONNECTOR_DOWN
    assert announced.attributes["portal"] == PORTAL
    assert "A silence held this alert since 2026-12-06T12:00:00Z" in announced.message
    assert "Since:     2026-12-06T12:00:00Z" in announced.message  # the outage's own start
    assert world.status is not None and world.status.held_since is None


def test_a_target_that_recovered_inside_the_silence_announces_nothing() -> None:
    world = World()
    mute = [silence(matcher_of(portal=PORTAL), until=T0 + 3 * STEP)]
    world.run("D", T0, mute)
    world.run("U", T0 + STEP, mute)
    world.run("U", T0 + 3 * STEP, mute)
    world.run("D", T0 + 4 * STEP, mute)  # a new outage after the silence: announced as ever

    assert [a.event for a in world.published] == [AlertEvent.CONNECTOR_DOWN]
    assert "silence" not in world.published[0].message


def test_recovering_in_the_run_that_ends_the_silence_announces_nothing() -> None:
    world = World()
    world.run("D", T0, [silence(matcher_of(portal=PORTAL), until=T0 + STEP)])
    world.run("U", T0 + STEP, [])

    assert world.published == []
    assert [a.event for a in world.history][-1] is AlertEvent.CONNECTOR_RECOVERED


def test_removing_the_silence_releases_like_its_end() -> None:
    world = World()
    world.run("D", T0, [silence(matcher_of(connector="myconnector"))])
    world.run("D", T0 + STEP, [])  # removed before it ran out

    assert [a.event for a in world.published] == [AlertEvent.CONNECTOR_DOWN]


def test_a_blind_spell_still_open_is_announced_as_a_check_failure() -> None:
    world = World()
    world.run("?", T0, [silence(matcher_of(cause="access_denied"))])
    world.run("?", T0 + STEP, [])

    assert [a.event for a in world.published] == [AlertEvent.CHECK_FAILED]


@pytest.mark.parametrize(
    ("matcher", "covered"),
    [
        (matcher_of(portal="CLIENT.bitrix24.com"), True),
        (matcher_of(portal=PORTAL, connector="MyConnector"), True),
        (matcher_of(portal=PORTAL, connector="myconnector", line="12"), True),
        (matcher_of(portal=PORTAL, connector="myconnector", line=13), False),
        (matcher_of(connector="otherconnector"), False),
        (matcher_of(portal="other.bitrix24.com"), False),
        (matcher_of(cause="access_denied"), False),  # the target is DOWN, not blind
        (matcher_of(portal="*", connector="myconnector", line="*"), True),
    ],
)
def test_what_a_silence_covers(matcher: Matcher, covered: bool) -> None:
    world = World()
    world.run("D", T0, [silence(matcher)])
    assert (world.published == []) is covered


def test_other_portals_are_not_held() -> None:
    world = World(OTHER)
    world.run("D", T0, [silence(matcher_of(portal=PORTAL))])
    assert [a.event for a in world.published] == [AlertEvent.CONNECTOR_DOWN]


def test_an_expired_or_future_silence_holds_nothing() -> None:
    ended = silence(matcher_of(portal=PORTAL), until=T0)
    world = World()
    world.run("D", T0, [ended])
    assert len(world.published) == 1
    assert not replace(ended, created_at=T0 - 2 * STEP, until=T0 + STEP).active(T0 - 3 * STEP)


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ({}, "needs a portal, a connector or a cause"),
        ({"line": "3"}, "needs a portal, a connector or a cause"),
        ({"connector": "c", "line": "3"}, "needs its portal and connector"),
        ({"portal": "https://x.bitrix24.com"}, "not a portal domain"),
        ({"connector": "a.b"}, "not a connector id"),
        ({"portal": "x.bitrix24.com", "connector": "c", "line": "two"}, "not a whole number"),
        ({"cause": "unpaid"}, "unknown cause 'unpaid'"),
    ],
)
def test_a_silence_that_cannot_be_made_says_why(parts: dict[str, str], message: str) -> None:
    with pytest.raises(SilenceError, match=message):
        matcher_of(**parts)


def test_a_silence_needs_a_reason_and_an_end_after_its_start() -> None:
    matcher = matcher_of(portal=PORTAL)
    with pytest.raises(SilenceError, match="say why"):
        Silence("s", matcher, T0 + STEP, "ops", "  ", T0)
    with pytest.raises(SilenceError, match="end after it begins"):
        Silence("s", matcher, T0, "ops", "why", T0)


# ---- acknowledgement ---------------------------------------------------------------------------
def test_an_acknowledged_incident_gets_no_reminders_but_its_recovery_and_the_next_one_do() -> None:
    world = World()
    world.run("D", T0, [])
    assert world.status is not None and world.status.down_since is not None
    world.status = replace(world.status, acked_since=world.status.down_since, acked_by="ops")
    for i in range(1, 6):
        world.run("D", T0 + i * STEP, [])  # reminders every 10 minutes would be due
    world.run("U", T0 + 6 * STEP, [])
    world.run("D", T0 + 7 * STEP, [])
    world.run("D", T0 + 10 * STEP, [])  # the new incident is not acknowledged: reminded

    events = [(a.event, "reminder" in a.message) for a in world.published]
    assert events == [
        (AlertEvent.CONNECTOR_DOWN, False),
        (AlertEvent.CONNECTOR_RECOVERED, False),
        (AlertEvent.CONNECTOR_DOWN, False),
        (AlertEvent.CONNECTOR_DOWN, True),
    ]
