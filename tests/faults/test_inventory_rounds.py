"""Inventory rounds on the stack: a round that finds every portal's inventory as stored costs
reads, no write; a changed inventory is written once; a round the portal could not answer is
read again by the next run. The world's portals (A: lines 12, 14, 16; B: line 1) after one
baseline run; DynamoDB writes are counted as the checker's client sends them to moto."""

from __future__ import annotations

from typing import Any

import pytest

from tests.faults.conftest import A, B, World

FLEET = pytest.mark.parametrize("world", ["fleet"], indirect=True)


def inventory_writes(world: World) -> list[str]:
    """The portals whose INVENTORY item the checker writes from now on, one entry a write."""
    written: list[str] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        for requests in params.get("RequestItems", {}).values():
            for request in requests:
                item = request.get("PutRequest", {}).get("Item", {})
                if item.get("pk", {}).get("S") == "INVENTORY":
                    written.append(item["sk"]["S"])
        if params.get("Item", {}).get("pk", {}).get("S") == "INVENTORY":
            written.append(params["Item"]["sk"]["S"])

    for operation in ("BatchWriteItem", "PutItem"):
        world.on_dynamodb(f"provide-client-params.dynamodb.{operation}", count)
    return written


@FLEET
def test_a_round_that_finds_every_inventory_unchanged_writes_nothing(world: World) -> None:
    written = inventory_writes(world)
    world.rounds_due()
    stored = {p: world.inventory(p) for p in (A, B)}
    world.portal.clear_requests()

    world.invoke()

    assert world.portal.request_count(A, method="batch") >= 2  # the inventory, then statuses
    assert written == []  # read, found as stored: no write
    assert {p: world.inventory(p) for p in (A, B)} == stored
    world.invoke()
    assert written == []


@FLEET
def test_a_changed_inventory_is_written_once(world: World) -> None:
    written = inventory_writes(world)
    world.portal.add_lines(A, {30: "New line"})
    world.rounds_due()

    world.invoke()
    world.invoke()

    assert written == [A]
    assert 30 in world.inventory(A)["line_ids"]


@FLEET
def test_a_round_the_portal_could_not_answer_is_read_by_the_next_run(world: World) -> None:
    written = inventory_writes(world)
    world.portal.add_lines(A, {30: "New line"})
    world.rounds_due()
    world.portal.inject(A, "http_503")  # A is down through its round

    world.invoke()

    assert world.inventory(A).get("round_owed") is True  # the small write that keeps it due
    assert 30 not in world.inventory(A)["line_ids"]
    world.portal.clear_faults(A)
    world.invoke()  # no round fell since the last run: the debt alone makes it due
    record = world.inventory(A)
    assert 30 in record["line_ids"] and "round_owed" not in record
    world.invoke()
    assert written == [A, A]  # owed, then read: nothing more
    assert world.alerts() == []  # one failed run is below the failure threshold
