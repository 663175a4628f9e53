"""A partition that spans several query pages in moto, as a fleet's partitions do in DynamoDB.

DynamoDB (and moto) ends a query page after 1 MB of items. A fleet reaches that with thousands
of small items (the token table at 10,000 portals is several pages); a test reaches it with a
few items made large by an attribute no reader of the monitor looks at, so that moto's own
paging (LastEvaluatedKey, ExclusiveStartKey) runs, cheaply.
"""

from __future__ import annotations

from typing import Any

PAGE_BYTES = 1_000_000  # moto's (and DynamoDB's) page: RESULT_SIZE_LIMIT in moto
PADDING_BYTES = 300_000  # three padded items fill a page; the fourth starts the next one


def spread_over_pages(client: Any, table: str, pk: str) -> int:
    """Pad every item of partition `pk` with `padding` (PADDING_BYTES of text): a query of the
    partition then returns at most three items a page. The number of items padded."""
    keys: list[dict[str, Any]] = []
    params: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": pk}},
        "ProjectionExpression": "pk, sk",
    }
    while True:
        page = client.query(**params)
        keys += page["Items"]
        if "LastEvaluatedKey" not in page:
            break
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    for key in keys:
        client.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET padding = :padding",
            ExpressionAttributeValues={":padding": {"S": "x" * PADDING_BYTES}},
        )
    return len(keys)


def query_pages(client: Any) -> list[int]:
    """From now on, the number of items of each Query page `client` receives, in order."""
    pages: list[int] = []

    def record(parsed: dict[str, Any], **_: Any) -> None:
        pages.append(int(parsed.get("Count", 0)))

    client.meta.events.register("after-call.dynamodb.Query", record)
    return pages
