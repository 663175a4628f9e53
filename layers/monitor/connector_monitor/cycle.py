"""One check run: tokens, each portal's check (`portal_check.py`) in parallel, the state
machine, storage, alerts. This module orchestrates; the decisions live in `domain`, the I/O in
the adapters, reached through ports."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from .deadline import Deadline
from .domain.alerts import Alert
from .domain.causes import Deployment
from .domain.client_context import AlertContext, line_names
from .domain.discovery import known_lines
from .domain.inventory import CachedInventory
from .domain.results import Cause, CheckResult, State
from .domain.runs import COUNTS, PortalRun, RunRecord, ShardRun
from .domain.shards import KeyRange, Scope
from .domain.silences import apply_silences
from .domain.targets import ConfigIssue, ConfigProblem, Target, TargetList
from .domain.timestamps import stamp
from .domain.transitions import TargetStatus, Thresholds, advance, has_open_incident, retire
from .portal_check import (
    PROBE_BUDGET,
    PortalCheckService,
    PortalOutcome,
    PortalPlan,
    configuration_result,
)
from .ports.alerts import Publisher
from .ports.portal import ClientFactory
from .ports.silences import SilenceStore
from .ports.state_store import Claim, Loaded, StateStore
from .publishing import AlertDelivery, DeliveryReport
from .tokens.ports import TokenSource

logger = logging.getLogger(__name__)


class Tokens(TokenSource, Protocol):
    # New pairs handed out so far (the run's summary counts them: a refresh logs no line of
    # its own at INFO, hourly for every portal that would be a fleet's largest log item).
    refreshed: int

    def load(self) -> None: ...

    def portals(self) -> list[str]:
        """The portals the store holds pairs for (a `*/connector/*` watch covers them)."""
        ...

    def deleted_lines(self, portal: str) -> Mapping[int, datetime]:
        """The lines the portal's line-delete events named (line → when)."""
        ...

    def end_run(self) -> None:
        """The run is over: what it held to refresh (a refresh claim) is given back."""
        ...


@dataclass(frozen=True)
class CycleSettings:
    thresholds: Thresholds = field(default_factory=Thresholds)
    history: timedelta = timedelta(days=30)
    validate_every: timedelta = timedelta(hours=4)
    max_parallel_portals: int = 8
    claim_for: timedelta = timedelta(minutes=2)
    probe_budget: int = PROBE_BUDGET  # discovery probes per portal and run
    deployment: Deployment = Deployment.TARGETS  # where targets are listed, for alerts' advice


@dataclass
class RunSummary:
    run_id: str
    started_at: datetime
    finished_at: datetime | None = None
    targets: int = 0
    up: int = 0
    down: int = 0
    unknown: int = 0
    config_errors: int = 0
    alerts_decided: int = 0
    alerts_published: int = 0
    messages_published: int = 0  # alerts go out grouped: these many messages carried them
    alerts_pending: int = 0
    alerts_held: int = 0  # silenced: recorded in the history, not published
    conflicts: int = 0
    http_requests: int = 0
    tokens_refreshed: int = 0
    portal_errors: dict[str, str] = field(default_factory=dict)
    failed: str | None = None  # why nothing could be checked (TARGETS unusable)

    def counts(self) -> dict[str, int]:
        """The figures a run record stores and a fanned-out run adds up."""
        values = self.as_dict()
        return {name: int(values[name]) for name in COUNTS}

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": stamp(self.started_at),
            "finished_at": stamp(self.finished_at) if self.finished_at else None,
            "targets": self.targets,
            "up": self.up,
            "down": self.down,
            "unknown": self.unknown,
            "config_errors": self.config_errors,
            "alerts_decided": self.alerts_decided,
            "alerts_published": self.alerts_published,
            "messages_published": self.messages_published,
            "alerts_pending": self.alerts_pending,
            "alerts_held": self.alerts_held,
            "conflicts": self.conflicts,
            "http_requests": self.http_requests,
            "tokens_refreshed": self.tokens_refreshed,
            "portal_errors": dict(self.portal_errors),
            "failed": self.failed,
        }


@dataclass
class CheckCycle:
    """The check run, with its collaborators injected (the handler builds the real ones)."""

    repository: StateStore
    tokens: Tokens
    publisher: Publisher
    settings: CycleSettings = field(default_factory=CycleSettings)
    client_factory: ClientFactory = field(kw_only=True)
    silences: SilenceStore | None = field(default=None, kw_only=True)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def run(
        self,
        targets: TargetList,
        deadline: Deadline,
        run_id: str | None = None,
        scope: Scope | None = None,
        portals: Sequence[str] | None = None,
    ) -> RunSummary:
        """Check what `scope` holds (default: everything), decide, store, alert. A run of the
        whole fleet records itself as the last run; a share of a fanned-out run leaves that to
        the fan-out, which adds the shares up (`fanout.py`). `portals`: the run's portals when
        the caller has already worked them out (None: from the targets and the tokens)."""
        scope = scope or Scope.whole()
        summary = RunSummary(run_id or uuid.uuid4().hex, self.clock())
        refreshed_before = self.tokens.refreshed
        loaded = self.repository.load(scope)
        unusable = targets.unusable if scope.entries else None
        if unusable is not None:
            # An operator's slip, not a decision to stop watching: check nothing, forget
            # nothing, say so once.
            logger.error(
                "no usable target: nothing was checked and nothing stored is forgotten",
                extra={"reason": unusable.reason},
            )
            summary.failed = unusable.reason
            results = [configuration_result(unusable, summary.started_at)]
            portal_runs: dict[str, PortalRun] = {}
            inventories: list[CachedInventory] = []
            reasons: dict[str, str] = {}
            unfinished: set[str] = set()
            known: list[CachedInventory] = []
        else:
            try:
                results, portal_runs, inventories, reasons, unfinished, known = self._check_all(
                    targets, deadline, loaded, scope, portals
                )
            finally:
                self.tokens.end_run()  # no refresh follows the checks: the claim goes back
            if scope.entries:
                results += [configuration_result(e, summary.started_at) for e in targets.errors]
        context = AlertContext(
            self.settings.deployment,
            targets.labels,
            line_names(known),
            frozenset(i.portal for i in known),
        )
        decided, delivery = self._settle(
            loaded,
            results,
            summary,
            retire=unusable is None,
            reasons=reasons,
            keep=_notices_of(loaded, unfinished),
            context=context,
        )
        if inventories:
            self.repository.save_inventories(inventories)
        self._summarise(summary, results, decided, delivery, portal_runs)
        summary.tokens_refreshed = self.tokens.refreshed - refreshed_before
        if scope.is_whole:
            finished = summary.finished_at or summary.started_at
            self.repository.save_run(
                RunRecord(
                    summary.run_id,
                    summary.started_at,
                    finished,
                    summary.counts(),
                    {p: r for p, r in portal_runs.items() if r.error},
                    failed=summary.failed,
                    shards=(ShardRun(KeyRange.everything(), summary.started_at, finished),),
                )
            )
        return summary

    def mark_unchecked(self, portals: KeyRange, detail: str, run_id: str) -> RunSummary:
        """The targets of `portals` were not checked (a shard that never finished): UNKNOWN,
        through the state machine like any blind check, so a shard that keeps failing ends in
        one `check.failed` alert instead of statuses that silently stop changing."""
        summary = RunSummary(run_id, self.clock())
        loaded = self.repository.load(Scope.shard(portals))
        results = [
            CheckResult.unknown(
                s.subject, Cause.MONITOR_ERROR, detail, checked_at=summary.started_at
            )
            for s in loaded.statuses.values()
            if isinstance(s.subject, Target)
        ]
        decided, delivery = self._settle(loaded, results, summary, retire=False)
        self._summarise(summary, results, decided, delivery, {})
        return summary

    def _settle(
        self,
        loaded: Loaded,
        results: list[CheckResult],
        summary: RunSummary,
        *,
        retire: bool,
        reasons: dict[str, str] | None = None,
        keep: frozenset[str] = frozenset(),
        context: AlertContext | None = None,
    ) -> tuple[dict[str, tuple[Alert, ...]], DeliveryReport]:
        """Decide each result, retire what is no longer configured (when `retire`; `reasons`
        says why, by key, where it is not the configuration; `keep`: keys a check that did not
        finish could not confirm), store, and publish what this run claimed; alerts are worded
        with `context`."""
        context = context or AlertContext(self.settings.deployment)
        changed, decided = self._decide(loaded, results, context)
        retired: set[str] = set()
        if retire:
            retired = self._retire(
                loaded,
                {r.target.key for r in results} | keep,
                summary,
                changed,
                decided,
                reasons or {},
                context,
            )
        changed, decided = self._apply_silences(loaded, changed, decided, summary)
        claims = self._claims(loaded, changed, summary)
        outcome = self.repository.save(
            changed, claims=claims, history=decided, keep=self.settings.history
        )
        summary.conflicts = len(outcome.conflicts)
        statuses = {**loaded.statuses, **{s.subject.key: s for s in outcome.saved}}
        ours = {
            s.subject.key
            for s in outcome.saved
            if s.pending and claims[s.subject.key].owner == summary.run_id
        }
        delivery = AlertDelivery(
            self.repository, self.publisher, summary.run_id, self.settings.claim_for, context
        ).deliver(statuses, ours, loaded.claims, self.clock())
        self._forget(retired, statuses, delivery.cleared)
        return decided, delivery

    # ---- checking ------------------------------------------------------------------------
    def _check_all(
        self,
        targets: TargetList,
        deadline: Deadline,
        loaded: Loaded,
        scope: Scope,
        portals: Sequence[str] | None,
    ) -> tuple[
        list[CheckResult],
        dict[str, PortalRun],
        list[CachedInventory],
        dict[str, str],
        set[str],
        list[CachedInventory],
    ]:
        """Each portal's results and run, the inventory records that changed, why targets leave
        monitoring (by key) where a portal's check says so, the portals whose check did not
        finish, and each portal's newest inventory (read this run or cached: where alerts find
        the lines' names)."""
        if scope.portals is None or not (targets.targets or targets.watches):
            return [], {}, [], {}, set(), []
        now = self.clock()
        stored = [s.subject for s in loaded.statuses.values() if isinstance(s.subject, Target)]
        try:
            self.tokens.load()
        except Exception as exc:  # the store is unreadable: nothing can be checked
            detail = f"the monitor could not read its tokens: {exc}"
            logger.error("token store unavailable", extra={"error": str(exc)})
            # Portals a `*` watch covers are those with stored targets: none is dropped.
            covered = targets.portals([t.portal for t in stored])
            plans = self._plans(targets, covered, stored, {}, scope.portals)
            results = [
                CheckResult.unknown(t, Cause.MONITOR_ERROR, detail, checked_at=now)
                for plan in plans.values()
                for t in plan.targets
            ]
            return results, {p: PortalRun(now, 0, detail) for p in plans}, [], {}, set(plans), []
        if portals is None:
            portals = targets.portals(self.tokens.portals())
        plans = {
            portal: replace(plan, deleted=self.tokens.deleted_lines(portal))
            for portal, plan in self._plans(targets, portals, stored, None, scope.portals).items()
        }
        if not plans:
            return [], {}, [], {}, set(), []
        portal_checks = PortalCheckService(
            self.tokens,
            self.client_factory,
            self.settings.validate_every,
            self.clock,
            self.settings.probe_budget,
            run_at=now,
            last_run=self.repository.load_run(),  # whose rounds were its to read
        )
        workers = min(self.settings.max_parallel_portals, len(plans))
        outcomes: dict[str, PortalOutcome] = {}
        unfinished: set[str] = set()
        # Not `with`: leaving the block would wait for a portal stuck past the deadline.
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="portal")
        try:
            futures = {
                pool.submit(portal_checks.check, plan, deadline): plan for plan in plans.values()
            }
            done, _ = wait(futures, timeout=deadline.remaining() + 1.0)
            for future, plan in futures.items():
                # A future not done is a portal still busy past the deadline (its exchange is
                # cut off at the deadline; a DNS lookup is not): asking it for its exception
                # would wait for it, so it is given up as it is.
                if future not in done:
                    outcomes[plan.portal] = portal_checks.lost(plan, None)
                    unfinished.add(plan.portal)
                elif (failure := future.exception()) is not None:
                    outcomes[plan.portal] = portal_checks.lost(plan, failure)
                    unfinished.add(plan.portal)
                else:
                    outcomes[plan.portal] = future.result()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        results = [r for p in plans for r in outcomes[p].results]
        runs = {p: outcomes[p].run for p in plans}
        inventories = [o.inventory for o in outcomes.values() if o.inventory]
        reasons = {k: why for o in outcomes.values() for k, why in o.retired.items()}
        newest = [outcomes[p].inventory or plan.cached for p, plan in plans.items()]
        known = [i for i in newest if i is not None]
        return results, runs, inventories, reasons, unfinished, known

    def _plans(
        self,
        targets: TargetList,
        portals: Sequence[str],
        stored: Sequence[Target],
        cached: dict[str, CachedInventory] | None,
        scope: KeyRange,
    ) -> dict[str, PortalPlan]:
        """Each plan of `portals` in `scope`; `cached` None reads the inventories (only when
        checking)."""
        portals = [p for p in portals if scope.holds_portal(p)]
        if cached is None:
            cached = self.repository.load_inventories(scope) if portals else {}
        by_portal: dict[str, list[Target]] = {}
        for target in stored:
            by_portal.setdefault(target.portal, []).append(target)
        plans: dict[str, PortalPlan] = {}
        for portal in portals:
            watched = targets.watched_on(portal)
            mine = by_portal.get(portal, [])
            seen = known_lines(cached.get(portal), watched, mine) if watched else {}
            plans[portal] = PortalPlan(
                portal, targets.for_portal(portal), watched, seen, cached.get(portal)
            )
        return plans

    # ---- deciding ------------------------------------------------------------------------
    def _decide(
        self, loaded: Loaded, results: Iterable[CheckResult], context: AlertContext
    ) -> tuple[list[TargetStatus], dict[str, tuple[Alert, ...]]]:
        changed: list[TargetStatus] = []
        decided: dict[str, tuple[Alert, ...]] = {}
        seen: set[str] = set()
        for result in results:
            key = result.target.key
            if key in seen:  # one write per item: DynamoDB refuses two in one transaction
                continue
            seen.add(key)
            previous = loaded.statuses.get(key)
            step = advance(previous, result, self.settings.thresholds, context)
            if step.skew is not None:
                logger.warning(
                    "the stored status was checked in this run's future: a clock was wrong; "
                    "the new answer is taken",
                    extra={"target": key, "skew_seconds": int(step.skew.total_seconds())},
                )
            if step.alerts:
                decided[key] = step.alerts
                for alert in step.alerts:
                    logger.info(
                        "transition",
                        extra={"event": alert.event.value, "target": key, "alert_id": alert.id},
                    )
            if not step.status.same_as(previous):
                changed.append(step.status)
        return changed, decided

    def _apply_silences(
        self,
        loaded: Loaded,
        changed: list[TargetStatus],
        decided: dict[str, tuple[Alert, ...]],
        summary: RunSummary,
    ) -> tuple[list[TargetStatus], dict[str, tuple[Alert, ...]]]:
        """The one seam of the silences: hold the alerts of silenced targets, release the
        targets no silence covers any more (`domain/silences.py`)."""
        if self.silences is None:
            return changed, decided
        silences = self.silences.silences()
        outcome = apply_silences(
            changed, decided, loaded.statuses.values(), silences, summary.started_at
        )
        summary.alerts_held = outcome.held
        if outcome.held or outcome.released:
            logger.info(
                "silences applied",
                extra={"alerts_held": outcome.held, "targets_released": outcome.released},
            )
        return outcome.statuses, outcome.alerts

    def _claims(
        self, loaded: Loaded, changed: Sequence[TargetStatus], summary: RunSummary
    ) -> dict[str, Claim]:
        """Claim the pending alerts we store, unless another run is publishing them now."""
        ours = Claim(summary.run_id, summary.started_at + self.settings.claim_for)
        claims: dict[str, Claim] = {}
        for status in changed:
            key = status.subject.key
            theirs = loaded.claims.get(key)
            if theirs and theirs.held_against(ours.owner, summary.started_at):
                claims[key] = theirs
            elif status.pending:
                claims[key] = ours
        return claims

    def _retire(
        self,
        loaded: Loaded,
        current: set[str],
        summary: RunSummary,
        changed: list[TargetStatus],
        decided: dict[str, tuple[Alert, ...]],
        reasons: dict[str, str],
        context: AlertContext,
    ) -> set[str]:
        """Targets no longer configured or no longer on the portal (their keys are returned):
        an open incident gets its closing alert, saying why (`reasons`), added to `changed` and
        `decided`."""
        retired: set[str] = set()
        for key, status in loaded.statuses.items():
            if key in current:
                continue
            retired.add(key)
            if has_open_incident(status):
                step = retire(status, summary.started_at, reasons.get(key), context)
                changed.append(step.status)
                decided[key] = step.alerts
                logger.info(
                    "closing the open incident of a target no longer configured",
                    extra={"target": key, "alerts": [a.event.value for a in step.alerts]},
                )
        return retired

    def _forget(
        self, retired: set[str], statuses: dict[str, TargetStatus], cleared: set[str]
    ) -> None:
        """Forget targets no longer configured once nothing about them is left to send (a
        closing alert that could not be published keeps its target until it is)."""
        forget = [
            status
            for key in sorted(retired)
            if (status := statuses.get(key)) is not None
            and not has_open_incident(status)
            and (not status.pending or key in cleared)
        ]
        if forget:
            logger.info("forgetting targets no longer configured", extra={"count": len(forget)})
            self.repository.delete(forget)

    def _summarise(
        self,
        summary: RunSummary,
        results: Sequence[CheckResult],
        decided: dict[str, tuple[Alert, ...]],
        delivery: DeliveryReport,
        portal_runs: dict[str, PortalRun],
    ) -> None:
        summary.finished_at = self.clock()
        summary.targets = sum(1 for r in results if isinstance(r.target, Target))
        summary.config_errors = len(results) - summary.targets
        summary.up = sum(1 for r in results if r.state is State.UP)
        summary.down = sum(1 for r in results if r.state is State.DOWN)
        summary.unknown = sum(
            1 for r in results if r.state is State.UNKNOWN and isinstance(r.target, Target)
        )
        summary.alerts_decided = sum(len(a) for a in decided.values())
        summary.alerts_published = delivery.published
        summary.messages_published = delivery.messages
        summary.alerts_pending = delivery.pending
        summary.http_requests = sum(r.http_requests for r in portal_runs.values())
        summary.portal_errors = {p: r.error for p, r in portal_runs.items() if r.error}


def _notices_of(loaded: Loaded, portals: set[str]) -> frozenset[str]:
    """The keys of the stored notices of `portals` (validation off, discovery unfinished): a
    check that did not finish neither raises nor clears them."""
    return frozenset(
        key
        for key, status in loaded.statuses.items()
        if isinstance(status.subject, ConfigIssue)
        and status.subject.problem is ConfigProblem.VALIDATION
        and status.subject.portal in portals
    )
