"""The state store port: what the check cycle and alert delivery need from storage.

`aws/repository.py` implements it over DynamoDB; the unit tests use an in-memory one. Every
write is conditional on the version the run read, so two overlapping runs cannot both decide
the same transition; a *claim* (owner + expiry) on a status says which run is publishing its
pending alerts right now.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from ..domain.alerts import Alert
from ..domain.inventory import CachedInventory
from ..domain.runs import RunPlan, RunRecord, ShardRun
from ..domain.shards import KeyRange, Scope
from ..domain.transitions import TargetStatus


class StateStoreError(Exception):
    """The store could not be read or written (after its own retries)."""


@dataclass(frozen=True)
class Claim:
    owner: str
    until: datetime

    def held_against(self, owner: str, now: datetime) -> bool:
        """Another run holds this claim and it has not run out: the alerts are not `owner`'s
        to publish now."""
        return self.owner != owner and self.until > now


@dataclass
class Loaded:
    """The statuses as a run found them, with who (if anyone) is publishing their alerts."""

    statuses: dict[str, TargetStatus] = field(default_factory=dict)
    claims: dict[str, Claim] = field(default_factory=dict)


@dataclass(frozen=True)
class SaveOutcome:
    saved: list[TargetStatus]  # as stored (version bumped)
    conflicts: list[str]  # keys another run wrote first: their decision stands


class StateStore(Protocol):
    def load(self, scope: Scope | None = None) -> Loaded:
        """Every status `scope` decides about (default: all), with the live claims."""
        ...

    def save(
        self,
        statuses: Sequence[TargetStatus],
        *,
        claims: Mapping[str, Claim],
        history: Mapping[str, Sequence[Alert]] | None = None,
        keep: timedelta = timedelta(days=30),
    ) -> SaveOutcome:
        """Store each status (with its history records, all or nothing) only if nobody stored
        another version since it was read; `claims` is what to write as each one's claim."""
        ...

    def claim(self, status: TargetStatus, claim: Claim, now: datetime) -> TargetStatus | None:
        """Take the right to publish a status's pending alerts; None if another run has it."""
        ...

    def acknowledge(self, status: TargetStatus, owner: str, published: Iterable[str]) -> bool:
        """Remove published alerts and release the claim; False if the claim was lost."""
        ...

    def delete(self, statuses: Sequence[TargetStatus]) -> None: ...

    def save_run(self, run: RunRecord) -> None:
        """Record a run that was not split as the last run."""
        ...

    def load_run(self) -> RunRecord | None:
        """The last run recorded (None: none yet)."""
        ...

    def start_run(self, plan: RunPlan) -> RunPlan | None:
        """Record a fanned-out run as the one in progress; return the one it replaces."""
        ...

    def current_run(self) -> RunPlan | None:
        """The fanned-out run in progress (the last one planned), or None."""
        ...

    def start_shard(self, run_id: str, index: int, until: datetime) -> bool:
        """Record that a worker is at shard `index` of run `run_id` until `until` (its
        invocation's end; `until` in the past: it failed); False when that run was replaced or
        the shard has finished."""
        ...

    def finish_shard(
        self, run_id: str, index: int, shard: ShardRun, counts: Mapping[str, int]
    ) -> RunPlan | None:
        """Add a shard's counts to its run once (the last shard records it as the last run);
        None when the run was replaced or the shard was counted already."""
        ...

    def load_inventories(self, portals: KeyRange | None = None) -> dict[str, CachedInventory]:
        """The cached inventories of the portals in `portals` (default: all)."""
        ...

    def save_inventories(self, inventories: Sequence[CachedInventory]) -> None: ...
