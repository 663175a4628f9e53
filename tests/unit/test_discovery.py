"""Discovery on in-memory collaborators: a watch (`portal/connector/*`, `*/connector/*`) makes a
target of each open line where the connector has been seen CONFIGURED=true, and of no other.

What the portal answers for a pair nobody configured is all flags false (core
imconnector/lib/rest/status.php: `Status::getInstance($connector, $line)` of a pair never
activated has CONFIGURED, ERROR and STATUS false; the docs' imconnector-status page lists the
same three flags): probing it must not read as an outage, so only CONFIGURED=true makes a line
a target, and a line configured once and no longer is DOWN.
"""

from __future__ import annotations

from connector_monitor.domain.inventory import LineInfo
from connector_monitor.domain.portal_errors import ErrorKind, PortalError
from connector_monitor.domain.results import Cause, State
from connector_monitor.domain.targets import Target, parse_targets
from connector_monitor.domain.transitions import has_open_incident
from tests.unit.test_cycle import CONNECTOR, A, B, Setup, key, setup

__all__ = ["setup"]

EVERY_LINE = parse_targets(f"{A}/{CONNECTOR}/*")
EVERYWHERE = parse_targets(f"*/{CONNECTOR}/*")


def lines(*numbers: int, inactive: tuple[int, ...] = ()) -> dict[int, LineInfo]:
    return {n: LineInfo(f"L{n}", n not in inactive) for n in numbers}


def stored(setup: Setup) -> list[str]:
    return sorted(k for k in setup.store.statuses if not k.startswith(("config:", "validation:")))


def test_a_watch_makes_targets_of_the_configured_lines_only(setup: Setup) -> None:
    setup.world.lines[A] = lines(1, 2, 3)
    setup.world.unconfigured = {Target(A, CONNECTOR, 3)}

    summary = setup.run(EVERY_LINE)

    assert stored(setup) == [key(1), key(2)]  # line 3 was never configured: not a target
    assert (summary.targets, summary.up, summary.down) == (2, 2, 0)
    assert setup.events() == []
    assert setup.store.inventories[A].seen == {CONNECTOR: frozenset({1, 2})}


def test_between_inventories_only_the_discovered_lines_are_asked(setup: Setup) -> None:
    setup.world.lines[A] = lines(1, 2, 3)
    setup.world.unconfigured = {Target(A, CONNECTOR, 3)}
    setup.run(EVERY_LINE)
    setup.world.asked.clear()

    setup.run(EVERY_LINE)

    assert setup.world.asked == [Target(A, CONNECTOR, 1), Target(A, CONNECTOR, 2)]
    assert setup.world.inventories_read == [A]


def test_a_line_configured_once_and_no_longer_is_down_not_forgotten(setup: Setup) -> None:
    setup.world.lines[A] = lines(1, 2)
    setup.run(EVERY_LINE)
    setup.world.unconfigured = {Target(A, CONNECTOR, 2)}

    setup.run(EVERY_LINE)
    setup.run(EVERY_LINE)
    setup.world.clock.advance(minutes=240)  # an inventory too: the line stays a target
    setup.run(EVERY_LINE)

    assert setup.events() == [("connector.down", "2")]
    status = setup.store.statuses[key(2)]
    assert status.state is State.DOWN and status.configured is False


def test_a_new_line_becomes_a_target_at_the_next_inventory(setup: Setup) -> None:
    setup.world.lines[A] = lines(1)
    setup.run(EVERY_LINE)
    setup.world.lines[A] = lines(1, 7)

    setup.run(EVERY_LINE)
    assert stored(setup) == [key(1)]  # not before the inventory
    setup.world.clock.advance(minutes=240)
    setup.run(EVERY_LINE)

    assert stored(setup) == [key(1), key(7)]
    assert setup.events() == []


def test_a_line_deleted_from_the_portal_stops_being_a_target(setup: Setup) -> None:
    setup.world.lines[A] = lines(1, 2)
    setup.run(EVERY_LINE)
    setup.world.down = {Target(A, CONNECTOR, 2)}
    setup.run(EVERY_LINE)
    setup.run(EVERY_LINE)
    assert setup.events() == [("connector.down", "2")]
    setup.world.lines[A] = lines(1)
    setup.world.clock.advance(minutes=240)

    setup.run(EVERY_LINE)

    assert stored(setup) == [key(1)]
    # its open incident is closed, in the grouped message about targets no longer watched
    (closing,) = setup.publisher.sent
    assert "NO LONGER MONITORED" in closing.subject


def test_inactive_lines_and_connectors_the_portal_does_not_list_are_never_asked(
    setup: Setup,
) -> None:
    setup.world.lines[A] = lines(1, 2, inactive=(2,))
    other = parse_targets(f"{A}/{CONNECTOR}/*,{A}/absent/*")

    setup.run(other)

    assert setup.world.asked == [Target(A, CONNECTOR, 1)]
    assert stored(setup) == [key(1)]


def test_every_portal_with_tokens_is_watched(setup: Setup) -> None:
    setup.world.lines = {A: lines(1), B: lines(4, 5)}
    setup.world.unconfigured = {Target(B, CONNECTOR, 5)}

    setup.run(EVERYWHERE)
    assert stored(setup) == [key(1), key(4, B)]

    setup.tokens.held = [A]  # B's pair was removed from the store: B is no longer watched
    setup.run(EVERYWHERE)
    assert stored(setup) == [key(1)]


def test_an_unreadable_token_store_drops_no_watched_target(setup: Setup) -> None:
    setup.world.lines = {A: lines(1), B: lines(4)}
    setup.run(EVERYWHERE)
    setup.tokens.unreadable = True

    summary = setup.run(EVERYWHERE)

    assert stored(setup) == [key(1), key(4, B)]
    assert summary.unknown == 2
    assert setup.store.statuses[key(4, B)].cause is Cause.MONITOR_ERROR


def test_a_lost_inventory_record_keeps_the_stored_targets(setup: Setup) -> None:
    setup.world.lines[A] = lines(1, 2)
    setup.run(EVERY_LINE)
    setup.store.inventories.clear()
    setup.world.failing[A] = _failure()

    summary = setup.run(EVERY_LINE)  # the inventory cannot be read again: targets stay

    assert stored(setup) == [key(1), key(2)]
    assert summary.unknown == 2


def test_a_probe_without_an_answer_is_asked_again_next_run(setup: Setup) -> None:
    setup.world.lines[A] = lines(1)
    failing = _failure()
    original = setup.world.client

    def inventory_then_failing_checks(portal, tokens):  # type: ignore[no-untyped-def]
        client = original(portal, tokens)
        inventory = client.inventory

        def read(deadline):  # type: ignore[no-untyped-def]
            result = inventory(deadline)
            setup.world.failing[A] = failing  # the status call after it fails
            return result

        client.inventory = read  # type: ignore[method-assign]
        return client

    setup.world.client = inventory_then_failing_checks  # type: ignore[method-assign]
    setup.run(EVERY_LINE)
    assert stored(setup) == []
    assert CONNECTOR not in setup.store.inventories[A].seen  # not looked for yet
    setup.world.client = original  # type: ignore[method-assign]
    del setup.world.failing[A]

    setup.run(EVERY_LINE)  # the inventory is read again at once

    assert stored(setup) == [key(1)]


def test_removing_the_watch_retires_its_lines(setup: Setup) -> None:
    setup.world.lines[A] = lines(1, 2)
    setup.run(parse_targets(f"{A}/{CONNECTOR}/*,{B}/{CONNECTOR}/1"))
    setup.world.down = {Target(A, CONNECTOR, 1)}
    setup.run(parse_targets(f"{A}/{CONNECTOR}/*,{B}/{CONNECTOR}/1"))
    setup.run(parse_targets(f"{A}/{CONNECTOR}/*,{B}/{CONNECTOR}/1"))
    assert has_open_incident(setup.store.statuses[key(1)])

    setup.run(parse_targets(f"{B}/{CONNECTOR}/1"))

    assert stored(setup) == [key(1, B)]


def _failure() -> PortalError:
    return PortalError(ErrorKind.PORTAL_FAILING, A, description="HTTP 503")
