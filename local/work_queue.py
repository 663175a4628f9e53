"""The fan-out's queue, delivered locally as Lambda's SQS event source delivers it: messages in
batches of one, the worker's partial batch response honoured, a failed invocation leaving its
message queued (visible again at once here instead of after the visibility timeout)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3

from local.handlers import LambdaContext

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def sqs_event(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda's SQS event source hands a function for one received message."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": {
                    "ApproximateReceiveCount": message.get("Attributes", {}).get(
                        "ApproximateReceiveCount", "1"
                    ),
                    "SentTimestamp": message.get("Attributes", {}).get("SentTimestamp", "0"),
                },
                "messageAttributes": {},
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
        ]
    }


def deliver(queue_url: str, handler: Handler, *, region: str, rounds: int = 1) -> list[str]:
    """Hand every queued message to `handler`, one per invocation, and delete those it did not
    report as failed; failed ones are offered again, up to `rounds` deliveries in all (the
    template's maxReceiveCount is 2). Returns the ids of the messages still failing."""
    sqs = boto3.client("sqs", region_name=region)
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    failing: dict[str, str] = {}  # message id -> receipt handle
    for _ in range(rounds):
        failing = {}
        while messages := sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=1,
            VisibilityTimeout=60,
            # the receive count and sent time, as the event source hands them to the worker
            AttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
        ).get("Messages", []):
            (message,) = messages
            try:
                response = handler(sqs_event(message, arn, region), LambdaContext("shard-worker"))
            except Exception:  # the invocation failed: Lambda leaves the whole batch queued
                failed = {message["MessageId"]}
            else:
                failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
            if message["MessageId"] in failed:
                failing[message["MessageId"]] = message["ReceiptHandle"]
            else:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        for receipt in failing.values():  # visible again for the next delivery
            sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=receipt, VisibilityTimeout=0
            )
        if not failing:
            break
    return list(failing)
