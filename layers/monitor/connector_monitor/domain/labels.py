"""Labels an operator sets on a portal in the registry: the client's name, its owner, a tier
and a runbook URL. Bounded and single-line: they go into alert subjects' neighbours, bodies and
API answers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields

LABEL_LIMIT = 80  # a client's name, an owner, a tier
RUNBOOK_LIMIT = 500
_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]*$")
_URL = re.compile(r"^https://[^\s]+$")


class LabelError(ValueError):
    """A label that cannot be stored; the message says which and why."""


@dataclass(frozen=True)
class PortalLabels:
    """What an operator says about a portal's client. Every field optional ("" when unset)."""

    client: str = ""
    owner: str = ""
    tier: str = ""
    runbook: str = ""

    def __post_init__(self) -> None:
        for name in ("client", "owner", "tier"):
            value = getattr(self, name)
            if len(value) > LABEL_LIMIT or not _PRINTABLE.match(value):
                raise LabelError(
                    f"{name} must be at most {LABEL_LIMIT} printable characters on one line"
                )
        if self.runbook and (len(self.runbook) > RUNBOOK_LIMIT or not _URL.match(self.runbook)):
            raise LabelError(
                f"runbook must be an https:// URL of at most {RUNBOOK_LIMIT} characters"
            )

    @classmethod
    def from_fields(cls, data: Mapping[str, object]) -> PortalLabels:
        """Labels from a JSON object or stored item: known string fields only, trimmed."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise LabelError(f"unknown label(s): {', '.join(unknown)[:200]}")
        values: dict[str, str] = {}
        for name, value in data.items():
            if not isinstance(value, str):
                raise LabelError(f"{name} must be a string")
            values[name] = value.strip()
        return cls(**values)

    def as_dict(self) -> dict[str, str]:
        """The labels that are set."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}

    def __bool__(self) -> bool:
        return bool(self.as_dict())

    def lines(self) -> list[str]:
        """The alert's lines about the client (none when nothing is set)."""
        shown: list[str] = []
        about = [f"{n}: {v}" for n, v in (("owner", self.owner), ("tier", self.tier)) if v]
        if self.client or about:
            who = self.client or "-"
            shown.append(f"Client:    {who}" + (f" ({', '.join(about)})" if about else ""))
        if self.runbook:
            shown.append(f"Runbook:   {self.runbook}")
        return shown


NO_LABELS = PortalLabels()
