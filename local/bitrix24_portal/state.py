"""The in-memory state of one local portal (guarded by LocalPortal's lock)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from local.bitrix24_portal.protocol import PortalFault


@dataclass(frozen=True)
class RecordedRequest:
    """One REST request that reached a portal (OAuth calls are counted by refresh_count)."""

    domain: str
    method: str
    path: str
    params: dict[str, Any]
    at: float


@dataclass
class Fault:
    fault: PortalFault
    remaining: int | None
    method: str | None
    delay: float


@dataclass
class Access:
    issued_at: float
    refresh: str = field(repr=False)
    expired: bool = False


@dataclass
class Bucket:
    level: float = 0.0
    updated: float = 0.0

    def admit(self, burst: int, per_second: float, now: float) -> bool:
        self.level = max(0.0, self.level - (now - self.updated) * per_second)
        self.updated = now
        if self.level + 1 > burst:
            return False
        self.level += 1
        return True


@dataclass
class PortalState:
    domain: str
    client_id: str
    client_secret: str = field(repr=False)
    member_id: str
    connectors: dict[str, str]
    lines: dict[int, str]
    flags: dict[tuple[str, int], tuple[bool, bool]] = field(default_factory=dict)
    access: dict[str, Access] = field(default_factory=dict, repr=False)
    refresh: dict[str, str] = field(default_factory=dict, repr=False)  # refresh -> its access
    issued: set[str] = field(default_factory=set, repr=False)  # every token ever issued
    faults: list[Fault] = field(default_factory=list)
    failed: dict[tuple[str, int], str] = field(default_factory=dict)
    answer_only: frozenset[int] | None = None
    bucket: Bucket = field(default_factory=Bucket)
    refreshes: int = 0

    def take_fault(self, method: str) -> Fault | None:
        for entry in self.faults:
            if entry.method != method and (entry.method is not None or method == "oauth"):
                continue
            if entry.remaining is not None:
                entry.remaining -= 1
                if entry.remaining <= 0:
                    self.faults.remove(entry)
            return entry
        return None
