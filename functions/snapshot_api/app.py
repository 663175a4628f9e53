"""Snapshot API: the latest state of the watched connectors over HTTP.

API Gateway HTTP API (payload 2.0) -> this handler -> `connector_monitor.api.resolver` (the
routes, their parameters, the errors) -> the snapshot and registry services -> DynamoDB (one
GetItem and queries; never a scan). The routes are imported on the first request, not at the
cold start: Powertools' event handler and pydantic are most of the API's import time (`make
coldstart`).
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from connector_monitor.api.history_service import HistoryService
    from connector_monitor.api.registry_service import RegistryService
    from connector_monitor.api.silence_service import SilenceService
    from connector_monitor.api.snapshot_service import SnapshotService
    from connector_monitor.api.status_page import StatusPageService
    from connector_monitor.aws.repository import StateRepository
    from connector_monitor.settings import SnapshotSettings

LIBRARY_LOGGER = "connector_monitor"

logger = Logger()
# Only what this function calls: DynamoDB, through botocore.
tracer = Tracer(patch_modules=("botocore",))
# The library's modules are not imported yet: configure their parent logger, which they
# propagate to once they are.
logging.getLogger(LIBRARY_LOGGER)
copy_config_to_registered_loggers(source_logger=logger, include={LIBRARY_LOGGER})


# ---- wiring (lazy and cached: tests set the environment and moto up first) -----------------------
@cache
def settings() -> SnapshotSettings:
    from connector_monitor.settings import SnapshotSettings, load_settings

    return load_settings(SnapshotSettings, os.environ)


@cache
def repository() -> StateRepository:
    from connector_monitor.aws.repository import StateRepository

    return StateRepository(settings().table_name)


@cache
def service() -> SnapshotService:
    from connector_monitor.api.snapshot_service import SnapshotService
    from connector_monitor.aws.registry import Registry

    return SnapshotService(
        repository(), settings().stale_after, labels=Registry(settings().table_name)
    )


@cache
def registry() -> RegistryService:
    from connector_monitor.api.registry_service import RegistryService
    from connector_monitor.aws.registry import Registry

    return RegistryService(Registry(settings().table_name))


@cache
def silences() -> SilenceService:
    from connector_monitor.api.silence_service import SilenceService
    from connector_monitor.aws.silences import SilenceTable

    return SilenceService(SilenceTable(settings().table_name))


@cache
def history() -> HistoryService:
    from connector_monitor.api.history_service import HistoryService
    from connector_monitor.aws.history import HistoryReader

    return HistoryService(repository(), HistoryReader(settings().table_name))


@cache
def status_page() -> StatusPageService:
    from connector_monitor.api.status_page import StatusPageService

    snapshot = service()  # the page's labels are the snapshot's: the registry's, one read

    def labels(portals: list[str]) -> dict[str, dict[str, str]]:
        return {p: shown.as_dict() for p, shown in snapshot.labels_for(portals).items()}

    return StatusPageService(snapshot, history(), labels)


def utcnow() -> datetime:
    return datetime.now(UTC)


# ---- entry point ---------------------------------------------------------------------------------
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    from connector_monitor.api.context import Services
    from connector_monitor.api.resolver import answer

    # Looked up per request, so a test may put another service in place.
    given = Services(
        snapshot=service,
        registry=registry,
        now=utcnow,
        logger=logger,
        history=history,
        status_page=status_page,
        silences=silences,
    )
    return answer(event, context, given)
