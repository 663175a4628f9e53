"""The state table's adapters against moto: the repository (conditional writes, claims,
history, pages) and the registry's partition."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from connector_monitor.aws.registry import Registry
from connector_monitor.aws.repository import StateRepository
from connector_monitor.domain.results import CheckResult
from connector_monitor.domain.runs import PortalRun, RunRecord
from connector_monitor.domain.shards import KeyRange
from connector_monitor.domain.targets import ANY, Target, Watch
from connector_monitor.domain.transitions import TargetStatus, Thresholds, advance
from connector_monitor.ports.state_store import Claim, StateStoreError
from local.template import table_definition
from tests.support.dynamodb_pages import query_pages, spread_over_pages

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
def client() -> Iterator[Any]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="eu-central-1")
        dynamodb.create_table(TableName="monitor", **table_definition())
        yield dynamodb


def status(line: int, *, up: bool = True, at: datetime = T0) -> TargetStatus:
    target = Target("a.bitrix24.com", "tg", line)
    result = CheckResult.from_flags(target, configured=up, error=False, status=up, checked_at=at)
    return advance(None, result, Thresholds()).status


def down_with_alert(previous: TargetStatus) -> TargetStatus:
    th = Thresholds(failure=1)
    result = CheckResult.from_flags(
        previous.subject,  # type: ignore[arg-type]
        configured=False,
        error=False,
        status=False,
        checked_at=T0 + timedelta(minutes=5),
    )
    return advance(previous, result, th).status


def test_statuses_round_trip_and_versions_bump(client: Any) -> None:
    repo = StateRepository("monitor", client=client)
    outcome = repo.save([status(1), status(2)], claims={})
    assert outcome.conflicts == []
    loaded = repo.load()
    assert sorted(loaded.statuses) == ["a.bitrix24.com/tg/1", "a.bitrix24.com/tg/2"]
    stored = loaded.statuses["a.bitrix24.com/tg/1"]
    assert stored.version == 1
    assert stored == replace(status(1), version=1)


def test_statuses_over_several_query_pages_are_all_loaded(client: Any) -> None:
    """A fleet's STATE partition is many 1 MB pages: a target past the first page must not be
    taken for a new one (its open incident and pending alerts would be lost)."""
    repo = StateRepository("monitor", client=client)
    repo.save([status(line) for line in range(1, 9)], claims={})
    assert spread_over_pages(client, "monitor", "STATE") == 8
    pages = query_pages(client)

    loaded = repo.load()

    assert sorted(loaded.statuses) == sorted(f"a.bitrix24.com/tg/{n}" for n in range(1, 9))
    assert all(s.version == 1 for s in loaded.statuses.values())
    assert pages[:3] == [3, 3, 2]  # the STATE partition (the CONFIG one follows)


def test_a_stale_write_is_a_conflict_and_does_not_overwrite(client: Any) -> None:
    repo = StateRepository("monitor", client=client)
    repo.save([status(1)], claims={})
    first = repo.load().statuses["a.bitrix24.com/tg/1"]
    winner = repo.save([down_with_alert(first)], claims={})
    loser = repo.save([down_with_alert(first)], claims={})  # same base version: another run
    assert winner.conflicts == []
    assert loser.conflicts == ["a.bitrix24.com/tg/1"]
    assert repo.load().statuses["a.bitrix24.com/tg/1"].version == 2


def test_a_new_target_written_twice_is_one_conflict(client: Any) -> None:
    repo = StateRepository("monitor", client=client)
    assert repo.save([status(1)], claims={}).conflicts == []
    assert repo.save([status(1)], claims={}).conflicts == ["a.bitrix24.com/tg/1"]


def test_only_one_run_can_claim_pending_alerts_until_the_claim_expires(client: Any) -> None:
    repo = StateRepository("monitor", client=client)
    repo.save([status(1)], claims={})
    base = repo.load().statuses["a.bitrix24.com/tg/1"]
    repo.save([down_with_alert(base)], claims={})
    pending = repo.load().statuses["a.bitrix24.com/tg/1"]
    assert len(pending.pending) == 1

    now = T0 + timedelta(minutes=6)
    mine = repo.claim(pending, Claim("run-a", now + timedelta(minutes=2)), now)
    assert mine is not None
    again = repo.load()
    theirs = repo.claim(again.statuses["a.bitrix24.com/tg/1"], Claim("run-b", now), now)
    assert theirs is None
    assert again.claims["a.bitrix24.com/tg/1"].owner == "run-a"

    later = now + timedelta(minutes=3)
    expired = repo.load().statuses["a.bitrix24.com/tg/1"]
    assert repo.claim(expired, Claim("run-b", later + timedelta(minutes=2)), later) is not None


def test_acknowledge_removes_only_published_alerts_and_releases_the_claim(client: Any) -> None:
    repo = StateRepository("monitor", client=client)
    repo.save([status(1)], claims={})
    base = repo.load().statuses["a.bitrix24.com/tg/1"]
    down = down_with_alert(base)
    repo.save([down], claims={"a.bitrix24.com/tg/1": Claim("run-a", T0 + timedelta(hours=1))})
    stored = repo.load().statuses["a.bitrix24.com/tg/1"]
    alert_id = stored.pending[0].id
    assert repo.acknowledge(stored, "run-b", [alert_id]) is False  # not the owner
    assert repo.acknowledge(stored, "run-a", [alert_id]) is True
    after = repo.load()
    assert after.statuses["a.bitrix24.com/tg/1"].pending == ()
    assert "a.bitrix24.com/tg/1" not in after.claims


def test_a_hundred_and_fifty_changes_cost_two_transactions(client: Any) -> None:
    repo = StateRepository("monitor", client=client)
    calls: list[str] = []
    client.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: calls.append(model.name)
    )
    repo.save([status(n) for n in range(1, 151)], claims={})
    assert calls == ["TransactWriteItems", "TransactWriteItems"]


def test_pages_filter_by_portal_without_a_scan(client: Any) -> None:
    repo = StateRepository("monitor", client=client)
    other = replace(status(1), subject=Target("b.bitrix24.com", "tg", 1))
    repo.save([status(n) for n in range(1, 6)] + [other], claims={})
    calls: list[str] = []
    client.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: calls.append(model.name)
    )
    page, after = repo.page_targets(portal="a.bitrix24.com", limit=3)
    assert [s.subject.key for s in page] == [f"a.bitrix24.com/tg/{n}" for n in (1, 2, 3)]
    rest, end = repo.page_targets(portal="a.bitrix24.com", limit=3, after=after)
    assert [s.subject.line for s in rest] == [4, 5]  # type: ignore[union-attr]
    assert end is None or repo.page_targets(portal="a.bitrix24.com", after=end)[0] == []
    assert "Scan" not in calls


def test_run_record_is_stored(client: Any) -> None:
    repo = StateRepository("monitor", client=client)
    run = RunRecord(
        "r1", T0, T0 + timedelta(seconds=2), {"up": 3}, {"a.bitrix24.com": PortalRun(T0, 1)}
    )
    repo.save_run(run)
    assert repo.load_run() == run


def history(client: Any, key: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.query(
        TableName="monitor",
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"HISTORY#{key}"}},
    )["Items"]
    return items


def test_history_is_written_with_the_status_that_decided_it(client: Any) -> None:
    repo = StateRepository("monitor", client=client)
    repo.save([status(1)], claims={})
    base = repo.load().statuses["a.bitrix24.com/tg/1"]
    down = down_with_alert(base)
    alert = down.pending[0]
    decided = {"a.bitrix24.com/tg/1": [alert]}
    assert repo.save([down], claims={}, history=decided, keep=timedelta(days=30)).conflicts == []
    items = history(client, "a.bitrix24.com/tg/1")
    assert [i["event"]["S"] for i in items] == ["connector.down"]
    assert int(items[0]["expires_at"]["N"]) == int(
        (alert.created_at + timedelta(days=30)).timestamp()
    )


def test_a_conflicting_status_writes_no_history(client: Any) -> None:
    repo = StateRepository("monitor", client=client)
    repo.save([status(1)], claims={})
    base = repo.load().statuses["a.bitrix24.com/tg/1"]
    repo.save([down_with_alert(base)], claims={})  # another run came first
    late = down_with_alert(base)
    outcome = repo.save([late], claims={}, history={"a.bitrix24.com/tg/1": list(late.pending)})
    assert outcome.conflicts == ["a.bitrix24.com/tg/1"]
    assert history(client, "a.bitrix24.com/tg/1") == []


def test_targets_with_history_are_packed_whole_into_transactions(client: Any) -> None:
    repo = StateRepository("monitor", client=client)
    calls: list[int] = []
    client.meta.events.register(
        "before-parameter-build.dynamodb.TransactWriteItems",
        lambda params, **_: calls.append(len(params["TransactItems"])),
    )
    statuses = [status(n) for n in range(1, 61)]
    alerts = {s.subject.key: list(down_with_alert(s).pending) for s in statuses}
    repo.save(statuses, claims={}, history=alerts)
    assert calls == [100, 20]  # 50 targets x (status + history), then 10 more


def test_dynamodb_failures_are_clear_errors(client: Any) -> None:
    from connector_monitor.aws.repository import RepositoryError

    repo = StateRepository("no-such-table", client=client)
    with pytest.raises(RepositoryError, match="ResourceNotFoundException"):
        repo.load()


# ---- the registry's partition ------------------------------------------------------------------
AT = datetime(2026, 11, 24, 12, 0, 5, 123456, tzinfo=UTC)
ENTRY = Target("example.bitrix24.com", "myconnector", 12)


def test_an_entry_is_kept_with_its_time_and_author(client: Any) -> None:
    registry = Registry("monitor", client=client)

    assert registry.add(ENTRY, added_by="ops", at=AT) is True
    (kept,), last = registry.page(limit=10)

    assert (kept.key, kept.entry, kept.added_at, kept.added_by) == (ENTRY.key, ENTRY, AT, "ops")
    assert last is None


def test_a_time_written_by_hand_is_no_time(client: Any) -> None:
    client.put_item(
        TableName="monitor",
        Item={
            "pk": {"S": "REGISTRY"},
            "sk": {"S": ENTRY.key},
            "portal": {"S": ENTRY.portal},
            "connector": {"S": ENTRY.connector},
            "line": {"N": "12"},
            "added_at": {"S": "yesterday"},
        },
    )

    (kept,) = Registry("monitor", client=client).entries()

    assert (kept.entry, kept.added_at, kept.added_by) == (ENTRY, None, "")


def test_a_registry_of_several_query_pages_is_read_to_its_last_page(client: Any) -> None:
    registry = Registry("monitor", client=client)
    added = [Target("example.bitrix24.com", "myconnector", line) for line in range(1, 8)]
    for entry in [*added, Watch(ANY, "myconnector")]:
        registry.add(entry, added_by="ops", at=AT)
    assert spread_over_pages(client, "monitor", "REGISTRY") == 8
    pages = query_pages(client)

    loaded = registry.load()
    listed = registry.entries()

    assert sorted(loaded.targets, key=lambda t: t.line) == added
    assert [w.key for w in loaded.watches] == ["*/myconnector/*"]
    assert loaded.errors == ()
    assert len(listed) == 8 and all(e.problem is None for e in listed)
    assert pages == [3, 3, 2] * 2  # load, then entries


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"portal": "other.bitrix24.com"}, "other.bitrix24.com/myconnector/12"),
        ({"line": 13}, "example.bitrix24.com/myconnector/13"),
        ({"connector": "otherconnector"}, "example.bitrix24.com/otherconnector/12"),
    ],
    ids=["another portal", "another line", "another connector"],
)
def test_an_item_whose_key_disagrees_with_its_fields_is_a_problem_named_after_its_key(
    client: Any, fields: dict[str, Any], named: str
) -> None:
    """Written by hand: neither the key's target nor the fields' is checked; the run names
    the item by its key (what `monitorctl targets remove` takes) and checks the others."""
    registry = Registry("monitor", client=client)
    kept = Target("example.bitrix24.com", "myconnector", 14)
    registry.add(kept, added_by="ops", at=AT)
    parts = {"portal": ENTRY.portal, "connector": ENTRY.connector, "line": ENTRY.line, **fields}
    client.put_item(
        TableName="monitor",
        Item={
            "pk": {"S": "REGISTRY"},
            "sk": {"S": ENTRY.key},
            "portal": {"S": parts["portal"]},
            "connector": {"S": parts["connector"]},
            "line": {"N": str(parts["line"])},
        },
    )

    loaded = registry.load()
    (listed,) = [e for e in registry.entries() if e.key == ENTRY.key]

    assert loaded.targets == (kept,)
    assert [(e.entry, e.reason) for e in loaded.errors] == [
        (f"registry {ENTRY.key}", f"the item's key does not match its parts ({named})")
    ]
    assert (listed.entry, listed.problem) == (
        None,
        f"the item's key does not match its parts ({named})",
    )


@pytest.mark.parametrize(
    "use",
    [
        lambda r: r.page(limit=1),
        lambda r: r.entries(),
        lambda r: r.add(ENTRY, added_by="ops", at=AT),
        lambda r: r.remove(ENTRY.key),
    ],
)
def test_dynamodb_failures_are_state_store_errors(client: Any, use: Any) -> None:
    registry = Registry("no-such-table", client=client)

    with pytest.raises(StateStoreError, match="ResourceNotFoundException"):
        use(registry)


def test_a_shard_reads_only_its_range_of_the_registry_and_the_watches_of_every_portal(
    client: Any,
) -> None:
    # Given entries on portals either side of a shard's range, and a watch of every portal
    registry = Registry("monitor", client=client)
    for portal in ("a.bitrix24.com", "m.bitrix24.com", "m.bitrix24.com.br", "z.bitrix24.com"):
        registry.add(Target(portal, "tg", 1), added_by="test", at=T0)
    registry.add(Watch(ANY, "tg"), added_by="test", at=T0)
    counted: list[int] = []
    client.meta.events.register(
        "after-call.dynamodb.Query", lambda parsed, **_: counted.append(parsed["Count"])
    )

    # When the shard from m.bitrix24.com to z.bitrix24.com (exclusive) reads it
    shard = KeyRange("m.bitrix24.com/", "z.bitrix24.com/")
    targets = registry.load(shard)

    # Then it has the entries of its portals and the watch, and was sent no other item
    # (m.bitrix24.com.br is the shard before's: its key sorts before "m.bitrix24.com/")
    assert [t.portal for t in targets.targets] == ["m.bitrix24.com"]
    assert [w.key for w in targets.watches] == ["*/tg/*"]
    assert sum(counted) == 2
    # The whole registry, for a run of everything
    assert len(registry.load().targets) == 4
