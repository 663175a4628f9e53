"""The history reader against moto: the `HISTORY#` items the state repository writes with each
transition, read back by key range and page by page, whatever else an item holds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from connector_monitor.aws.history import HistoryReader, HistoryReadError
from connector_monitor.aws.repository import StateRepository
from connector_monitor.domain.alerts import AlertEvent
from connector_monitor.domain.history import IncidentKind, incidents
from connector_monitor.domain.results import CheckResult
from connector_monitor.domain.targets import Target
from connector_monitor.domain.transitions import TargetStatus, Thresholds, advance
from local.template import table_definition
from tests.support.dynamodb_pages import spread_over_pages

TABLE = "monitor"
TARGET = Target("client.bitrix24.com", "myconnector", 12)
T0 = datetime(2026, 11, 1, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.fixture
def client() -> Iterator[Any]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="eu-central-1")
        dynamodb.create_table(TableName=TABLE, **table_definition())
        yield dynamodb


def flap(client: Any, outages: int) -> None:
    """`outages` two-hour outages a day apart, stored as the checker stores them."""
    repository = StateRepository(TABLE, client=client)
    status: TargetStatus | None = None
    at = T0
    for _ in range(outages):
        for up in (False, False, False, True):
            result = CheckResult.from_flags(
                TARGET, configured=True, error=not up, status=up, checked_at=at
            )
            step = advance(status, result, Thresholds(failure=2))
            saved = repository.save(
                [step.status], claims={}, history={TARGET.key: step.alerts}
            ).saved
            status = saved[0] if saved else step.status
            at += H
        at += 20 * H


def test_every_outage_comes_back_with_its_start_and_end(client: Any) -> None:
    flap(client, 3)
    records = HistoryReader(TABLE, client=client).records(TARGET, T0 - H)
    assert [r.event for r in records] == [
        AlertEvent.CONNECTOR_DOWN,
        AlertEvent.CONNECTOR_RECOVERED,
    ] * 3
    found = incidents(TARGET.key, records)
    assert [(i.kind, i.start, i.end) for i in found] == [
        (IncidentKind.DOWN, T0 + day * 24 * H, T0 + day * 24 * H + 3 * H) for day in range(3)
    ]


def test_only_the_key_range_since_the_moment_is_read(client: Any) -> None:
    flap(client, 3)
    records = HistoryReader(TABLE, client=client).records(TARGET, T0 + 30 * H)
    assert [r.incident_since for r in records] == [T0 + 48 * H] * 2
    other = Target("client.bitrix24.com", "myconnector", 120)  # a key prefix of nothing
    assert HistoryReader(TABLE, client=client).records(other, T0) == []


def test_a_history_over_several_pages_is_read_whole(client: Any) -> None:
    flap(client, 4)
    assert spread_over_pages(client, TABLE, f"HISTORY#{TARGET.key}") == 8  # three a page
    reader = HistoryReader(TABLE, client=client)
    assert len(reader.records(TARGET, T0)) == 8
    assert reader.calls == 3


def test_an_item_it_cannot_read_is_skipped_not_fatal(client: Any) -> None:
    flap(client, 1)
    client.put_item(
        TableName=TABLE,
        Item={"pk": {"S": f"HISTORY#{TARGET.key}"}, "sk": {"S": "2026-11-01T05:00:00Z#junk"}},
    )
    records = HistoryReader(TABLE, client=client).records(TARGET, T0)
    assert [r.event for r in records] == [
        AlertEvent.CONNECTOR_DOWN,
        AlertEvent.CONNECTOR_RECOVERED,
    ]


def test_a_table_it_cannot_read_is_a_store_error(client: Any) -> None:
    with pytest.raises(HistoryReadError, match="could not read the history"):
        HistoryReader("no-such-table", client=client).records(TARGET, T0)
