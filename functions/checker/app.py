"""Checker: the scheduled Lambda, and the fan-out's shard worker.

`lambda_handler` (the schedule): read the targets, then check them all, or, for a fleet larger
than one invocation checks, plan the run and queue one order per shard. `shard_handler` (the
work queue, one order per invocation): check one shard. Both return the run's summary.
"""

from __future__ import annotations

import logging
import os
import warnings
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

    from connector_monitor.composition import Checker, Tuning
    from connector_monitor.cycle import RunSummary
    from connector_monitor.deadline import Deadline
    from connector_monitor.settings import CheckerSettings

LIBRARY_LOGGER = "connector_monitor"

logger = Logger()
metrics = Metrics()
# AWS calls only: portals and OAuth servers are reached through http.client (bitrix24/transport),
# which is left unpatched, so a run of 1,000 portals records no 1,000 subsegments.
tracer = Tracer(patch_modules=("botocore",))
# The library's modules are not imported yet: configure their parent logger, which they
# propagate to once they are.
logging.getLogger(LIBRARY_LOGGER)
copy_config_to_registered_loggers(source_logger=logger, include={LIBRARY_LOGGER})

# A planner hands its run to the shards, which publish the run's figures: it has none of its own.
warnings.filterwarnings("ignore", message="No application metrics to publish")

# Kept back from the invocation's remaining time for storing results and publishing alerts.
RESERVE_SECONDS = 15.0


@cache
def settings() -> CheckerSettings:
    from connector_monitor.settings import CheckerSettings, load_settings

    return load_settings(CheckerSettings, os.environ)


def tuning() -> Tuning:
    """Lambda's wiring (the local run and the tests hand in their own)."""
    from connector_monitor.composition import Tuning

    return Tuning()


@cache
def root() -> Checker:
    """The checker assembled once per container: its adapters live as long as it does."""
    from connector_monitor.composition import Checker

    return Checker(settings(), tuning())


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deadline, remaining = invocation_deadline(context)
    scheduled = root().scheduled_run(deadline, remaining, context.aws_request_id)
    if not scheduled.sharded:
        record_metrics(scheduled.summary)
    summary = scheduled.summary.as_dict()
    logger.info("run finished", extra={"summary": summary, "trigger": event.get("id")})
    return summary


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def shard_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The work queue's batch (of one order): a malformed order is logged and dropped (a retry
    cannot mend it), a failed shard is reported for the queue to deliver again."""
    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor,
        EventType,
        process_partial_response,
    )
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    def check(record: SQSRecord) -> None:
        from pydantic import ValidationError

        from connector_monitor.ports.work_queue import ShardOrder

        try:
            order = ShardOrder.model_validate_json(record.body)
        except ValidationError as exc:
            logger.error("malformed shard order dropped", extra={"problems": exc.error_count()})
            return
        deadline, remaining = invocation_deadline(context)
        deliveries = int(record.attributes.approximate_receive_count or 1)
        summary = root().shard_run(order, deadline, remaining, deliveries)
        if summary is not None:
            record_metrics(summary)
            logger.info(
                "shard finished",
                extra={"summary": summary.as_dict(), "shard": order.index, "of": order.shards},
            )

    response = process_partial_response(
        event=event, record_handler=check, processor=BatchProcessor(EventType.SQS), context=context
    )
    return dict(response)


def invocation_deadline(context: LambdaContext) -> tuple[Deadline, timedelta]:
    from connector_monitor.deadline import Deadline

    remaining = context.get_remaining_time_in_millis() / 1000.0
    return Deadline.after(max(1.0, remaining - RESERVE_SECONDS)), timedelta(seconds=remaining)


def record_metrics(summary: RunSummary) -> None:
    """Four fleet-wide figures, published only with PublishMetrics=true (each costs $0.30 a
    month); per-target detail lives in DynamoDB. Run time and alerts sent are in the Lambda's
    and the topic's own (free) metrics."""
    metrics.add_metric("TargetsUp", MetricUnit.Count, summary.up)
    metrics.add_metric("TargetsDown", MetricUnit.Count, summary.down)
    metrics.add_metric("TargetsUnknown", MetricUnit.Count, summary.unknown)
    metrics.add_metric("AlertsPending", MetricUnit.Count, summary.alerts_pending)
