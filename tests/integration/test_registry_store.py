"""The registry's DynamoDB store against moto: what it keeps, and how it fails."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from connector_monitor.aws.registry import Registry
from connector_monitor.domain.targets import Target
from connector_monitor.state import StateStoreError
from local.template import table_definition

AT = datetime(2026, 11, 24, 12, 0, 5, 123456, tzinfo=UTC)
ENTRY = Target("example.bitrix24.com", "myconnector", 12)


@pytest.fixture
def client() -> Iterator[Any]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="eu-central-1")
        dynamodb.create_table(TableName="monitor", **table_definition())
        yield dynamodb


def test_an_entry_is_kept_with_its_time_and_author(client: Any) -> None:
    registry = Registry("monitor", client=client)

    assert registry.add(ENTRY, added_by="ops", at=AT) is True
    (kept,), last = registry.page(limit=10)

    assert (kept.key, kept.entry, kept.added_at, kept.added_by) == (ENTRY.key, ENTRY, AT, "ops")
    assert last is None


def test_a_time_written_by_hand_is_no_time(client: Any) -> None:
    client.put_item(
        TableName="monitor",
        Item={
            "pk": {"S": "REGISTRY"},
            "sk": {"S": ENTRY.key},
            "portal": {"S": ENTRY.portal},
            "connector": {"S": ENTRY.connector},
            "line": {"N": "12"},
            "added_at": {"S": "yesterday"},
        },
    )

    (kept,) = Registry("monitor", client=client).entries()

    assert (kept.entry, kept.added_at, kept.added_by) == (ENTRY, None, "")


@pytest.mark.parametrize(
    "use",
    [
        lambda r: r.page(limit=1),
        lambda r: r.entries(),
        lambda r: r.add(ENTRY, added_by="ops", at=AT),
        lambda r: r.remove(ENTRY.key),
    ],
)
def test_dynamodb_failures_are_state_store_errors(client: Any, use: Any) -> None:
    registry = Registry("no-such-table", client=client)

    with pytest.raises(StateStoreError, match="ResourceNotFoundException"):
        use(registry)
