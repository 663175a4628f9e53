"""The state repository: the state table's statuses, pending alerts, claims, history, runs and
inventories (the `StateStore` port over DynamoDB; the registry and the leases have their own).

Writes are conditional on a version number, so two overlapping runs cannot both decide the same
transition; an alert is stored as *pending* in the same write that decides it, and only removed
once published, so a failed publish is retried by the next run. A *claim* (owner + expiry) on a
status item says which run is publishing its pending alerts right now.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from ..domain.alerts import Alert
from ..domain.inventory import CachedInventory
from ..domain.results import State
from ..domain.runs import COUNTS, RunPlan, RunRecord, ShardRun
from ..domain.shards import KeyRange, Scope
from ..domain.targets import Target
from ..domain.transitions import TargetStatus
from ..ports.state_store import Claim, Loaded, SaveOutcome, StateStoreError
from . import clients
from .dynamodb import (
    describe_error,
    error_code,
    placeholders,
    plain,
    query_items,
    table_key,
    typed,
)
from .records import (
    CONFIG_PK,
    CURRENT_SK,
    INVENTORY_PK,
    RUN_PK,
    RUN_SK,
    STATE_PK,
    history_item,
    inventory_from_item,
    inventory_to_item,
    iso,
    parse_iso,
    plan_from_item,
    plan_to_item,
    run_from_item,
    run_to_item,
    shard_to_value,
    status_from_item,
    status_key,
    status_to_item,
)

logger = logging.getLogger(__name__)

TRANSACTION_LIMIT = 100
BATCH_WRITE_LIMIT = 25


class RepositoryError(StateStoreError):
    """DynamoDB could not be read or written (after the SDK's own retries)."""


def subject_key(status: TargetStatus) -> str:
    return status.subject.key


class StateRepository:
    """The state store (`state.StateStore`) and the snapshot's reader over one DynamoDB table."""

    def __init__(self, table_name: str, *, client: Any | None = None) -> None:
        self.table_name = table_name
        self._client = client or clients.client("dynamodb")
        self.calls = 0  # DynamoDB API calls made (for the run summary and the benchmark)

    # ---- reading -------------------------------------------------------------------------
    def load(self, scope: Scope | None = None) -> Loaded:
        """Every status the scope decides about (by default all), by query (never a scan): the
        targets of its portals' key range, and the configuration problems it holds."""
        scope = scope or Scope.whole()
        loaded = Loaded()
        items: list[dict[str, Any]] = []
        if scope.portals is not None:
            hi = scope.portals.hi
            items += self._query_all(STATE_PK, lo=scope.portals.lo or None, hi=hi)
        items += self._query_all(CONFIG_PK)  # a few items: filtered below
        for item in items:
            status = status_from_item(item)
            if not scope.holds(status.subject):
                continue
            key = subject_key(status)
            loaded.statuses[key] = status
            if item.get("claim_owner") and item.get("claim_until"):
                loaded.claims[key] = Claim(
                    str(item["claim_owner"]), parse_iso(str(item["claim_until"]))
                )
        return loaded

    def page_targets(
        self, *, portal: str | None = None, limit: int = 500, after: str | None = None
    ) -> tuple[list[TargetStatus], str | None]:
        """One page of target statuses in key order; `after` is the previous page's last key."""
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": STATE_PK}},
            "Limit": limit,
        }
        if portal:
            params["KeyConditionExpression"] += " AND begins_with(sk, :prefix)"
            params["ExpressionAttributeValues"][":prefix"] = {"S": f"{portal}/"}
        if after:
            params["ExclusiveStartKey"] = {"pk": {"S": STATE_PK}, "sk": {"S": after}}
        page = self._call("query", **params)
        statuses = [status_from_item(plain(i)) for i in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        return statuses, (str(last["sk"]["S"]) if last else None)

    def count_states(self, *, portal: str | None = None) -> dict[State, int]:
        """How many targets (of `portal`) are in each state: every status item of the selection
        read by query, only its `state` projected (DynamoDB still charges the whole items)."""
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": STATE_PK}},
            "ProjectionExpression": "#state",
            "ExpressionAttributeNames": {"#state": "state"},
        }
        if portal:
            params["KeyConditionExpression"] += " AND begins_with(sk, :prefix)"
            params["ExpressionAttributeValues"][":prefix"] = {"S": f"{portal}/"}
        counts: dict[State, int] = {}
        while True:
            page = self._call("query", **params)
            for item in page.get("Items", []):
                state = State(item["state"]["S"])
                counts[state] = counts.get(state, 0) + 1
            if "LastEvaluatedKey" not in page:
                return counts
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def get_target(self, target: Target) -> TargetStatus | None:
        item = self._get(status_key(target))
        return status_from_item(item) if item else None

    def load_run(self) -> RunRecord | None:
        item = self._get({"pk": RUN_PK, "sk": RUN_SK})
        return run_from_item(item) if item else None

    def load_inventories(self, portals: KeyRange | None = None) -> dict[str, CachedInventory]:
        portals = portals or KeyRange.everything()
        lo, hi = portals.portal_bounds()
        found = (inventory_from_item(i) for i in self._query_all(INVENTORY_PK, lo=lo, hi=hi))
        return {c.portal: c for c in found if portals.holds_portal(c.portal)}

    # ---- writing -------------------------------------------------------------------------
    def save(
        self,
        statuses: Sequence[TargetStatus],
        *,
        claims: Mapping[str, Claim],
        history: Mapping[str, Sequence[Alert]] | None = None,
        keep: timedelta = timedelta(days=30),
    ) -> SaveOutcome:
        """Store changed statuses, each only if nobody stored another version since we read it.

        A status is written together with the history records of the alerts it decided, in one
        transaction, so a run that dies half-way leaves both or neither. `claims` is what to
        write as each item's claim (ours for items whose pending alerts we will publish, another
        run's live claim to keep it). Targets are packed into transactions of up to 100 items; a
        cancelled transaction is redone target by target so a conflict costs only its target.
        """
        units = [self._unit(s, claims.get(subject_key(s)), history or {}, keep) for s in statuses]
        saved: list[TargetStatus] = []
        conflicts: list[str] = []
        for pack in _packs(list(zip(statuses, units, strict=True)), TRANSACTION_LIMIT):
            if self._transact([item for _, unit in pack for item in unit]):
                saved += [_bumped(status) for status, _ in pack]
                continue
            for status, unit in pack:
                if self._transact(unit):
                    saved.append(_bumped(status))
                else:
                    conflicts.append(subject_key(status))
                    logger.info(
                        "another run stored this target first; its decision stands",
                        extra={"target": subject_key(status)},
                    )
        return SaveOutcome(saved, conflicts)

    def claim(self, status: TargetStatus, claim: Claim, now: datetime) -> TargetStatus | None:
        """Take the right to publish a status's pending alerts; None if another run has it."""
        try:
            self._call(
                "update_item",
                TableName=self.table_name,
                Key=_key(status_key(status.subject)),
                UpdateExpression="SET claim_owner = :me, claim_until = :until, version = :next",
                ConditionExpression=(
                    "version = :v AND (attribute_not_exists(claim_until) OR claim_until < :now "
                    "OR claim_owner = :me)"
                ),
                ExpressionAttributeValues=placeholders(
                    me=claim.owner,
                    until=iso(claim.until),
                    now=iso(now),
                    v=status.version,
                    next=status.version + 1,
                ),
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise RepositoryError(describe_error("claim alerts", exc)) from None
        return _bumped(status)

    def acknowledge(self, status: TargetStatus, owner: str, published: Iterable[str]) -> bool:
        """Remove published alerts and release our claim; False if the claim was lost meanwhile."""
        ids = list(published)
        names = {f"#a{i}": alert_id for i, alert_id in enumerate(ids)}
        removes = ", ".join(["claim_owner", "claim_until", *(f"pending.{n}" for n in names)])
        try:
            self._call(
                "update_item",
                TableName=self.table_name,
                Key=_key(status_key(status.subject)),
                UpdateExpression=f"REMOVE {removes} ADD version :one",
                ConditionExpression="claim_owner = :me",
                ExpressionAttributeValues=placeholders(me=owner, one=1),
                **({"ExpressionAttributeNames": names} if names else {}),
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise RepositoryError(describe_error("acknowledge alerts", exc)) from None
        return True

    def delete(self, statuses: Sequence[TargetStatus]) -> None:
        """Forget statuses of targets that are no longer configured."""
        keys = [status_key(s.subject) for s in statuses]
        self._batch_write([{"DeleteRequest": {"Key": _key(k)}} for k in keys])

    def save_run(self, run: RunRecord) -> None:
        self._call("put_item", TableName=self.table_name, Item=typed(run_to_item(run)))

    def start_run(self, plan: RunPlan) -> RunPlan | None:
        """Record a fanned-out run as the one in progress; the one it replaces, as it ended."""
        answer = self._call(
            "put_item",
            TableName=self.table_name,
            Item=typed(plan_to_item(plan)),
            ReturnValues="ALL_OLD",
        )
        old = answer.get("Attributes")
        return plan_from_item(plain(old)) if old else None

    def current_run(self) -> RunPlan | None:
        answer = self._call(
            "get_item",
            TableName=self.table_name,
            Key=_key({"pk": RUN_PK, "sk": CURRENT_SK}),
            ConsistentRead=True,
        )
        item = answer.get("Item")
        return plan_from_item(plain(item)) if item else None

    def start_shard(self, run_id: str, index: int, until: datetime) -> bool:
        """One conditional write on the run's item: a planner replacing the run either sees
        this mark (the shard is live) or wins first (and this worker never starts)."""
        try:
            self._call(
                "update_item",
                TableName=self.table_name,
                Key=_key({"pk": RUN_PK, "sk": CURRENT_SK}),
                UpdateExpression="SET working.#shard = :until",
                ConditionExpression=(
                    "run_id = :run AND attribute_exists(working) "
                    "AND attribute_not_exists(done.#shard)"
                ),
                ExpressionAttributeNames={"#shard": str(index)},
                ExpressionAttributeValues=placeholders(run=run_id, until=iso(until)),
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise RepositoryError(describe_error("record a started shard", exc)) from None
        return True

    def finish_shard(
        self, run_id: str, index: int, shard: ShardRun, counts: Mapping[str, int]
    ) -> RunPlan | None:
        """Add a finished shard's counts to its run, once (a redelivered shard adds nothing);
        the run as it is now, or None when another run has replaced it. The shard that
        finishes the run records it as the last run."""
        names = {"#shard": str(index), **{f"#c{i}": name for i, name in enumerate(COUNTS)}}
        values = {
            ":run": run_id,
            ":shard": shard_to_value(shard),
            **{f":c{i}": int(counts.get(name, 0)) for i, name in enumerate(COUNTS)},
        }
        sums = ", ".join(f"summary.#c{i} = summary.#c{i} + :c{i}" for i in range(len(COUNTS)))
        try:
            answer = self._call(
                "update_item",
                TableName=self.table_name,
                Key=_key({"pk": RUN_PK, "sk": CURRENT_SK}),
                UpdateExpression=f"SET done.#shard = :shard, {sums}",
                ConditionExpression="run_id = :run AND attribute_not_exists(done.#shard)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=placeholders(**{k[1:]: v for k, v in values.items()}),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise RepositoryError(describe_error("record a finished shard", exc)) from None
        plan = plan_from_item(plain(answer["Attributes"]))
        if plan.complete:
            self.save_run(plan.record())
        return plan

    def save_inventories(self, inventories: Sequence[CachedInventory]) -> None:
        self._batch_write(
            [{"PutRequest": {"Item": typed(inventory_to_item(c))}} for c in inventories]
        )

    # ---- plumbing ------------------------------------------------------------------------
    def _unit(
        self,
        status: TargetStatus,
        claim: Claim | None,
        history: Mapping[str, Sequence[Alert]],
        keep: timedelta,
    ) -> list[dict[str, Any]]:
        """The transaction items of one target: its status, then its new history records."""
        key = subject_key(status)
        records = [
            history_item(key, alert, int((alert.created_at + keep).timestamp()))
            for alert in history.get(key, ())
        ]
        status_put = {"Put": self._conditional_put(status, claim)}
        return [
            status_put,
            *({"Put": {"TableName": self.table_name, "Item": typed(r)}} for r in records),
        ]

    def _transact(self, items: list[dict[str, Any]]) -> bool:
        """Write all items or none; False when a condition failed (another run came first)."""
        try:
            self._call("transact_write_items", TransactItems=items)
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons") or []
            if not reasons or any(r.get("Code") == "ConditionalCheckFailed" for r in reasons):
                return False
            codes = ", ".join(sorted({str(r.get("Code")) for r in reasons} - {"None"}))
            raise RepositoryError(f"DynamoDB cancelled the transaction: {codes}") from None
        return True

    def _conditional_put(self, status: TargetStatus, claim: Claim | None) -> dict[str, Any]:
        item = status_to_item(status)
        item["version"] = status.version + 1
        if claim:
            item.update(claim_owner=claim.owner, claim_until=iso(claim.until))
        put: dict[str, Any] = {"TableName": self.table_name, "Item": typed(item)}
        if status.version == 0:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put["ConditionExpression"] = "version = :v"
            put["ExpressionAttributeValues"] = placeholders(v=status.version)
        return put

    def _query_all(
        self, pk: str, *, lo: str | None = None, hi: str | None = None
    ) -> Iterator[dict[str, Any]]:
        # Eventually consistent (half the price): every write is conditional on the version
        # read, so a stale read can only lose a race, never overwrite a newer decision.
        return query_items(self._call, self.table_name, pk, lo=lo, hi=hi)

    def _get(self, key: dict[str, str]) -> dict[str, Any] | None:
        answer = self._call("get_item", TableName=self.table_name, Key=_key(key))
        item = answer.get("Item")
        return plain(item) if item else None

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        for chunk in _chunks(requests, BATCH_WRITE_LIMIT):
            pending: dict[str, Any] = {self.table_name: chunk}
            for _attempt in range(5):
                answer = self._call("batch_write_item", RequestItems=pending)
                pending = answer.get("UnprocessedItems") or {}
                if not pending:
                    break
            else:
                raise RepositoryError("DynamoDB left writes unprocessed after 5 attempts")

    def _call(self, operation: str, **params: Any) -> Any:
        self.calls += 1
        try:
            return getattr(self._client, operation)(**params)
        except ClientError as exc:
            if error_code(exc) in (
                "TransactionCanceledException",
                "ConditionalCheckFailedException",
            ):
                raise
            raise RepositoryError(describe_error(operation, exc)) from None
        except Exception as exc:  # endpoint unreachable, credentials, ...
            raise RepositoryError(f"DynamoDB {operation} failed: {type(exc).__name__}") from None


def _bumped(status: TargetStatus) -> TargetStatus:
    return replace(status, version=status.version + 1)


Unit = tuple[TargetStatus, list[dict[str, Any]]]


def _packs(units: list[Unit], limit: int) -> Iterator[list[Unit]]:
    """Group whole targets' units into transactions of at most `limit` items."""
    pack: list[Unit] = []
    size = 0
    for unit in units:
        if pack and size + len(unit[1]) > limit:
            yield pack
            pack, size = [], 0
        pack.append(unit)
        size += len(unit[1])
    if pack:
        yield pack


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _key(key: dict[str, str]) -> dict[str, Any]:
    return table_key(key["pk"], key["sk"])
