"""Checker: the scheduled Lambda. Parse the event, run one check cycle, return its summary."""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit

# The library (boto3, requests, pydantic) is imported where it is first used, inside the
# invocation, so the cold start's init imports only Powertools.
if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from connector_monitor.aws.lease import Lease
    from connector_monitor.aws.publisher import AlertPublisher
    from connector_monitor.aws.registry import Registry
    from connector_monitor.aws.repository import StateRepository
    from connector_monitor.cycle import CheckCycle, RunSummary
    from connector_monitor.settings import CheckerSettings

LIBRARY_LOGGER = "connector_monitor"

logger = Logger()
metrics = Metrics()
# Only what the checker calls: AWS through botocore, Bitrix24 through requests.
tracer = Tracer(patch_modules=("botocore", "requests"))
# The library's modules are not imported yet: configure their parent logger, which they
# propagate to once they are.
logging.getLogger(LIBRARY_LOGGER)
copy_config_to_registered_loggers(source_logger=logger, include={LIBRARY_LOGGER})

# Kept back from the invocation's remaining time for storing results and publishing alerts.
RESERVE_SECONDS = 15.0
# A claim on pending alerts outlives the invocation that took it by this much, so no other run
# publishes them while this one still may.
CLAIM_MARGIN = timedelta(seconds=30)


@cache
def settings() -> CheckerSettings:
    from connector_monitor.settings import CheckerSettings, load_settings

    return load_settings(CheckerSettings, os.environ)


@cache
def repository() -> StateRepository:
    from connector_monitor.aws.repository import StateRepository

    return StateRepository(settings().table_name)


@cache
def registry() -> Registry:
    from connector_monitor.aws.registry import Registry

    return Registry(settings().table_name)


@cache
def publisher() -> AlertPublisher:
    from connector_monitor.aws.publisher import AlertPublisher

    return AlertPublisher(settings().topic_arn)


@cache
def lease() -> Lease:
    from connector_monitor.aws.lease import Lease

    return Lease(settings().table_name)


def build_cycle(config: CheckerSettings, invocation: timedelta) -> CheckCycle:
    """A cycle for one invocation of at most `invocation`: the token store is new each time
    (one secret read a run), and alert claims last past the invocation's end."""
    from connector_monitor.aws.token_store import token_source
    from connector_monitor.cycle import CheckCycle, CycleSettings

    return CheckCycle(
        repository=repository(),
        tokens=token_source(config.secret_id, tokens_table=config.tokens_table, lease=lease()),
        publisher=publisher(),
        settings=CycleSettings(
            thresholds=config.thresholds,
            history=config.history,
            validate_every=config.validate_every,
            max_parallel_portals=config.max_parallel_portals,
            claim_for=invocation + CLAIM_MARGIN,
        ),
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from connector_monitor.deadline import Deadline
    from connector_monitor.domain.targets import TargetsVariable

    config = settings()
    remaining = context.get_remaining_time_in_millis() / 1000.0
    deadline = Deadline.after(max(1.0, remaining - RESERVE_SECONDS))
    # TARGETS and the registry's entries, each once
    targets = TargetsVariable(config.targets).load().merged(registry().load())
    for error in targets.errors:
        logger.error("bad target entry", extra={"entry": error.entry, "reason": error.reason})
    cycle = build_cycle(config, timedelta(seconds=remaining))
    summary = cycle.run(targets, deadline, run_id=context.aws_request_id)
    record_metrics(summary)
    logger.info("run finished", extra={"summary": summary.as_dict(), "trigger": event.get("id")})
    return summary.as_dict()


def record_metrics(summary: RunSummary) -> None:
    """Four fleet-wide figures, published only with PublishMetrics=true (each costs $0.30 a
    month); per-target detail lives in DynamoDB. Run time and alerts sent are in the Lambda's
    and the topic's own (free) metrics."""
    metrics.add_metric("TargetsUp", MetricUnit.Count, summary.up)
    metrics.add_metric("TargetsDown", MetricUnit.Count, summary.down)
    metrics.add_metric("TargetsUnknown", MetricUnit.Count, summary.unknown)
    metrics.add_metric("AlertsPending", MetricUnit.Count, summary.alerts_pending)
