"""The token ports: what the refresh policy asks of a pair store and a lease, what the Bitrix24
client and the cycle ask of a token source, and the OAuth call the policy is handed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

from ..deadline import Deadline
from .credentials import AppCredentials, PortalCredentials

# Refresh `credentials` at their OAuth server within `deadline`: the new pair, or PortalError.
OAuthRefresh = Callable[[PortalCredentials, Deadline], PortalCredentials]


class HeldLease(Protocol):
    """A lease while its holder works under it."""

    def renew(self) -> None:
        """Prove the lease is still ours and extend it by its ttl from now, or raise
        `LeaseUnavailable` (it ran out, or another owner took it): then nothing read under it
        may be written any more."""
        ...


class RefreshLease(Protocol):
    """A named lease across invocations. Raises `LeaseUnavailable` after `wait` seconds."""

    def hold(self, name: str, *, ttl: float, wait: float) -> AbstractContextManager[HeldLease]: ...


class PairStore(Protocol):
    """Where portals' credentials are kept: read once a run, read again before a refresh, and
    each refreshed pair written at once."""

    def load(self) -> None:
        """Read every portal's credentials (once per run). Raises TokenStoreError."""
        ...

    def credentials(self, portal: str) -> PortalCredentials:
        """A portal's credentials as last read. Raises UnusableCredentials or TokenStoreError."""
        ...

    def reread(self, portal: str) -> PortalCredentials:
        """A portal's credentials as stored now."""
        ...

    def store(self, fresh: PortalCredentials) -> None:
        """Keep a refreshed pair (and what came with it) durably, or raise TokenStoreError with
        `pair_lost`. Readers of this store see it at once, stored or not; but a store that
        finds a newer pair than the one `fresh` replaces (stored by an install or by hand)
        keeps that one, and readers see it: PairSuperseded."""
        ...

    def lease_name(self, portal: str) -> str:
        """The lease a refresh of `portal` holds: whatever one `store` call replaces."""
        ...

    def own_lease(self, portal: str) -> RefreshLease | None:
        """The store's own lease for refreshing `portal`, or None for the shared one."""
        ...

    def end_run(self) -> None:
        """The run is over: give back what the store holds for it (the token table's refresh
        claim). Never raises."""
        ...

    def holds(self, portal: str) -> bool:
        """Whether the last read found a pair for `portal`."""
        ...

    def portals(self) -> list[str]:
        """The portals the last read found a pair for."""
        ...

    def deleted_lines(self, portal: str) -> Mapping[int, datetime]:
        """The lines the portal's line-delete events named (line → when), as last read; a
        store that keeps none answers {}."""
        ...


class CredentialsDocument(Protocol):
    """The secret as a whole document: what moving pairs out of it needs."""

    def document(self) -> dict[str, Any]:
        """The document as stored now."""
        ...

    def replace(self, document: dict[str, Any]) -> None:
        """Store a whole new document (under the lease `lease_name`)."""
        ...

    def lease_name(self, portal: str) -> str: ...

    def apps(self) -> dict[str, AppCredentials]: ...


class PairTable(Protocol):
    """The fleet's token table as moving pairs into it needs it."""

    def put_new(self, portal: str, app: str, credentials: PortalCredentials) -> bool:
        """Add a portal's pair unless the table has one already (then False)."""
        ...

    def same_pair(self, portal: str, credentials: PortalCredentials) -> bool:
        """Whether the table holds this very pair for `portal` (read consistently)."""
        ...


class TokenSource(Protocol):
    """Where the REST client gets a portal's credentials, and a fresh pair after expired_token."""

    def credentials(self, portal: str) -> PortalCredentials: ...

    def refresh(
        self, portal: str, stale: PortalCredentials, deadline: Deadline | None = None
    ) -> PortalCredentials:
        """Credentials newer than `stale`: refreshed now, or already rotated by another run.
        No wait and no OAuth request outlasts `deadline`."""
        ...


class Tokens(TokenSource, Protocol):
    """The token source a run uses: loaded once, and it knows which portals have pairs."""

    def load(self) -> None: ...

    def portals(self) -> list[str]:
        """The portals the store holds pairs for (a `*/connector/*` watch covers them)."""
        ...

    def deleted_lines(self, portal: str) -> Mapping[int, datetime]:
        """The lines the portal's line-delete events named (line → when)."""
        ...

    def end_run(self) -> None:
        """The run is over: what it held to refresh (a refresh claim) is given back."""
        ...
