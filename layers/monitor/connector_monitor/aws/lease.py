"""A short lease in DynamoDB: serialises token refreshes across overlapping invocations.

The item is `pk="LOCK", sk=<name>` with `owner` and `expires_at` (epoch seconds, also the
table's TTL attribute, so a dead holder's item disappears eventually). A lease whose
`expires_at` has passed is free to take even before TTL deletes it: that is how an invocation
that died holding it stops blocking the others.
"""

from __future__ import annotations

import logging
import math
import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..token_refresh import LeaseUnavailable

__all__ = ["LOCK_PK", "Lease", "LeaseUnavailable"]

logger = logging.getLogger(__name__)

LOCK_PK = "LOCK"
_FIRST_PAUSE = 0.05
_MAX_PAUSE = 0.5
# A lease call is one small conditional write: a DynamoDB that hangs must cost seconds, not
# boto3's default of five 60-second reads, or `hold(wait=...)` would not bound anything.
CLIENT_CONFIG = Config(
    retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=2, read_timeout=2
)


class Lease:
    """Named leases in one DynamoDB table (key `pk`, `sk`, both strings)."""

    def __init__(
        self,
        table_name: str,
        *,
        client: Any | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.table_name = table_name
        self._client = (
            client if client is not None else boto3.client("dynamodb", config=CLIENT_CONFIG)
        )
        self._clock = clock
        self._sleep = sleep

    @contextmanager
    def hold(self, name: str, *, ttl: float = 30.0, wait: float = 10.0) -> Iterator[None]:
        """Hold the lease `name` for the body of the `with`; raise LeaseUnavailable after `wait`.

        `ttl` bounds how long a crashed holder blocks others: keep the body well inside it.
        """
        owner = uuid.uuid4().hex
        self._acquire(name, owner, ttl=ttl, wait=wait)
        try:
            yield
        finally:
            self._release(name, owner)

    def _acquire(self, name: str, owner: str, *, ttl: float, wait: float) -> None:
        deadline = self._clock() + wait
        pause = _FIRST_PAUSE
        while True:
            if self._try_put(name, owner, ttl):
                return
            left = deadline - self._clock()
            if left <= 0:
                raise LeaseUnavailable(
                    f"lease {name!r} in table {self.table_name} is held by another owner; "
                    f"gave up after {wait:g} s"
                )
            # Jitter so waiters that started together do not retry in lockstep.
            self._sleep(min(left, pause * (0.5 + random.random())))
            pause = min(pause * 2, _MAX_PAUSE)

    def _try_put(self, name: str, owner: str, ttl: float) -> bool:
        now = self._clock()
        try:
            self._client.put_item(
                TableName=self.table_name,
                Item={
                    "pk": {"S": LOCK_PK},
                    "sk": {"S": name},
                    "owner": {"S": owner},
                    "expires_at": {"N": str(math.ceil(now + ttl))},
                },
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
                ExpressionAttributeValues={":now": {"N": _number(now)}},
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                return False
            raise LeaseUnavailable(
                f"lease {name!r}: DynamoDB refused the write to {self.table_name} ({code})"
            ) from exc
        except BotoCoreError as exc:
            raise LeaseUnavailable(
                f"lease {name!r}: could not reach DynamoDB table {self.table_name} "
                f"({type(exc).__name__})"
            ) from exc
        return True

    def _release(self, name: str, owner: str) -> None:
        """Delete the item only if we still own it; an expired lease may have a new owner."""
        try:
            self._client.delete_item(
                TableName=self.table_name,
                Key={"pk": {"S": LOCK_PK}, "sk": {"S": name}},
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}},
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                logger.warning(
                    "lease %s expired while held and was taken over (or is gone); "
                    "the work under it ran longer than its ttl",
                    name,
                )
            else:
                logger.warning(
                    "lease %s could not be released (%s); it expires by itself", name, code
                )
        except BotoCoreError as exc:
            logger.warning(
                "lease %s could not be released (%s); it expires by itself",
                name,
                type(exc).__name__,
            )


def _number(value: float) -> str:
    return f"{value:.3f}"
