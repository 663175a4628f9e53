"""A mistyped target is reported as a configuration error, not as a connector outage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector_monitor.aws.records import inventory_from_item, inventory_to_item
from connector_monitor.domain.inventory import (
    DELETIONS_KEPT,
    CachedInventory,
    Inventory,
    LineInfo,
    Progress,
    deleted_since,
    deletions_over,
    find_misconfigured,
    reconciled,
)
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
