"""Reading pairs for a run: the fleet's token table before the secret, and a source loaded once
however many times a run asks."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ..deadline import Deadline
from .credentials import PortalCredentials
from .ports import PairStore, RefreshLease, Tokens


class TableThenSecret:
    """Two pair stores read as one: a portal's pair is in the first if it holds one there (the
    fleet's token table), else in the second (the secret of a small deployment). A portal moved
    from the second to the first is read from the first from then on."""

    def __init__(self, first: PairStore, second: PairStore) -> None:
        self.first = first
        self.second = second

    def load(self) -> None:
        self.second.load()  # the secret: it also holds the applications the table's pairs name
        self.first.load()

    def _owner(self, portal: str) -> PairStore:
        return self.first if self.first.holds(portal) else self.second

    def credentials(self, portal: str) -> PortalCredentials:
        return self._owner(portal).credentials(portal)

    def reread(self, portal: str) -> PortalCredentials:
        return self._owner(portal).reread(portal)

    def store(self, fresh: PortalCredentials) -> None:
        self._owner(fresh.portal).store(fresh)

    def lease_name(self, portal: str) -> str:
        return self._owner(portal).lease_name(portal)

    def own_lease(self, portal: str) -> RefreshLease | None:
        return self._owner(portal).own_lease(portal)

    def end_run(self) -> None:
        self.first.end_run()
        self.second.end_run()

    def holds(self, portal: str) -> bool:
        return self.first.holds(portal) or self.second.holds(portal)

    def portals(self) -> list[str]:
        return sorted({*self.first.portals(), *self.second.portals()})

    def deleted_lines(self, portal: str) -> Mapping[int, datetime]:
        return self._owner(portal).deleted_lines(portal)


@dataclass
class LoadedOnce:
    """A run's token source: read once however often the run asks (the fan-out decision loads it
    to count the portals, the run that follows does not read it again), and each portal's
    credentials looked up once (the portal's check asks before it opens its session, and the
    session asks again) until a refresh replaces them."""

    tokens: Tokens
    loaded: bool = False
    refreshed: int = 0  # new pairs the run was handed (refreshed, or rotated by another run)
    _known: dict[str, PortalCredentials] = field(default_factory=dict, repr=False)
    _count_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def load(self) -> None:
        if not self.loaded:
            self.tokens.load()
            self.loaded = True

    def portals(self) -> list[str]:
        return self.tokens.portals()

    def deleted_lines(self, portal: str) -> Mapping[int, datetime]:
        return self.tokens.deleted_lines(portal)

    def end_run(self) -> None:
        self.tokens.end_run()

    def credentials(self, portal: str) -> PortalCredentials:
        known = self._known.get(portal)
        if known is None:
            known = self._known[portal] = self.tokens.credentials(portal)
        return known

    def refresh(
        self, portal: str, stale: PortalCredentials, deadline: Deadline | None = None
    ) -> PortalCredentials:
        fresh = self._known[portal] = self.tokens.refresh(portal, stale, deadline)
        with self._count_lock:
            self.refreshed += 1
        return fresh
