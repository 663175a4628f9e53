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
from datetime import timedelta

from .cycle import CheckCycle, RunSummary
from .deadline import Deadline
from .domain.runs import RunPlan, ShardRun
from .domain.shards import Scope, split
from .domain.targets import TargetList
from .ports.state_store import StateStore
from .ports.work_queue import ShardOrder, WorkQueue
from .tokens.ports import Tokens

logger = logging.getLogger(__name__)

UNFINISHED = (
    "the shard of the fleet holding this portal did not finish its last check (its worker "
    "failed or ran out of time: see the shard worker's log and errors alarm)"
)


def portals_to_check(targets: TargetList, tokens: Tokens) -> list[str]:
    """The portals a run of `targets` checks (`tokens` is loaded for `*/connector/*`)."""
    if any(w.every_portal for w in targets.watches):
        tokens.load()
        return targets.portals(tokens.portals())
    return targets.portals()


@dataclass(frozen=True)
class ScheduledRun:
    summary: RunSummary
    sharded: bool  # handed to shard workers: the run's figures come from them


def run_scheduled(
    cycle: CheckCycle,
    targets: TargetList,
    deadline: Deadline,
    run_id: str,
    *,
    shard_portals: int,
    planner: Planner | None,
) -> ScheduledRun:
    """The fan-out decision: a fleet larger than one invocation checks (`shard_portals`) is
    planned into shards when there is a work queue (`planner`); anything else is checked here,
    a fleet too large for that with a warning. An unusable target list names no portal, so
    it is never planned: the cycle reports it once."""
    portals = portals_to_check(targets, cycle.tokens)
    if planner is not None and len(portals) > shard_portals:
        return ScheduledRun(planner.plan(targets, portals, deadline, run_id), sharded=True)
    if len(portals) > shard_portals:
        logger.warning(
            "more portals than one invocation is sized for, and no work queue: deploy with "
            "FanOut=true to split the run",
            extra={"portals": len(portals), "shard_portals": shard_portals},
        )
    return ScheduledRun(cycle.run(targets, deadline, run_id, portals=portals), sharded=False)


@dataclass(frozen=True)
class Planner:
    """The scheduled invocation of a fleet with a work queue."""

    cycle: CheckCycle
    store: StateStore
    queue: WorkQueue
    shard_portals: int

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
        """The previous run's unfinished shards as `start_run` replaced it, atomically with the
        workers' `start_shard`: one a worker is still at (started, its invocation not over) is
        left to it, whose answers must not lose their conditional writes to an UNKNOWN; the rest
        are dead (failed, out of time) or will never start (a worker of a replaced run does
        not), so their portals are UNKNOWN now, however soon after it this run started."""
        now = self.cycle.clock()
        for portals in previous.unfinished():
            if portals not in previous.abandoned(now):
                logger.warning(
                    "a shard of the previous run is still at work: its targets are left to it",
                    extra={"previous_run": previous.run_id, "from": portals.lo, "to": portals.hi},
                )
                continue
            logger.error(
                "a shard of the previous run did not finish: its targets are UNKNOWN",
                extra={"previous_run": previous.run_id, "from": portals.lo, "to": portals.hi},
            )
            self.cycle.mark_unchecked(portals, UNFINISHED, run_id)


class ShardLost(Exception):
    """A redelivered order (its first delivery failed) whose run is over: failed again, so that
    the queue's redrive moves it to the work dead-letter queue and its alarm fires."""


@dataclass(frozen=True)
class ShardWorker:
    """A worker invocation: one shard order.

    An order is checked only while its run is the one in progress, and only as that run's plan
    has it (`RunPlan.holds`): there is no age limit. The queue delivers a failed order again
    after its visibility timeout (720 s, longer than the schedule's interval), usually once a
    later planner has replaced the run and marked the shard's portals UNKNOWN: such a
    redelivery is failed again (`ShardLost`) rather than dropped as a success, so a shard that
    fails lands in the dead-letter queue (maxReceiveCount 2) and raises its alarm. A first
    delivery of a replaced run (a worker that started late) is dropped: its portals are the
    next run's.
    """

    cycle: CheckCycle
    store: StateStore

    def check(
        self,
        order: ShardOrder,
        targets: TargetList,
        deadline: Deadline,
        invocation: timedelta,
        deliveries: int = 1,
    ) -> RunSummary | None:
        where = {"run_id": order.run_id, "index": order.index, "deliveries": deliveries}
        plan = self.store.current_run()
        if plan is None or plan.run_id != order.run_id:
            return self._over(where, deliveries)
        if not plan.holds(order.index, order.shards, order.portals):
            logger.error(
                "shard order not in its run's plan dropped: nothing checked",
                extra={**where, "shards": order.shards, "from": order.lo, "to": order.hi},
            )
            return None
        if order.index in plan.done:
            logger.warning("shard order delivered again after it finished: dropped", extra=where)
            return None
        if not self.store.start_shard(order.run_id, order.index, self.cycle.clock() + invocation):
            return self._over(where, deliveries)
        try:
            summary = self.cycle.run(
                targets, deadline, order.run_id, scope=Scope.shard(order.portals)
            )
        except BaseException:
            # dead from now: the next planner marks its portals UNKNOWN, however soon it runs
            self.store.start_shard(order.run_id, order.index, self.cycle.clock())
            raise
        finished = summary.finished_at or summary.started_at
        shard = ShardRun(order.portals, summary.started_at, finished)
        done = self.store.finish_shard(order.run_id, order.index, shard, summary.counts())
        if done is None:
            logger.warning(
                "shard finished after its run was replaced (or twice): its counts are not added",
                extra=where,
            )
        elif done.complete:
            logger.info("last shard finished: run recorded", extra=where)
        return summary

    @staticmethod
    def _over(where: dict[str, object], deliveries: int) -> None:
        if deliveries > 1:
            raise ShardLost(
                "a failed shard's order came back after its run was replaced: failed again for "
                "the dead-letter queue; its portals were marked UNKNOWN by the next run"
            )
        logger.warning(
            "shard order of a run already replaced: dropped, the next run checks these portals",
            extra=where,
        )
        return None
