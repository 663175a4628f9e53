"""An in-memory state store (`connector_monitor.state.StateStore`) with DynamoDB's semantics as
the monitor uses them: writes conditional on the version read, claims with an owner and an
expiry, a status and its history written together or not at all. For unit tests of the cycle
and of alert delivery, which then run without moto.

Its faithfulness is checked against the DynamoDB repository itself: tests/integration/
test_repository.py runs the same contract on both (`StoreContract`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from connector_monitor.domain.alerts import Alert
from connector_monitor.domain.inventory import CachedInventory
from connector_monitor.domain.runs import RunRecord
from connector_monitor.domain.transitions import TargetStatus
from connector_monitor.state import Claim, Loaded, SaveOutcome, StateStoreError


@dataclass
class MemoryStateStore:
    statuses: dict[str, TargetStatus] = field(default_factory=dict)
    claims: dict[str, Claim] = field(default_factory=dict)
    history: dict[str, list[Alert]] = field(default_factory=dict)
    runs: list[RunRecord] = field(default_factory=list)
    inventories: dict[str, CachedInventory] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)  # operations that raise StateStoreError
    calls: list[str] = field(default_factory=list)

    # ---- the port ------------------------------------------------------------------------
    def load(self) -> Loaded:
        self._enter("load")
        return Loaded(dict(self.statuses), dict(self.claims))

    def save(
        self,
        statuses: Sequence[TargetStatus],
        *,
        claims: Mapping[str, Claim],
        history: Mapping[str, Sequence[Alert]] | None = None,
        keep: timedelta = timedelta(days=30),
    ) -> SaveOutcome:
        self._enter("save")
        saved: list[TargetStatus] = []
        conflicts: list[str] = []
        for status in statuses:
            key = status.subject.key
            stored = self.statuses.get(key)
            if (stored.version if stored else 0) != status.version:
                conflicts.append(key)
                continue
            bumped = replace(status, version=status.version + 1)
            self.statuses[key] = bumped
            claim = claims.get(key)
            if claim is not None:
                self.claims[key] = claim
            else:
                self.claims.pop(key, None)
            self.history.setdefault(key, []).extend((history or {}).get(key, ()))
            saved.append(bumped)
        return SaveOutcome(saved, conflicts)

    def claim(self, status: TargetStatus, claim: Claim, now: datetime) -> TargetStatus | None:
        self._enter("claim")
        key = status.subject.key
        stored = self.statuses.get(key)
        held = self.claims.get(key)
        if stored is None or stored.version != status.version:
            return None
        if held is not None and held.until >= now and held.owner != claim.owner:
            return None
        self.claims[key] = claim
        bumped = replace(stored, version=stored.version + 1)
        self.statuses[key] = bumped
        return bumped

    def acknowledge(self, status: TargetStatus, owner: str, published: Iterable[str]) -> bool:
        self._enter("acknowledge")
        key = status.subject.key
        held = self.claims.get(key)
        stored = self.statuses.get(key)
        if held is None or held.owner != owner or stored is None:
            return False
        gone = set(published)
        pending = tuple(a for a in stored.pending if a.id not in gone)
        self.statuses[key] = replace(stored, pending=pending, version=stored.version + 1)
        del self.claims[key]
        return True

    def delete(self, statuses: Sequence[TargetStatus]) -> None:
        self._enter("delete")
        for status in statuses:
            self.statuses.pop(status.subject.key, None)
            self.claims.pop(status.subject.key, None)

    def save_run(self, run: RunRecord) -> None:
        self._enter("save_run")
        self.runs.append(run)

    def load_inventories(self) -> dict[str, CachedInventory]:
        self._enter("load_inventories")
        return dict(self.inventories)

    def save_inventories(self, inventories: Sequence[CachedInventory]) -> None:
        self._enter("save_inventories")
        self.inventories.update({c.portal: c for c in inventories})

    # ---- helpers for tests ---------------------------------------------------------------
    def _enter(self, operation: str) -> None:
        self.calls.append(operation)
        if operation in self.failing:
            raise StateStoreError(f"{operation} failed (injected)")

    def bump(self, key: str) -> None:
        """Another writer stores `key` between a run's load and its save."""
        stored = self.statuses[key]
        self.statuses[key] = replace(stored, version=stored.version + 1)
