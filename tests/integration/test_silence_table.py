"""The silences' partition of the state table and acknowledging an outage, against moto: what
the CLI, the API and the checker rely on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from connector_monitor.aws.repository import StateRepository
from connector_monitor.aws.silences import SilenceTable
from connector_monitor.domain.results import CheckResult
from connector_monitor.domain.silences import Silence, matcher_of
from connector_monitor.domain.targets import Target
from connector_monitor.domain.transitions import Thresholds, advance
from connector_monitor.ports.state_store import StateStoreError
from local.template import table_definition

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
TARGET = Target("a.bitrix24.com", "tg", 1)


@pytest.fixture
def client() -> Iterator[Any]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="eu-central-1")
        dynamodb.create_table(TableName="monitor", **table_definition())
        yield dynamodb


def silence(sid: str, **parts: str) -> Silence:
    return Silence(sid, matcher_of(**parts), T0 + timedelta(hours=2), "arn:ops", "upgrade", T0)


def test_silences_are_added_listed_in_order_and_removed(client: Any) -> None:
    table = SilenceTable("monitor", client=client)
    table.add(silence("b", portal="A.bitrix24.com", connector="tg", line="1", cause="auth_lost"))
    table.add(silence("a", connector="tg"))

    listed = table.silences()
    assert [s.id for s in listed] == ["a", "b"]
    assert listed[1] == silence(
        "b", portal="a.bitrix24.com", connector="tg", line="1", cause="auth_lost"
    )
    item = client.get_item(TableName="monitor", Key={"pk": {"S": "SILENCE"}, "sk": {"S": "a"}})
    expires = int(item["Item"]["expires_at"]["N"])
    assert expires == int((T0 + timedelta(days=7, hours=2)).timestamp())  # the table's TTL

    assert table.remove("a") == listed[0]
    assert table.remove("a") is None
    assert [s.id for s in table.silences()] == ["b"]


def test_an_id_taken_is_refused_and_a_hand_written_item_is_skipped(client: Any) -> None:
    table = SilenceTable("monitor", client=client)
    table.add(silence("a", portal="a.bitrix24.com"))
    with pytest.raises(StateStoreError, match="exists already"):
        table.add(silence("a", portal="b.bitrix24.com"))
    client.put_item(
        TableName="monitor", Item={"pk": {"S": "SILENCE"}, "sk": {"S": "junk"}, "why": {"S": "x"}}
    )
    assert [s.id for s in table.silences()] == ["a"]


def test_acknowledging_marks_the_open_outage_and_bumps_the_version(client: Any) -> None:
    repo, table = StateRepository("monitor", client=client), SilenceTable("monitor", client=client)
    assert table.acknowledge(TARGET, by="arn:ops") is None  # no such target

    down = CheckResult.from_flags(TARGET, configured=True, error=True, status=False, checked_at=T0)
    step = advance(None, down, Thresholds(failure=1))
    (stored,) = repo.save([step.status], claims={}).saved
    assert table.acknowledge(TARGET, by="arn:ops") == T0

    acked = repo.get_target(TARGET)
    assert acked is not None
    assert (acked.acked_since, acked.acked_by) == (T0, "arn:ops")
    assert acked.version == stored.version + 1  # a run that read the old one cannot overwrite
    assert repo.save([stored], claims={}).conflicts == [TARGET.key]


def test_a_target_with_no_open_outage_cannot_be_acknowledged(client: Any) -> None:
    repo, table = StateRepository("monitor", client=client), SilenceTable("monitor", client=client)
    up = CheckResult.from_flags(TARGET, configured=True, error=False, status=True, checked_at=T0)
    repo.save([advance(None, up, Thresholds()).status], claims={})
    assert table.acknowledge(TARGET, by="arn:ops") is None
