"""What every DynamoDB adapter of the monitor shares: the item codec, the client's retry
settings, error codes, and a query read page by page."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError

CLIENT_CONFIG = Config(
    retries={"max_attempts": 6, "mode": "standard"}, connect_timeout=3, read_timeout=10
)

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def typed(values: Mapping[str, Any]) -> dict[str, Any]:
    """Plain Python values as DynamoDB attribute values."""
    return {k: _serializer.serialize(v) for k, v in values.items()}


def plain(item: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as plain Python values (numbers as Decimal)."""
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def placeholders(**values: Any) -> dict[str, Any]:
    """`ExpressionAttributeValues` for `:name` placeholders."""
    return {f":{k}": _serializer.serialize(v) for k, v in values.items()}


def table_key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "") or "unknown error")


def describe_error(what: str, exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return f"DynamoDB could not {what}: {error.get('Code', '?')} {error.get('Message', '')}".strip()


def put_if_absent(call: Callable[..., Any], table: str, item: Mapping[str, Any]) -> bool:
    """Write `item` (plain values) unless its key is taken: False then, nothing written. Other
    refusals raise the ClientError for the caller to word."""
    try:
        call(
            "put_item",
            TableName=table,
            Item=typed(item),
            ConditionExpression="attribute_not_exists(sk)",
        )
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise
    return True


def query_items(
    call: Callable[..., Any],
    table: str,
    pk: str,
    *,
    lo: str | None = None,
    hi: str | None = None,
    consistent: bool = False,
) -> Iterator[dict[str, Any]]:
    """Every item of one partition (sort keys from `lo` to `hi`, both inclusive, either open),
    as plain values, one page (up to 1 MB) per call of `call("query", ...)`."""
    condition, values = "pk = :pk", {":pk": {"S": pk}}
    if lo is not None and hi is not None:
        condition += " AND sk BETWEEN :lo AND :hi"
    elif lo is not None:
        condition += " AND sk >= :lo"
    elif hi is not None:
        condition += " AND sk <= :hi"
    values.update({f":{n}": {"S": v} for n, v in (("lo", lo), ("hi", hi)) if v is not None})
    params: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": condition,
        "ExpressionAttributeValues": values,
    }
    if consistent:
        params["ConsistentRead"] = True
    while True:
        page = call("query", **params)
        yield from (plain(i) for i in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
