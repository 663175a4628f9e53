"""What exists on a portal, and which targets name something that does not.

`imconnector.status` answers all flags false for a connector or line that does not exist, so a
typo in `TARGETS` would look like an outage. Comparing the targets with the portal's own lists
turns such a typo into a configuration error instead of a `connector.down`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from .runs import RunRecord
from .targets import Target

# Lists quoted in a reason are cut to this many entries: a reason is one line for a person.
_SHOWN = 10
# The lines a portal's line-delete events named, kept on its token item: the newest this many.
DELETIONS_KEPT = 20
# Line names a record keeps (the first lines by id): enough for messages, bounded in size.
NAMES_KEPT = 100
# Where every portal's rounds are counted from (any fixed instant would do).
_ROUNDS_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class LineInfo:
    """One open line as `imopenlines.config.list.get` describes it."""

    name: str
    active: bool


@dataclass(frozen=True)
class Inventory:
    """The connectors active on one portal and its open lines, by line id.

    `connectors` is None when the portal would not list them: `imconnector.list` needs a user
    allowed to change Open Lines connectors (core imconnector/lib/rest/common.php::list()), so
    an app installed by anyone else cannot validate connector ids, only lines.
    """

    connectors: frozenset[str] | None
    lines: Mapping[int, LineInfo]
    # False when the lines may not all be there (the portal ignored the paging filter, or had
    # more lines than are kept): such a list may add lines, never retire one.
    complete: bool = True


@dataclass(frozen=True)
class Progress:
    """A watched connector's unfinished discovery round: the lines whose probe was answered
    (CONFIGURED true or false), and the runs that probed it so far."""

    probed: frozenset[int] = frozenset()
    runs: int = 0


@dataclass(frozen=True)
class CachedInventory:
    """A portal's inventory as the reads that changed it left it (a read that finds it as
    stored changes nothing, not even a time), with the lines each watched connector has been
    seen configured on (`seen`: its keys are the connectors looked for, even where none was
    seen yet), the discovery rounds not finished (`progress`), and the lines the last complete
    inventory did not list (`missing`, with when it first did not): they are held, still lines
    of the portal, until a second complete inventory in a later run confirms they are gone.

    `validated_at` is when it last changed (or weighed a portal's line-delete events);
    `owed`: a round of the portal's inventory was due and not read (the portal down, the run
    out of time), so the next run reads it."""

    portal: str
    validated_at: datetime
    inventory: Inventory
    seen: Mapping[str, frozenset[int]] = field(default_factory=dict)
    progress: Mapping[str, Progress] = field(default_factory=dict)
    missing: Mapping[int, datetime] = field(default_factory=dict)
    owed: bool = False

    def same_as(self, other: CachedInventory | None) -> bool:
        """Whether `other` says the same, whenever each was written: storing this one
        instead would change nothing but the time."""
        return other is not None and replace(self, validated_at=other.validated_at) == other


def round_phase(portal: str, every: timedelta) -> timedelta:
    """Where in each `every` the portal's rounds fall: a stable hash of its key (not Python's
    salted `hash`), so a fleet's rounds spread evenly over the interval, the same in every
    run and every process."""
    digest = hashlib.blake2b(portal.encode(), digest_size=8).digest()
    step = timedelta(microseconds=1)
    return step * (int.from_bytes(digest, "big") % max(1, every // step))


def next_round(portal: str, every: timedelta, after: datetime) -> datetime:
    """The first of the portal's rounds (its phase + k x `every`) after `after`."""
    phase = _ROUNDS_EPOCH + round_phase(portal, every)
    return phase + ((after - phase) // every + 1) * every


def round_passed(portal: str, every: timedelta, since: datetime, now: datetime) -> bool:
    """Whether one of the portal's rounds fell after `since` and by `now`: its inventory is due
    in the first run whose clock passes it."""
    return next_round(portal, every, since) <= now


def last_checked(run: RunRecord | None, portal: str) -> datetime | None:
    """When the last run recorded (or its shard holding `portal`) started: a round that fell
    by then was that run's to read. None: no run recorded the portal's shard, or the run
    checked nothing (no usable target)."""
    if run is None or run.failed:
        return None
    return next((s.started_at for s in run.shards if s.portals.holds_portal(portal)), None)


def reconciled(
    previous: CachedInventory | None,
    portal: str,
    read: Inventory,
    now: datetime,
    followed: Iterable[int] = (),
    deleted: Iterable[int] = (),
) -> tuple[CachedInventory, frozenset[int]]:
    """The cached inventory after a fresh read, and the lines it retires.

    One answer never retires a line: a line the previous inventory had (or one the monitor
    follows targets on, `followed`, should the record be lost) and a complete read does not
    list is held and marked missing; the next complete read (in a later run) that does not
    list it either retires it. An incomplete read retires nothing and marks nothing. A line
    listed again is no longer missing. (The confirming read is the next run's, not the next
    validation's: a line really deleted answers all flags false while it is held, and hours of
    that would page `connector.down` for a line nobody has any more.)

    A line the portal's own line-delete event named (`deleted`, authenticated) is retired by
    the first complete read that does not list it: the event is the second witness. A read that
    still lists it retires nothing (the event was wrong, or the id is in use again).
    """
    witnessed = frozenset(deleted)
    known = dict(previous.inventory.lines) if previous is not None else {}
    for number in followed:
        known.setdefault(number, LineInfo("", active=True))
    if previous is None:
        previous = CachedInventory(portal, now, Inventory(read.connectors, known))
    lines = dict(read.lines)
    missing: dict[int, datetime] = {}
    retired: set[int] = set()
    for number, info in known.items():
        if number in lines:
            continue
        first = previous.missing.get(number)
        if read.complete and (first is not None or number in witnessed):
            retired.add(number)
            continue
        lines[number] = info
        if read.complete:
            missing[number] = now
        elif first is not None:
            missing[number] = first
    kept = {
        number: info if index < NAMES_KEPT else replace(info, name="")
        for index, (number, info) in enumerate(sorted(lines.items()))
    }
    inventory = Inventory(read.connectors, kept, read.complete)
    cached = replace(previous, validated_at=now, inventory=inventory, missing=missing, owed=False)
    return cached, frozenset(retired)


def deleted_since(marks: Mapping[int, datetime], cached: CachedInventory | None) -> frozenset[int]:
    """The lines a line-delete event named since the portal's last inventory (every one when
    there is none): they make an inventory due at once, and it may retire them. An older mark
    was already weighed by an inventory after it. Marks are whole seconds: one in the
    inventory's own second counts (an inventory more, never a line retired that is listed)."""
    if cached is None:
        return frozenset(marks)
    since = cached.validated_at.replace(microsecond=0)
    return frozenset(line for line, at in marks.items() if at >= since)


def deletions_over(marks: Mapping[int, datetime], kept: int = DELETIONS_KEPT) -> list[int]:
    """The oldest marks beyond the `kept` newest: what a store of them drops."""
    newest_first = sorted(marks, key=lambda line: (marks[line], line), reverse=True)
    return sorted(newest_first[kept:])


VALIDATION_OFF = (
    "connector validation is off: the portal refused imconnector.list (ACCESS_DENIED) because "
    "the application was installed by a user who may not change Open Lines connectors. Targets "
    "are still checked, but a mistyped connector would look like an outage. Reinstall the "
    "application as a portal administrator (or give that user the Open Lines permission "
    "'Connectors: modify')."
)


def find_misconfigured(targets: Iterable[Target], inventory: Inventory) -> dict[Target, str]:
    """Targets naming a connector or line the portal does not have, each with a one-line reason.
    They are not asked about: a status call for an unknown pair answers all flags false.

    Targets that pass are left out. An inactive line is a reason too: a connector cannot work
    on a line that is switched off, and the fix is in the line's settings, not the connector.
    """
    found: dict[Target, str] = {}
    for target in targets:
        reasons = [
            r
            for r in (_connector_problem(target, inventory), _line_problem(target, inventory))
            if r
        ]
        if reasons:
            found[target] = "; ".join(reasons)
    return found


def _connector_problem(target: Target, inventory: Inventory) -> str | None:
    if inventory.connectors is None or target.connector.lower() in inventory.connectors:
        return None
    active = _listing(sorted(inventory.connectors)) or "none"
    # imconnector.list lists the connectors enabled on the portal (Connector::
    # getListActiveConnectorReal()), not every one registered: say both possibilities.
    return (
        f"connector '{target.connector}' is not among the portal's active connectors "
        f"(active: {active}): a mistyped id, or a connector registered but switched off "
        "on the portal"
    )


def _line_problem(target: Target, inventory: Inventory) -> str | None:
    line = inventory.lines.get(target.line)
    if line is None:
        lines = _listing(
            f"{line_id} {info.name}".rstrip() for line_id, info in sorted(inventory.lines.items())
        )
        return f"open line {target.line} does not exist on the portal (lines: {lines or 'none'})"
    if not line.active:
        named = f" ({line.name})" if line.name else ""
        return f"open line {target.line}{named} is not active on the portal; activate it first"
    return None


def _listing(items: Iterable[str]) -> str:
    names = list(items)
    shown = ", ".join(names[:_SHOWN])
    if len(names) > _SHOWN:
        shown += f", ... ({len(names) - _SHOWN} more)"
    return shown
