"""Moving portals' pairs from the secret to the fleet's token table, losing none.

Under the secret's refresh lease (so no checker refreshes a portal of the secret meanwhile):
store the applications the portals use in the secret's `apps`; write each portal's pair into
the table unless the table has one; then store the secret without those portals. A crash
between the writes leaves a pair in both places: the checker reads the table's (which it
prefers), and moving again finishes the job. A portal the table already holds with the same
pair leaves the secret; one whose pair in the secret differs from the table's (a portal
re-authorised and stored in the secret by mistake, or a move that failed half-way) keeps its
entry in the secret: deleting it could delete the only working pair (`monitorctl tokens set`
replaces a table's pair).

The lease is renewed (proving it is still this move's) before every write, and the secret is
read again under it before it is written: a move that outlived its lease (a checker may have
refreshed a pair of the secret since) writes nothing more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .credentials import AppCredentials, PortalCredentials, apps_of, portal_key, spellings
from .errors import PairSuperseded, TokenStoreError, UnusableCredentials
from .ports import CredentialsDocument, PairStore, PairTable, RefreshLease


@dataclass
class Moved:
    moved: list[str] = field(default_factory=list)  # written to the table, left the secret
    already: list[str] = field(default_factory=list)  # the table had the same pair
    differing: list[str] = field(default_factory=list)  # the table had another: both kept
    unreadable: dict[str, str] = field(default_factory=dict)  # kept in the secret, and why


def move_to_table(
    secret: CredentialsDocument,
    table: PairTable,
    lease: RefreshLease,
    *,
    portals: Iterable[str] | None = None,
    lease_wait: float = 30.0,
) -> Moved:
    """Move `portals` (default: every one) of the secret into the table."""
    outcome = Moved()
    with lease.hold(secret.lease_name(""), ttl=120.0, wait=lease_wait) as held:
        document = secret.document()
        apps = apps_of(document)
        # Each portal by its one spelling (`portal_key`), whatever the secret's key says.
        written = spellings(document["portals"])
        entries: dict[str, Any] = {key: document["portals"][w] for key, w in written.items()}
        asked = None if portals is None else [portal_key(p) for p in portals]
        wanted = sorted(entries) if asked is None else [p for p in asked if p in entries]
        moving: dict[str, tuple[PortalCredentials, AppCredentials]] = {}
        for portal in wanted:
            try:
                creds = PortalCredentials.from_secret_entry(portal, entries[portal])
            except ValueError as exc:  # UnusableCredentials: a partial entry stays where it is
                outcome.unreadable[portal] = str(exc)
                continue
            moving[portal] = (creds, _app_for(creds, apps))
        if not moving:
            return outcome
        # 1. the applications first: a pair in the table is only readable with its app
        with_apps = {**document, "apps": {**(document.get("apps") or {}), **_entries(apps)}}
        if with_apps != document:
            held.renew()
            secret.replace(with_apps)
        # 2. each pair into the table, unless it holds one already
        for portal, (creds, app) in moving.items():
            held.renew()
            if table.put_new(portal, app.name, creds):
                outcome.moved.append(portal)
            elif table.same_pair(portal, creds):
                outcome.already.append(portal)
            else:
                outcome.differing.append(portal)
        # 3. the secret without them: from here on the table is the only copy. Read again
        # under the lease (renewed first): what is written is never older than the lease.
        held.renew()
        now = secret.document()
        changed = sorted(p for p in moving if now["portals"].get(written[p]) != entries[p])
        if changed:
            raise TokenStoreError(
                f"the secret changed while the move held its lease ({', '.join(changed)}): "
                "nothing removed from it; run the move again"
            )
        leaving = {written[p] for p in (*outcome.moved, *outcome.already)}
        secret.replace(
            {**now, "portals": {p: e for p, e in now["portals"].items() if p not in leaving}}
        )
    return outcome


def _app_for(creds: PortalCredentials, apps: dict[str, AppCredentials]) -> AppCredentials:
    """The application with this portal's client id and secret, added to `apps` if new."""
    for app in apps.values():
        if (app.client_id, app.client_secret) == (creds.client_id, creds.client_secret):
            return app
    name = creds.client_id if creds.client_id not in apps else f"app-{len(apps) + 1}"
    app = AppCredentials(name, creds.client_id, creds.client_secret, creds.oauth_endpoint)
    apps[name] = app
    return app


def _entries(apps: dict[str, AppCredentials]) -> dict[str, dict[str, str]]:
    return {
        app.name: {
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "oauth_endpoint": app.oauth_endpoint,
        }
        for app in apps.values()
    }


def set_pair(table: PairStore, portal: str, pair: Mapping[str, Any], *, attempts: int = 3) -> None:
    """Replace `portal`'s pair in the fleet's token table with a new one (after the application
    was re-authorised on the portal). The write is conditional on the item's version as just
    read: a checker's refresh under way then fails its own write and keeps this pair (tokens/
    refresh.py); a write that lost to another writer (a refresh that stored first) is read and
    tried again, `attempts` times in all. `pair`: `access_token`, `refresh_token` and
    optionally `expires_at` (or Bitrix24's `expires`), `client_endpoint`, `member_id`."""
    access, refresh = pair.get("access_token"), pair.get("refresh_token")
    if not isinstance(access, str) or not access or not isinstance(refresh, str) or not refresh:
        raise UnusableCredentials(
            f"the new pair of {portal} needs a non-empty access_token and refresh_token"
        )
    endpoint, member = pair.get("client_endpoint"), pair.get("member_id")
    if endpoint is not None and (not isinstance(endpoint, str) or not endpoint.startswith("http")):
        raise UnusableCredentials(f"the new pair of {portal} has a client_endpoint that is no URL")
    expires = pair.get("expires_at", pair.get("expires"))
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, int)):
        raise UnusableCredentials(f"the new pair of {portal} has an expiry that is no epoch second")
    for attempt in range(1, attempts + 1):
        current = table.reread(portal)  # UnusableCredentials if the table holds no pair for it
        try:
            table.store(
                current.with_tokens(
                    access,
                    refresh,
                    expires,
                    None,
                    client_endpoint=endpoint,
                    member_id=member if isinstance(member, str) and member else None,
                )
            )
            return
        except PairSuperseded:
            if attempt == attempts:
                raise TokenStoreError(
                    f"the new pair of {portal} was not stored: other writers kept changing its "
                    "item in the token table; nothing was changed, try again"
                ) from None
