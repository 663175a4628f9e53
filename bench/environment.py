"""`build_checker`: the one place bench wires the checker's objects, through the product's
composition root, as functions/checker/app.py wires them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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


def build_checker(settings: Mapping[str, str], client: Callable[[str], Any]) -> CheckerParts:
    """The checker's objects for one invocation, built by the product's composition root from
    the variables the handler reads (`settings`: SECRET_ID, TABLE_NAME, ...); `client(service)`
    (metered, on moto) replaces boto3's clients."""
    root = composition.Checker(
        load_settings(CheckerSettings, settings),
        composition.Tuning(aws=client, lease_aws=lambda: client("dynamodb")),
    )
    cycle = root.cycle(timedelta(seconds=RUN_DEADLINE))
    return CheckerParts(cycle, root.repository, root.registry)
