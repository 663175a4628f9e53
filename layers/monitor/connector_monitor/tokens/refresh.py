"""When and how a portal's token pair is refreshed, whatever store keeps it.

Refresh tokens are single-use, so a refreshed pair is written back at once and refreshes are
serialised: a lock inside one invocation (portals are checked in parallel threads), named by the
store after what one write replaces (a whole secret, or one portal's item), and across
overlapping invocations the store's lease: the secret's, held for each refresh, or the token
table's refresh claim, held by an invocation for its range of portals until its run ends
(`end_run`). Under them the stored pair is read again first: another run may have rotated it
already. The new pair's write is conditional on the pair read: when a writer that spends no
refresh token (an install, `monitorctl tokens set`) stored a newer pair meanwhile, that pair
stands and is used. A refresh starts only after the portal refused the access token
(expired_token, invalid_token, or a redirect away from its endpoint), at most once per portal
per `REFRESH_INTERVAL`, and not with less than `MIN_REFRESH_SECONDS` left in the run.

A refresh spends the refresh token before its new pair is written, so a store that refuses pair
writes loses every pair refreshed meanwhile. One `RefreshingTokens` serves one invocation: until
a pair write of the run has succeeded its refreshes go one at a time, and after the first
refused write it starts no further refresh (those portals are UNKNOWN for this run; the next
run, a new `RefreshingTokens`, refreshes them). A store that refuses for a whole run thus costs
one re-authorisation, not one per portal.

A store (`PairStore`) only reads and writes pairs; the OAuth call is handed in (`OAuthRefresh`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from ..deadline import Deadline
from ..domain.portal_errors import ErrorKind, PortalError
from .credentials import PortalCredentials
from .errors import LeaseUnavailable, PairSuperseded, TokenStoreError
from .ports import OAuthRefresh, PairStore, RefreshLease

logger = logging.getLogger(__name__)

# Each portal refreshes at most once in this many seconds. An access token lives an hour, so a
# portal that works never needs more; 55 minutes keep a portal that refuses fresh tokens to
# about 26 secret versions a day, near the 24 of a working one.
REFRESH_INTERVAL = 55 * 60
# A refresh cut short by a timeout may still have spent the refresh token at the OAuth server,
# so none starts with less time than this left in the run.
MIN_REFRESH_SECONDS = 3.0


@dataclass(frozen=True)
class RefreshPolicy:
    """How patient a refresh is: the lease it holds, how long it waits for it, and how often it
    reads the store again after the OAuth server refused a refresh token another run may have
    just rotated."""

    lease_ttl: float = 60.0
    lease_wait: float = 10.0
    reread_attempts: int = 3
    # A refresh asked for without a deadline ends within this: the lease wait and one OAuth
    # call's connect and read timeouts.
    without_deadline: float = 23.05


class RefreshingTokens:
    """The `Tokens` a run uses: a `PairStore` read through, with the refresh policy."""

    def __init__(
        self,
        pairs: PairStore,
        oauth: OAuthRefresh,
        *,
        lease: RefreshLease | None = None,
        policy: RefreshPolicy = RefreshPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pairs = pairs
        self._oauth = oauth
        self._lease = lease
        self._policy = policy
        self._sleep = sleep
        self._clock = clock
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        # Until the store has taken a pair write in this run, one refresh at a time holds this.
        self._untried_store = threading.Lock()
        self._store_took_a_write = False
        self._refused_write: str | None = None  # the portal whose pair the store refused

    def load(self) -> None:
        self.pairs.load()

    def credentials(self, portal: str) -> PortalCredentials:
        return self.pairs.credentials(portal)

    def portals(self) -> list[str]:
        """Every portal that has a pair (targets "on every portal that has tokens")."""
        return self.pairs.portals()

    def deleted_lines(self, portal: str) -> Mapping[int, datetime]:
        return self.pairs.deleted_lines(portal)

    def refresh(
        self, portal: str, stale: PortalCredentials, deadline: Deadline | None = None
    ) -> PortalCredentials:
        """Credentials newer than `stale`: rotated by another thread or run, or refreshed now.

        Waiting for the lease and the OAuth request both end by `deadline`; with too little
        time left no refresh starts, since a refresh cut short may still spend the refresh
        token.
        """
        deadline = deadline or Deadline.after(self._policy.without_deadline)
        name = self.pairs.lease_name(portal)
        with self._lock(name):
            known = self.pairs.credentials(portal)
            if known.access_token != stale.access_token:
                return known  # another thread of this invocation already refreshed it
            self._unless_a_write_was_refused(portal)
            lease = self.pairs.own_lease(portal) or self._lease
            if lease is None:
                return self._refresh_held(portal, stale, deadline)
            try:
                with lease.hold(
                    name,
                    ttl=self._policy.lease_ttl,
                    wait=min(self._policy.lease_wait, deadline.remaining()),
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
        with self._one_at_a_time_until_the_store_takes_a_write(portal, deadline):
            if deadline.remaining() < MIN_REFRESH_SECONDS:
                raise _too_late(portal)
            try:
                fresh = self._oauth(current, deadline)
            except PortalError as exc:
                if (exc.code or "").lower() != "invalid_grant":
                    raise
                refused = exc
            else:
                return self._keep(fresh)
        return self._after_invalid_grant(portal, current, refused, deadline)

    @contextmanager
    def _one_at_a_time_until_the_store_takes_a_write(
        self, portal: str, deadline: Deadline
    ) -> Iterator[None]:
        """The body (an OAuth call and the new pair's write) alone, until a pair write of this
        run has succeeded: a store that refuses writes then loses one pair, not one per refresh
        that was under way. Afterwards refreshes of different portals run side by side."""
        if self._store_took_a_write:
            self._unless_a_write_was_refused(portal)
            yield
            return
        if not self._untried_store.acquire(
            timeout=max(0.0, deadline.remaining() - MIN_REFRESH_SECONDS)
        ):
            raise _too_late(portal)
        try:
            self._unless_a_write_was_refused(portal)
            yield
        finally:
            self._untried_store.release()

    def _unless_a_write_was_refused(self, portal: str) -> None:
        """No refresh starts after the store refused a pair write in this run: it would spend
        the refresh token and lose the new pair too."""
        refused = self._refused_write
        if refused is None:
            return
        raise TokenStoreError(
            f"portal {portal}: not refreshed: the token store refused a write in this run (the "
            f"refreshed pair of {refused}), so refreshing would lose this portal's pair too; "
            "the next run refreshes it"
        )

    def end_run(self) -> None:
        """The run is over: the store gives back what it held for refreshing (a claim)."""
        self.pairs.end_run()

    def _keep(self, fresh: PortalCredentials) -> PortalCredentials:
        """Store `fresh`: the pair to use from now on, `fresh`, or a newer one another writer
        stored meanwhile."""
        try:
            self.pairs.store(fresh)
        except PairSuperseded:
            logger.info(
                "portal %s: a newer pair was stored while its refresh was under way (an "
                "install or `monitorctl tokens set`): it stands and is used; the refreshed pair "
                "is dropped, nothing is lost",
                fresh.portal,
            )
            return self.pairs.credentials(fresh.portal)
        except TokenStoreError as exc:
            self._refused_write = self._refused_write or fresh.portal
            logger.error(
                "portal %s: NEW REFRESH TOKEN NOT STORED (%s). The old refresh token is spent; "
                "the new one lives only in this invocation's memory. Re-authorise the "
                "application on the portal and store the new tokens %s.",
                fresh.portal,
                exc,
                self._where_to_store(fresh.portal),
            )
            raise
        self._store_took_a_write = True
        logger.debug("portal %s: access token refreshed and the new pair stored", fresh.portal)
        return fresh

    def _where_to_store(self, portal: str) -> str:
        """Where a person stores a re-authorised portal's pair: a fleet portal's goes into the
        token table (its pair there would be preferred to one put in the secret)."""
        if self.pairs.own_lease(portal) is not None:
            return f"with `monitorctl tokens set {portal}` (the token table holds its pair)"
        return "in the secret"

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
                    f"{int(age // 60)} min ago; if it keeps refusing, re-authorise the "
                    "application"
                ),
            )

    def _after_invalid_grant(
        self, portal: str, used: PortalCredentials, error: PortalError, deadline: Deadline
    ) -> PortalCredentials:
        """The refresh token was refused: maybe another run rotated it and is writing it back."""
        for attempt in range(1, self._policy.reread_attempts + 1):
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
                "stored: re-authorise the application and store the new tokens "
                f"{self._where_to_store(portal)}"
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


def _too_late(portal: str) -> PortalError:
    return PortalError(
        ErrorKind.PORTAL_FAILING,
        portal,
        description="too little time left in this run to refresh the access token safely; "
        "the next run refreshes it",
    )
