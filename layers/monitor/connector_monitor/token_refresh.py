"""When and how a portal's token pair is refreshed, whatever store keeps it.

Refresh tokens are single-use, so a refreshed pair is written back at once and refreshes are
serialised: a lock inside one invocation (portals are checked in parallel threads) and a lease
across overlapping invocations, both named by the store after what one write replaces (a whole
secret, or one portal's item). Under them the stored pair is read again first: another run may
have rotated it already. A refresh starts only after the portal refused the access token
(expired_token, invalid_token, or a redirect away from its endpoint), at most once per portal
per `REFRESH_INTERVAL`, and not with less than `MIN_REFRESH_SECONDS` left in the run.

A store (`PairStore`) only reads and writes pairs: `aws/token_store.py` over one Secrets
Manager secret.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

import requests

from .bitrix24.credentials import PortalCredentials
from .bitrix24.errors import ErrorKind, PortalError, TokenStoreError
from .bitrix24.oauth import refresh_tokens
from .bitrix24.transport import guard, new_session
from .deadline import Deadline

logger = logging.getLogger(__name__)

OAUTH_TIMEOUT = (3.05, 10.0)  # connect, read: seconds for a call to the portal's OAuth server
# Each portal refreshes at most once in this many seconds. An access token lives an hour, so a
# portal that works never needs more; 55 minutes keep a portal that refuses fresh tokens to
# about 26 secret versions a day, near the 24 of a working one.
REFRESH_INTERVAL = 55 * 60
# A refresh cut short by a timeout may still have spent the refresh token at the OAuth server,
# so none starts with less time than this left in the run.
MIN_REFRESH_SECONDS = 3.0


class LeaseUnavailable(Exception):
    """The lease could not be had: held by another owner for the whole wait, or its store
    failed."""


class RefreshLease(Protocol):
    """A named lease across invocations (`aws/lease.py`)."""

    def hold(self, name: str, *, ttl: float, wait: float) -> AbstractContextManager[None]: ...


class PairStore(Protocol):
    """Where portals' credentials are kept: read once a run, read again before a refresh, and
    each refreshed pair written at once."""

    def load(self) -> None:
        """Read every portal's credentials (once per run). Raises TokenStoreError."""
        ...

    def credentials(self, portal: str) -> PortalCredentials:
        """A portal's credentials as last read. Raises CredentialsError or TokenStoreError."""
        ...

    def reread(self, portal: str) -> PortalCredentials:
        """A portal's credentials as stored now."""
        ...

    def store(self, fresh: PortalCredentials) -> None:
        """Keep a refreshed pair (and what came with it) durably, or raise TokenStoreError with
        `pair_lost`. Readers of this store see it at once, stored or not."""
        ...

    def lease_name(self, portal: str) -> str:
        """The lease a refresh of `portal` holds: whatever one `store` call replaces."""
        ...

    def own_lease(self, portal: str) -> RefreshLease | None:
        """The store's own lease for refreshing `portal`, or None for the shared one."""
        ...

    def holds(self, portal: str) -> bool:
        """Whether the last read found a pair for `portal`."""
        ...

    def portals(self) -> list[str]:
        """The portals the last read found a pair for."""
        ...


class EitherStore:
    """Two pair stores read as one: a portal's pair is in the first if it holds one there (the
    fleet's token table), else in the second (the secret of a small deployment). A portal moved
    from the second to the first is read from the first from then on."""

    def __init__(self, first: PairStore, second: PairStore) -> None:
        self.first = first
        self.second = second

    def load(self) -> None:
        self.second.load()  # the secret: it also holds the applications the table's pairs name
        self.first.load()

    def _owner(self, portal: str) -> PairStore:
        return self.first if self.first.holds(portal) else self.second

    def credentials(self, portal: str) -> PortalCredentials:
        return self._owner(portal).credentials(portal)

    def reread(self, portal: str) -> PortalCredentials:
        return self._owner(portal).reread(portal)

    def store(self, fresh: PortalCredentials) -> None:
        self._owner(fresh.portal).store(fresh)

    def lease_name(self, portal: str) -> str:
        return self._owner(portal).lease_name(portal)

    def own_lease(self, portal: str) -> RefreshLease | None:
        return self._owner(portal).own_lease(portal)

    def holds(self, portal: str) -> bool:
        return self.first.holds(portal) or self.second.holds(portal)

    def portals(self) -> list[str]:
        return sorted({*self.first.portals(), *self.second.portals()})


class RefreshingTokens:
    """`bitrix24.credentials.TokenSource` over a `PairStore`, with the refresh policy."""

    def __init__(
        self,
        pairs: PairStore,
        *,
        lease: RefreshLease | None = None,
        session: requests.Session | None = None,
        oauth_timeout: tuple[float, float] = OAUTH_TIMEOUT,
        reread_attempts: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        lease_ttl: float = 60.0,
        lease_wait: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pairs = pairs
        self._lease = lease
        self._session = guard(session) if session is not None else new_session()
        self._oauth_timeout = oauth_timeout
        self._reread_attempts = max(0, reread_attempts)
        self._sleep = sleep
        self._lease_ttl = lease_ttl
        self._lease_wait = lease_wait
        self._clock = clock
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def load(self) -> None:
        self.pairs.load()

    def credentials(self, portal: str) -> PortalCredentials:
        return self.pairs.credentials(portal)

    def portals(self) -> list[str]:
        """Every portal that has a pair (targets "on every portal that has tokens")."""
        return self.pairs.portals()

    def refresh(
        self, portal: str, stale: PortalCredentials, deadline: Deadline | None = None
    ) -> PortalCredentials:
        """Credentials newer than `stale`: rotated by another thread or run, or refreshed now.

        Waiting for the lease and the OAuth request both end by `deadline`; with too little
        time left no refresh starts, since a refresh cut short may still spend the refresh
        token.
        """
        deadline = deadline or Deadline.after(self._lease_wait + sum(self._oauth_timeout))
        name = self.pairs.lease_name(portal)
        with self._lock(name):
            known = self.pairs.credentials(portal)
            if known.access_token != stale.access_token:
                return known  # another thread of this invocation already refreshed it
            lease = self.pairs.own_lease(portal) or self._lease
            if lease is None:
                return self._refresh_held(portal, stale, deadline)
            try:
                with lease.hold(
                    name, ttl=self._lease_ttl, wait=min(self._lease_wait, deadline.remaining())
                ):
                    return self._refresh_held(portal, stale, deadline)
            except LeaseUnavailable as exc:
                return self._without_lease(portal, stale, exc)

    def _lock(self, name: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(name, threading.Lock())

    def _refresh_held(
        self, portal: str, stale: PortalCredentials, deadline: Deadline
    ) -> PortalCredentials:
        current = self.pairs.reread(portal)
        if current.access_token != stale.access_token:
            logger.info("portal %s: tokens already rotated by another run; using them", portal)
            return current
        self._within_budget(current)
        if deadline.remaining() < MIN_REFRESH_SECONDS:
            raise PortalError(
                ErrorKind.PORTAL_FAILING,
                portal,
                description="too little time left in this run to refresh the access token "
                "safely; the next run refreshes it",
            )
        try:
            fresh = refresh_tokens(
                current,
                session=self._session,
                deadline=deadline,
                timeouts=self._oauth_timeout,
                now=self._clock,
            )
        except PortalError as exc:
            if (exc.code or "").lower() != "invalid_grant":
                raise
            return self._after_invalid_grant(portal, current, exc, deadline)
        self._keep(fresh)
        logger.debug("portal %s: access token refreshed and the new pair stored", portal)
        return fresh

    def _keep(self, fresh: PortalCredentials) -> None:
        try:
            self.pairs.store(fresh)
        except TokenStoreError as exc:
            logger.error(
                "portal %s: NEW REFRESH TOKEN NOT STORED (%s). The old refresh token is spent; "
                "the new one lives only in this invocation's memory. Re-authorise the "
                "application on the portal and store the new tokens.",
                fresh.portal,
                exc,
            )
            raise

    def _within_budget(self, current: PortalCredentials) -> None:
        """At most one refresh per portal per `REFRESH_INTERVAL`: a portal that refuses even a
        fresh token would otherwise make every run refresh and store a new pair (288 a day at
        5 minutes) and, in a shared secret, use up every portal's version budget. A pair
        refreshed in the future (a clock that was wrong) does not count."""
        if current.refreshed_at is None:
            return
        age = self._clock() - current.refreshed_at
        if 0 <= age < REFRESH_INTERVAL:
            raise PortalError(
                ErrorKind.AUTH_LOST,
                current.portal,
                description=(
                    f"the portal rejects fresh tokens: it refused a pair refreshed "
                    f"{int(age // 60)} min ago. The monitor refreshes each portal at most once "
                    f"every {REFRESH_INTERVAL // 60} min, so that one portal cannot use up the "
                    "secret's versions; if the portal keeps refusing, re-authorise the application"
                ),
            )

    def _after_invalid_grant(
        self, portal: str, used: PortalCredentials, error: PortalError, deadline: Deadline
    ) -> PortalCredentials:
        """The refresh token was refused: maybe another run rotated it and is writing it back."""
        for attempt in range(1, self._reread_attempts + 1):
            if deadline.remaining() < 0.2 * attempt:
                break
            self._sleep(0.2 * attempt)
            current = self.pairs.reread(portal)
            if current.refresh_token != used.refresh_token:
                logger.info("portal %s: refresh token was rotated by another run; using it", portal)
                return current
        raise PortalError(
            ErrorKind.AUTH_LOST,
            portal,
            code=error.code,
            description=(
                "the OAuth server refused the stored refresh token and no newer one was "
                "stored: re-authorise the application and store the new tokens"
            ),
            http_status=error.http_status,
        )

    def _without_lease(
        self, portal: str, stale: PortalCredentials, error: LeaseUnavailable
    ) -> PortalCredentials:
        """No lease within the wait: use tokens rotated meanwhile, else give up for this run."""
        current = self.pairs.reread(portal)
        if current.access_token != stale.access_token:
            return current
        raise TokenStoreError(
            f"portal {portal}: could not refresh its tokens: {error}; the next run tries again"
        )
