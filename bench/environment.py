"""`build_checker`: the one place bench wires the checker's objects, through the product's
composition root, as functions/checker/app.py wires them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from connector_monitor import composition
from connector_monitor.aws.registry import Registry
from connector_monitor.aws.repository import StateRepository
from connector_monitor.cycle import CheckCycle
from connector_monitor.settings import CheckerSettings, load_settings

ROOT = Path(__file__).resolve().parents[1]
REGION = "eu-central-1"
RUN_DEADLINE = 600.0  # seconds; far beyond any run here


@dataclass(frozen=True)
class CheckerParts:
    cycle: CheckCycle
    repository: StateRepository
    registry: Registry


def build_checker(
    secret_id: str,
    table: str,
    tokens_table: str,
    topic_arn: str,
    *,
    dynamodb: Any,
    secrets: Any,
    sns: Any,
    parallel: int | None = None,
) -> CheckerParts:
    """The checker's objects for one invocation, built by the product's composition root from
    the settings the handler reads; the clients given (metered, on moto) replace boto3's own."""
    values = {"SECRET_ID": secret_id, "TABLE_NAME": table, "TOKENS_TABLE": tokens_table}
    values["TOPIC_ARN"] = topic_arn
    if parallel is not None:
        values["MAX_PARALLEL_PORTALS"] = str(parallel)
    given = {"dynamodb": dynamodb, "secretsmanager": secrets, "sns": sns}
    root = composition.Checker(
        load_settings(CheckerSettings, values),
        composition.Tuning(aws=lambda service: given[service], lease_aws=lambda: dynamodb),
    )
    cycle = root.cycle(timedelta(seconds=RUN_DEADLINE))
    return CheckerParts(cycle, root.repository, root.registry)
