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

    setup.run(EVERY_LINE)  # one inventory without it: still a target, still DOWN
    assert stored(setup) == [key(1), key(2)]
    assert setup.events() == []
    assert has_open_incident(setup.store.statuses[key(2)])
    setup.run(EVERY_LINE)  # the next run's inventory confirms it: retired

    assert stored(setup) == [key(1)]
    assert setup.world.inventories_read == [A, A, A]
    # its open incident is closed by a message that says why, not by a recovery
    (closing,) = setup.publisher.sent
    assert closing.subject.startswith("NO LONGER MONITORED (LINE DELETED)")
    assert "open line 2 was deleted on the portal" in closing.message
    assert "working again" not in closing.message


def test_one_inventory_omitting_a_down_line_ends_nothing(setup: Setup) -> None:
    setup.world.lines[A] = lines(1, 2)
    setup.run(EVERY_LINE)
    setup.world.down = {Target(A, CONNECTOR, 2)}
    setup.run(EVERY_LINE)
    setup.run(EVERY_LINE)
    assert setup.events() == [("connector.down", "2")]
    setup.world.lines[A] = lines(1)  # one answer leaves line 2 out
    setup.world.clock.advance(minutes=240)

    setup.run(EVERY_LINE)
    setup.world.lines[A] = lines(1, 2)  # and the next lists it again
    setup.run(EVERY_LINE)
    setup.run(EVERY_LINE)

    assert setup.events() == []  # no closing, no second connector.down
    status = setup.store.statuses[key(2)]
    assert status.state is State.DOWN and has_open_incident(status)
    assert setup.store.inventories[A].missing == {}


def test_a_lost_record_and_one_answer_omitting_a_line_end_nothing(setup: Setup) -> None:
    setup.world.lines[A] = lines(1, 2)
    setup.run(EVERY_LINE)
    setup.store.inventories.clear()
    setup.world.lines[A] = lines(1)

    setup.run(EVERY_LINE)

    assert stored(setup) == [key(1), key(2)]  # held on its stored status
    assert set(setup.store.inventories[A].missing) == {2}


def test_a_list_that_may_be_incomplete_retires_no_line(setup: Setup) -> None:
    setup.world.lines[A] = lines(1, 2)
    setup.run(EVERY_LINE)
    setup.world.lines[A] = lines(1)
    setup.world.incomplete = True
    for _ in range(3):
        setup.world.clock.advance(minutes=240)
        setup.run(EVERY_LINE)

    assert stored(setup) == [key(1), key(2)]
    assert setup.store.inventories[A].missing == {}


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
    assert setup.store.inventories[A].progress[CONNECTOR].probed == frozenset()
    setup.world.client = original  # type: ignore[method-assign]
    del setup.world.failing[A]

    setup.run(EVERY_LINE)  # probed again, on the cached inventory

    assert stored(setup) == [key(1)]
    assert setup.world.inventories_read == [A]
    assert setup.store.inventories[A].progress == {}  # discovery finished


def test_answered_probes_are_kept_when_others_go_unanswered(setup: Setup) -> None:
    setup.world.lines[A] = lines(*range(1, 11))
    setup.world.unconfigured = {Target(A, CONNECTOR, n) for n in range(1, 10)}
    setup.world.unanswered = {Target(A, CONNECTOR, 3)}

    setup.run(EVERY_LINE)
    progress = setup.store.inventories[A].progress[CONNECTOR]
    assert progress.probed == frozenset(range(1, 11)) - {3}  # 3 is owed
    setup.world.unanswered = set()
    setup.world.asked.clear()

    setup.run(EVERY_LINE)

    assert setup.world.asked == [Target(A, CONNECTOR, 10), Target(A, CONNECTOR, 3)]
    assert setup.store.inventories[A].progress == {}
    assert setup.world.inventories_read == [A]


def test_a_large_portal_is_discovered_within_its_budgeted_runs(setup: Setup) -> None:
    setup.world.lines[A] = lines(*range(1, 251))
    configured = {7, 243}
    setup.world.unconfigured = {Target(A, CONNECTOR, n) for n in range(1, 251)} - {
        Target(A, CONNECTOR, n) for n in configured
    }
    cycle_budget = 100

    runs = 0
    while setup.store.inventories.get(A) is None or setup.store.inventories[A].progress:
        setup.run_with(EVERY_LINE, probe_budget=cycle_budget)
        runs += 1
        assert runs <= 3, "250 lines at 100 probes a run take 3 runs"
        assert len(setup.world.asked) <= cycle_budget + len(configured)
        setup.world.asked.clear()

    assert runs == 3
    assert stored(setup) == sorted(key(n) for n in configured)
    assert setup.world.inventories_read == [A]  # one inventory for the whole round
    assert setup.events() == []


def test_a_discovery_that_cannot_finish_says_so_and_the_notice_clears(setup: Setup) -> None:
    setup.world.lines[A] = lines(*range(1, 21))
    setup.world.unanswered = {Target(A, CONNECTOR, n) for n in range(11, 21)}

    for _ in range(5):  # 20 lines at 10 a run: 2 runs needed, 3 spare
        setup.run_with(EVERY_LINE, probe_budget=10)
    assert setup.events() == []
    setup.run_with(EVERY_LINE, probe_budget=10)

    notice = setup.store.statuses[f"validation:{A}/{CONNECTOR}"]
    assert notice.state is State.UNKNOWN and notice.cause is Cause.CONFIGURATION
    assert notice.detail is not None
    assert f"discovery of {CONNECTOR} on {A} has not finished: 10 of 20 lines probed" in (
        notice.detail
    )
    ((event, _),) = setup.events()
    assert event == "check.failed"
    original = setup.world.client

    def crashing(portal, tokens):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    setup.world.client = crashing  # type: ignore[method-assign]
    setup.run_with(EVERY_LINE, probe_budget=10)  # a check that did not finish clears nothing
    assert f"validation:{A}/{CONNECTOR}" in setup.store.statuses
    assert [e for e in setup.events() if e[0] != "check.failed"] == []
    setup.world.client = original  # type: ignore[method-assign]
    setup.world.unanswered = set()

    setup.run_with(EVERY_LINE, probe_budget=10)

    assert f"validation:{A}/{CONNECTOR}" not in setup.store.statuses
    assert [a.subject for a in setup.publisher.sent] == [f"DISCOVERY DONE: {CONNECTOR} at {A}"]


def test_the_record_is_written_only_when_it_changes(setup: Setup) -> None:
    setup.world.lines[A] = lines(1, 2)
    setup.run(EVERY_LINE)
    assert setup.store.calls.count("save_inventories") == 1

    setup.run(EVERY_LINE)
    setup.run(EVERY_LINE)
    assert setup.store.calls.count("save_inventories") == 1  # nothing learned, nothing read

    setup.world.clock.advance(minutes=240)
    setup.run(EVERY_LINE)
    assert setup.world.inventories_read == [A, A]  # its round: read again...
    assert setup.store.calls.count("save_inventories") == 1  # ... found as stored: no write

    setup.world.lines[A] = lines(1, 2, 3)
    setup.world.clock.advance(minutes=240)
    setup.run(EVERY_LINE)
    assert setup.store.calls.count("save_inventories") == 2  # a new line: written
    assert 3 in setup.store.inventories[A].inventory.lines


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
