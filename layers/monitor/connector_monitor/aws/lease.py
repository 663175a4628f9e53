"""A short lease in DynamoDB: serialises token refreshes across overlapping invocations.

The item is `pk="LOCK", sk=<name>` with `owner` and `expires_at` (epoch seconds, also the
table's TTL attribute, so a dead holder's item disappears eventually). A lease whose
`expires_at` has passed is free to take even before TTL deletes it: that is how an invocation
that died holding it stops blocking the others.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..tokens.errors import LeaseUnavailable
from . import clients
from .dynamodb import ConditionalLease, Held, error_code

logger = logging.getLogger(__name__)

LOCK_PK = "LOCK"


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
        self._client = client if client is not None else clients.lease_client()
        self._clock = clock
        self._loop = ConditionalLease(
            self._try_put, self._release, self._busy, clock=clock, sleep=sleep, extend=self._extend
        )

    def hold(
        self, name: str, *, ttl: float = 30.0, wait: float = 10.0
    ) -> AbstractContextManager[Held]:
        """Hold the lease `name` for the body of the `with`; raise LeaseUnavailable after `wait`.

        `ttl` bounds how long a crashed holder blocks others: keep the body well inside it, or
        renew it before each write (`Held.renew`: one conditional write on the owner).
        """
        return self._loop.hold(name, ttl=ttl, wait=wait)

    def _busy(self, name: str, wait: float) -> str:
        return (
            f"lease {name!r} in table {self.table_name} is held by another owner; "
            f"gave up after {wait:g} s"
        )

    def _try_put(self, name: str, owner: str, ttl: float) -> bool:
        now = self._clock()
        return self._conditional(
            name,
            "the write to",
            "put_item",
            Item={
                "pk": {"S": LOCK_PK},
                "sk": {"S": name},
                "owner": {"S": owner},
                "expires_at": {"N": str(math.ceil(now + ttl))},
            },
            ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
            ExpressionAttributeValues={":now": {"N": _number(now)}},
        )

    def _extend(self, name: str, owner: str, ttl: float) -> bool:
        """Push `expires_at` to `ttl` from now if `owner` still holds the item: False if another
        owner took it over (its `expires_at` had passed) or it is gone. An item still ours
        proves nobody held the lease between: taking it replaces the owner."""
        now = self._clock()
        return self._conditional(
            name,
            "its renewal in",
            "update_item",
            Key={"pk": {"S": LOCK_PK}, "sk": {"S": name}},
            UpdateExpression="SET expires_at = :until",
            ConditionExpression="#owner = :owner",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={
                ":owner": {"S": owner},
                ":until": {"N": str(math.ceil(now + ttl))},
            },
        )

    def _conditional(self, name: str, what: str, operation: str, **params: Any) -> bool:
        """One conditional write of the lease's item: False when its condition failed (held by
        another owner); LeaseUnavailable when DynamoDB refused it or could not be reached."""
        try:
            getattr(self._client, operation)(TableName=self.table_name, **params)
        except ClientError as exc:
            code = error_code(exc)
            if code == "ConditionalCheckFailedException":
                return False
            raise LeaseUnavailable(
                f"lease {name!r}: DynamoDB refused {what} {self.table_name} ({code})"
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
            code = error_code(exc)
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
