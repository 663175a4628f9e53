"""One contract, two state stores: the DynamoDB repository (on moto) and the in-memory store the
unit tests of the cycle use (tests/memory_state.py). If the fake drifts from the real one, this
fails, so the cycle's unit tests cannot pass on behaviour DynamoDB does not have."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from connector_monitor.aws.repository import StateRepository
from connector_monitor.domain.results import Cause, CheckResult
from connector_monitor.domain.runs import COUNTS, RunPlan, ShardRun
from connector_monitor.domain.shards import Scope, split
from connector_monitor.domain.targets import ConfigIssue, ConfigProblem, Target
from connector_monitor.domain.transitions import TargetStatus, Thresholds, advance
from connector_monitor.ports.state_store import Claim, StateStore
from local.template import table_definition
from tests.memory_state import MemoryStateStore

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
TARGET = Target("a.bitrix24.com", "tg", 1)
KEY = TARGET.key


@pytest.fixture(params=["dynamodb", "memory"])
def store(request: pytest.FixtureRequest) -> Iterator[StateStore]:
    if request.param == "memory":
        yield MemoryStateStore()
        return
    with mock_aws():
        client = boto3.client("dynamodb", region_name="eu-central-1")
        client.create_table(TableName="monitor", **table_definition())
        yield StateRepository("monitor", client=client)


def up(at: datetime = T0) -> TargetStatus:
    result = CheckResult.from_flags(
        TARGET, configured=True, error=False, status=True, checked_at=at
    )
    return advance(None, result, Thresholds()).status


def with_alert(previous: TargetStatus) -> TargetStatus:
    result = CheckResult.from_flags(
        TARGET, configured=False, error=False, status=False, checked_at=T0 + timedelta(minutes=5)
    )
    return advance(previous, result, Thresholds(failure=1)).status


def test_a_new_status_is_stored_once_and_its_version_counts(store: StateStore) -> None:
    first = store.save([up()], claims={})
    again = store.save([up()], claims={})  # a second run that read nothing either
    assert [s.version for s in first.saved] == [1]
    assert (again.saved, again.conflicts) == ([], [KEY])
    assert store.load().statuses[KEY].version == 1


def test_a_write_on_a_stale_version_is_a_conflict(store: StateStore) -> None:
    (stored,) = store.save([up()], claims={}).saved
    (newer,) = store.save([with_alert(stored)], claims={}).saved
    late = store.save([with_alert(stored)], claims={})  # decided from the old version
    assert late.conflicts == [KEY]
    assert store.load().statuses[KEY].version == newer.version


def test_claims_are_exclusive_until_they_run_out(store: StateStore) -> None:
    (stored,) = store.save([up()], claims={}).saved
    (pending,) = store.save([with_alert(stored)], claims={}).saved
    mine = Claim("r1", T0 + timedelta(minutes=2))
    claimed = store.claim(pending, mine, T0)
    assert claimed is not None and claimed.version == pending.version + 1
    assert store.load().claims[KEY] == mine
    assert store.claim(claimed, Claim("r2", T0 + timedelta(minutes=2)), T0) is None
    later = T0 + timedelta(minutes=3)
    taken = store.claim(claimed, Claim("r2", later + timedelta(minutes=2)), later)
    assert taken is not None
    assert store.claim(pending, Claim("r3", later), later) is None  # a stale version


def test_acknowledging_removes_what_was_published_and_the_claim(store: StateStore) -> None:
    (stored,) = store.save([up()], claims={}).saved
    (pending,) = store.save([with_alert(stored)], claims={}).saved
    (alert,) = pending.pending
    claimed = store.claim(pending, Claim("r1", T0 + timedelta(minutes=2)), T0)
    assert claimed is not None
    assert store.acknowledge(claimed, "r2", [alert.id]) is False  # not the owner
    assert store.acknowledge(claimed, "r1", [alert.id]) is True
    loaded = store.load()
    assert loaded.statuses[KEY].pending == ()
    assert KEY not in loaded.claims


def test_a_claim_written_with_a_status_is_kept_or_dropped_with_it(store: StateStore) -> None:
    (stored,) = store.save([up()], claims={}).saved
    claim = Claim("r1", T0 + timedelta(minutes=2))
    (pending,) = store.save([with_alert(stored)], claims={KEY: claim}).saved
    assert store.load().claims[KEY] == claim
    store.save([pending], claims={})
    assert KEY not in store.load().claims


def test_deleted_statuses_are_gone(store: StateStore) -> None:
    (stored,) = store.save([up()], claims={}).saved
    store.delete([stored])
    assert store.load().statuses == {}


def status_of(target: Target | ConfigIssue) -> TargetStatus:
    result = CheckResult.unknown(target, Cause.CONFIGURATION, "why", checked_at=T0)
    return advance(None, result, Thresholds()).status


def test_a_scoped_load_holds_its_range_and_the_entries_only_if_asked(store: StateStore) -> None:
    portals = ["x.com", "x.com.br", "y.com"]
    subjects: list[Target | ConfigIssue] = [Target(p, "tg", 1) for p in portals]
    subjects += [
        ConfigIssue("x.com.br", "off", portal="x.com.br", problem=ConfigProblem.VALIDATION),
        ConfigIssue("nonsense", "expected domain/connector/line"),
    ]
    store.save([status_of(s) for s in subjects], claims={})
    first, second = split(portals, 2)  # x.com.br and x.com sort apart only by the "/"

    def keys(scope: Scope) -> list[str]:
        return sorted(store.load(scope).statuses)

    assert keys(Scope.shard(first)) == ["validation:x.com.br", "x.com.br/tg/1", "x.com/tg/1"]
    assert keys(Scope.shard(second)) == ["y.com/tg/1"]
    assert keys(Scope.entries_only()) == ["config:nonsense"]
    assert len(keys(Scope.whole())) == 5


def test_a_fanned_out_run_is_recorded_when_its_last_shard_finishes_once(
    store: StateStore,
) -> None:
    ranges = tuple(split(["a.com", "b.com", "c.com"], 1))
    plan = RunPlan("r1", T0, ranges, summary={"config_errors": 1})
    assert store.start_run(plan) is None
    counts = {"targets": 2, "up": 2}
    shards = [ShardRun(r, T0, T0 + timedelta(seconds=30 + i)) for i, r in enumerate(ranges)]

    assert store.finish_shard("r1", 0, shards[0], counts) is not None
    assert store.finish_shard("r1", 0, shards[0], counts) is None  # delivered twice
    assert store.finish_shard("elsewhere", 1, shards[1], counts) is None  # another run's
    assert store.finish_shard("r1", 2, shards[2], counts) is not None
    done = store.finish_shard("r1", 1, shards[1], counts)

    assert done is not None and done.complete
    assert dict(done.summary) == {
        **dict.fromkeys(COUNTS, 0),
        "targets": 6,
        "up": 6,
        "config_errors": 1,
    }
    replaced = store.start_run(RunPlan("r2", T0 + timedelta(minutes=5), ranges))
    assert replaced is not None and replaced.run_id == "r1" and replaced.unfinished() == []


def test_a_started_shard_is_seen_by_the_planner_that_replaces_its_run(
    store: StateStore,
) -> None:
    ranges = tuple(split(["a.com", "b.com", "c.com"], 1))
    assert store.current_run() is None
    store.start_run(RunPlan("r1", T0, ranges))
    until = T0 + timedelta(minutes=2)

    assert store.start_shard("r1", 0, until)  # a worker at shard 0 until its invocation ends
    assert store.start_shard("r1", 1, T0)  # one that failed at once
    assert not store.start_shard("elsewhere", 2, until)  # another run's
    current = store.current_run()
    assert current is not None and current.run_id == "r1"
    assert dict(current.working) == {0: until, 1: T0}
    assert current.holds(0, 3, ranges[0]) and not current.holds(0, 3, ranges[1])
    assert not current.holds(3, 3, ranges[0]) and not current.holds(0, 1, ranges[0])

    replaced = store.start_run(RunPlan("r2", T0 + timedelta(minutes=1), ranges))
    assert replaced is not None
    assert replaced.abandoned(T0 + timedelta(minutes=1)) == [ranges[1], ranges[2]]
    assert replaced.abandoned(until) == list(ranges)  # its worker's time is up: dead
    assert not store.start_shard("r1", 2, until)  # a worker of a replaced run never starts
