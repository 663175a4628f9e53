"""How a moment is written for people and for the API: UTC, to the second, `Z`."""

from __future__ import annotations

from datetime import UTC, datetime

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def stamp(moment: datetime) -> str:
    """`2026-11-30T12:00:05Z` (an aware moment in any zone is converted to UTC first)."""
    return moment.astimezone(UTC).strftime(FORMAT)
