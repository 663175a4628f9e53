"""The silences port: the operator's silences (`domain/silences.py`), and acknowledging a
target's open outage. `aws/silences.py` implements it over the state table."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from ..domain.silences import Silence
from ..domain.targets import Target


class SilenceStore(Protocol):
    def silences(self) -> list[Silence]:
        """Every stored silence (ended ones too, until the table's TTL removes them), oldest
        first; items that are not a silence the monitor wrote are skipped."""
        ...

    def add(self, silence: Silence) -> None: ...

    def remove(self, silence_id: str) -> Silence | None:
        """Remove a silence; the one removed, or None when there was none."""
        ...

    def acknowledge(self, target: Target, *, by: str) -> datetime | None:
        """Mark the target's open outage acknowledged; when it began, or None when the target
        has no open outage."""
        ...
