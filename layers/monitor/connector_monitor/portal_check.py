"""One portal's check within a run: its inventory when due, the discovery of watched connectors,
the statuses of its targets, and results for what could not be asked.

The inventory is read again in the portal's round (the first run whose clock passes its phase +
k x `validate_every`, `domain.inventory.round_passed`: a fleet's rounds spread over the
interval, about one portal in 48 a run at the defaults), which starts a discovery round, and
at once when there is no record, a watched connector was never looked for, or lines the last
one did not list wait to be confirmed gone (or a line-delete event named one). A fresh one
retires the lines two complete inventories did not list; the probes owed are asked on the fresh
or the cached inventory, at most `probe_budget` a run. Targets the inventory does not list are
flagged as misconfigured instead of asked about. The record is handed back only when it
changed: a round that finds the inventory as stored writes nothing, and a round that could not
be read hands back the record marked `owed`, so the next run reads it. The decisions live in
`domain.discovery` and `domain.inventory`; the portal is reached through the `PortalChecker`
port.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from .deadline import Deadline, DeadlineExceeded
from .domain.discovery import (
    learned,
    needs_inventory,
    new_round,
    probes,
    pruned,
    stalled,
    watched_targets,
)
from .domain.inventory import (
    VALIDATION_OFF,
    CachedInventory,
    Inventory,
    deleted_since,
    find_misconfigured,
    last_checked,
    reconciled,
    round_passed,
)
from .domain.portal_errors import PortalError
from .domain.results import Cause, CheckResult, State
from .domain.runs import PortalRun, RunRecord
from .domain.targets import ConfigIssue, Target, validation_problem
from .ports.portal import ClientFactory, PortalChecker
from .tokens.errors import TokensUnavailable, UnusableCredentials
from .tokens.ports import TokenSource

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PortalPlan:
    """What one portal is checked for: its named targets, the connectors watched on all its
    lines with the lines they were seen on, and its cached inventory."""

    portal: str
    named: list[Target]
    watched: list[str]
    seen: dict[str, frozenset[int]]
    cached: CachedInventory | None
    # The lines the portal's line-delete events named (line → when), from its token item.
    deleted: Mapping[int, datetime] = field(default_factory=dict)

    @property
    def targets(self) -> list[Target]:
        """Every target the portal has before this run's inventory: named and discovered."""
        return list(dict.fromkeys([*self.named, *watched_targets(self.portal, self.seen)]))


@dataclass(frozen=True)
class PortalOutcome:
    """A portal's results, its run, its inventory record when it changed (None: nothing to
    write), and why targets leave monitoring (by key), for their closing alerts."""

    results: list[CheckResult]
    run: PortalRun
    inventory: CachedInventory | None = None
    retired: dict[str, str] = field(default_factory=dict)


# Probes a run asks at most per portal: 20 batch requests, within the request bucket's burst
# of 50 (bitrix24/limits.py), so probing never makes a portal throttle the targets' checks.
PROBE_BUDGET = 1000
DAWN = datetime.min.replace(tzinfo=UTC)


def configuration_result(error: ConfigIssue, at: datetime) -> CheckResult:
    """The UNKNOWN result of an entry or a portal the operator has to mend."""
    return CheckResult.unknown(error, Cause.CONFIGURATION, error.reason, checked_at=at)


@dataclass(frozen=True)
class PortalCheckService:
    """Checks one portal by its plan. One instance serves all the run's threads: each check
    opens a `PortalChecker` of its own."""

    tokens: TokenSource
    client_factory: ClientFactory
    validate_every: timedelta
    clock: Callable[[], datetime]
    probe_budget: int = PROBE_BUDGET
    # When this run started (None: each check's own clock), and the last run recorded: a
    # portal's round is due in the first run that starts after it.
    run_at: datetime | None = field(default=None, kw_only=True)
    last_run: RunRecord | None = field(default=None, kw_only=True)

    def check(self, plan: PortalPlan, deadline: Deadline) -> PortalOutcome:
        now = self.clock()
        round_due = self._round_due(plan, now)
        try:
            self.tokens.credentials(plan.portal)
        except UnusableCredentials as exc:
            detail = f"no usable credentials for {plan.portal}: {exc}"
            return replace(_without_credentials(plan, detail, now), inventory=self._owed(plan))
        client = self.client_factory(plan.portal, self.tokens)
        try:
            due = round_due or needs_inventory(plan.cached, plan.watched, self._deleted(plan))
            read = _validate(client, deadline) if due else None
            known, retiring = self._known(plan, read, now, round_due)
            asking = _what_to_ask(plan, known, self.probe_budget)
            check = client.check(asking.asked, deadline)
        finally:
            client.close()
        answered = {r.target: r for r in check.results}
        chosen = asking.chosen
        if known is not None and plan.watched:
            probed = [answered[t] for t in asking.probing if t in answered]
            known = learned(known, asking.seen, plan.watched, probed)
            found = [r.target for r in probed if r.configured and isinstance(r.target, Target)]
            chosen = [*chosen, *found]
        results = [
            answered.get(t)
            or CheckResult.unknown(t, Cause.CONFIGURATION, asking.flagged[t], checked_at=now)
            for t in chosen
        ]
        if known is not None and known.inventory.connectors is None:
            results.append(
                configuration_result(validation_problem(plan.portal, VALIDATION_OFF), now)
            )
        if known is not None:
            results += [configuration_result(n, now) for n in self._stalled(known, plan.watched)]
        error = _portal_error(results)
        record = self._to_write(plan, known, read, round_due)
        retired = _retired(plan, retiring, self._deleted(plan))
        return PortalOutcome(results, PortalRun(now, client.http_requests, error), record, retired)

    def _known(
        self, plan: PortalPlan, read: Inventory | None, now: datetime, round_due: bool
    ) -> tuple[CachedInventory | None, frozenset[int]]:
        """The inventory this check goes by, and the lines a fresh read retires."""
        if read is None:
            return plan.cached, frozenset()
        followed = {line for lines in plan.seen.values() for line in lines}
        deleted = self._deleted(plan)
        known, retiring = reconciled(plan.cached, plan.portal, read, now, followed, deleted)
        if plan.watched and round_due:
            known = new_round(known, plan.watched)
        return known, retiring

    def _to_write(
        self,
        plan: PortalPlan,
        known: CachedInventory | None,
        read: Inventory | None,
        round_due: bool,
    ) -> CachedInventory | None:
        """The record to store, or None when it would say what the stored one says: a read
        that found the inventory unchanged moves no time (only one that weighed line-delete
        events does, so they are not weighed again); a due round not read is marked owed."""
        if known is None:
            return None
        if read is None:
            if round_due:
                known = replace(known, owed=True)
            return known if known != plan.cached else None
        if self._deleted(plan) or not known.same_as(plan.cached):
            return known
        return None

    def _owed(self, plan: PortalPlan) -> CachedInventory | None:
        """The record marked owed when this run's round of it was never read (None: nothing
        to write)."""
        cached = plan.cached
        if cached is None or cached.owed or not self._round_due(plan, self.clock()):
            return None
        return replace(cached, owed=True)

    @staticmethod
    def _deleted(plan: PortalPlan) -> frozenset[int]:
        return deleted_since(plan.deleted, plan.cached)

    def _stalled(self, known: CachedInventory, watched: list[str]) -> list[ConfigIssue]:
        notices = stalled(known, watched, self.probe_budget)
        for notice in notices:
            logger.warning(
                "discovery has not converged",
                extra={
                    "portal": notice.portal,
                    "connector": notice.connector,
                    "reason": notice.reason,
                },
            )
        return notices

    def _round_due(self, plan: PortalPlan, now: datetime) -> bool:
        """Whether a round of the portal's inventory is this run's to read: there is no
        record, the last round was not read, or a round fell since the last run (or since
        the record last changed, if later)."""
        cached = plan.cached
        if cached is None or cached.owed:
            return True
        since = max(cached.validated_at, last_checked(self.last_run, plan.portal) or DAWN)
        return round_passed(plan.portal, self.validate_every, since, self.run_at or now)

    def lost(self, plan: PortalPlan, exc: BaseException | None) -> PortalOutcome:
        """The outcome of a check that never finished: past the deadline (`exc` None), or
        crashed."""
        now = self.clock()
        if exc is None:
            cause, detail = Cause.DEADLINE, "the run ran out of time before this portal answered"
        else:
            cause, detail = Cause.MONITOR_ERROR, f"the check failed: {type(exc).__name__}"
            logger.error("portal check crashed", extra={"portal": plan.portal, "error": detail})
        results = [CheckResult.unknown(t, cause, detail, checked_at=now) for t in plan.targets]
        return PortalOutcome(results, PortalRun(now, 0, detail), self._owed(plan))


@dataclass(frozen=True)
class _Asking:
    """What one check asks about: the targets chosen (named, and discovered on the lines seen),
    probes of lines a watch may cover, and the chosen targets flagged instead of asked."""

    chosen: list[Target]
    probing: list[Target]
    flagged: dict[Target, str]
    seen: dict[str, frozenset[int]]

    @property
    def asked(self) -> list[Target]:
        return [t for t in self.chosen if t not in self.flagged] + self.probing


def _what_to_ask(plan: PortalPlan, known: CachedInventory | None, budget: int) -> _Asking:
    """The inventory prunes the lines a watch has seen and names this run's probes."""
    seen, probing = plan.seen, []
    if known is not None and plan.watched:
        seen = pruned(seen, known.inventory)
        probing = probes(plan.portal, known, seen, plan.watched, budget)
    chosen = list(dict.fromkeys([*plan.named, *watched_targets(plan.portal, seen)]))
    probing = [t for t in probing if t not in set(chosen)]
    # Pairs the inventory does not list are not asked about: the portal would answer all flags
    # false, which reads as an outage.
    flagged = find_misconfigured(chosen, known.inventory) if known else {}
    return _Asking(chosen, probing, flagged, seen)


def _retired(plan: PortalPlan, lines: frozenset[int], announced: frozenset[int]) -> dict[str, str]:
    """Why the watched targets on retired lines leave monitoring."""
    return {
        target.key: (
            f"open line {target.line} was deleted on the portal ("
            + (
                "the portal's line-delete event, and an inventory that no longer lists it)"
                if target.line in announced
                else "two inventories in a row did not list it)"
            )
        )
        for target in watched_targets(plan.portal, plan.seen)
        if target.line in lines
    }


def _without_credentials(plan: PortalPlan, detail: str, now: datetime) -> PortalOutcome:
    results = [
        CheckResult.unknown(t, Cause.NO_TOKENS, detail, checked_at=now) for t in plan.targets
    ]
    if not results:  # a watched portal with nothing discovered yet: say why
        notice = validation_problem(plan.portal, f"its lines cannot be discovered: {detail}")
        results.append(configuration_result(notice, now))
    return PortalOutcome(results, PortalRun(now, 0, detail))


def _validate(client: PortalChecker, deadline: Deadline) -> Inventory | None:
    """The portal's inventory, or None (logged) when it could not be read this run."""
    failure: str
    try:
        inventory = client.inventory(deadline)
    except DeadlineExceeded as exc:
        failure = str(exc)
    except (PortalError, TokensUnavailable) as exc:
        failure = exc.detail
    else:
        if inventory.connectors is None:
            logger.warning(
                "connector validation is off: imconnector.list answered ACCESS_DENIED",
                extra={"portal": client.portal},
            )
        if not inventory.complete:
            logger.warning(
                "the portal's open lines could not all be read: no line is retired on this list",
                extra={"portal": client.portal, "lines": len(inventory.lines)},
            )
        return inventory
    logger.warning(
        "target validation could not run", extra={"portal": client.portal, "error": failure}
    )
    return None


def _portal_error(results: Sequence[CheckResult]) -> str | None:
    """A portal-wide failure: every target UNKNOWN for the same non-configuration reason."""
    results = [r for r in results if isinstance(r.target, Target)]
    causes = {(r.cause, r.detail) for r in results if r.state is State.UNKNOWN}
    if results and len(causes) == 1 and all(r.state is State.UNKNOWN for r in results):
        cause, detail = next(iter(causes))
        if cause is None or not cause.is_configuration:
            return detail
    return None
