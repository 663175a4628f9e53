"""The token errors, one family: what went wrong getting, keeping or refreshing a portal's pair.

Every message is written for people and never quotes stored content (a token, a secret's text),
so it may reach logs and alerts.
"""

from __future__ import annotations

from ..domain.results import Cause


class TokenError(Exception):
    """A portal's tokens could not be had, kept or refreshed."""


class UnusableCredentials(TokenError):
    """The store holds no usable credentials for a portal (missing, corrupt, partial)."""


class CredentialsDocumentError(TokenError, ValueError):
    """A credentials document that is not `{"portals": {domain: {...}}}`. Never quotes it."""


class TokenStoreError(TokenError):
    """Where tokens are kept could not serve or keep them: unreachable, corrupt, or a refreshed
    pair it would not store (`pair_lost`: the old refresh token is spent, a person must act)."""

    def __init__(self, message: str, *, pair_lost: bool = False) -> None:
        super().__init__(message)
        self.pair_lost = pair_lost


class PairSuperseded(TokenError):
    """A pair was not stored because another writer (an install, `monitorctl tokens set`) stored
    a newer pair than the one it replaces: the newer pair stands, nothing is lost. The store's
    copy in memory holds the newer pair."""


class LeaseUnavailable(TokenError):
    """The refresh lease could not be had: held by another owner for the whole wait, or its
    store failed."""


class TokensUnavailable(TokenError):
    """A check could not get a portal's tokens from its source: the cause the targets stay
    UNKNOWN for, and a detail for people that never holds the source's own text."""

    def __init__(self, portal: str, cause: Cause, detail: str) -> None:
        self.portal = portal
        self.cause = cause
        self.detail = detail
        super().__init__(detail)
