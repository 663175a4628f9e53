"""A check run as the monitor remembers it: when it ran, what it counted, which shards finished.

A run that was not split has one shard, covering every portal; a fanned-out run has one per
worker, and is recorded as the last run only once every shard has finished.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from .shards import KeyRange

# The figures a run counts (RunSummary's numbers), as stored and added up across shards.
COUNTS = (
    "targets",
    "up",
    "down",
    "unknown",
    "config_errors",
    "alerts_decided",
    "alerts_published",
    "alerts_pending",
    "alerts_held",
    "conflicts",
    "http_requests",
)
ERRORS_KEPT = 100  # portals with an error a run record names (the rest are in the logs)


@dataclass(frozen=True)
class PortalRun:
    """One portal's part of a run."""

    checked_at: datetime
    http_requests: int = 0
    error: str | None = None


@dataclass(frozen=True)
class ShardRun:
    """One shard's part of a run: which portals, and when they were checked."""

    portals: KeyRange
    started_at: datetime
    finished_at: datetime


@dataclass(frozen=True)
class RunRecord:
    """The last completed run: the snapshot's `last_run_at`, staleness and each target's last
    check come from here.

    `portals` names portals whose check failed (at most ERRORS_KEPT); `failed` says why the run
    could check nothing (no usable target): /health is not OK then.
    """

    run_id: str
    started_at: datetime
    finished_at: datetime
    summary: Mapping[str, int] = field(default_factory=dict)
    portals: Mapping[str, PortalRun] = field(default_factory=dict)
    failed: str | None = None
    shards: tuple[ShardRun, ...] = ()

    def checked_since(self, key: str) -> datetime | None:
        """When the shard holding this `portal/...` key started checking it, or None."""
        for shard in self.shards:
            if shard.portals.holds_key(key):
                return shard.started_at
        return None


@dataclass(frozen=True)
class RunPlan:
    """A fanned-out run while its shards work: the ranges handed out, those finished, and the
    counts so far (the planner's own, then each shard's added as it finishes).

    `working` holds, for each shard a worker has started, until when that worker may still be
    at work (its invocation's end): the next planner leaves a live shard's portals to it and
    marks those of a dead one (its worker's time is up, or it failed) UNKNOWN at once.
    """

    run_id: str
    started_at: datetime
    shards: tuple[KeyRange, ...]
    done: Mapping[int, ShardRun] = field(default_factory=dict)
    summary: Mapping[str, int] = field(default_factory=dict)
    working: Mapping[int, datetime] = field(default_factory=dict)

    def unfinished(self) -> list[KeyRange]:
        return [r for i, r in enumerate(self.shards) if i not in self.done]

    def abandoned(self, now: datetime) -> list[KeyRange]:
        """The unfinished shards no worker is still at: never started, failed, or out of time
        (a worker of a replaced run that has not started never starts: see `start_shard`)."""
        return [
            r
            for i, r in enumerate(self.shards)
            if i not in self.done and not (i in self.working and self.working[i] > now)
        ]

    def holds(self, index: int, shards: int, portals: KeyRange) -> bool:
        """Whether an order for shard `index` of `shards`, for `portals`, is one this plan
        handed out."""
        return shards == len(self.shards) and 0 <= index < shards and self.shards[index] == portals

    @property
    def complete(self) -> bool:
        return len(self.done) == len(self.shards)

    def record(self) -> RunRecord:
        """The run as the last run, once every shard has finished."""
        finished = max((s.finished_at for s in self.done.values()), default=self.started_at)
        shards = tuple(self.done[i] for i in sorted(self.done))
        return RunRecord(self.run_id, self.started_at, finished, dict(self.summary), shards=shards)
