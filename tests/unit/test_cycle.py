"""The check cycle on in-memory collaborators: the state store of tests/memory_state.py, portals
that answer from a table, a publisher that collects. No moto, no HTTP: claims, conflicts,
portal errors, validation and retirement decided in milliseconds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from connector_monitor.cycle import CheckCycle, CycleSettings
from connector_monitor.deadline import Deadline
from connector_monitor.domain.alerts import Alert
from connector_monitor.domain.inventory import Inventory, LineInfo
from connector_monitor.domain.portal_errors import ErrorKind, PortalError
from connector_monitor.domain.results import Cause, CheckResult, State
from connector_monitor.domain.targets import Target, TargetList, parse_targets
from connector_monitor.domain.transitions import Thresholds
from connector_monitor.ports.alerts import PublishError
from connector_monitor.ports.portal import PortalCheck
from connector_monitor.ports.state_store import Claim, StateStoreError
from connector_monitor.tokens.credentials import PortalCredentials
from connector_monitor.tokens.ports import TokenSource
from tests.memory_state import MemoryStateStore

A, B = "a.bitrix24.com", "b.bitrix24.com"
CONNECTOR = "myconnector"
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float = 5) -> None:
        self.now += timedelta(minutes=minutes)


@dataclass
class World:
    """Portals answering from `down` (targets whose connector is down) and `failing`
    (portals answering an error), with `lines` per portal in their inventory."""

    clock: Clock = field(default_factory=Clock)
    down: set[Target] = field(default_factory=set)
    failing: dict[str, PortalError] = field(default_factory=dict)
    lines: dict[str, dict[int, LineInfo]] = field(default_factory=dict)
    connectors_listed: bool = True
    unconfigured: set[Target] = field(default_factory=set)  # answer CONFIGURED=false
    unanswered: set[Target] = field(default_factory=set)  # answer UNKNOWN (throttled)
    incomplete: bool = False  # the inventory's lines may not all be there
    asked: list[Target] = field(default_factory=list)
    inventories_read: list[str] = field(default_factory=list)

    def client(self, portal: str, tokens: TokenSource) -> FakeClient:
        return FakeClient(self, portal)


@dataclass
class FakeClient:
    world: World
    portal: str
    http_requests: int = 0

    def inventory(self, deadline: Deadline) -> Inventory:
        self.http_requests += 1
        self.world.inventories_read.append(self.portal)
        if (failure := self.world.failing.get(self.portal)) is not None:
            raise failure
        connectors = frozenset({CONNECTOR}) if self.world.connectors_listed else None
        lines = self.world.lines.get(self.portal, {n: LineInfo(f"L{n}", True) for n in (1, 2)})
        return Inventory(connectors, lines, complete=not self.world.incomplete)

    def check(self, targets: Sequence[Target], deadline: Deadline) -> PortalCheck:
        self.http_requests += 1
        self.world.asked += targets
        at = self.world.clock()
        failure = self.world.failing.get(self.portal)
        if failure is not None:
            return PortalCheck(
                [
                    CheckResult.unknown(t, failure.kind.cause, failure.detail, checked_at=at)
                    for t in targets
                ]
            )
        return PortalCheck(
            [
                CheckResult.unknown(t, Cause.RATE_LIMITED, "throttled", checked_at=at)
                if t in self.world.unanswered
                else CheckResult.from_flags(
                    t,
                    configured=t not in self.world.unconfigured,
                    error=t in self.world.down,
                    status=t not in self.world.down and t not in self.world.unconfigured,
                    checked_at=at,
                )
                for t in targets
            ]
        )

    def close(self) -> None:
        pass


@dataclass
class Tokens:
    held: list[str] = field(default_factory=lambda: [A, B])  # the portals with pairs
    unreadable: bool = False
    loads: int = 0
    refreshed: int = 0
    refreshing: int = 0  # pairs each load pretends the run's portals will be handed
    deleted: dict[str, dict[int, datetime]] = field(default_factory=dict)  # line-delete marks
    ended: int = 0  # runs that gave back what they held to refresh
    marks_unreadable: bool = False

    def load(self) -> None:
        self.loads += 1
        self.refreshed += self.refreshing
        if self.unreadable:
            raise RuntimeError("AccessDeniedException")

    def portals(self) -> list[str]:
        return list(self.held)

    def deleted_lines(self, portal: str) -> dict[int, datetime]:
        if self.marks_unreadable:
            raise RuntimeError("the marks could not be read")
        return dict(self.deleted.get(portal, {}))

    def credentials(self, portal: str) -> PortalCredentials:
        return PortalCredentials(
            portal, "id", "secret", "access", "refresh", f"https://{portal}/rest/"
        )

    def refresh(
        self, portal: str, stale: PortalCredentials, deadline: Deadline | None = None
    ) -> PortalCredentials:
        return stale

    def end_run(self) -> None:
        self.ended += 1


@dataclass
class Publisher:
    sent: list[Alert] = field(default_factory=list)
    fail: int = 0

    def publish(self, alert: Alert) -> str:
        if self.fail:
            self.fail -= 1
            raise PublishError("SNS publish failed: injected")
        self.sent.append(alert)
        return f"m{len(self.sent)}"


@dataclass
class Setup:
    world: World = field(default_factory=World)
    store: MemoryStateStore = field(default_factory=MemoryStateStore)
    publisher: Publisher = field(default_factory=Publisher)
    tokens: Tokens = field(default_factory=Tokens)

    def cycle(self, probe_budget: int = CycleSettings.probe_budget) -> CheckCycle:
        return CheckCycle(
            repository=self.store,
            tokens=self.tokens,
            publisher=self.publisher,
            settings=CycleSettings(
                thresholds=Thresholds(failure=2, recovery=1), probe_budget=probe_budget
            ),
            client_factory=self.world.client,
            clock=self.world.clock,
        )

    def run(self, targets: TargetList, run_id: str | None = None):  # type: ignore[no-untyped-def]
        return self.run_with(targets, run_id=run_id)

    def run_with(  # type: ignore[no-untyped-def]
        self,
        targets: TargetList,
        run_id: str | None = None,
        probe_budget: int = CycleSettings.probe_budget,
    ):
        summary = self.cycle(probe_budget).run(targets, Deadline.after(60), run_id=run_id)
        self.world.clock.advance()
        return summary

    def events(self) -> list[tuple[str, str]]:
        sent = [(a.event.value, a.line) for a in self.publisher.sent]
        self.publisher.sent.clear()
        return sent


def targets(*lines: int, portal: str = A) -> TargetList:
    return TargetList(tuple(Target(portal, CONNECTOR, n) for n in lines), ())


def key(line: int, portal: str = A) -> str:
    return f"{portal}/{CONNECTOR}/{line}"


@pytest.fixture
def setup() -> Setup:
    return Setup()


# ---- the run, as stored ------------------------------------------------------------------------


def test_a_healthy_run_stores_every_target_and_a_run_record(setup: Setup) -> None:
    summary = setup.run(targets(1, 2))
    assert (summary.up, summary.down, summary.unknown) == (2, 0, 0)
    assert {k: s.state for k, s in setup.store.statuses.items()} == {
        key(1): State.UP,
        key(2): State.UP,
    }
    (run,) = setup.store.runs
    assert run.summary["up"] == 2 and run.failed is None
    assert setup.events() == []


def test_the_runs_summary_counts_the_tokens_refreshed_in_it(setup: Setup) -> None:
    # A refresh logs no line of its own at INFO (hourly for every portal of a fleet, it was the
    # largest thing logged): the run's one summary line says how many there were.
    setup.tokens.refreshed = 5  # earlier runs of this process
    setup.tokens.refreshing = 2
    summary = setup.run(targets(1, 2))
    assert summary.tokens_refreshed == 2
    assert summary.as_dict()["tokens_refreshed"] == 2


def test_a_run_gives_back_what_it_held_to_refresh_when_its_checks_end(setup: Setup) -> None:
    # The token table's refresh claim: held from the run's first refresh to the end of its
    # checks; another invocation over the same portals refreshes nothing until it is given back.
    setup.run(targets(1, 2))
    assert setup.tokens.ended == 1
    setup.tokens.marks_unreadable = True
    with pytest.raises(RuntimeError):  # even a run its checks' preparation cut short
        setup.run(targets(1))
    assert setup.tokens.ended == 2


def test_a_steady_run_writes_nothing_but_its_run_record(setup: Setup) -> None:
    setup.run(targets(1, 2))
    setup.run(targets(1, 2))  # the streaks reach their cap (the threshold): written once more
    versions = [s.version for s in setup.store.statuses.values()]
    setup.run(targets(1, 2))
    assert [s.version for s in setup.store.statuses.values()] == versions == [2, 2]
    assert len(setup.store.runs) == 3


def test_down_twice_is_one_alert_then_silence_then_one_recovery(setup: Setup) -> None:
    setup.run(targets(1, 2))
    setup.world.down.add(Target(A, CONNECTOR, 2))
    setup.run(targets(1, 2))
    assert setup.events() == []
    setup.run(targets(1, 2))
    assert setup.events() == [("connector.down", "2")]
    assert setup.store.statuses[key(2)].pending == ()  # published and acknowledged
    assert key(2) not in setup.store.claims
    setup.run(targets(1, 2))
    assert setup.events() == []
    setup.world.down.clear()
    setup.run(targets(1, 2))
    assert setup.events() == [("connector.recovered", "2")]
    assert [a.event.value for a in setup.store.history[key(2)]] == [
        "connector.down",
        "connector.recovered",
    ]


# ---- conflicts and claims ------------------------------------------------------------------------


def test_a_target_another_run_stored_first_keeps_that_runs_decision(setup: Setup) -> None:
    setup.run(targets(1))
    setup.world.down.add(Target(A, CONNECTOR, 1))
    setup.run(targets(1))
    store = setup.store
    original_save = store.save

    def another_writer_first(*args, **kwargs):  # type: ignore[no-untyped-def]
        store.bump(key(1))
        return original_save(*args, **kwargs)

    store.save = another_writer_first  # type: ignore[method-assign]
    summary = setup.run(targets(1))
    assert summary.conflicts == 1
    assert setup.events() == []  # its decision (the alert) was dropped with its write


def test_pending_alerts_another_run_is_publishing_are_left_to_it(setup: Setup) -> None:
    setup.run(targets(1))
    setup.world.down.add(Target(A, CONNECTOR, 1))
    setup.run(targets(1))
    setup.publisher.fail = 1
    setup.run(targets(1))  # decided, publish failed: pending
    assert len(setup.store.statuses[key(1)].pending) == 1
    other = Claim("another-run", setup.world.clock() + timedelta(minutes=1))
    setup.store.claims[key(1)] = other

    setup.run(targets(1))
    assert setup.events() == []  # the live claim is another run's
    setup.world.clock.advance(minutes=5)  # and then it runs out
    setup.run(targets(1))
    assert setup.events() == [("connector.down", "1")]


def test_a_claim_is_held_against_others_until_it_runs_out() -> None:
    claim = Claim("r1", T0 + timedelta(minutes=2))
    assert claim.held_against("r2", T0)
    assert not claim.held_against("r1", T0)
    assert not claim.held_against("r2", T0 + timedelta(minutes=2))


def test_a_failed_publish_stays_pending_and_goes_out_once_next_run(setup: Setup) -> None:
    setup.run(targets(1))
    setup.world.down.add(Target(A, CONNECTOR, 1))
    setup.run(targets(1))
    setup.publisher.fail = 1
    summary = setup.run(targets(1))
    assert (summary.alerts_published, summary.alerts_pending) == (0, 1)
    setup.run(targets(1))
    assert setup.events() == [("connector.down", "1")]
    setup.run(targets(1))
    assert setup.events() == []


def test_a_store_that_cannot_save_fails_the_run_loudly(setup: Setup) -> None:
    setup.run(targets(1))
    setup.store.failing.add("save")
    with pytest.raises(StateStoreError):
        setup.cycle().run(targets(1), Deadline.after(60))


# ---- portals --------------------------------------------------------------------------------


def test_a_failing_portal_is_its_own_and_recorded_as_such(setup: Setup) -> None:
    setup.world.failing[B] = PortalError(ErrorKind.PORTAL_FAILING, B, description="HTTP 502")
    both = TargetList(targets(1).targets + targets(1, portal=B).targets, ())
    setup.run(both)
    summary = setup.run(both)
    assert (summary.up, summary.unknown) == (1, 1)
    assert B in summary.portal_errors and A not in summary.portal_errors
    assert setup.events() == [("check.failed", "1")]
    assert setup.store.statuses[key(1, B)].cause is Cause.PORTAL_FAILING


def test_targets_the_inventory_does_not_list_are_configuration_errors_never_asked(
    setup: Setup,
) -> None:
    wrong = TargetList(
        (Target(A, CONNECTOR, 1), Target(A, "typo", 1), Target(A, CONNECTOR, 99)), ()
    )
    setup.run(wrong)
    assert setup.world.asked == [Target(A, CONNECTOR, 1)]
    statuses = setup.store.statuses
    assert statuses[f"{A}/typo/1"].cause is Cause.CONFIGURATION
    assert "does not exist" in (statuses[key(99)].detail or "")
    assert sorted(setup.events()) == [("check.failed", "*")]  # one message for the two


def test_the_inventory_is_read_once_per_validation_period(setup: Setup) -> None:
    for _ in range(3):
        setup.run(targets(1))
    assert setup.world.inventories_read == [A]
    setup.world.clock.advance(minutes=240)
    setup.run(targets(1))
    assert setup.world.inventories_read == [A, A]


def test_a_portal_that_will_not_list_connectors_raises_one_validation_notice(
    setup: Setup,
) -> None:
    setup.world.connectors_listed = False
    setup.run(targets(1, 2))
    (sent,) = setup.publisher.sent
    assert sent.event.value == "check.failed"
    assert "connector validation is off" in sent.message
    assert sent.subject == f"VALIDATION OFF at {A}"
    assert setup.store.statuses[key(1)].state is State.UP  # still checked


# ---- operators' slips and removals ---------------------------------------------------------------


def test_an_unusable_targets_value_checks_nothing_and_forgets_nothing(setup: Setup) -> None:
    setup.run(targets(1, 2))
    before = dict(setup.store.statuses)

    summary = setup.run(parse_targets(" , "))

    assert summary.failed is not None and "no target is configured" in summary.failed
    assert setup.world.asked == [Target(A, CONNECTOR, 1), Target(A, CONNECTOR, 2)]  # run 1 only
    assert {k: v for k, v in setup.store.statuses.items() if k in before} == before
    assert setup.store.runs[-1].failed == summary.failed
    assert setup.events() == [("check.failed", "")]


def test_a_removed_target_with_an_open_incident_is_closed_and_forgotten_in_one_run(
    setup: Setup,
) -> None:
    setup.world.down.add(Target(A, CONNECTOR, 2))
    setup.run(targets(1, 2))
    setup.run(targets(1, 2))
    assert setup.events() == [("connector.down", "2")]

    setup.run(targets(1))

    assert setup.events() == [("connector.recovered", "2")]
    assert key(2) not in setup.store.statuses


def test_a_removed_target_whose_closing_alert_failed_is_kept_until_it_goes_out(
    setup: Setup,
) -> None:
    setup.world.down.add(Target(A, CONNECTOR, 2))
    setup.run(targets(1, 2))
    setup.run(targets(1, 2))
    setup.events()
    setup.publisher.fail = 1
    setup.run(targets(1))
    assert key(2) in setup.store.statuses
    setup.run(targets(1))
    assert setup.events() == [("connector.recovered", "2")]
    assert key(2) not in setup.store.statuses
