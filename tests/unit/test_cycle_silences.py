"""The silences' seam in the check cycle (`CheckCycle._apply_silences`), on the in-memory world
of test_cycle.py: held alerts are recorded and counted, never published; the release after the
silence announces a target still down once."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from connector_monitor.cycle import CheckCycle, CycleSettings
from connector_monitor.domain.silences import Silence, matcher_of
from connector_monitor.domain.targets import Target
from connector_monitor.ports.state_store import StateStoreError
from tests.unit.test_cycle import CONNECTOR, T0, A, B, Setup, key, targets


@dataclass
class Silences:
    held: list[Silence] = field(default_factory=list)

    def silences(self) -> list[Silence]:
        return list(self.held)


@dataclass
class SilencedSetup(Setup):
    silences: Silences = field(default_factory=Silences)

    def cycle(self, probe_budget: int = CycleSettings.probe_budget) -> CheckCycle:
        cycle = super().cycle(probe_budget)
        cycle.silences = self.silences
        return cycle


def test_a_silenced_portal_is_held_counted_and_announced_once_when_the_silence_ends() -> None:
    setup = SilencedSetup()
    mute = Silence("m", matcher_of(portal=A), T0 + timedelta(minutes=30), "ops", "upgrade", T0)
    setup.silences.held.append(mute)
    both = targets(1).merged(targets(1, portal=B))
    setup.run(both)
    setup.world.down |= {Target(A, CONNECTOR, 1), Target(B, CONNECTOR, 1)}
    setup.run(both)
    summary = setup.run(both)

    assert setup.events() == [("connector.down", "1")]  # B's; A's is held
    assert setup.publisher.sent == []
    assert summary.alerts_held == 1 and summary.as_dict()["alerts_held"] == 1
    assert [a.event.value for a in setup.store.history[key(1)]] == ["connector.down"]
    assert setup.store.statuses[key(1)].pending == ()  # held is not pending: nothing to retry

    setup.run(both)
    assert setup.events() == []  # still silenced
    setup.silences.held.clear()  # removed (or expired)
    setup.run(both)
    sent = setup.publisher.sent
    assert [(a.event.value, a.portal) for a in sent] == [("connector.down", A)]
    assert "A silence held this alert since" in sent[0].message
    setup.events()
    setup.run(both)
    assert setup.events() == []  # announced once


@dataclass
class UnreadableSilences:
    def silences(self) -> list[Silence]:
        raise StateStoreError("DynamoDB could not read the silences: ThrottlingException")


def test_unreadable_silences_fail_the_run_before_anything_is_stored() -> None:
    setup = SilencedSetup()
    setup.run(targets(1))
    stored = dict(setup.store.statuses)
    setup.world.down.add(Target(A, CONNECTOR, 1))
    setup.silences = UnreadableSilences()  # type: ignore[assignment]

    with pytest.raises(StateStoreError, match="silences"):
        setup.run(targets(1))
    assert setup.store.statuses == stored  # nothing decided is half-stored or lost
    assert setup.publisher.sent == []
