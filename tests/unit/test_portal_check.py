"""One portal's check on in-memory collaborators: a portal without usable credentials, a check
that never finished, an inventory read only when due, and written only when it changed (or its
round could not be read)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from connector_monitor.deadline import Deadline
from connector_monitor.domain.inventory import (
    CachedInventory,
    Inventory,
    LineInfo,
    Progress,
    next_round,
)
from connector_monitor.domain.portal_errors import ErrorKind, PortalError
from connector_monitor.domain.results import Cause, CheckResult, State
from connector_monitor.domain.runs import RunRecord, ShardRun
from connector_monitor.domain.shards import KeyRange
from connector_monitor.domain.targets import Target
from connector_monitor.portal_check import PortalCheckService, PortalPlan
from connector_monitor.ports.portal import PortalCheck
from connector_monitor.tokens.credentials import PortalCredentials
from connector_monitor.tokens.errors import UnusableCredentials
from connector_monitor.tokens.ports import TokenSource

PORTAL = "a.bitrix24.com"
CONNECTOR = "myconnector"
EVERY = timedelta(hours=4)
# The portal's round fell at ROUND; T0 is half an interval later (no round within two hours).
ROUND = next_round(PORTAL, EVERY, datetime(2026, 11, 30, 12, 0, tzinfo=UTC))
T0 = ROUND + EVERY / 2
TARGET = Target(PORTAL, CONNECTOR, 1)


@dataclass
class Portal:
    """Every connector up; counts what it was asked."""

    portal: str = PORTAL
    http_requests: int = 0
    inventories: int = 0
    closed: bool = False
    down: bool = False
    lines: dict[int, LineInfo] = field(default_factory=lambda: {1: LineInfo("L1", True)})

    def inventory(self, deadline: Deadline) -> Inventory:
        self.inventories += 1
        self.http_requests += 1
        if self.down:
            raise PortalError(
                ErrorKind.PORTAL_FAILING, self.portal, description="connection refused"
            )
        return Inventory(frozenset({CONNECTOR}), dict(self.lines))

    def check(self, targets: Sequence[Target], deadline: Deadline) -> PortalCheck:
        self.http_requests += 1
        return PortalCheck(
            [
                CheckResult.from_flags(t, configured=True, error=False, status=True, checked_at=T0)
                for t in targets
            ]
        )

    def close(self) -> None:
        self.closed = True


@dataclass
class Tokens:
    missing: bool = False

    def credentials(self, portal: str) -> PortalCredentials:
        if self.missing:
            raise UnusableCredentials(f"no entry for portal {portal}")
        return PortalCredentials(portal, "id", "secret", "access", "refresh", f"https://{portal}/")

    def refresh(
        self, portal: str, stale: PortalCredentials, deadline: Deadline | None = None
    ) -> PortalCredentials:
        return stale


@dataclass
class Setup:
    tokens: Tokens = field(default_factory=Tokens)
    opened: list[Portal] = field(default_factory=list)
    down: bool = False
    lines: dict[int, LineInfo] = field(default_factory=lambda: {1: LineInfo("L1", True)})

    def open(self, portal: str, tokens: TokenSource) -> Portal:
        self.opened.append(Portal(portal, down=self.down, lines=self.lines))
        return self.opened[-1]

    def service(self, at: datetime = T0, last_run: datetime | None = None) -> PortalCheckService:
        """The service of a run started `at`, after a last run started `last_run`."""
        run = RunRecord("r", last_run, last_run, shards=(ShardRun(KeyRange(), last_run, last_run),))
        return PortalCheckService(
            self.tokens,
            self.open,
            EVERY,
            lambda: at,
            run_at=at,
            last_run=run if last_run is not None else None,
        )


def plan(
    named: list[Target], watched: list[str] | None = None, cached: CachedInventory | None = None
) -> PortalPlan:
    return PortalPlan(PORTAL, named, watched or [], {}, cached)


def test_without_credentials_every_target_lacks_tokens_and_nothing_is_sent() -> None:
    setup = Setup(Tokens(missing=True))

    outcome = setup.service().check(plan([TARGET]), Deadline.after(5))

    assert [(r.state, r.cause) for r in outcome.results] == [(State.UNKNOWN, Cause.NO_TOKENS)]
    assert outcome.run.error is not None and "no usable credentials" in outcome.run.error
    assert setup.opened == []


def test_a_watched_portal_without_credentials_says_its_lines_cannot_be_discovered() -> None:
    setup = Setup(Tokens(missing=True))

    outcome = setup.service().check(plan([], watched=[CONNECTOR]), Deadline.after(5))

    assert len(outcome.results) == 1
    assert "its lines cannot be discovered" in (outcome.results[0].detail or "")


def test_an_inventory_whose_round_has_not_come_is_not_read_and_the_checker_is_closed() -> None:
    setup = Setup()
    cached = CachedInventory(
        PORTAL, T0 - timedelta(hours=1), Inventory(frozenset({CONNECTOR}), {1: LineInfo("L", True)})
    )

    outcome = setup.service().check(plan([TARGET], cached=cached), Deadline.after(5))

    assert [r.state for r in outcome.results] == [State.UP]
    assert outcome.inventory is None
    (portal,) = setup.opened
    assert portal.inventories == 0 and portal.closed
    assert outcome.run.http_requests == 1


def test_a_check_past_the_deadline_or_crashed_leaves_its_targets_unknown() -> None:
    service = Setup().service()

    late = service.lost(plan([TARGET]), None)
    crashed = service.lost(plan([TARGET]), RuntimeError("boom"))

    assert [r.cause for r in late.results] == [Cause.DEADLINE]
    assert crashed.run.error == "the check failed: RuntimeError"
    assert [r.cause for r in crashed.results] == [Cause.MONITOR_ERROR]


def test_an_unchanged_record_of_a_watched_portal_is_not_handed_back_for_writing() -> None:
    setup = Setup()
    cached = CachedInventory(
        PORTAL,
        T0 - timedelta(hours=1),
        Inventory(frozenset({CONNECTOR}), {1: LineInfo("L", True)}),
        seen={CONNECTOR: frozenset({1})},
    )
    watching = PortalPlan(PORTAL, [], [CONNECTOR], {CONNECTOR: frozenset({1})}, cached)

    outcome = setup.service().check(watching, Deadline.after(5))

    assert [r.state for r in outcome.results] == [State.UP]
    assert outcome.inventory is None  # nothing learned, nothing read: nothing to write


def test_a_stalled_round_of_a_connector_no_longer_watched_raises_no_notice() -> None:
    setup = Setup()
    cached = CachedInventory(
        PORTAL,
        T0 - timedelta(hours=1),
        Inventory(frozenset({CONNECTOR}), {1: LineInfo("L", True)}),
        progress={"oldconnector": Progress(frozenset(), runs=99)},
    )

    outcome = setup.service().check(plan([TARGET], cached=cached), Deadline.after(5))

    assert [r.target for r in outcome.results] == [TARGET]


def watching(lines: dict[int, LineInfo], deleted: dict[int, datetime]) -> PortalPlan:
    """A watch seen on `lines`, inventoried an hour ago, and the line-delete marks read from
    the portal's token item."""
    cached = CachedInventory(
        PORTAL,
        T0 - timedelta(hours=1),
        Inventory(frozenset({CONNECTOR}), lines),
        seen={CONNECTOR: frozenset(lines)},
    )
    return PortalPlan(PORTAL, [], [CONNECTOR], {CONNECTOR: frozenset(lines)}, cached, deleted)


def test_a_line_delete_event_makes_the_inventory_due_and_its_line_retired_unasked() -> None:
    setup = Setup()  # the portal lists line 1 only
    plan = watching(
        {1: LineInfo("L1", True), 2: LineInfo("L2", True)}, {2: T0 - timedelta(minutes=1)}
    )

    outcome = setup.service().check(plan, Deadline.after(5))

    (portal,) = setup.opened
    assert portal.inventories == 1  # at once, though the cached one is an hour old
    assert [r.target for r in outcome.results] == [Target(PORTAL, CONNECTOR, 1)]
    gone = Target(PORTAL, CONNECTOR, 2).key
    assert list(outcome.retired) == [gone] and "line-delete event" in outcome.retired[gone]
    assert outcome.inventory is not None and set(outcome.inventory.inventory.lines) == {1}


def test_a_line_delete_event_for_a_line_the_portal_still_lists_retires_nothing() -> None:
    setup = Setup()
    plan = watching({1: LineInfo("L1", True)}, {1: T0 - timedelta(minutes=1)})

    outcome = setup.service().check(plan, Deadline.after(5))

    assert setup.opened[0].inventories == 1
    assert outcome.retired == {}
    assert [(r.target, r.state) for r in outcome.results] == [
        (Target(PORTAL, CONNECTOR, 1), State.UP)
    ]


def test_a_line_delete_older_than_the_last_inventory_does_not_read_it_again() -> None:
    setup = Setup()
    plan = watching({1: LineInfo("L1", True)}, {7: T0 - timedelta(hours=2)})

    setup.service().check(plan, Deadline.after(5))

    assert setup.opened[0].inventories == 0


STORED = CachedInventory(
    PORTAL, ROUND - 3 * EVERY, Inventory(frozenset({CONNECTOR}), {1: LineInfo("L1", True)})
)


def test_a_round_that_finds_the_inventory_unchanged_reads_it_and_writes_nothing() -> None:
    setup = Setup()

    outcome = setup.service(ROUND, last_run=ROUND - timedelta(minutes=5)).check(
        plan([TARGET], cached=STORED), Deadline.after(5)
    )

    assert setup.opened[0].inventories == 1
    assert outcome.inventory is None  # no write, not even of a time
    assert [r.state for r in outcome.results] == [State.UP]


def test_the_run_after_a_round_does_not_read_it_again() -> None:
    setup = Setup()
    after = ROUND + timedelta(minutes=5)

    outcome = setup.service(after, last_run=ROUND).check(
        plan([TARGET], cached=STORED), Deadline.after(5)
    )

    assert setup.opened[0].inventories == 0 and outcome.inventory is None


def test_a_round_that_finds_a_change_writes_it_once() -> None:
    setup = Setup(lines={1: LineInfo("L1", True), 2: LineInfo("L2", False)})

    outcome = setup.service(ROUND, last_run=ROUND - timedelta(minutes=5)).check(
        plan([TARGET], cached=STORED), Deadline.after(5)
    )

    assert outcome.inventory is not None
    assert outcome.inventory.inventory.lines[2] == LineInfo("L2", False)
    assert outcome.inventory.validated_at == ROUND  # when it changed
    after = setup.service(ROUND + timedelta(minutes=5), last_run=ROUND)
    again = after.check(plan([TARGET], cached=outcome.inventory), Deadline.after(5))
    assert again.inventory is None


def test_a_round_that_could_not_be_read_is_read_by_the_next_run() -> None:
    down = Setup(down=True)
    failed = down.service(ROUND, last_run=ROUND - timedelta(minutes=5)).check(
        plan([TARGET], cached=STORED), Deadline.after(5)
    )
    assert failed.inventory == CachedInventory(
        PORTAL, STORED.validated_at, STORED.inventory, owed=True
    )  # a small write: the round is owed
    still_down = down.service(ROUND + timedelta(minutes=5), last_run=ROUND).check(
        plan([TARGET], cached=failed.inventory), Deadline.after(5)
    )
    assert down.opened[1].inventories == 1
    assert still_down.inventory is None  # owed already: nothing new to write

    up = Setup()
    later = ROUND + timedelta(minutes=10)
    read = up.service(later, last_run=later - timedelta(minutes=5)).check(
        plan([TARGET], cached=failed.inventory), Deadline.after(5)
    )

    assert up.opened[0].inventories == 1  # though no round fell since the last run
    assert read.inventory is not None and not read.inventory.owed  # the debt paid: one write
    assert read.inventory.same_as(STORED)


def test_a_check_lost_in_its_round_leaves_the_round_owed() -> None:
    service = Setup().service(ROUND, last_run=ROUND - timedelta(minutes=5))

    lost = service.lost(plan([TARGET], cached=STORED), None)
    not_due = Setup().service(T0, last_run=T0 - timedelta(minutes=5))
    outside = not_due.lost(plan([TARGET], cached=STORED), None)

    assert lost.inventory is not None and lost.inventory.owed
    assert outside.inventory is None


def test_a_portal_without_credentials_in_its_round_leaves_the_round_owed() -> None:
    setup = Setup(tokens=Tokens(missing=True))

    outcome = setup.service(ROUND, last_run=ROUND - timedelta(minutes=5)).check(
        plan([TARGET], cached=STORED), Deadline.after(5)
    )

    assert outcome.inventory is not None and outcome.inventory.owed


def test_a_line_delete_event_weighed_by_an_unchanged_inventory_is_not_weighed_again() -> None:
    setup = Setup()
    marked = watching({1: LineInfo("L1", True)}, {1: T0 - timedelta(minutes=1)})

    first = setup.service().check(marked, Deadline.after(5))

    assert first.inventory is not None and first.inventory.validated_at == T0
    later = T0 + timedelta(minutes=5)
    weighed = PortalPlan(PORTAL, [], [CONNECTOR], marked.seen, first.inventory, marked.deleted)
    setup.service(later, last_run=T0).check(weighed, Deadline.after(5))
    assert [p.inventories for p in setup.opened] == [1, 0]
