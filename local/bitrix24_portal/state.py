"""The in-memory state of one local portal (guarded by LocalPortal's lock)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from local.bitrix24_portal.protocol import PortalFault


@dataclass(frozen=True)
class RecordedRequest:
    """One REST request that reached a portal (OAuth calls are counted by refresh_count)."""

    domain: str
    method: str
    path: str
    params: dict[str, Any]
    at: float


@dataclass
class Fault:
    fault: PortalFault
    remaining: int | None
    method: str | None
    delay: float


@dataclass
class Access:
    issued_at: float
    refresh: str = field(repr=False)
    expired: bool = False
    app: str = ""  # the client_id it was issued to
    user_id: int = 1  # the user it acts for: the portal's administrator, who installed the app


@dataclass
class App:
    """An application known to the OAuth server: a portal's own (`add_portal`, `add_app`) or
    one shared by many portals (`add_shared_app`), as an integrator's one application is."""

    name: str
    client_id: str
    client_secret: str = field(repr=False)
    shared: bool = False
    # Where the portal sends the user back after /oauth/authorize/ (the application's address,
    # registered with it: `LocalPortal.set_redirect_uri`).
    redirect_uri: str | None = None


@dataclass
class Binding:
    """One event handler (the core's EventTable row: rest/lib/event.php)."""

    id: int
    client_id: str
    event: str  # upper case, as event.bind stores it
    handler: str
    user_id: int = 0  # 0: on behalf of whoever triggered the event


@dataclass
class Installation:
    """An application installed on a portal: the token it signs events with, its version, and
    whether the installation was finished (app.info's install.installed)."""

    id: int  # app.info's ID: the application's number on the portal
    application_token: str = field(repr=False)
    version: str = "1"
    finished: bool = True


@dataclass
class Code:
    """An authorization code from /oauth/authorize/: single use, short-lived."""

    state: PortalState
    client_id: str
    expires_at: float


@dataclass
class Operating:
    """One method's operating time in the current 10-minute window (rest/lib/engine/access/
    loadlimiter.php keeps ten one-minute buckets; one window is enough here)."""

    seconds: float = 0.0
    reset_at: float = 0.0


@dataclass
class Bucket:
    level: float = 0.0
    updated: float = 0.0

    def admit(self, burst: int, per_second: float, now: float) -> bool:
        self.level = max(0.0, self.level - (now - self.updated) * per_second)
        self.updated = now
        if self.level + 1 > burst:
            return False
        self.level += 1
        return True


@dataclass
class PortalState:
    domain: str
    client_id: str  # the portal's application: its own, or a shared one (add_portal's `app`)
    client_secret: str = field(repr=False)
    member_id: str
    connectors: dict[str, str]
    lines: dict[int, str]
    flags: dict[tuple[str, int], tuple[bool, bool]] = field(default_factory=dict)
    access: dict[str, Access] = field(default_factory=dict, repr=False)
    refresh: dict[str, str] = field(default_factory=dict, repr=False)  # refresh -> its access
    issued: set[str] = field(default_factory=set, repr=False)  # every token ever issued
    faults: list[Fault] = field(default_factory=list)
    failed: dict[tuple[str, int], str] = field(default_factory=dict)
    answer_only: frozenset[int] | None = None
    bucket: Bucket = field(default_factory=Bucket)
    refreshes: int = 0
    apps: dict[str, App] = field(default_factory=dict)  # by client_id, the portal's app aside
    list_allowed: bool = True  # the installing user may change Open Lines connectors
    moved_to: str | None = None  # REST answers 302 to this domain's endpoint
    operating: dict[str, Operating] = field(default_factory=dict)  # by method
    omitted: dict[int, int] = field(default_factory=dict)  # line -> listings still leaving it out
    deleted_after_page: set[int] = field(default_factory=set)  # deleted once a page is served
    bindings: list[Binding] = field(default_factory=list)  # event handlers, every app's
    installations: dict[str, Installation] = field(default_factory=dict)  # by client_id

    def secret_of(self, client_id: str) -> str | None:
        if client_id == self.client_id:
            return self.client_secret
        app = self.apps.get(client_id)
        return app.client_secret if app else None

    def take_fault(self, method: str) -> Fault | None:
        for entry in self.faults:
            if entry.method != method and (entry.method is not None or method == "oauth"):
                continue
            if entry.remaining is not None:
                entry.remaining -= 1
                if entry.remaining <= 0:
                    self.faults.remove(entry)
            return entry
        return None
