"""Client context: who a portal belongs to (labels an operator sets in the registry) and what
its open lines are called (from the portal's inventory), so an alert says "Open line: Support
(2)" and "Client: Acme" instead of bare numbers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .causes import Deployment
from .inventory import CachedInventory
from .labels import NO_LABELS, PortalLabels
from .targets import Subject, Target

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class AlertContext:
    """What an alert may say beyond the check itself: where targets are listed (for advice),
    the clients' labels by portal, and the open lines' names by `portal/line`."""

    deployment: Deployment = Deployment.TARGETS
    labels: Mapping[str, PortalLabels] = field(default_factory=dict)
    line_names: Mapping[str, str] = field(default_factory=dict)
    inventoried: frozenset[str] = frozenset()  # portals whose inventory `line_names` reflects

    def labels_of(self, portal: str) -> PortalLabels:
        return self.labels.get(portal, NO_LABELS)

    def line_name(self, subject: Subject) -> str | None:
        """The name of a target's open line, when an inventory of its portal is at hand ("" for
        a line the portal leaves unnamed); None when there is none to ask."""
        if not isinstance(subject, Target) or subject.portal not in self.inventoried:
            return None
        return self.line_names.get(f"{subject.portal}/{subject.line}", "")

    def line(self, portal: str, line: str) -> str:
        """`Support (2)` when the portal names line 2, else `2`."""
        name = self.line_names.get(f"{portal}/{line}")
        return f"{name} ({line})" if name else line


NO_CONTEXT = AlertContext()


def line_names(inventories: Iterable[CachedInventory]) -> dict[str, str]:
    """The open lines' names by `portal/line`, as the portals' inventories list them (the
    LINE_NAME of imopenlines.config.list.get, already cut to `NAME_LIMIT`), on one line;
    unnamed lines are left out."""
    return {
        f"{cached.portal}/{line}": name
        for cached in inventories
        for line, info in cached.inventory.lines.items()
        if (name := _CONTROL.sub(" ", info.name).strip())
    }
