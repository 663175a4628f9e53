"""The connector checks against the local portal over real HTTP: the inventory and its paging,
statuses 50 to a batch, a failed command or chunk, and the failures that stop a portal."""

from __future__ import annotations

import time

import pytest

from connector_monitor.deadline import Deadline
from connector_monitor.domain.inventory import LineInfo, find_misconfigured
from connector_monitor.domain.portal_errors import PortalError
from connector_monitor.domain.results import Cause, State
from connector_monitor.domain.targets import Target
from local.bitrix24_portal import LocalPortal
from tests.integration.rest_portal import (
    CONNECTOR,
    causes,
    checks_for,
    new_portal,
    states,
    targets_of,
)

# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def portal(shared_portal: LocalPortal) -> LocalPortal:
    return shared_portal


# --- inventory -----------------------------------------------------------------------------------


def test_the_inventory_is_one_request_of_its_own(portal: LocalPortal) -> None:
    """Validation comes before the statuses, so a pair the portal does not have is never asked
    about (the cycle leaves it out); it costs one request a validation (every 4 hours)."""
    domain = new_portal(portal, lines=120)
    client, _ = checks_for(portal, domain)

    inventory = client.inventory(Deadline.after(10))

    assert portal.request_count(domain) == 1
    assert set(portal.requests(domain)[0].params["cmd"]) == {"connectors", "lines"}
    assert inventory.connectors == {CONNECTOR, "telegrambot"}
    assert len(inventory.lines) == 120
    assert inventory.lines[7] == LineInfo("Line 7", active=True)


def test_a_mistyped_target_is_found_from_the_inventory(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=2)
    client, _ = checks_for(portal, domain)
    typo, missing = Target(domain, "myconector", 1), Target(domain, CONNECTOR, 99)
    wanted = [Target(domain, CONNECTOR, 1), typo, missing]

    # The portal answers an unknown pair with all flags false: it looks like an outage ...
    assert states(client.check(wanted, Deadline.after(10))) == [State.UP, State.DOWN, State.DOWN]
    # ... which the inventory shows to be a configuration error.
    inventory = client.inventory(Deadline.after(10))
    assert set(find_misconfigured(wanted, inventory)) == {typo, missing}


def test_more_than_200_lines_are_paged_with_extra_calls(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=450, connected={1})
    client, _ = checks_for(portal, domain)

    inventory = client.inventory(Deadline.after(10))

    assert sorted(inventory.lines) == list(range(1, 451))
    assert portal.request_count(domain, method="batch") == 1
    assert portal.request_count(domain, method="imopenlines.config.list.get") == 2


def test_a_line_deleted_between_two_pages_skips_no_other_line(portal: LocalPortal) -> None:
    """Pages start after the last ID read, not at an offset: with offsets, deleting line 5
    after the first page would shift line 201 onto the first page and it would be read by
    neither (imopenlines.config.list.get hands PARAMS to the ORM, core yuliai/bitrix-modules
    imopenlines/lib/config.php::getList(), so `>ID` filters)."""
    domain = new_portal(portal, lines=450, connected={1})
    portal.delete_lines_after_next_page(domain, {5})
    client, _ = checks_for(portal, domain)

    inventory = client.inventory(Deadline.after(10))

    assert sorted(inventory.lines) == list(range(1, 451))  # 5 was read before it went
    assert inventory.complete
    again = client.inventory(Deadline.after(10))
    assert sorted(again.lines) == [n for n in range(1, 451) if n != 5]


def test_a_portal_that_will_not_list_connectors_still_lists_its_lines(
    portal: LocalPortal,
) -> None:
    """imconnector.list answers ACCESS_DENIED (HTTP 400) to an app installed by a user who may
    not change Open Lines connectors (core imconnector/lib/rest/common.php::list())."""
    domain = new_portal(portal, lines=2)
    portal.deny_connector_list(domain)
    client, _ = checks_for(portal, domain)

    inventory = client.inventory(Deadline.after(10))

    assert inventory.connectors is None
    assert set(inventory.lines) == {1, 2}


@pytest.mark.parametrize(
    ("fault", "method", "says"),
    [
        ("truncated", None, "bad_answer"),
        ("not_json", "imopenlines.config.list.get", "not JSON"),  # the second page of lines
    ],
)
def test_an_unreadable_inventory_is_a_portal_error(
    portal: LocalPortal, fault: str, method: str | None, says: str
) -> None:
    domain = new_portal(portal, lines=250)
    portal.inject(domain, fault, count=1, method=method)
    client, _ = checks_for(portal, domain)

    with pytest.raises(PortalError) as caught:
        client.inventory(Deadline.after(10))

    assert says in caught.value.detail
    assert set(states(client.check(targets_of(domain, 3), Deadline.after(10)))) == {State.UP}


# --- statuses, 50 to a batch ---------------------------------------------------------------------


def test_120_lines_cost_3_http_requests(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=120, connected=set(range(1, 121, 2)))
    client, _ = checks_for(portal, domain)
    targets = targets_of(domain, 120)

    check = client.check(targets, Deadline.after(10))

    assert portal.request_count(domain) == 3
    assert portal.request_count(domain, method="batch") == 3
    assert client.http_requests == 3
    assert [r.target for r in check.results] == targets
    assert states(check) == [State.UP if n % 2 else State.DOWN for n in range(1, 121)]
    down = check.results[1]
    assert (down.configured, down.error, down.status) == (False, False, False)


def test_no_targets_no_request(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=2)
    client, _ = checks_for(portal, domain)
    assert client.check([], Deadline.after(10)).results == []
    assert portal.request_count(domain) == 0


def test_one_failing_command_only_touches_its_target(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=5)
    portal.fail_command(domain, CONNECTOR, 3, "ACCESS_DENIED")
    client, _ = checks_for(portal, domain)

    check = client.check(targets_of(domain, 5), Deadline.after(10))

    assert states(check) == [State.UP, State.UP, State.UNKNOWN, State.UP, State.UP]
    failed = check.results[2]
    assert failed.cause is Cause.ACCESS_DENIED
    assert failed.detail is not None
    assert "ACCESS_DENIED" in failed.detail
    assert portal.request_count(domain) == 1


def test_a_line_missing_from_the_answer_is_unknown(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=3)
    portal.answer_only(domain, {1, 3})
    client, _ = checks_for(portal, domain)

    check = client.check(targets_of(domain, 3), Deadline.after(10))

    assert states(check) == [State.UP, State.UNKNOWN, State.UP]
    assert check.results[1].cause is Cause.BAD_ANSWER
    assert check.results[1].detail is not None
    assert "the portal answered without this line" in check.results[1].detail


def test_a_failed_chunk_does_not_stop_the_others(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=120)
    portal.inject(domain, "truncated", count=1)
    client, _ = checks_for(portal, domain)

    check = client.check(targets_of(domain, 120), Deadline.after(10))

    assert states(check) == [State.UNKNOWN] * 50 + [State.UP] * 70
    assert portal.request_count(domain) == 3


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        ("WRONG_AUTH_TYPE", Cause.ACCESS_DENIED),
        # the code names a finer cause than its kind (bitrix24/b24restdocs
        # _includes/system-errors.md): an alert says PORTAL UNPAID / PORTAL DELETED
        ("PAYMENT_REQUIRED", Cause.PORTAL_UNPAID),
        ("OVERLOAD_LIMIT", Cause.PORTAL_FAILING),
        ("PORTAL_DELETED", Cause.PORTAL_DELETED),
    ],
)
def test_cannot_see_errors_stop_the_portal_after_one_request(
    portal: LocalPortal, fault: str, cause: Cause
) -> None:
    domain = new_portal(portal, lines=120)
    portal.inject(domain, fault)
    client, _ = checks_for(portal, domain)

    check = client.check(targets_of(domain, 120), Deadline.after(10))

    assert causes(check) == {cause}
    assert portal.request_count(domain) == 1


def test_deadline_reached_between_chunks(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=120)
    portal.latency = 0.4
    client, _ = checks_for(portal, domain)
    started = time.monotonic()

    check = client.check(targets_of(domain, 120), Deadline.after(0.6))

    assert time.monotonic() - started < 0.9
    assert states(check)[:50] == [State.UP] * 50
    assert {r.cause for r in check.results[100:]} == {Cause.DEADLINE}
    assert client.http_requests == 2  # the third chunk was never sent
