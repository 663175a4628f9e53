"""The monitor's DynamoDB clients read items with json.loads instead of botocore's model walk
(`aws/clients.py` read_items_as_json): what an adapter gets must be what botocore gives, for
every attribute type, across pages, and for errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from connector_monitor.aws.clients import read_items_as_json
from connector_monitor.aws.dynamodb import plain, query_items
from local.template import table_definition

REGION = "eu-central-1"
EVERY_TYPE = {
    "text": {"S": "Support — линия 1"},
    "number": {"N": "12.50"},
    "yes": {"BOOL": True},
    "none": {"NULL": True},
    "list": {"L": [{"N": "1"}, {"S": "x"}, {"M": {"deep": {"NS": ["1", "2"]}}}]},
    "map": {"M": {"names": {"SS": ["a", "b"]}, "empty": {"M": {}}}},
}


@pytest.fixture
def clients() -> Iterator[tuple[Any, Any]]:
    """(botocore as it comes, the monitor's JSON-reading client) on one moto table."""
    with mock_aws():
        stock = boto3.client("dynamodb", region_name=REGION)
        stock.create_table(TableName="monitor", **table_definition())
        yield stock, read_items_as_json(boto3.client("dynamodb", region_name=REGION))


def put(client: Any, sk: str, **extra: Any) -> None:
    client.put_item(
        TableName="monitor", Item={"pk": {"S": "STATE"}, "sk": {"S": sk}, **EVERY_TYPE, **extra}
    )


def read_all(client: Any) -> list[dict[str, Any]]:
    return list(query_items(lambda op, **kw: getattr(client, op)(**kw), "monitor", "STATE"))


def test_items_of_every_type_read_as_botocore_reads_them(clients: tuple[Any, Any]) -> None:
    stock, fast = clients
    for n in range(3):
        put(stock, f"a.bitrix24.com/tg/{n}")
    assert read_all(fast) == read_all(stock)
    assert read_all(fast)[0]["number"] == plain({"n": {"N": "12.5"}})["n"]
    assert read_all(fast)[0]["list"][2] == {"deep": {1, 2}}
    key = {"pk": {"S": "STATE"}, "sk": {"S": "a.bitrix24.com/tg/1"}}
    got = fast.get_item(TableName="monitor", Key=key)["Item"]
    assert got == stock.get_item(TableName="monitor", Key=key)["Item"]


def test_binary_values_are_left_to_botocore(clients: tuple[Any, Any]) -> None:
    """base64 on the wire, bytes once botocore has read it: the JSON path must not hand over
    the base64 text."""
    stock, fast = clients
    put(stock, "a.bitrix24.com/tg/1", digest={"B": b"\x00\xffdigest"})
    (item,) = read_all(fast)
    assert item["digest"] == b"\x00\xffdigest"


def test_pages_keep_their_last_key(clients: tuple[Any, Any]) -> None:
    """A query answered in several pages (moto pages at 1 MB) still reads every item once."""
    stock, fast = clients
    filler = {"filler": {"S": "x" * 100_000}}
    for n in range(25):  # 2.5 MB: three pages
        put(stock, f"a.bitrix24.com/tg/{n:02}", **filler)
    first = fast.query(
        TableName="monitor",
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "STATE"}},
    )
    assert first["LastEvaluatedKey"]["sk"] == {"S": first["Items"][-1]["sk"]["S"]}
    assert [i["sk"] for i in read_all(fast)] == [f"a.bitrix24.com/tg/{n:02}" for n in range(25)]


def test_errors_are_botocore_errors(clients: tuple[Any, Any]) -> None:
    _, fast = clients
    with pytest.raises(ClientError) as raised:
        fast.query(
            TableName="no-such-table",
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "STATE"}},
        )
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
