"""The fan-out's work queue: shard orders sent to SQS, ten to a call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..ports.work_queue import ShardOrder
from . import clients

BATCH_LIMIT = 10  # SendMessageBatch takes at most ten messages


class WorkQueueError(Exception):
    """Orders that could not be sent: their shards are not checked this run."""


class ShardQueue:
    def __init__(self, queue_url: str, *, client: Any | None = None) -> None:
        self.queue_url = queue_url
        self._client = client or clients.client("sqs")
        self.calls = 0

    def send(self, orders: Sequence[ShardOrder]) -> None:
        failed: list[str] = []
        reason = ""
        for start in range(0, len(orders), BATCH_LIMIT):
            chunk = orders[start : start + BATCH_LIMIT]
            entries = [{"Id": str(o.index), "MessageBody": o.model_dump_json()} for o in chunk]
            self.calls += 1
            try:
                answer = self._client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except (ClientError, BotoCoreError) as exc:
                failed += [e["Id"] for e in entries]
                reason = type(exc).__name__
                continue
            for failure in answer.get("Failed", []):
                failed.append(str(failure.get("Id")))
                reason = str(failure.get("Code", "refused"))
        if failed:
            raise WorkQueueError(
                f"{len(failed)} of {len(orders)} shard orders could not be queued ({reason}): "
                "their portals are UNKNOWN from the next run on"
            )
