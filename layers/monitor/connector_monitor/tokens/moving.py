"""Moving portals' pairs from the secret to the fleet's token table, losing none.

Under the secret's refresh lease (so no checker refreshes a portal of the secret meanwhile):
store the applications the portals use in the secret's `apps`; write each portal's pair into
the table unless the table has one; then store the secret without those portals. A crash
between the writes leaves a pair in both places: the checker reads the table's (which it
prefers), and moving again finishes the job. A portal the table already holds keeps the table's
pair, and its entry leaves the secret.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .credentials import AppCredentials, PortalCredentials, apps_of
from .ports import CredentialsDocument, PairTable, RefreshLease


@dataclass
class Moved:
    moved: list[str] = field(default_factory=list)  # written to the table, left the secret
    already: list[str] = field(default_factory=list)  # the table had them: its pair stays
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
    with lease.hold(secret.lease_name(""), ttl=120.0, wait=lease_wait):
        document = secret.document()
        apps = apps_of(document)
        entries: dict[str, Any] = dict(document["portals"])
        wanted = sorted(entries) if portals is None else [p for p in portals if p in entries]
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
            secret.replace(with_apps)
        # 2. each pair into the table, unless it holds one already
        for portal, (creds, app) in moving.items():
            (outcome.moved if table.put_new(portal, app.name, creds) else outcome.already).append(
                portal
            )
        # 3. the secret without them: from here on the table is the only copy
        secret.replace(
            {**with_apps, "portals": {p: e for p, e in entries.items() if p not in moving}}
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
