"""What every DynamoDB adapter of the monitor shares: the item codec, error codes, a query read
page by page, the loop of a lease taken by a conditional write, and a claim on a range of keys
held in one item."""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from ..domain.shards import KeyRange
from ..tokens.errors import LeaseUnavailable

logger = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class _Holding:
    """One holder's entry in a claim's item: its range of keys, until when (epoch seconds)."""

    portals: KeyRange
    until: float

    def as_item(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"lo": self.portals.lo, "until": Decimal(f"{self.until:.3f}")}
        if self.portals.hi is not None:
            entry["hi"] = self.portals.hi
        return entry


class RangeClaim:
    """A claim on a range of keys (`KeyRange`), held in one item: the item lists its live
    holders (owner → range, and the time it runs out), and a holder is added or removed by one
    write conditional on the `version` of a consistent read; a write that lost a race is read
    and tried again with jittered, doubling pauses until `wait` runs out. The claim is refused
    at once while another owner's live holding overlaps the range. A holder that crashed stops
    refusing others at its `until` (set past the longest its invocation can run), and the next
    write drops it.

    A `tokens.ports.RefreshLease` whose every `hold` shares one holding: the first takes it
    (one write), the others find it held (no write); `release` gives it back (one write) once no
    `hold` is under way, so a run costs two writes of the claim however many holds it made."""

    FIRST_PAUSE = 0.05
    MAX_PAUSE = 0.5
    RELEASE_ATTEMPTS = 3

    def __init__(
        self,
        call: Callable[..., Any],
        table: str,
        key: Mapping[str, Any],
        portals: KeyRange,
        *,
        until: float,
        what: str,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        """`call(operation, **params)` calls DynamoDB; `key` is the claim item's; `until` the
        time (epoch seconds) the holding runs out by itself; `what` names the claim for
        people ("the refresh claim of token table T")."""
        self._call = call
        self._table = table
        self._key = dict(key)
        self._mine = _Holding(portals, until)
        self._what = what
        self._clock = clock
        self._sleep = sleep
        self._owner = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._held = False
        self._holds = 0  # holds under way: the holding is not given back while any is

    @contextmanager
    def hold(self, name: str, *, ttl: float, wait: float) -> Iterator[RangeClaim]:
        """The claim held for the body of the `with` (taken now unless this invocation holds
        it already); LeaseUnavailable if another owner holds an overlapping range, the store
        fails, or lost races last `wait` seconds. `name` and `ttl` are the `RefreshLease`'s:
        the claim covers its whole range, and lasts until `until`."""
        # Bounded like the take: threads of this invocation wait for one another's take.
        if not self._lock.acquire(timeout=max(0.0, wait)):
            raise LeaseUnavailable(f"{self._what} is still being taken after {wait:g} s")
        try:
            if not self._held or self._clock() >= self._mine.until:
                self._held = False
                self._take(wait)
                self._held = True
            self._holds += 1
        finally:
            self._lock.release()
        try:
            yield self
        finally:
            with self._lock:
                self._holds -= 1

    def renew(self) -> None:
        """`tokens.ports.HeldLease.renew`: the holding lasts until `until`, or it is over."""
        if self._clock() >= self._mine.until:
            raise LeaseUnavailable(
                f"{self._what} ran out while held: what was read under it is not written"
            )

    def release(self) -> None:
        """Give the holding back (never raises): one write, unless it is not held, or a hold is
        still under way (then it runs out by itself at `until`)."""
        with self._lock:
            if not self._held:
                return
            if self._holds:
                logger.warning(
                    "%s is not given back while a refresh is still under way; it runs out by "
                    "itself",
                    self._what,
                )
                return
            self._held = False
        pause = self.FIRST_PAUSE
        try:
            for _ in range(self.RELEASE_ATTEMPTS):
                version, holders = self._read()
                if self._owner not in holders:
                    return
                del holders[self._owner]
                if self._write(version, holders):
                    return
                self._sleep(pause * (0.5 + random.random()))
                pause = min(pause * 2, self.MAX_PAUSE)
            why = "other invocations kept changing it"
        except LeaseUnavailable as exc:
            why = str(exc)
        logger.warning("%s was not given back (%s); it runs out by itself", self._what, why)

    def _take(self, wait: float) -> None:
        give_up = self._clock() + max(0.0, wait)
        pause = self.FIRST_PAUSE
        while True:
            version, holders = self._read()
            if self._clock() >= self._mine.until:
                raise LeaseUnavailable(f"{self._what} is not taken: this invocation's time is up")
            for owner, holding in holders.items():
                if owner != self._owner and holding.portals.overlaps(self._mine.portals):
                    raise LeaseUnavailable(
                        f"another invocation holds {self._what} on {_described(holding.portals)} "
                        f"(until {_iso(holding.until)} at the latest)"
                    )
            if self._write(version, {**holders, self._owner: self._mine}):
                return
            left = give_up - self._clock()
            if left <= 0:
                raise LeaseUnavailable(
                    f"{self._what} could not be taken: other invocations kept changing it for "
                    f"{wait:g} s"
                )
            # Jitter so invocations that lost the same race do not retry in lockstep.
            self._sleep(min(left, pause * (0.5 + random.random())))
            pause = min(pause * 2, self.MAX_PAUSE)

    def _read(self) -> tuple[Any, dict[str, _Holding]]:
        """The item's version (None: no item, or no version) and its live holders."""
        try:
            answer = self._call(
                "get_item", TableName=self._table, Key=self._key, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise LeaseUnavailable(f"{self._what} could not be read ({_code(exc)})") from None
        item = plain(answer.get("Item") or {})
        now = self._clock()
        holders = _holders(item.get("holders"))
        return item.get("version"), {o: h for o, h in holders.items() if h.until > now}

    def _write(self, seen: Any, holders: Mapping[str, _Holding]) -> bool:
        """The item with `holders`, if its version is still `seen`: False if not."""
        if seen is None:
            condition, expected = "attribute_not_exists(version)", {}
        else:
            condition, expected = "version = :seen", {":seen": seen}
        whole = isinstance(seen, int | Decimal) and not isinstance(seen, bool) and seen % 1 == 0
        values = {
            ":holders": {owner: holding.as_item() for owner, holding in holders.items()},
            ":next": int(seen) + 1 if whole else 1,
            **expected,
        }
        try:  # an UpdateItem (it creates the item too): the writers' roles need no PutItem
            self._call(
                "update_item",
                TableName=self._table,
                Key=self._key,
                UpdateExpression="SET holders = :holders, version = :next",
                ConditionExpression=condition,
                ExpressionAttributeValues=typed(values),
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise LeaseUnavailable(f"{self._what} could not be written ({_code(exc)})") from None
        except BotoCoreError as exc:
            raise LeaseUnavailable(f"{self._what} could not be written ({_code(exc)})") from None
        return True


def _holders(raw: object) -> dict[str, _Holding]:
    """A claim item's `holders`, read defensively: an entry that is not a range and a time is
    skipped (and dropped by the next write)."""
    if not isinstance(raw, Mapping):
        return {}
    holders: dict[str, _Holding] = {}
    for owner, entry in raw.items():
        if not isinstance(entry, Mapping):
            continue
        lo, hi, until = entry.get("lo"), entry.get("hi"), entry.get("until")
        if (
            isinstance(lo, str)
            and (hi is None or isinstance(hi, str))
            and isinstance(until, Decimal)
            and until.is_finite()
        ):
            holders[str(owner)] = _Holding(KeyRange(lo, hi), float(until))
    return holders


def _described(portals: KeyRange) -> str:
    first = portals.lo.removesuffix("/") or "the first"
    if portals.hi is None:
        return "every portal" if portals.whole else f"the portals from {first} to the last"
    return f"the portals from {first} up to {portals.hi.removesuffix('/')} (not included)"


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _code(exc: ClientError | BotoCoreError) -> str:
    return error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
