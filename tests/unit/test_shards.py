"""Shards partition the key space: every portal, and every record keyed `portal/...`, is in
exactly one, whatever the domains (those that sort apart only by the "/", like x.com and
x.com.br, included)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector_monitor.domain.shards import KeyRange, Scope, split
from connector_monitor.domain.targets import ConfigIssue, ConfigProblem, Target

LABEL = st.text(alphabet="abcxyz019-", min_size=1, max_size=6).filter(
    lambda s: not s.startswith("-") and not s.endswith("-")
)
DOMAIN = st.lists(LABEL, min_size=1, max_size=4).map(".".join)


@given(st.lists(DOMAIN, min_size=1, max_size=60, unique=True), st.integers(1, 9))
def test_each_portal_and_each_of_its_keys_is_in_exactly_one_shard(
    portals: list[str], size: int
) -> None:
    ranges = split(portals, size)

    for portal in portals:
        holding = [r for r in ranges if r.holds_portal(portal)]
        assert len(holding) == 1, portal
        key = f"{portal}/myconnector/12"
        assert [r for r in ranges if r.holds_key(key)] == holding
        lo, hi = holding[0].portal_bounds()  # a plain-name query of the range finds it
        assert (lo is None or lo <= portal) and (hi is None or portal <= hi)
    assert all(sum(r.holds_portal(p) for p in portals) <= size for r in ranges)
    assert ranges[0].lo == "" and ranges[-1].hi is None  # nothing falls outside


def test_domains_that_sort_apart_only_by_the_slash_are_kept_apart_correctly() -> None:
    portals = ["x.com", "x.com.br", "x.com-a", "x"]
    ranges = split(portals, 1)

    assert len(ranges) == 4
    for portal in portals:
        (holding,) = [r for r in ranges if r.holds_portal(portal)]
        assert holding.holds_key(f"{portal}/c/1")
        others = [p for p in portals if p != portal]
        assert not any(holding.holds_portal(p) for p in others)


def test_a_shard_that_starts_at_a_longer_domain_finds_the_shorter_one_it_holds() -> None:
    # Found by the property above: `acme.bitrix24.com/` sorts after `acme.bitrix24.com.br/`
    # ("." < "/"), so a shard starting at .com.br holds .com, whose plain name (the token and
    # inventory sort key) sorts *before* .com.br; a bound of the plain .com.br name missed it.
    portals = ["a.bitrix24.com", "aa.bitrix24.com", "acme.bitrix24.com.br", "acme.bitrix24.com"]
    (_, last) = split(portals, 2)

    assert last.holds_portal("acme.bitrix24.com") and last.holds_portal("acme.bitrix24.com.br")
    lo, hi = last.portal_bounds()
    assert lo is not None and hi is None
    assert lo <= "acme.bitrix24.com" and lo <= "acme.bitrix24.com.br"
    assert not last.holds_portal("aa.bitrix24.com")  # the bound is loose; holds_portal decides


def test_a_fleet_within_one_shard_is_one_range_over_everything() -> None:
    assert split(["a.com", "b.com"], 1000) == [KeyRange.everything()]
    with pytest.raises(ValueError, match="at least one portal"):
        split(["a.com"], 0)


def test_a_scope_decides_about_its_portals_and_only_the_planner_about_entries() -> None:
    (first, second) = split(["a.com", "b.com"], 1)
    target = Target("b.com", "c", 1)
    notice = ConfigIssue("b.com", "why", portal="b.com", problem=ConfigProblem.VALIDATION)
    entry = ConfigIssue("b.com/c", "expected domain/connector/line", "b.com", "c")

    assert [Scope.shard(r).holds(target) for r in (first, second)] == [False, True]
    assert [Scope.shard(r).holds(notice) for r in (first, second)] == [False, True]
    assert not Scope.shard(second).holds(entry)
    assert Scope.entries_only().holds(entry) and not Scope.entries_only().holds(target)
    assert Scope.whole().is_whole and not Scope.shard(second).is_whole


def test_ranges_overlap_exactly_when_a_portal_is_in_both() -> None:
    """The refresh claim refuses an invocation whose range shares a portal with a live holder's:
    the shards of one plan never overlap; two plans' shards (a new split beside a previous
    run's shard still at work) may."""
    portals = [f"p{i}.com" for i in range(6)]
    one_plan = split(portals, 2)
    other_plan = split(portals, 3)
    for a in one_plan:
        for b in one_plan:
            assert a.overlaps(b) is (a == b)
    for a in one_plan + other_plan:
        for b in one_plan + other_plan:
            shared = any(a.holds_portal(p) and b.holds_portal(p) for p in portals)
            assert a.overlaps(b) is shared, (a, b)
            assert a.overlaps(b) is b.overlaps(a)
        assert a.overlaps(KeyRange.everything())
    assert not KeyRange("a/", "b/").overlaps(KeyRange("b/", None))  # hi is exclusive
