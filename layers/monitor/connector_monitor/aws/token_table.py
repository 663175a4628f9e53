"""The token store of a fleet: each portal's pair in an item of its own, in a DynamoDB table of
its own (encrypted at rest with KMS; only the checker's role may read or write it).

A refresh is one conditional write of that portal's item: no version quota to run out of, no
document shared with other portals, so refreshes of different portals do not wait for each other
(but for a run's first, which goes alone until the table has taken a write: tokens/refresh.py).
Invocations are kept from refreshing the same portal by the table's refresh claim (`own_lease`):
two writes an invocation that refreshes, not one a refresh.
The table is read by query pages, so a run's read costs grow with the bytes of the pairs, not
with the number of portals, and a shard of a fanned-out run reads only its range of portals.
The application's client id and secret live once in the secret (`apps`); an item names its app.

Item: `pk` "PORTAL", `sk` the portal's domain; `app`, `access_token`, `refresh_token`,
`client_endpoint`, `oauth_endpoint`?, `expires_at`?, `refreshed_at`?, `member_id`?, `version`;
`deleted_lines`? (line id → epoch seconds: the lines the portal's line-delete events named, the
newest few, written by the inbound function beside the pair, never with it).
The refresh claim: `pk` "CLAIM", `sk` "refresh"; `holders` (owner → `lo`, `hi`?, `until`: the
key range an invocation refreshes, and when its holding runs out), `version`.
docs/fleet-token-store.md compares this store with SSM and a secret per portal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..domain.app_events import Installation, supersedes
from ..domain.inventory import deletions_over
from ..domain.shards import KeyRange
from ..ports.installs import InstallStoreError, KnownInstall
from ..tokens.credentials import AppCredentials, PortalCredentials, portal_key
from ..tokens.errors import PairSuperseded, TokenStoreError, UnusableCredentials
from ..tokens.ports import RefreshLease
from . import clients
from .botocore_redaction import install_botocore_redaction
from .dynamodb import (
    RangeClaim,
    error_code,
    plain,
    put_if_absent,
    query_items,
    table_key,
    typed,
)

PORTAL_PK = "PORTAL"
MEMBER_PK = "MEMBER"  # member_id → the portal it is installed on (the inbound function's)
CLAIM_PK, REFRESH_CLAIM = "CLAIM", "refresh"
# A refresh claim runs out by itself this long after its invocation's end at the latest (clocks
# of different invocations may differ a little); an invocation whose end is not handed in ends
# within Lambda's longest timeout.
CLAIM_MARGIN = 60.0
LONGEST_INVOCATION = 900.0
PAIR_FIELDS = (
    "access_token",
    "refresh_token",
    "client_endpoint",
    "oauth_endpoint",
    "expires_at",
    "refreshed_at",
    "member_id",
)

install_botocore_redaction()
logger = logging.getLogger(__name__)


class TablePairs:
    """`tokens.ports.PairStore` over the fleet's token table."""

    def __init__(
        self,
        table_name: str,
        *,
        apps: Callable[[], Mapping[str, AppCredentials]],
        client: Any | None = None,
        portals: KeyRange | None = None,
        ends_by: float | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`portals`: the range a shard reads and refreshes (None: every portal); `ends_by`:
        when the invocation ends at the latest (epoch seconds; None: Lambda's longest timeout
        from now), after which its refresh claim runs out by itself."""
        self.table_name = table_name
        self._apps = apps
        self._client = client if client is not None else clients.client("dynamodb")
        self._range = portals
        self._items: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        ends = ends_by if ends_by is not None else clock() + LONGEST_INVOCATION
        self._claim = RangeClaim(
            self._call,
            table_name,
            table_key(CLAIM_PK, REFRESH_CLAIM),
            portals or KeyRange.everything(),
            until=ends + CLAIM_MARGIN,
            what=f"the refresh claim of token table {table_name}",
            clock=clock,
            sleep=sleep,
        )
        self.calls = 0

    # -- the PairStore -----------------------------------------------------------------------

    def load(self) -> None:
        """Every pair of the range, by query pages (eventually consistent: a pair is re-read
        consistently before any refresh)."""
        items: dict[str, dict[str, Any]] = {}
        for item in sorted(self._query(), key=lambda i: str(i["sk"])):
            items.setdefault(portal_key(str(item["sk"])), item)  # one spelling of a portal
        with self._lock:
            self._items = items

    def holds(self, portal: str) -> bool:
        with self._lock:
            return portal in self._items

    def portals(self) -> list[str]:
        with self._lock:
            return sorted(self._items)

    def credentials(self, portal: str) -> PortalCredentials:
        with self._lock:
            item = self._items.get(portal)
        if item is None:
            raise UnusableCredentials(f"token table {self.table_name} has no pair for {portal}")
        return self._credentials(portal, item)

    def reread(self, portal: str) -> PortalCredentials:
        """The pair as stored now (a consistent read)."""
        item = self._get(portal)
        if item is None:
            raise UnusableCredentials(f"token table {self.table_name} has no pair for {portal}")
        with self._lock:
            self._items[portal] = item
        return self._credentials(portal, item)

    def deleted_lines(self, portal: str) -> dict[int, datetime]:
        """The lines the portal's line-delete events named, as last read (marks that are not
        a line id and a time are skipped)."""
        with self._lock:
            item = self._items.get(portal)
        return _deletion_marks(item.get("deleted_lines") if item is not None else None)

    def lease_name(self, portal: str) -> str:
        return f"tokens:{portal}"

    def own_lease(self, portal: str) -> RefreshLease:
        """The table's refresh claim, the same for every portal: an invocation takes it before
        its first refresh (one conditional write of the claim's item, naming the key range it
        refreshes: every portal, or its shard's) and `end_run` gives it back (one more), so a
        refresh itself is one write, the pair's.

        The pair's write is conditional on the version read, so no writer overwrites a newer
        pair; but without the claim two invocations could both spend the same single-use
        refresh token at the OAuth server before either writes, and no source says the server
        refuses the second at once (docs/bitrix24-rest-notes.md): the pair that wins the write
        may be the one it has replaced, and the portal is locked out. Scheduled runs do not
        overlap, but a manual invoke, and the shard workers of a plan beside a previous plan's
        shard still at work (their ranges split differently), can: the claim is refused while
        another invocation's live holding overlaps the range, and those portals are not
        refreshed in this run. A crashed holder's claim runs out by itself after its
        invocation's end (`ends_by` + CLAIM_MARGIN). Writers that spend no refresh token (an
        install, `monitorctl tokens set`) take no claim: their conditional writes win over a
        refresh under way, whose write then fails (tokens/refresh.py keeps the newer pair)."""
        return self._claim

    def end_run(self) -> None:
        """The refresh claim given back, if this invocation took it and no refresh is under
        way (otherwise it runs out by itself)."""
        self._claim.release()

    def store(self, fresh: PortalCredentials) -> None:
        """One conditional write: the item as last read (its version), or nothing. The copy in
        memory holds the new pair whatever happens (it is the only valid one), unless the write
        found another pair than the one last read (an install, `monitorctl tokens set`): that
        one is newer, stands, and is kept in memory (PairSuperseded)."""
        with self._lock:
            known = self._items.get(fresh.portal)
            if known is None:
                raise UnusableCredentials(
                    f"token table {self.table_name} has no pair for {fresh.portal}"
                )
            seen = known.get("version")
            # A pair without an expiry or a refresh time (one set by hand) drops the old one's.
            dropped = [k for k in ("expires_at", "refreshed_at") if getattr(fresh, k) is None]
            kept = {k: v for k, v in known.items() if k not in dropped}
            updated = {**kept, **_pair_of(fresh), "version": _next_version(seen)}
            self._items[fresh.portal] = updated
        names = {f"#f{i}": name for i, name in enumerate(_pair_of(fresh))}
        values = {f":v{i}": value for i, value in enumerate(_pair_of(fresh).values())}
        assignments = ", ".join(f"{n} = {v}" for n, v in zip(names, values, strict=True))
        # The item as last read: its version, or (written by hand, or by an older release) no
        # version at all. Either way the condition holds unless another writer came between.
        if seen is None:
            condition, expected = "attribute_not_exists(version)", {}
        else:
            condition, expected = "version = :seen", {":seen": seen}
        try:
            self._call(
                "update_item",
                TableName=self.table_name,
                Key=_key(str(known.get("sk") or fresh.portal)),
                UpdateExpression=f"SET {assignments}, version = :next"
                + (f" REMOVE {', '.join(dropped)}" if dropped else ""),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=typed(
                    {**values, ":next": updated["version"], **expected}
                ),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            code = error_code(exc)
            if code == "ConditionalCheckFailedException":
                replaced = self._replaced(fresh.portal, known, exc.response.get("Item"))
                if replaced is not None:
                    raise replaced from None
            why = (
                "another writer changed it since it was read"
                if code == "ConditionalCheckFailedException"
                else code
            )
            raise TokenStoreError(
                f"portal {fresh.portal}: the refreshed tokens could not be stored in token table "
                f"{self.table_name} ({why}); the monitor will be locked out of this portal: "
                "re-authorise the application and store the new tokens with "
                f"`monitorctl tokens set {fresh.portal}`",
                pair_lost=True,
            ) from None
        except BotoCoreError as exc:
            raise TokenStoreError(
                f"portal {fresh.portal}: the refreshed tokens could not be stored in token table "
                f"{self.table_name} ({type(exc).__name__}); re-authorise the application and "
                f"store the new tokens with `monitorctl tokens set {fresh.portal}`",
                pair_lost=True,
            ) from None

    def _replaced(
        self, portal: str, known: Mapping[str, Any], found: object
    ) -> PairSuperseded | UnusableCredentials | None:
        """Why a pair write's condition failed, when nothing is lost by it: the item holds
        another pair than the one last read (PairSuperseded: another writer stored it, and it
        is now the copy in memory), or no item is left (UnusableCredentials: the application
        was uninstalled meanwhile). None: the pair is lost. `found` is the item as the failed
        write saw it (ALL_OLD); without one the item is read."""
        if isinstance(found, Mapping):
            stored: dict[str, Any] | None = plain(found)
        else:
            try:
                stored = self._get(portal)
            except TokenStoreError:
                return None
        if stored is None:
            return UnusableCredentials(
                f"token table {self.table_name} no longer holds a pair for {portal}: the "
                "application was uninstalled while its refresh was under way"
            )
        token = stored.get("refresh_token")
        if not isinstance(token, str) or not token or token == known.get("refresh_token"):
            return None
        with self._lock:
            self._items[portal] = stored
        return PairSuperseded(
            f"portal {portal}: token table {self.table_name} holds a newer pair than the one "
            "this write replaces; it stands"
        )

    # -- moving pairs in (bench, admin) ---------------------------------------------------------

    def put_new(self, portal: str, app: str, credentials: PortalCredentials) -> bool:
        """Add a portal's pair unless the table has one already (then False, nothing written)."""
        item = {
            "pk": PORTAL_PK,
            "sk": portal_key(portal),
            "app": app,
            **_pair_of(credentials),
            "version": 1,
        }
        try:
            return put_if_absent(self._call, self.table_name, item)
        except ClientError as exc:
            raise TokenStoreError(
                f"token table {self.table_name}: {portal} could not be added ({error_code(exc)})"
            ) from None

    def same_pair(self, portal: str, credentials: PortalCredentials) -> bool:
        """Whether the table's item for `portal` holds this access and refresh token."""
        item = self._get(portal)
        return item is not None and (item.get("access_token"), item.get("refresh_token")) == (
            credentials.access_token,
            credentials.refresh_token,
        )

    # -- installs (the inbound function) ----------------------------------------------------------

    def store_install(self, installation: Installation) -> bool:
        """`ports.installs.InstallStore.store_install`: one transaction writes the portal's
        item (its pair, `member_id`, `app_status`, `installed_at`, `token_hash`), the member's
        item (`pk` "MEMBER", `sk` member_id → the portal) and, for a member_id known under
        another domain (a moved portal), deletes the old domain's item. The portal's item is
        written only as last read (its `version`): a refresh under way then fails its own
        conditional write instead of overwriting the installed pair (and keeps it)."""
        portal = portal_key(installation.portal)
        member = self._member(installation.member_id)
        try:
            item = self._get(portal)
        except TokenStoreError as exc:
            raise InstallStoreError(str(exc)) from None
        if item is not None and not supersedes(
            installation, _whole(item.get("installed_at")), _whole(item.get("expires_at"))
        ):
            return False
        fields: dict[str, Any] = {
            "app": installation.app,
            "access_token": installation.access_token,
            "refresh_token": installation.refresh_token,
            "client_endpoint": installation.client_endpoint,
            "member_id": installation.member_id,
            "installed_at": installation.installed_at,
            "server_endpoint": installation.server_endpoint,
            "scope": " ".join(installation.scope),
        }
        if installation.token_hash is not None:  # a re-authorisation keeps the install's
            fields["token_hash"] = installation.token_hash
        if installation.app_status:
            fields["app_status"] = installation.app_status
        if installation.expires_at is not None:
            fields["expires_at"] = installation.expires_at
        dropped = [k for k in ("expires_at", "refreshed_at", "app_status") if k not in fields]
        seen = item.get("version") if item is not None else None
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = {f":v{i}": value for i, value in enumerate(fields.values())}
        assignments = ", ".join(f"{n} = {v}" for n, v in zip(names, values, strict=True))
        expected: dict[str, Any] = {}
        if item is None:
            condition = "attribute_not_exists(sk)"
        elif seen is None:
            condition = "attribute_not_exists(version)"
        else:
            condition, expected = "version = :seen", {":seen": seen}
        update = {
            "TableName": self.table_name,
            "Key": _key(str(item["sk"]) if item is not None else portal),
            "UpdateExpression": f"SET {assignments}, version = :next"
            + (f" REMOVE {', '.join(dropped)}" if dropped else ""),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": typed(
                {**values, ":next": _next_version(seen), **expected}
            ),
        }
        writes: list[dict[str, Any]] = [
            {"Update": update},
            {
                "Put": {
                    "TableName": self.table_name,
                    "Item": typed(
                        {
                            "pk": MEMBER_PK,
                            "sk": installation.member_id,
                            "portal": portal,
                            "installed_at": installation.installed_at,
                        }
                    ),
                }
            },
        ]
        moved_from = member.get("portal") if member is not None else None
        if isinstance(moved_from, str) and moved_from != portal:
            writes.append(self._delete_pair_of(moved_from, installation.member_id))
            logger.warning(
                "%s moved: its installation was known under %s",
                portal,
                moved_from,
                extra={"portal": portal, "moved_from": moved_from},
            )
        try:
            self._call("transact_write_items", TransactItems=writes)
        except ClientError as exc:
            if _cancelled_by_condition(exc):
                return False
            raise InstallStoreError(
                f"token table {self.table_name}: the install of {portal} could not be stored "
                f"({error_code(exc)})"
            ) from None
        except BotoCoreError as exc:
            raise InstallStoreError(
                f"token table {self.table_name}: the install of {portal} could not be stored "
                f"({type(exc).__name__})"
            ) from None
        return True

    def known(self, member_id: str) -> KnownInstall | None:
        """`ports.installs.InstallStore.known`: the member's portal and its token digest, read
        consistently; None unless both items agree."""
        try:
            member = self._member(member_id)
            portal = member.get("portal") if member is not None else None
            item = self._get(portal) if isinstance(portal, str) else None
        except TokenStoreError as exc:
            raise InstallStoreError(str(exc)) from None
        if item is None or item.get("member_id") != member_id:
            return None
        digest, endpoint = item.get("token_hash"), item.get("client_endpoint")
        if not isinstance(digest, str) or not isinstance(endpoint, str):
            return None
        return KnownInstall(str(portal), digest, endpoint, str(item.get("access_token") or ""))

    def note_line_deleted(self, member_id: str, portal: str, line: int, at: int) -> None:
        """`ports.installs.InstallStore.note_line_deleted`: the mark is one map entry set by
        itself (two events at once both land), outside the pair and its `version` (a refresh
        under way still writes its pair); the oldest marks past the newest few are then
        removed."""
        member = {":member": member_id}
        condition = "member_id = :member"
        try:
            self._call(
                "update_item",
                TableName=self.table_name,
                Key=_key(portal),
                UpdateExpression="SET deleted_lines = if_not_exists(deleted_lines, :none)",
                ConditionExpression=condition,
                ExpressionAttributeValues=typed({**member, ":none": {}}),
            )
            answer = self._call(
                "update_item",
                TableName=self.table_name,
                Key=_key(portal),
                UpdateExpression="SET deleted_lines.#line = :at",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#line": str(line)},
                ExpressionAttributeValues=typed({**member, ":at": at}),
                ReturnValues="ALL_NEW",
            )
            marks = _marks_of(plain(answer.get("Attributes", {})).get("deleted_lines"))
            if over := deletions_over(marks):
                names = {f"#d{i}": str(old) for i, old in enumerate(over)}
                self._call(
                    "update_item",
                    TableName=self.table_name,
                    Key=_key(portal),
                    UpdateExpression="REMOVE " + ", ".join(f"deleted_lines.{n}" for n in names),
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=typed(member),
                )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return  # the portal is gone or another member's: nothing of this one to mark
            raise InstallStoreError(
                f"token table {self.table_name}: the deleted line of {portal} could not be "
                f"stored ({error_code(exc)})"
            ) from None
        except BotoCoreError as exc:
            raise InstallStoreError(
                f"token table {self.table_name}: the deleted line of {portal} could not be "
                f"stored ({type(exc).__name__})"
            ) from None

    def forget(self, member_id: str, portal: str) -> None:
        """`ports.installs.InstallStore.forget`: the pair and the member's item, in one
        transaction (the pair only while it is still that member's)."""
        writes = [
            self._delete_pair_of(portal, member_id),
            {"Delete": {"TableName": self.table_name, "Key": table_key(MEMBER_PK, member_id)}},
        ]
        try:
            self._call("transact_write_items", TransactItems=writes)
        except ClientError as exc:
            if _cancelled_by_condition(exc):
                return  # the domain is another member's now: nothing of this one to forget
            raise InstallStoreError(
                f"token table {self.table_name}: {portal} could not be forgotten "
                f"({error_code(exc)})"
            ) from None
        except BotoCoreError as exc:
            raise InstallStoreError(
                f"token table {self.table_name}: {portal} could not be forgotten "
                f"({type(exc).__name__})"
            ) from None

    def _delete_pair_of(self, portal: str, member_id: str) -> dict[str, Any]:
        return {
            "Delete": {
                "TableName": self.table_name,
                "Key": _key(portal),
                "ConditionExpression": "attribute_not_exists(sk) OR member_id = :member",
                "ExpressionAttributeValues": typed({":member": member_id}),
            }
        }

    def _member(self, member_id: str) -> dict[str, Any] | None:
        try:
            answer = self._read(
                "get_item",
                TableName=self.table_name,
                Key=table_key(MEMBER_PK, member_id),
                ConsistentRead=True,
            )
        except TokenStoreError as exc:
            raise InstallStoreError(str(exc)) from None
        item = answer.get("Item")
        return plain(item) if item else None

    # -- DynamoDB --------------------------------------------------------------------------------

    def _credentials(self, portal: str, item: Mapping[str, Any]) -> PortalCredentials:
        apps = self._apps()
        name = item.get("app")
        app = (
            apps.get(str(name)) if name else (next(iter(apps.values())) if len(apps) == 1 else None)
        )
        if app is None:
            raise UnusableCredentials(
                f"the pair of {portal} names application '{name or '?'}', which the secret's "
                '"apps" does not hold (client_id and client_secret)'
            )
        pair = {k: _number(item[k]) for k in PAIR_FIELDS if item.get(k) is not None}
        entry = {**app.entry(), **pair}
        return PortalCredentials.from_secret_entry(portal, entry)

    def _written(self, portal: str) -> str:
        """The portal's key as its item was written (one written by hand may not be in its one
        spelling), else its one spelling."""
        with self._lock:
            item = self._items.get(portal_key(portal))
        return str(item["sk"]) if item is not None else portal_key(portal)

    def _query(self) -> Iterator[dict[str, Any]]:
        """The range's items (a shard's), or every item."""
        portals = self._range or KeyRange.everything()
        lo, hi = portals.portal_bounds()
        items = query_items(self._read, self.table_name, PORTAL_PK, lo=lo, hi=hi)
        return (item for item in items if portals.holds_portal(portal_key(str(item["sk"]))))

    def _get(self, portal: str) -> dict[str, Any] | None:
        answer = self._read(
            "get_item",
            TableName=self.table_name,
            Key=_key(self._written(portal)),
            ConsistentRead=True,
        )
        item = answer.get("Item")
        return plain(item) if item else None

    def _read(self, operation: str, **params: Any) -> Any:
        try:
            return self._call(operation, **params)
        except (ClientError, BotoCoreError) as exc:
            code = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
            raise TokenStoreError(
                f"token table {self.table_name} could not be read ({code})"
            ) from None

    def _call(self, operation: str, **params: Any) -> Any:
        self.calls += 1
        return getattr(self._client, operation)(**params)


def _pair_of(credentials: PortalCredentials) -> dict[str, Any]:
    pair: dict[str, Any] = {
        "access_token": credentials.access_token,
        "refresh_token": credentials.refresh_token,
        "client_endpoint": credentials.client_endpoint,
        "oauth_endpoint": credentials.oauth_endpoint,
        "expires_at": credentials.expires_at,
        "refreshed_at": credentials.refreshed_at,
        "member_id": credentials.member_id,
    }
    return {k: v for k, v in pair.items() if v is not None}


def _next_version(seen: object) -> int:
    """The version a write after `seen` stores: one more than a whole number, else 1 (no
    version, or one written by hand as text)."""
    if isinstance(seen, bool) or not isinstance(seen, int | Decimal):
        return 1
    whole = int(seen)
    return whole + 1 if whole == seen else 1


def _number(value: Any) -> Any:
    """DynamoDB's numbers come back as Decimal; a pair's (expires_at, refreshed_at) are whole
    seconds, and read as anything else they would be dropped, and the refresh budget with them."""
    return int(value) if isinstance(value, Decimal) else value


def _deletion_marks(raw: object) -> dict[int, datetime]:
    """`deleted_lines` read defensively: entries that are not a line id and a time are skipped,
    and no more than the newest kept."""
    marks = _marks_of(raw)
    over = set(deletions_over(marks))
    return {line: at for line, at in marks.items() if line not in over}


def _marks_of(raw: object) -> dict[int, datetime]:
    if not isinstance(raw, Mapping):
        return {}
    marks: dict[int, datetime] = {}
    for line, at in raw.items():
        if isinstance(line, str) and line.isdigit() and len(line) <= 10:
            seconds = _whole(at)
            if seconds is not None and 0 <= seconds < 2**40:
                marks[int(line)] = datetime.fromtimestamp(seconds, UTC)
    return marks


def _key(portal: str) -> dict[str, Any]:
    return table_key(PORTAL_PK, portal)


def _whole(value: Any) -> int | None:
    return int(value) if isinstance(value, Decimal | int) and not isinstance(value, bool) else None


def _cancelled_by_condition(exc: ClientError) -> bool:
    """A transaction refused because one of its conditions did not hold (not a fault)."""
    if error_code(exc) == "ConditionalCheckFailedException":
        return True
    reasons = exc.response.get("CancellationReasons") or []
    return error_code(exc) == "TransactionCanceledException" and any(
        r.get("Code") == "ConditionalCheckFailed" for r in reasons
    )
