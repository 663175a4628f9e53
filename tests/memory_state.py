"""An in-memory state store (`ports/state_store.py`'s `StateStore`) with DynamoDB's semantics
as the monitor uses them: writes conditional on the version read, claims with an owner and an
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
from connector_monitor.domain.runs import COUNTS, RunPlan, RunRecord, ShardRun
from connector_monitor.domain.shards import KeyRange, Scope
from connector_monitor.domain.transitions import TargetStatus
from connector_monitor.ports.state_store import Claim, Loaded, SaveOutcome, StateStoreError


@dataclass
class MemoryStateStore:
    statuses: dict[str, TargetStatus] = field(default_factory=dict)
    claims: dict[str, Claim] = field(default_factory=dict)
    history: dict[str, list[Alert]] = field(default_factory=dict)
    runs: list[RunRecord] = field(default_factory=list)
    current: RunPlan | None = None
    inventories: dict[str, CachedInventory] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)  # operations that raise StateStoreError
    calls: list[str] = field(default_factory=list)

    # ---- the port ------------------------------------------------------------------------
    def load(self, scope: Scope | None = None) -> Loaded:
        self._enter("load")
        scope = scope or Scope.whole()
        held = {k: s for k, s in self.statuses.items() if scope.holds(s.subject)}
        return Loaded(held, {k: c for k, c in self.claims.items() if k in held})

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

    def load_run(self) -> RunRecord | None:
        self._enter("load_run")
        return self.runs[-1] if self.runs else None

    def start_run(self, plan: RunPlan) -> RunPlan | None:
        self._enter("start_run")
        previous, self.current = self.current, plan
        return previous

    def current_run(self) -> RunPlan | None:
        self._enter("current_run")
        return self.current

    def start_shard(self, run_id: str, index: int, until: datetime) -> bool:
        self._enter("start_shard")
        plan = self.current
        if plan is None or plan.run_id != run_id or index in plan.done:
            return False
        self.current = replace(plan, working={**plan.working, index: until})
        return True

    def finish_shard(
        self, run_id: str, index: int, shard: ShardRun, counts: Mapping[str, int]
    ) -> RunPlan | None:
        self._enter("finish_shard")
        plan = self.current
        if plan is None or plan.run_id != run_id or index in plan.done:
            return None
        summary = {name: plan.summary.get(name, 0) + counts.get(name, 0) for name in COUNTS}
        self.current = plan = replace(plan, done={**plan.done, index: shard}, summary=summary)
        if plan.complete:
            self.runs.append(plan.record())
        return plan

    def load_inventories(self, portals: KeyRange | None = None) -> dict[str, CachedInventory]:
        self._enter("load_inventories")
        portals = portals or KeyRange.everything()
        return {p: c for p, c in self.inventories.items() if portals.holds_portal(p)}

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
