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

    from connector_monitor.aws.lease import Lease
    from connector_monitor.aws.publisher import AlertPublisher
    from connector_monitor.aws.registry import Registry
    from connector_monitor.aws.repository import StateRepository
    from connector_monitor.cycle import CheckCycle, RunSummary
    from connector_monitor.deadline import Deadline
    from connector_monitor.domain.shards import KeyRange
    from connector_monitor.domain.targets import TargetList
    from connector_monitor.fanout import Planner
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

# A planner hands its run to the shards, which publish the run's figures: it has none of its own.
warnings.filterwarnings("ignore", message="No application metrics to publish")

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


def build_cycle(
    config: CheckerSettings, invocation: timedelta, portals: KeyRange | None = None
) -> CheckCycle:
    """A cycle for one invocation of at most `invocation`: the token store is new each time
    (one secret read a run; a shard reads its range of the token table), and alert claims last
    past the invocation's end."""
    from connector_monitor.aws.token_store import token_source
    from connector_monitor.bitrix24.connector_checks import open_connector_checks
    from connector_monitor.cycle import CheckCycle, CycleSettings
    from connector_monitor.fanout import LoadedOnce

    tokens = token_source(
        config.secret_id, tokens_table=config.tokens_table, lease=lease(), portals=portals
    )
    return CheckCycle(
        repository=repository(),
        tokens=LoadedOnce(tokens),
        publisher=publisher(),
        settings=CycleSettings(
            thresholds=config.thresholds,
            history=config.history,
            validate_every=config.validate_every,
            max_parallel_portals=config.max_parallel_portals,
            claim_for=invocation + CLAIM_MARGIN,
        ),
        client_factory=open_connector_checks,
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from connector_monitor.fanout import portals_to_check

    config = settings()
    deadline, remaining = invocation_deadline(context)
    targets = configured_targets(config)
    cycle = build_cycle(config, remaining)
    portals = portals_to_check(targets, cycle.tokens)
    if config.work_queue_url and len(portals) > config.shard_portals and not targets.unusable:
        summary = planner(config, cycle).plan(targets, portals, deadline, context.aws_request_id)
    else:
        if len(portals) > config.shard_portals:
            logger.warning(
                "more portals than one invocation is sized for, and no work queue: deploy with "
                "FanOut=true to split the run",
                extra={"portals": len(portals), "shard_portals": config.shard_portals},
            )
        summary = cycle.run(targets, deadline, run_id=context.aws_request_id)
        record_metrics(summary)
    logger.info("run finished", extra={"summary": summary.as_dict(), "trigger": event.get("id")})
    return summary.as_dict()


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

        from connector_monitor.fanout import ShardOrder, ShardWorker

        try:
            order = ShardOrder.model_validate_json(record.body)
        except ValidationError as exc:
            logger.error("malformed shard order dropped", extra={"problems": exc.error_count()})
            return
        config = settings()
        deadline, remaining = invocation_deadline(context)
        cycle = build_cycle(config, remaining, order.portals)
        worker = ShardWorker(cycle, repository(), expire_after=config.interval)
        summary = worker.check(order, configured_targets(config), deadline)
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


def configured_targets(config: CheckerSettings) -> TargetList:
    """TARGETS and the registry's entries, each once; bad entries logged."""
    from connector_monitor.domain.targets import TargetsVariable

    targets = TargetsVariable(config.targets).load().merged(registry().load())
    for error in targets.errors:
        logger.error("bad target entry", extra={"entry": error.entry, "reason": error.reason})
    return targets


def planner(config: CheckerSettings, cycle: CheckCycle) -> Planner:
    from connector_monitor.aws.work_queue import ShardQueue
    from connector_monitor.fanout import Planner

    return Planner(
        cycle,
        repository(),
        ShardQueue(config.work_queue_url),
        config.shard_portals,
        settled_after=config.interval,
    )


def record_metrics(summary: RunSummary) -> None:
    """Four fleet-wide figures, published only with PublishMetrics=true (each costs $0.30 a
    month); per-target detail lives in DynamoDB. Run time and alerts sent are in the Lambda's
    and the topic's own (free) metrics."""
    metrics.add_metric("TargetsUp", MetricUnit.Count, summary.up)
    metrics.add_metric("TargetsDown", MetricUnit.Count, summary.down)
    metrics.add_metric("TargetsUnknown", MetricUnit.Count, summary.unknown)
    metrics.add_metric("AlertsPending", MetricUnit.Count, summary.alerts_pending)
