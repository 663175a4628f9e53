"""The registry port: what the registry service asks of the store that keeps the entries.

`aws/registry.py` implements it over the state table; the tests may use an in-memory one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ..domain.labels import PortalLabels
from ..domain.targets import Target, Watch


@dataclass(frozen=True)
class RegisteredEntry:
    """An entry as the registry holds it; `problem` says why a stored item is not usable."""

    key: str
    added_at: datetime | None  # None: the stored time is missing or not one the monitor wrote
    added_by: str
    entry: Target | Watch | None = None
    problem: str | None = None


class RegistryStore(Protocol):
    """The registry's entries, in key order."""

    def page(
        self, *, limit: int, after: str | None = None
    ) -> tuple[list[RegisteredEntry], str | None]:
        """Up to `limit` entries after the key `after`, and the key to continue after."""
        ...

    def add(self, entry: Target | Watch, *, added_by: str, at: datetime) -> bool:
        """Store `entry` unless it is there already (then False)."""
        ...

    def remove(self, key: str) -> bool:
        """Remove the entry with this key; False when there was none."""
        ...

    def labels_of(self, portals: list[str]) -> dict[str, PortalLabels]:
        """These portals' client labels (only those that have some)."""
        ...

    def set_labels(self, portal: str, labels: PortalLabels, *, by: str, at: datetime) -> None:
        """Store a portal's labels, replacing any (no label at all: remove them)."""
        ...
