"""Discovery: which lines a watched connector is a target on.

A watch (`portal/connector/*`) monitors every open line where the connector has been seen
`CONFIGURED=true`. At each inventory the portal's active lines not yet seen are probed with the
same status call that checks targets; a line answering `CONFIGURED=true` joins the seen lines
and stays a target (so a line configured once and no longer is is DOWN, not forgotten). A line
the portal no longer lists leaves them. Nothing is probed that the inventory does not list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from .inventory import CachedInventory, Inventory
from .results import CheckResult
from .targets import Target

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


def needs_inventory(cached: CachedInventory | None, connectors: Iterable[str]) -> bool:
    """A watched connector never looked for on this portal is looked for at once."""
    return cached is not None and any(c not in cached.seen for c in connectors)


def watched_targets(portal: str, seen: Seen) -> list[Target]:
    return [Target(portal, c, line) for c, lines in sorted(seen.items()) for line in sorted(lines)]


def probes(
    portal: str, seen: Seen, connectors: Iterable[str], inventory: Inventory
) -> list[Target]:
    """The pairs to ask about at an inventory: each watched connector the portal lists (or all,
    when it would not list them) on each active line it has not been seen on."""
    listed = inventory.connectors
    return [
        Target(portal, connector, line)
        for connector in sorted(set(connectors))
        if listed is None or connector in listed
        for line, info in sorted(inventory.lines.items())
        if info.active and line not in seen.get(connector, frozenset())
    ]


def pruned(seen: Seen, inventory: Inventory) -> dict[str, frozenset[int]]:
    """Seen lines the portal still lists (a deleted line is no longer a target)."""
    return {c: frozenset(n for n in lines if n in inventory.lines) for c, lines in seen.items()}


def learned(
    seen: Seen, connectors: Iterable[str], answers: Iterable[CheckResult]
) -> dict[str, frozenset[int]]:
    """`seen` with the probed lines that answered `CONFIGURED=true`. A connector counts as looked
    for (it gets a key) only if every probe of it was answered; otherwise it is probed again at
    the next run, its lines meanwhile known from the stored statuses."""
    found = {c: set(seen.get(c, frozenset())) for c in connectors}
    unanswered: set[str] = set()
    for answer in answers:
        target = answer.target
        if not isinstance(target, Target) or target.connector not in found:
            continue
        if answer.configured is None:
            unanswered.add(target.connector)
        elif answer.configured:
            found[target.connector].add(target.line)
    return {c: frozenset(lines) for c, lines in found.items() if c not in unanswered}


def with_seen(cached: CachedInventory, seen: Seen) -> CachedInventory:
    return replace(cached, seen=dict(seen))
