"""The boto3 clients the adapters use by default: every timeout and retry budget in one place.

Each adapter takes a client (tests and the local run hand in moto-backed ones) and builds one
of these only when none is given.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config


def _config(attempts: int, connect: float, read: float) -> Config:
    return Config(
        retries={"max_attempts": attempts, "mode": "standard"},
        connect_timeout=connect,
        read_timeout=read,
    )


CONFIGS: dict[str, Config] = {
    # Throttling on the state table and the work queue is worth riding out.
    "dynamodb": _config(6, 3, 10),
    "sqs": _config(6, 3, 10),
    "secretsmanager": _config(4, 3, 10),
    "sns": _config(3, 3, 10),
}
# A lease call is one small conditional write: a DynamoDB that hangs must cost seconds, not
# boto3's default of five 60-second reads, or `hold(wait=...)` would not bound anything.
LEASE_CONFIG = _config(2, 2, 2)


def client(service: str) -> Any:
    """A client of `service` with the monitor's timeouts and retries."""
    return boto3.client(service, config=CONFIGS[service])


def lease_client() -> Any:
    """A DynamoDB client for lease calls, which must fail fast."""
    return boto3.client("dynamodb", config=LEASE_CONFIG)
