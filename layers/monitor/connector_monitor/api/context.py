"""What the routes call for one request: the handler's lazily built services, its clock and its
logger, put in the resolver's context by `resolver.answer`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

    from .history_service import HistoryService
    from .registry_service import RegistryService
    from .silence_service import SilenceService
    from .snapshot_service import SnapshotService
    from .status_page import StatusPageService

SERVICES = "services"  # their key in the resolver's context


@dataclass(frozen=True)
class Services:
    snapshot: Callable[[], SnapshotService]
    registry: Callable[[], RegistryService]
    now: Callable[[], datetime]
    logger: Logger
    history: Callable[[], HistoryService]
    status_page: Callable[[], StatusPageService]
    silences: Callable[[], SilenceService] = field(kw_only=True)


def services(router: BaseRouter) -> Services:
    """The current request's (a router sees its resolver's context once included)."""
    found: Services = router.context[SERVICES]
    return found
