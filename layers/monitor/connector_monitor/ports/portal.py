"""The port a check run reaches a portal through: its inventory and its targets' statuses.

`bitrix24.connector_checks` implements it over REST; `open_connector_checks` is the real
`ClientFactory`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..deadline import Deadline
from ..domain.inventory import Inventory
from ..domain.results import CheckResult
from ..domain.targets import Target
from ..tokens.ports import TokenSource


@dataclass(frozen=True)
class PortalCheck:
    """One portal's check: exactly one result per requested target, in the order asked."""

    results: list[CheckResult]


class PortalChecker(Protocol):
    """What a check run asks of one portal.

    `inventory` raises `PortalError`, `DeadlineExceeded` or `TokensUnavailable`; `check` never
    raises for a portal's problems.
    """

    @property
    def portal(self) -> str: ...

    @property
    def http_requests(self) -> int: ...

    def inventory(self, deadline: Deadline) -> Inventory: ...

    def check(self, targets: Sequence[Target], deadline: Deadline) -> PortalCheck: ...

    def close(self) -> None: ...


ClientFactory = Callable[[str, TokenSource], PortalChecker]
