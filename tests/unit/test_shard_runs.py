"""The fan-out on in-memory collaborators: a planner splitting a fleet into shards, workers
checking them, the run recorded once every shard has finished, and a shard that never finishes
costing only its own portals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from connector_monitor.deadline import Deadline
from connector_monitor.domain.results import Cause, State
from connector_monitor.domain.targets import Target, TargetList, parse_targets
from connector_monitor.fanout import Planner, ShardLost, ShardWorker
from connector_monitor.ports.state_store import StateStoreError
from connector_monitor.ports.work_queue import ShardOrder
from tests.unit.test_cycle import CONNECTOR, Setup

PORTALS = [f"p{i:02d}.bitrix24.com" for i in range(7)]
INVOCATION = timedelta(minutes=2)  # a worker's time
FLEET = TargetList(tuple(Target(p, CONNECTOR, 1) for p in PORTALS), ())


@dataclass
class Queue:
    orders: list[ShardOrder] = field(default_factory=list)

    def send(self, orders: Sequence[ShardOrder]) -> None:
        self.orders += orders

    def take(self) -> list[ShardOrder]:
        taken, self.orders = self.orders, []
        return taken


@dataclass
class Fleet:
    setup: Setup = field(default_factory=Setup)
    queue: Queue = field(default_factory=Queue)
    runs: int = 0

    def plan(self, targets: TargetList = FLEET) -> list[ShardOrder]:
        self.runs += 1
        planner = Planner(self.setup.cycle(), self.setup.store, self.queue, 3)
        planner.plan(targets, targets.portals(), Deadline.after(60), f"run-{self.runs}")
        return self.queue.take()

    def work(self, order: ShardOrder, targets: TargetList = FLEET, deliveries: int = 1) -> None:
        worker = ShardWorker(self.setup.cycle(), self.setup.store)
        worker.check(order, targets, Deadline.after(60), INVOCATION, deliveries)

    def run(self, targets: TargetList = FLEET, skip: int | None = None) -> list[ShardOrder]:
        orders = self.plan(targets)
        for order in orders:
            if order.index != skip:
                self.work(order, targets)
        self.setup.world.clock.advance()
        return orders


@pytest.fixture
def fleet() -> Fleet:
    return Fleet()


def state(fleet: Fleet, portal: str) -> State:
    return fleet.setup.store.statuses[f"{portal}/{CONNECTOR}/1"].state


def test_a_fleet_is_split_into_shards_each_portal_in_one(fleet: Fleet) -> None:
    orders = fleet.run()

    assert [o.index for o in orders] == [0, 1, 2]
    assert {o.shards for o in orders} == {3}
    for portal in PORTALS:
        assert sum(o.portals.holds_portal(portal) for o in orders) == 1
    assert sorted(fleet.setup.world.asked) == sorted(FLEET.targets)  # each asked once


def test_the_run_is_recorded_once_every_shard_finished_with_the_counts_added(
    fleet: Fleet,
) -> None:
    orders = fleet.plan()
    for order in orders[:-1]:
        fleet.work(order)
    assert fleet.setup.store.runs == []  # not yet: a shard is still out

    fleet.work(orders[-1])

    (record,) = fleet.setup.store.runs
    assert record.run_id == "run-1"
    assert (record.summary["targets"], record.summary["up"]) == (7, 7)
    assert len(record.shards) == 3


def test_an_order_delivered_twice_is_counted_once(fleet: Fleet) -> None:
    orders = fleet.plan()
    for order in [*orders, orders[0]]:
        fleet.work(order)

    (record,) = fleet.setup.store.runs
    assert record.summary["targets"] == 7


def test_a_shard_that_never_finishes_costs_only_its_own_portals(fleet: Fleet) -> None:
    orders = fleet.run()
    lost = [p for p in PORTALS if orders[0].portals.holds_portal(p)]
    assert lost == PORTALS[:3]
    fleet.setup.world.down = {Target(p, CONNECTOR, 1) for p in PORTALS}

    fleet.run(skip=0)  # shard 0's worker dies
    fleet.run(skip=0)

    # the other shards' outages are stored and alerted
    down = [p for p in PORTALS if state(fleet, p) is State.DOWN]
    assert down == [p for p in PORTALS if p not in lost]
    assert sorted(a.portal for a in fleet.setup.publisher.sent) == down
    # and the lost shard's targets turned UNKNOWN at the next plan, not silently UP forever
    for portal in lost:
        status = fleet.setup.store.statuses[f"{portal}/{CONNECTOR}/1"]
        assert status.state is State.UNKNOWN and status.cause is Cause.MONITOR_ERROR
    assert len(fleet.setup.store.runs) == 1  # the run with a lost shard is never the last run


def test_a_shard_retires_only_what_its_range_holds(fleet: Fleet) -> None:
    fleet.run()
    smaller = TargetList(tuple(t for t in FLEET.targets if t.portal != PORTALS[-1]), ())

    fleet.run(smaller)

    assert f"{PORTALS[-1]}/{CONNECTOR}/1" not in fleet.setup.store.statuses
    assert all(f"{p}/{CONNECTOR}/1" in fleet.setup.store.statuses for p in PORTALS[:-1])


def test_the_planner_alone_decides_about_bad_entries(fleet: Fleet) -> None:
    entries = ",".join(f"{p}/{CONNECTOR}/1" for p in PORTALS) + ",nonsense"
    fleet.run(parse_targets(entries))

    problems = [k for k in fleet.setup.store.statuses if k.startswith("config:")]
    assert problems == ["config:nonsense"]
    assert [a.event.value for a in fleet.setup.publisher.sent] == ["check.failed"]


def crash(fleet: Fleet, order: ShardOrder, deliveries: int = 1) -> None:
    """A worker whose check fails (its store refuses to load): the queue will deliver again."""
    fleet.setup.store.failing.add("load")
    with pytest.raises(StateStoreError):
        fleet.work(order, deliveries=deliveries)
    fleet.setup.store.failing.discard("load")


def planned_with_the_first_shard_failed(fleet: Fleet) -> list[ShardOrder]:
    """A run planned and worked, every shard but the first, whose worker failed (and the queue
    will deliver its order again); the orders."""
    orders = fleet.plan()
    crash(fleet, orders[0])
    for order in orders[1:]:
        fleet.work(order)
    return orders


def lost(order: ShardOrder) -> list[str]:
    return [p for p in PORTALS if order.portals.holds_portal(p)]


def test_an_order_of_a_replaced_run_is_dropped_and_checks_nothing(fleet: Fleet) -> None:
    orders = fleet.plan()
    fleet.setup.world.clock.advance(minutes=5)
    fleet.plan()  # the next run: the first one's orders never started

    for order in orders:
        fleet.work(order)  # a first delivery, late (throttled)

    assert fleet.setup.world.asked == []
    assert fleet.setup.store.runs == []


def test_a_failed_shard_delivered_again_after_the_next_run_fails_again_for_the_dead_letters(
    fleet: Fleet,
) -> None:
    # Given a shard that failed, and the next run planned 300 s later
    orders = planned_with_the_first_shard_failed(fleet)
    fleet.setup.world.clock.advance(minutes=5)
    fleet.plan()
    asked = len(fleet.setup.world.asked)

    # When SQS delivers its order again after the 720 s visibility timeout (receive count 2)
    fleet.setup.world.clock.advance(minutes=7)
    with pytest.raises(ShardLost):  # reported failed: maxReceiveCount 2 moves it to the DLQ
        fleet.work(orders[0], deliveries=2)

    # Then it is not dropped as a success, and checks nothing of a run that is over
    assert len(fleet.setup.world.asked) == asked


def test_a_failed_shard_delivered_again_while_its_run_is_current_is_retried(
    fleet: Fleet,
) -> None:
    orders = planned_with_the_first_shard_failed(fleet)
    assert fleet.setup.store.runs == []

    fleet.setup.world.clock.advance(minutes=2)
    fleet.work(orders[0], deliveries=2)

    (record,) = fleet.setup.store.runs
    assert record.summary["targets"] == 7


def test_a_dead_shard_is_unknown_at_the_next_run_however_soon_it_starts(fleet: Fleet) -> None:
    fleet.run()
    orders = planned_with_the_first_shard_failed(fleet)

    fleet.setup.world.clock.advance(minutes=1)  # the next run, by hand or at 299.5 s: no matter
    fleet.plan()

    for portal in lost(orders[0]):
        status = fleet.setup.store.statuses[f"{portal}/{CONNECTOR}/1"]
        assert status.state is State.UNKNOWN and status.cause is Cause.MONITOR_ERROR
    for portal in PORTALS[len(lost(orders[0])) :]:
        assert state(fleet, portal) is State.UP


def test_a_shard_still_at_work_keeps_its_answer_when_the_next_run_plans(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a fleet whose connectors are all down, one answer short of the threshold
    fleet.run()
    fleet.setup.world.down = {Target(p, CONNECTOR, 1) for p in PORTALS}
    fleet.run()
    orders = fleet.plan()
    for order in orders[1:]:
        fleet.work(order)

    # When shard 0's worker starts late (4.5 min in) and the next run plans while it checks
    store = fleet.setup.store
    save = store.save

    def next_run_plans_meanwhile(*args, **kwargs):  # type: ignore[no-untyped-def]
        monkeypatch.setattr(store, "save", save)
        fleet.setup.world.clock.advance(minutes=0.5)
        fleet.plan()
        return save(*args, **kwargs)

    monkeypatch.setattr(store, "save", next_run_plans_meanwhile)
    fleet.setup.world.clock.advance(minutes=4.5)
    fleet.work(orders[0])

    # Then its answer stands, and its outages go out in this run, not a run late
    for portal in lost(orders[0]):
        assert state(fleet, portal) is State.DOWN
    assert sorted(a.portal for a in fleet.setup.publisher.sent) == PORTALS


def test_an_order_the_plan_does_not_hold_is_dropped_and_checks_nothing(fleet: Fleet) -> None:
    orders = fleet.plan()
    first = orders[0]
    forged = [
        first.model_copy(update={"index": 3}),  # an index not planned
        first.model_copy(update={"hi": None}),  # a range not planned: the whole fleet
        first.model_copy(update={"shards": 1, "hi": None}),  # a plan of one shard
    ]

    for order in forged:
        fleet.work(order)

    assert fleet.setup.world.asked == []
    for order in orders[1:]:
        fleet.work(order)
    assert fleet.setup.store.runs == []  # the run is not complete without shard 0
