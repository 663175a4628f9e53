"""Discovery: which lines a watched connector is a target on.

A watch (`portal/connector/*`) monitors every open line where the connector has been seen
`CONFIGURED=true`. Each validation starts a discovery round: the portal's active lines not yet
seen are probed with the same status call that checks targets, at most `budget` probes a run
(a budget that fits the portal's request bucket and the run's deadline), so a portal with
thousands of lines is discovered over a bounded number of runs on its cached inventory. An
answered probe is remembered (`Progress`) whatever the others did; an unanswered one is asked
again next run. A line answering `CONFIGURED=true` joins the seen lines and stays a target (so a
line configured once and no longer is is DOWN, not forgotten). A line the portal no longer
lists leaves them, once two complete inventories agree (`inventory.reconciled`). Nothing is
probed that the inventory does not list. A round that has not finished after the runs it should
have taken, and a few more, is named in a notice (`stalled`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace

from .inventory import CachedInventory, Inventory, Progress
from .results import CheckResult
from .targets import ConfigIssue, Target, validation_problem

# A round gets the runs its lines need at the budget, and these more (a run now and then short
# of time or throttled), before the notice says it has not finished.
SPARE_RUNS = 3

Seen = Mapping[str, frozenset[int]]


def known_lines(
    cached: CachedInventory | None, connectors: Iterable[str], stored: Iterable[Target]
) -> dict[str, frozenset[int]]:
    """The lines each connector was seen on. Where the cached inventory has not looked for a
    connector (its record lost, a probe unanswered, a version without discovery) the stored
    statuses stand in, so a watched target is never dropped because a record is missing."""
    seen = cached.seen if cached is not None else {}
    targets = list(stored)
    found: dict[str, frozenset[int]] = {}
    for connector in connectors:
        if connector in seen:
            found[connector] = seen[connector]
        elif lines := frozenset(t.line for t in targets if t.connector == connector):
            found[connector] = lines
    return found


def needs_inventory(
    cached: CachedInventory | None, connectors: Iterable[str], deleted: Iterable[int] = ()
) -> bool:
    """A watched connector never looked for on this portal is looked for at once, on a fresh
    inventory; lines a complete inventory did not list are confirmed (or listed again) by the
    next run's, and so are lines a line-delete event named since the last one (`deleted`). An
    unfinished discovery round goes on with the cached inventory."""
    if cached is None:
        return False
    return (
        bool(cached.missing)
        or any(True for _ in deleted)
        or any(c not in cached.seen for c in connectors)
    )


def watched_targets(portal: str, seen: Seen) -> list[Target]:
    return [Target(portal, c, line) for c, lines in sorted(seen.items()) for line in sorted(lines)]


def new_round(cached: CachedInventory, connectors: Iterable[str]) -> CachedInventory:
    """At a validation every watched connector starts a discovery round again (a line may have
    been connected since it was probed), but for a round not finished yet, which goes on."""
    progress = {c: cached.progress.get(c, Progress()) for c in connectors}
    return replace(cached, progress=progress)


def pending(
    portal: str, cached: CachedInventory, seen: Seen, connectors: Iterable[str]
) -> list[Target]:
    """The probes a discovery still owes: for each watched connector the portal lists (or all,
    when it would not list them) that was never looked for or has a round open, each active
    line it has not been seen on and whose probe was not answered in this round."""
    inventory = cached.inventory
    listed = inventory.connectors
    owed: list[Target] = []
    for connector in sorted(set(connectors)):
        if listed is not None and connector not in listed:
            continue
        if connector in cached.seen and connector not in cached.progress:
            continue  # its round is finished
        done = seen.get(connector, frozenset()) | _probed(cached, connector)
        owed += [
            Target(portal, connector, line)
            for line, info in sorted(inventory.lines.items())
            if info.active and line not in done
        ]
    return owed


def probes(
    portal: str, cached: CachedInventory, seen: Seen, connectors: Iterable[str], budget: int
) -> list[Target]:
    """This run's share of the probes owed: at most `budget`."""
    return pending(portal, cached, seen, connectors)[: max(0, budget)]


def pruned(seen: Seen, inventory: Inventory) -> dict[str, frozenset[int]]:
    """Seen lines the portal still lists (a deleted line is no longer a target)."""
    return {c: frozenset(n for n in lines if n in inventory.lines) for c, lines in seen.items()}


def learned(
    cached: CachedInventory,
    seen: Seen,
    connectors: Iterable[str],
    answers: Iterable[CheckResult],
) -> CachedInventory:
    """`cached` with what this run's probes taught: the lines that answered `CONFIGURED=true`
    join the seen ones, every answered probe counts as probed (an unanswered one stays owed),
    and a connector's round ends once nothing is owed. Every watched connector counts as
    looked for."""
    watched = sorted(set(connectors))
    found = {c: set(seen.get(c, frozenset())) for c in watched}
    probed = {c: set(_probed(cached, c)) for c in watched}
    tried: set[str] = set()
    for answer in answers:
        target = answer.target
        if not isinstance(target, Target) or target.connector not in found:
            continue
        tried.add(target.connector)
        if answer.configured is None:
            continue
        probed[target.connector].add(target.line)
        if answer.configured:
            found[target.connector].add(target.line)
    taught = replace(
        cached,
        seen={c: frozenset(lines) for c, lines in found.items()},
        progress={
            c: Progress(frozenset(probed[c]), _runs(cached, c) + (1 if c in tried else 0))
            for c in watched
            if c in cached.progress or c not in cached.seen
        },
    )
    owed = {t.connector for t in pending(cached.portal, taught, taught.seen, watched)}
    return replace(taught, progress={c: p for c, p in taught.progress.items() if c in owed})


def stalled(cached: CachedInventory, connectors: Iterable[str], budget: int) -> list[ConfigIssue]:
    """A notice for each watched connector's discovery round still open after the runs it
    should have taken."""
    watched = set(connectors)
    notices: list[ConfigIssue] = []
    active = [n for n, info in cached.inventory.lines.items() if info.active]
    allowed = math.ceil(len(active) / max(1, budget)) + SPARE_RUNS
    for connector, progress in sorted(cached.progress.items()):
        if connector not in watched or progress.runs <= allowed:
            continue
        known = cached.seen.get(connector, frozenset()) | progress.probed
        done = sum(1 for n in active if n in known)
        reason = (
            f"discovery of {connector} on {cached.portal} has not finished: {done:,} of "
            f"{len(active):,} lines probed after {progress.runs} runs (probes went unanswered: "
            "the portal throttled them or the runs ran out of time). The lines not probed yet "
            "are not monitored; the monitor keeps probing them."
        )
        notices.append(discovery_notice(cached.portal, connector, reason))
    return notices


def discovery_notice(portal: str, connector: str, reason: str) -> ConfigIssue:
    return replace(validation_problem(portal, reason), connector=connector)


def _probed(cached: CachedInventory, connector: str) -> frozenset[int]:
    progress = cached.progress.get(connector)
    return progress.probed if progress is not None else frozenset()


def _runs(cached: CachedInventory, connector: str) -> int:
    progress = cached.progress.get(connector)
    return progress.runs if progress is not None else 0
