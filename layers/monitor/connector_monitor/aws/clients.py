"""The boto3 clients the adapters use by default: every timeout and retry budget in one place.

Each adapter takes a client (tests and the local run hand in moto-backed ones) and builds one
of these only when none is given.
"""

from __future__ import annotations

import json
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
    made = boto3.client(service, config=CONFIGS[service])
    return read_items_as_json(made) if service == "dynamodb" else made


def lease_client() -> Any:
    """A DynamoDB client for lease calls, which must fail fast."""
    return read_items_as_json(boto3.client("dynamodb", config=LEASE_CONFIG))


# The answers whose items a run reads by the thousand, and the member holding them.
_ITEM_MEMBERS = {"Query": "Items", "Scan": "Items", "GetItem": "Item"}
# What botocore's shape walk does beyond json.loads for an item: base64 binary values to bytes.
_BINARY_TYPES = (b'"B"', b'"BS"')


def read_items_as_json(dynamodb: Any) -> Any:
    """Have `dynamodb` (a botocore DynamoDB client) take the items of Query, Scan and GetItem
    answers as `json.loads` reads them, instead of botocore's walk of its model over every
    attribute value (a steady fleet run reads thousands of items: that walk was about a third of
    the checker's CPU outside the portal exchanges). The wire format of an item is the shape
    botocore returns, but for binary values; an answer that may hold one (or any answer not a
    200, or not JSON) is left to botocore. Returns the client."""
    for operation, member in _ITEM_MEMBERS.items():
        dynamodb.meta.events.register(
            f"before-parse.dynamodb.{operation}",
            _items_from_json(member),
            unique_id=f"items-as-json-{operation}",
        )
    return dynamodb


def _items_from_json(member: str) -> Any:
    def take_items(
        response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
    ) -> None:
        body = response_dict.get("body")
        if response_dict.get("status_code") != 200 or not isinstance(body, bytes):
            return
        if any(binary in body for binary in _BINARY_TYPES):
            return
        try:
            answer = json.loads(body)
        except ValueError:
            return
        if not isinstance(answer, dict) or member not in answer:
            return
        customized_response_dict[member] = answer.pop(member)
        response_dict["body"] = json.dumps(answer).encode()

    return take_items
