"""A check run as the monitor remembers it: when it ran, what it counted, each portal's part."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class PortalRun:
    """One portal's part of a run."""

    checked_at: datetime
    http_requests: int = 0
    error: str | None = None


@dataclass(frozen=True)
class RunRecord:
    """The last completed run: the snapshot's `last_run_at` and staleness come from here.

    `failed` says why the run could check nothing (TARGETS unusable): /health is not OK then.
    """

    run_id: str
    started_at: datetime
    finished_at: datetime
    summary: dict[str, int] = field(default_factory=dict)
    portals: dict[str, PortalRun] = field(default_factory=dict)
    failed: str | None = None
