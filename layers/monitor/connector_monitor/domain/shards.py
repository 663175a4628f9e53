"""Shards: how a fleet too large for one invocation is split, so each portal is in exactly one.

A shard is a range of *keys* `portal + "/"`, which is how every per-portal record sorts in the
state table (`portal/connector/line`): the ranges partition the whole key space, so each stored
status, inventory and validation notice belongs to exactly one shard, even one of a portal no
longer configured (its shard retires it). `split` cuts the sorted portals into ranges of at most
`size` portals; the first range starts at the beginning and the last one runs to the end.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .targets import ConfigProblem, Subject, Target

SEPARATOR = "/"


def portal_key(portal: str) -> str:
    return portal + SEPARATOR


@dataclass(frozen=True, order=True)
class KeyRange:
    """Keys from `lo` (inclusive; "" is the beginning) to `hi` (exclusive; None is the end)."""

    lo: str = ""
    hi: str | None = None

    @classmethod
    def everything(cls) -> KeyRange:
        return cls()

    @property
    def whole(self) -> bool:
        return self.lo == "" and self.hi is None

    def holds_portal(self, portal: str) -> bool:
        return self.holds_key(portal_key(portal))

    def holds_key(self, key: str) -> bool:
        """A `portal/...` key: in the range exactly when its portal is (no domain has a "/")."""
        return self.lo <= key and (self.hi is None or key < self.hi)

    def overlaps(self, other: KeyRange) -> bool:
        """Whether a key is in both ranges."""
        return (other.hi is None or self.lo < other.hi) and (self.hi is None or other.lo < self.hi)

    def portal_bounds(self) -> tuple[str | None, str | None]:
        """Inclusive bounds on a plain portal name (a token or inventory item's sort key) that
        hold every portal of the range, and may hold a few more that sort apart only by the
        "/" (e.g. `x.com.br` beside `x.com`): callers keep those that `holds_portal`."""
        return (_lowest_plain_name(self.lo[: -len(SEPARATOR)]) if self.lo else None), self.hi


def _lowest_plain_name(portal: str) -> str:
    """The lowest plain name whose key sorts at or after `portal`'s: a prefix of `portal` cut
    just before a character that sorts below the "/" (`acme.bitrix24.com/` sorts after
    `acme.bitrix24.com.br/`, though `acme.bitrix24.com` sorts before `acme.bitrix24.com.br`)."""
    cut = next((i for i, char in enumerate(portal) if i and char < SEPARATOR), len(portal))
    return portal[:cut]


def split(portals: Iterable[str], size: int) -> list[KeyRange]:
    """Ranges of at most `size` of `portals` each, together covering every key."""
    if size < 1:
        raise ValueError("a shard holds at least one portal")
    keys = sorted({portal_key(p) for p in portals})
    starts = [keys[i] for i in range(size, len(keys), size)]
    bounds = ["", *starts]
    return [
        KeyRange(lo, bounds[i + 1] if i + 1 < len(bounds) else None) for i, lo in enumerate(bounds)
    ]


@dataclass(frozen=True)
class Scope:
    """What one run decides about: the targets and validation notices of the portals in
    `portals` (None: no portal), and whether the configured entries' own problems too (a bad
    TARGETS or registry entry, an unusable list). Whatever is outside is neither checked nor
    retired by that run."""

    portals: KeyRange | None = KeyRange()
    entries: bool = True

    @classmethod
    def whole(cls) -> Scope:
        return cls()

    @classmethod
    def shard(cls, portals: KeyRange) -> Scope:
        """A worker's share of a fanned-out run."""
        return cls(portals, entries=False)

    @classmethod
    def entries_only(cls) -> Scope:
        """The planner's share of a fanned-out run: the entries' problems, no portal."""
        return cls(None, entries=True)

    @property
    def is_whole(self) -> bool:
        return self.entries and self.portals is not None and self.portals.whole

    def holds_portal(self, portal: str) -> bool:
        return self.portals is not None and self.portals.holds_portal(portal)

    def holds(self, subject: Subject) -> bool:
        """Whether this run decides about `subject` (and may retire it)."""
        if isinstance(subject, Target) or subject.problem is ConfigProblem.VALIDATION:
            return self.holds_portal(subject.portal)
        return self.entries
