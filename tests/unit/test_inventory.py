"""A mistyped target is reported as a configuration error, not as a connector outage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

from connector_monitor.aws.records import inventory_from_item, inventory_to_item
from connector_monitor.domain.inventory import (
    DELETIONS_KEPT,
    NAMES_KEPT,
    CachedInventory,
    Inventory,
    LineInfo,
    Progress,
    deleted_since,
    deletions_over,
    find_misconfigured,
    last_checked,
    next_round,
    reconciled,
    round_passed,
    round_phase,
)
from connector_monitor.domain.runs import RunRecord, ShardRun
from connector_monitor.domain.shards import KeyRange
from connector_monitor.domain.targets import Target

PORTAL = "a.bitrix24.com"
INVENTORY = Inventory(
    connectors=frozenset({"myconnector", "telegrambot"}),
    lines={12: LineInfo("Sales", active=True), 14: LineInfo("VIP", active=True)},
)


def target(connector: str = "myconnector", line: int = 12) -> Target:
    return Target(PORTAL, connector, line)


def test_targets_that_exist_pass() -> None:
    assert find_misconfigured([target(), target("telegrambot", 14)], INVENTORY) == {}


def test_mistyped_connector_names_the_active_ones_and_says_it_may_be_switched_off() -> None:
    """imconnector.list lists the connectors enabled on the portal (core imconnector/lib/
    connector.php::getListActiveConnectorReal()), not every one registered."""
    typo = target("myconector")
    assert find_misconfigured([typo, target()], INVENTORY) == {
        typo: "connector 'myconector' is not among the portal's active connectors "
        "(active: myconnector, telegrambot): a mistyped id, or a connector registered but "
        "switched off on the portal"
    }


def test_without_a_connector_list_only_lines_are_validated() -> None:
    """An app installed by a user who may not change connectors cannot list them."""
    unlisted = Inventory(None, INVENTORY.lines)
    assert find_misconfigured([target("anything"), target(line=99)], unlisted) == {
        target(line=99): "open line 99 does not exist on the portal (lines: 12 Sales, 14 VIP)"
    }


def test_missing_line_names_the_lines_that_exist() -> None:
    missing = target(line=99)
    assert find_misconfigured([missing], INVENTORY) == {
        missing: "open line 99 does not exist on the portal (lines: 12 Sales, 14 VIP)"
    }


def test_inactive_line_is_a_reason() -> None:
    inventory = Inventory(INVENTORY.connectors, {12: LineInfo("Sales", active=False)})
    reason = find_misconfigured([target()], inventory)[target()]
    assert reason == "open line 12 (Sales) is not active on the portal; activate it first"


def test_both_wrong_gives_both_reasons_on_one_line() -> None:
    wrong = target("nope", 99)
    reason = find_misconfigured([wrong], INVENTORY)[wrong]
    assert reason.startswith("connector 'nope' is not among the portal's active connectors")
    assert "; open line 99 does not exist" in reason
    assert "\n" not in reason


def test_empty_portal_says_none() -> None:
    reason = find_misconfigured([target()], Inventory(frozenset(), {}))[target()]
    assert "(active: none)" in reason
    assert "(lines: none)" in reason


def test_long_lists_are_cut_so_the_reason_stays_short() -> None:
    inventory = Inventory(
        frozenset(f"c{i:02}" for i in range(40)),
        {i: LineInfo(f"Line {i}", active=True) for i in range(1, 301)},
    )
    reason = find_misconfigured([target("zz", 999)], inventory)[target("zz", 999)]
    assert "c00, c01" in reason
    assert "(30 more)" in reason
    assert "(290 more)" in reason
    assert len(reason) < 500


def test_lines_are_listed_in_numeric_order_and_unnamed_lines_by_id() -> None:
    inventory = Inventory(
        INVENTORY.connectors, {100: LineInfo("", True), 9: LineInfo("Nine", True)}
    )
    reason = find_misconfigured([target(line=1)], inventory)[target(line=1)]
    assert reason.endswith("(lines: 9 Nine, 100)")


# ---- retiring lines: never on one answer -------------------------------------------------------
T1 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
T2 = T1 + timedelta(minutes=5)
T3 = T2 + timedelta(minutes=5)


def listing(*numbers: int, complete: bool = True) -> Inventory:
    return Inventory(INVENTORY.connectors, {n: LineInfo(f"L{n}", True) for n in numbers}, complete)


def test_a_line_one_complete_list_leaves_out_is_held_and_marked_missing() -> None:
    first, _ = reconciled(None, PORTAL, listing(12, 14), T1)

    second, retired = reconciled(first, PORTAL, listing(12), T2)

    assert retired == frozenset()
    assert set(second.inventory.lines) == {12, 14}  # still a line of the portal
    assert second.missing == {14: T2}
    assert find_misconfigured([target(line=14)], second.inventory) == {}


def test_a_second_complete_list_without_it_retires_it() -> None:
    first, _ = reconciled(None, PORTAL, listing(12, 14), T1)
    second, _ = reconciled(first, PORTAL, listing(12), T2)

    third, retired = reconciled(second, PORTAL, listing(12), T3)

    assert retired == frozenset({14})
    assert set(third.inventory.lines) == {12}
    assert third.missing == {}


def test_a_line_listed_again_is_no_longer_missing() -> None:
    first, _ = reconciled(None, PORTAL, listing(12, 14), T1)
    second, _ = reconciled(first, PORTAL, listing(12), T2)

    third, retired = reconciled(second, PORTAL, listing(12, 14), T3)

    assert retired == frozenset()
    assert third.missing == {}


def test_an_incomplete_list_neither_marks_nor_retires() -> None:
    first, _ = reconciled(None, PORTAL, listing(12, 14), T1)
    second, _ = reconciled(first, PORTAL, listing(12), T2)

    third, retired = reconciled(second, PORTAL, listing(12, 15, complete=False), T3)

    assert retired == frozenset()
    assert set(third.inventory.lines) == {12, 14, 15}  # it may add, never remove
    assert third.missing == {14: T2}  # the mark stays as it was


def test_the_stored_record_keeps_progress_missing_lines_and_completeness() -> None:
    cached = CachedInventory(
        PORTAL,
        T1,
        listing(12, 14, 15, complete=False),
        seen={"myconnector": frozenset({12})},
        progress={"myconnector": Progress(frozenset({12, 14, 15, 40, 41, 42}), runs=2)},
        missing={14: T1},
    )

    item = inventory_to_item(cached)

    assert item["progress"]["myconnector"] == {"probed": "12,14-15,40-42", "runs": 2}
    restored = inventory_from_item(item)
    assert restored == cached
    assert restored.inventory.complete is False
    assert set(restored.inventory.lines) == {12, 14, 15}


# -- a line the portal's line-delete event named ---------------------------------------------


def test_a_line_the_delete_event_named_is_retired_by_the_first_complete_list_without_it() -> None:
    first, _ = reconciled(None, PORTAL, listing(12, 14), T1)

    second, retired = reconciled(first, PORTAL, listing(12), T2, deleted={14})

    assert retired == frozenset({14})
    assert set(second.inventory.lines) == {12} and second.missing == {}


def test_a_line_the_delete_event_named_but_still_listed_is_kept() -> None:
    first, _ = reconciled(None, PORTAL, listing(12, 14), T1)

    second, retired = reconciled(first, PORTAL, listing(12, 14), T2, deleted={14})

    assert retired == frozenset() and set(second.inventory.lines) == {12, 14}


def test_an_incomplete_list_retires_no_line_the_delete_event_named() -> None:
    first, _ = reconciled(None, PORTAL, listing(12, 14), T1)

    second, retired = reconciled(first, PORTAL, listing(12, complete=False), T2, deleted={14})

    assert retired == frozenset() and 14 in second.inventory.lines


def test_only_deletions_since_the_last_inventory_count() -> None:
    cached, _ = reconciled(None, PORTAL, listing(12, 14, 15), T2)
    marks = {14: T1, 15: T2 + timedelta(seconds=1)}

    assert deleted_since(marks, cached) == frozenset({15})
    assert deleted_since(marks, None) == frozenset({14, 15})
    # marks are whole seconds: one in the inventory's own second counts
    assert deleted_since(
        {16: T2}, reconciled(None, PORTAL, listing(16), T2 + timedelta(seconds=0.9))[0]
    ) == frozenset({16})


def test_the_newest_marks_are_kept_and_the_oldest_dropped() -> None:
    marks = {line: T1 + timedelta(seconds=line) for line in range(1, DELETIONS_KEPT + 4)}

    assert deletions_over(marks) == [1, 2, 3]
    assert deletions_over({1: T1}) == []


# -- rounds: when a portal's inventory is read again -----------------------------------------

EVERY = timedelta(minutes=240)
SCHEDULE = timedelta(minutes=5)


def fleet(n: int) -> list[str]:
    return [f"portal-{i}.bitrix24.com" for i in range(n)]


def rounds(portal: str, since: datetime, until: datetime) -> list[datetime]:
    found = [next_round(portal, EVERY, since)]
    while found[-1] <= until:
        found.append(next_round(portal, EVERY, found[-1]))
    return found[:-1]


def test_a_portal_s_phase_is_stable_and_within_the_interval() -> None:
    phases = {p: round_phase(p, EVERY) for p in fleet(200)}

    assert all(timedelta(0) <= phase < EVERY for phase in phases.values())
    assert phases == {p: round_phase(p, EVERY) for p in fleet(200)}  # no salted hash
    assert len(set(phases.values())) == 200


def test_each_round_is_due_in_exactly_one_run_and_a_fleet_spreads_over_the_runs() -> None:
    """1,000 portals, a run every 5 minutes (each started a little late, no wall clock) for
    three intervals: every portal is read once an interval, about N/48 a run."""
    portals = fleet(1000)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    runs = [start + k * SCHEDULE + timedelta(seconds=(k * 37) % 50) for k in range(3 * 48 + 1)]
    due_per_run = []
    reads = dict.fromkeys(portals, 0)
    for previous, now in pairwise(runs):
        due = [p for p in portals if round_passed(p, EVERY, previous, now)]
        due_per_run.append(len(due))
        for portal in due:
            reads[portal] += 1

    # once a round each, none skipped or doubled (runs[-1] is a little past three intervals)
    assert reads == {p: len(rounds(p, runs[0], runs[-1])) for p in portals}
    assert set(reads.values()) <= {3, 4} and sum(reads.values()) < 3050
    assert max(due_per_run) <= 3 * 1000 / 48  # never the whole fleet in one run
    assert sum(1 for n in due_per_run if 10 <= n <= 32) >= 0.9 * len(due_per_run)


def test_a_long_gap_between_runs_makes_every_round_due() -> None:
    since = datetime(2026, 12, 1, tzinfo=UTC)

    assert all(round_passed(p, EVERY, since, since + EVERY) for p in fleet(100))
    assert not any(round_passed(p, EVERY, since, since) for p in fleet(100))


def test_the_next_round_is_strictly_after() -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    first = next_round(PORTAL, EVERY, at)

    assert at < first <= at + EVERY
    assert next_round(PORTAL, EVERY, first) == first + EVERY
    assert round_passed(PORTAL, EVERY, first - timedelta(microseconds=1), first)


def test_the_last_run_that_held_the_portal_says_since_when_rounds_are_owed() -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    shards = (
        ShardRun(KeyRange("", "m"), at, at + timedelta(seconds=30)),
        ShardRun(KeyRange("m", None), at + timedelta(seconds=5), at + timedelta(seconds=40)),
    )
    run = RunRecord("r", at, at + timedelta(seconds=40), shards=shards)

    assert last_checked(run, "a.bitrix24.com") == at
    assert last_checked(run, "z.bitrix24.com") == at + timedelta(seconds=5)
    assert last_checked(None, PORTAL) is None
    unchecked = RunRecord("r", at, at, failed="no usable target", shards=shards[:1])
    assert last_checked(unchecked, "a.bitrix24.com") is None  # it read no inventory


# -- what a record says, whenever it was written ----------------------------------------------


def test_a_read_that_finds_the_inventory_as_stored_changes_nothing_but_the_time() -> None:
    many = Inventory(
        frozenset({"myconnector"}), {n: LineInfo(f"Line {n}", True) for n in range(1, 151)}
    )
    first, _ = reconciled(None, PORTAL, many, T1)
    stored = inventory_from_item(inventory_to_item(first))

    again, retired = reconciled(stored, PORTAL, many, T2)

    assert again.same_as(stored) and retired == frozenset()
    assert again.validated_at == T2
    assert first.inventory.lines[NAMES_KEPT + 1].name == ""  # only the first names are kept
    renamed = {**many.lines, 1: LineInfo("Support", True)}
    changed, _ = reconciled(stored, PORTAL, Inventory(many.connectors, renamed), T2)
    assert not changed.same_as(stored)


def test_an_owed_round_is_stored_and_an_old_record_loads_without_one() -> None:
    cached = CachedInventory(PORTAL, T1, listing(12, 14), owed=True)

    item = inventory_to_item(cached)

    assert item["round_owed"] is True and inventory_from_item(item) == cached
    old = {"pk": "INVENTORY", "sk": PORTAL, "validated_at": "2026-11-01T00:00:00.000000Z"}
    old["lines"] = {"12": {"name": "Sales", "active": True}}  # the earliest layout
    loaded = inventory_from_item(old)
    assert loaded.owed is False and loaded.inventory.lines == {12: LineInfo("Sales", True)}
    read, _ = reconciled(cached, PORTAL, listing(12, 14), T2)
    assert read.owed is False  # a read pays the debt
