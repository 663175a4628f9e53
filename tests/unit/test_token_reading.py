"""Reading a run's tokens (tokens/reading.py): loaded once, each portal's credentials looked up
once, and a refreshed pair is what the run uses from then on."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest

from connector_monitor.deadline import Deadline
from connector_monitor.tokens.credentials import PortalCredentials
from connector_monitor.tokens.errors import UnusableCredentials
from connector_monitor.tokens.reading import LoadedOnce

A, B = "a.bitrix24.com", "b.bitrix24.com"


def pair(portal: str, n: int) -> PortalCredentials:
    return PortalCredentials(
        portal, "id", "secret", f"access-{n}", f"refresh-{n}", f"https://{portal}/rest/"
    )


@dataclass
class CountingTokens:
    """A token source that counts what it is asked; portal B has no usable pair."""

    asked: Counter[str] = field(default_factory=Counter)
    loads: int = 0
    issued: int = 1

    def load(self) -> None:
        self.loads += 1

    def portals(self) -> list[str]:
        return [A, B]

    def credentials(self, portal: str) -> PortalCredentials:
        self.asked[portal] += 1
        if portal == B:
            raise UnusableCredentials(f"no pair for {portal}")
        return pair(portal, self.issued)

    def refresh(
        self, portal: str, stale: PortalCredentials, deadline: Deadline | None = None
    ) -> PortalCredentials:
        self.issued += 1
        return pair(portal, self.issued)


def test_a_run_loads_its_tokens_once_however_often_it_asks() -> None:
    source = CountingTokens()
    run = LoadedOnce(source)
    run.load()
    run.load()
    assert source.loads == 1


def test_a_portals_credentials_are_looked_up_once_a_run() -> None:
    source = CountingTokens()
    run = LoadedOnce(source)

    first, again = run.credentials(A), run.credentials(A)  # the check, then its session

    assert first == again
    assert source.asked[A] == 1


def test_a_refreshed_pair_is_what_the_run_uses_from_then_on() -> None:
    source = CountingTokens()
    run = LoadedOnce(source)
    stale = run.credentials(A)

    fresh = run.refresh(A, stale, Deadline.after(5))

    assert fresh.access_token != stale.access_token
    assert run.credentials(A) == fresh
    assert source.asked[A] == 1


def test_a_portal_without_a_usable_pair_is_refused_every_time_it_is_asked() -> None:
    source = CountingTokens()
    run = LoadedOnce(source)
    for _ in range(2):
        with pytest.raises(UnusableCredentials):
            run.credentials(B)
    assert source.asked[B] == 2  # nothing unusable is remembered as usable


def test_the_run_counts_the_new_pairs_it_was_handed() -> None:
    run = LoadedOnce(CountingTokens())
    stale = run.credentials(A)
    run.refresh(A, stale, Deadline.after(5))
    run.refresh(A, run.credentials(A), Deadline.after(5))
    assert run.refreshed == 2
