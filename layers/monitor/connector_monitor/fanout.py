"""Fan-out: a fleet larger than one invocation checks is split into shards, each checked by a
worker invocation the planner hands it to through a queue.

The planner (the scheduled invocation) decides about the configured entries' own problems,
records the run as in progress with its shards (`RunPlan`), marks the portals of any shard of
the previous run that never finished UNKNOWN, and sends one order per shard. Each worker checks
its shard's key range exactly as a whole run checks everything (its own deadline, its own
alerts, retiring only what its range holds) and adds its counts to the run; the shard that
finishes last records the run as the last run. A shard that crashes leaves every other shard's
results stored and alerted, and its own portals UNKNOWN from the next run on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from .bitrix24.credentials import PortalCredentials
from .cycle import CheckCycle, RunSummary, Tokens
from .deadline import Deadline
from .domain.runs import RunPlan, ShardRun
from .domain.shards import KeyRange, Scope, split
from .domain.targets import TargetList
from .state import StateStore

logger = logging.getLogger(__name__)

UNFINISHED = (
    "the shard of the fleet holding this portal did not finish its last check (its worker "
    "failed or ran out of time: see the shard worker's log and errors alarm)"
)


class ShardOrder(BaseModel):
    """One worker's order, as the queue carries it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str = Field(min_length=1, max_length=200)
    index: int = Field(ge=0, lt=10_000)
    shards: int = Field(ge=1, le=10_000)
    lo: str = Field(max_length=300)
    hi: str | None = Field(default=None, max_length=300)
    started_at: datetime

    @property
    def portals(self) -> KeyRange:
        return KeyRange(self.lo, self.hi)


class WorkQueue(Protocol):
    """Where shard orders go (`aws/work_queue.py` sends them to SQS)."""

    def send(self, orders: Sequence[ShardOrder]) -> None: ...


@dataclass
class LoadedOnce:
    """Tokens loaded by the planner to count the portals, not read again by the run."""

    tokens: Tokens
    loaded: bool = False

    def load(self) -> None:
        if not self.loaded:
            self.tokens.load()
            self.loaded = True

    def portals(self) -> list[str]:
        return self.tokens.portals()

    def credentials(self, portal: str) -> PortalCredentials:
        return self.tokens.credentials(portal)

    def refresh(
        self, portal: str, stale: PortalCredentials, deadline: Deadline | None = None
    ) -> PortalCredentials:
        return self.tokens.refresh(portal, stale, deadline)


def portals_to_check(targets: TargetList, tokens: Tokens) -> list[str]:
    """The portals a run of `targets` checks (`tokens` is loaded for `*/connector/*`)."""
    if any(w.every_portal for w in targets.watches):
        tokens.load()
        return targets.portals(tokens.portals())
    return targets.portals()


@dataclass(frozen=True)
class Planner:
    """The scheduled invocation of a fleet with a work queue."""

    cycle: CheckCycle
    store: StateStore
    queue: WorkQueue
    shard_portals: int
    settled_after: timedelta  # a previous run this old has no shard still working

    def plan(
        self, targets: TargetList, portals: Sequence[str], deadline: Deadline, run_id: str
    ) -> RunSummary:
        ranges = split(portals, self.shard_portals)
        summary = self.cycle.run(targets, deadline, run_id, scope=Scope.entries_only())
        plan = RunPlan(run_id, summary.started_at, tuple(ranges), summary=summary.counts())
        previous = self.store.start_run(plan)
        if previous is not None:
            self._mark_unfinished(previous, run_id)
        self.queue.send(
            [
                ShardOrder(
                    run_id=run_id,
                    index=i,
                    shards=len(ranges),
                    lo=r.lo,
                    hi=r.hi,
                    started_at=summary.started_at,
                )
                for i, r in enumerate(ranges)
            ]
        )
        logger.info(
            "run handed to shard workers",
            extra={"shards": len(ranges), "portals": len(portals), "run_id": run_id},
        )
        return summary

    def _mark_unfinished(self, previous: RunPlan, run_id: str) -> None:
        if self.cycle.clock() - previous.started_at < self.settled_after:
            return  # its shards may still be at work (a run started by hand just after it)
        for portals in previous.unfinished():
            logger.error(
                "a shard of the previous run did not finish: its targets are UNKNOWN",
                extra={"previous_run": previous.run_id, "from": portals.lo, "to": portals.hi},
            )
            self.cycle.mark_unchecked(portals, UNFINISHED, run_id)


@dataclass(frozen=True)
class ShardWorker:
    """A worker invocation: one shard order."""

    cycle: CheckCycle
    store: StateStore
    expire_after: timedelta  # an order older than this belongs to a run long over

    def check(
        self, order: ShardOrder, targets: TargetList, deadline: Deadline
    ) -> RunSummary | None:
        now = self.cycle.clock()
        if now - order.started_at > self.expire_after:
            logger.warning(
                "shard order too old: its run is over, the next run checks these portals",
                extra={"run_id": order.run_id, "index": order.index},
            )
            return None
        summary = self.cycle.run(targets, deadline, order.run_id, scope=Scope.shard(order.portals))
        finished = summary.finished_at or summary.started_at
        shard = ShardRun(order.portals, summary.started_at, finished)
        plan = self.store.finish_shard(order.run_id, order.index, shard, summary.counts())
        if plan is None:
            logger.warning(
                "shard finished after its run was replaced (or twice): its counts are not added",
                extra={"run_id": order.run_id, "index": order.index},
            )
        elif plan.complete:
            logger.info("last shard finished: run recorded", extra={"run_id": order.run_id})
        return summary
