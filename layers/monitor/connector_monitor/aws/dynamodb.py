"""What every DynamoDB adapter of the monitor shares: the item codec, error codes, a query read
page by page, and the loop of a lease taken by a conditional write."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from ..tokens.errors import LeaseUnavailable

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


class ConditionalLease:
    """A lease taken by one conditional write and given back by another, tried again with
    jittered, doubling pauses until `wait` runs out: the loop both of the monitor's leases share
    (`lease.py`'s LOCK items and `token_table.py`'s pair items)."""

    FIRST_PAUSE = 0.05
    MAX_PAUSE = 0.5

    def __init__(
        self,
        take: Callable[[str, str, float], bool],
        give_back: Callable[[str, str], None],
        busy: Callable[[str, float], str],
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        extend: Callable[[str, str, float], bool] | None = None,
    ) -> None:
        """`take(name, owner, ttl)` is one conditional write (False: held by another; it raises
        LeaseUnavailable when the store fails); `give_back(name, owner)` never raises; `busy`
        words the refusal after a wait. `extend(name, owner, ttl)`, a conditional write that
        holds only while `owner` still holds the lease (False: it does not), renews it; without
        it a renewal only checks the lease has not run out by the holder's clock."""
        self._take = take
        self._extend = extend
        self._give_back = give_back
        self._busy = busy
        self._clock = clock
        self._sleep = sleep

    @contextmanager
    def hold(self, name: str, *, ttl: float, wait: float) -> Iterator[Held]:
        """Hold the lease `name` for the body of the `with`; LeaseUnavailable after `wait`.
        `ttl` bounds how long a crashed holder blocks others: keep the body well inside it, or
        renew the lease (`Held.renew`) before each write that relies on it."""
        owner = uuid.uuid4().hex
        self._acquire(name, owner, ttl, wait)
        try:
            yield Held(self, name, owner, ttl, self._clock() + ttl)
        finally:
            self._give_back(name, owner)

    def _renew(self, held: Held) -> None:
        if self._extend is not None:
            now = self._clock()
            if not self._extend(held.name, held.owner, held.ttl):
                raise LeaseUnavailable(
                    f"lease {held.name!r} ran out and was taken by another owner (or is gone) "
                    "while held: what was read under it is not written"
                )
            held.until = now + held.ttl
            return
        if self._clock() >= held.until:
            raise LeaseUnavailable(
                f"lease {held.name!r} ran out while held: what was read under it is not written"
            )

    def _acquire(self, name: str, owner: str, ttl: float, wait: float) -> None:
        give_up = self._clock() + max(0.0, wait)
        pause = self.FIRST_PAUSE
        while not self._take(name, owner, ttl):
            left = give_up - self._clock()
            if left <= 0:
                raise LeaseUnavailable(self._busy(name, wait))
            # Jitter so waiters that started together do not retry in lockstep.
            self._sleep(min(left, pause * (0.5 + random.random())))
            pause = min(pause * 2, self.MAX_PAUSE)


class Held:
    """A `ConditionalLease` while it is held (`tokens.ports.HeldLease`)."""

    def __init__(self, loop: ConditionalLease, name: str, owner: str, ttl: float, until: float):
        self._loop = loop
        self.name = name
        self.owner = owner
        self.ttl = ttl
        self.until = until  # by the holder's clock

    def renew(self) -> None:
        self._loop._renew(self)
