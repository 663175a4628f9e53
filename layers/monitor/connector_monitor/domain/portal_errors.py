"""The Bitrix24 error taxonomy: every documented code mapped to what the monitor does about it.

Classify by error code first; the HTTP status only decides for codes we have never seen, since
the vendor's sources disagree on statuses.
"""

from __future__ import annotations

from enum import StrEnum

from .results import Cause
from .text import CODE_LIMIT, DESCRIPTION_LIMIT, clip


class ErrorKind(StrEnum):
    TOKEN_EXPIRED = "token_expired"  # noqa: S105 - refresh the access token, then retry once
    PORTAL_MOVED = "portal_moved"  # the portal answers from another address now
    AUTH_LOST = "auth_lost"  # a person must re-authorise the application
    ACCESS_DENIED = "access_denied"  # permission, plan, payment, application context
    RATE_LIMITED = "rate_limited"  # back off with jitter within the deadline
    PORTAL_FAILING = "portal_failing"  # 5xx, timeouts, connection errors: bounded retries
    PORTAL_UNAVAILABLE = "portal_unavailable"  # REST blocked by the vendor, portal deleted
    BAD_ANSWER = "bad_answer"  # not JSON, HTML, truncated, the wrong shape
    BAD_REQUEST = "bad_request"  # the portal rejected what we sent: our bug or our config

    @property
    def cause(self) -> Cause:
        """Why a target stays UNKNOWN when this error is the last word."""
        return _CAUSE[self]

    @property
    def retryable(self) -> bool:
        return self in (ErrorKind.RATE_LIMITED, ErrorKind.PORTAL_FAILING)


_CAUSE = {
    ErrorKind.TOKEN_EXPIRED: Cause.AUTH_LOST,
    ErrorKind.PORTAL_MOVED: Cause.CONFIGURATION,
    ErrorKind.AUTH_LOST: Cause.AUTH_LOST,
    ErrorKind.ACCESS_DENIED: Cause.ACCESS_DENIED,
    ErrorKind.RATE_LIMITED: Cause.RATE_LIMITED,
    ErrorKind.PORTAL_FAILING: Cause.PORTAL_FAILING,
    ErrorKind.PORTAL_UNAVAILABLE: Cause.PORTAL_FAILING,
    ErrorKind.BAD_ANSWER: Cause.BAD_ANSWER,
    ErrorKind.BAD_REQUEST: Cause.BAD_REQUEST,
}

# Codes that name their cause more precisely than their kind (the kind still decides what the
# monitor does; the cause decides what an alert says). Both are in the system errors table of
# bitrix24/b24restdocs _includes/system-errors.md.
_CAUSE_BY_CODE = {
    "PAYMENT_REQUIRED": Cause.PORTAL_UNPAID,
    "PORTAL_DELETED": Cause.PORTAL_DELETED,
}

# Codes compared case-insensitively: the SDKs and docs spell some in either case.
_BY_CODE: dict[str, ErrorKind] = {
    code.upper(): kind
    for kind, codes in {
        # invalid_token too: the portal relays the OAuth server's verdict on a token it no longer
        # knows (a stale one), and a refresh with a valid refresh token cures it. The official
        # JS SDK refreshes on both (bitrix24/b24jssdk packages/jssdk/src/core/http/
        # abstract-http.ts, _isAuthError); only the OAuth server's invalid_grant/invalid_client
        # mean that a person must re-authorise.
        ErrorKind.TOKEN_EXPIRED: ["expired_token", "invalid_token"],
        ErrorKind.AUTH_LOST: [
            "NO_AUTH_FOUND",
            "AUTHORIZATION_ERROR",
            "APPLICATION_NOT_FOUND",
            "ERROR_OAUTH",
            "NOT_INSTALLED",
            "invalid_grant",
            "invalid_client",
            "wrong_client",
        ],
        ErrorKind.ACCESS_DENIED: [
            "ACCESS_DENIED",
            "INVALID_CREDENTIALS",
            "insufficient_scope",
            "user_access_error",
            "WRONG_AUTH_TYPE",
            "PAYMENT_REQUIRED",
            "PUBLIC_PART_CLOSED",
        ],
        ErrorKind.RATE_LIMITED: ["QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT"],
        # CONNECTION_ERROR: the portal could not reach its authorisation server (core
        # rest/lib/oauth/auth.php, HTTP 401), nothing wrong with the token. ERROR_CORE: the
        # core's code for any uncaught exception (rest/lib/restexception.php, 400; 500 for SQL).
        ErrorKind.PORTAL_FAILING: [
            "INTERNAL_SERVER_ERROR",
            "ERROR_UNEXPECTED_ANSWER",
            "CONNECTION_ERROR",
            "ERROR_CORE",
        ],
        ErrorKind.PORTAL_UNAVAILABLE: ["OVERLOAD_LIMIT", "PORTAL_DELETED"],
        ErrorKind.BAD_REQUEST: [
            "INVALID_REQUEST",
            "ERROR_BATCH_LENGTH_EXCEEDED",
            "ERROR_BATCH_METHOD_NOT_ALLOWED",
            "ERROR_MANIFEST_IS_NOT_AVAILABLE",
            "ERROR_ARGUMENT",
            "CONNECTOR",
            "ERROR_METHOD_NOT_FOUND",
        ],
    }.items()
    for code in codes
}

# What a person should do, by kind; appended to the detail a target carries.
ADVICE: dict[ErrorKind, str] = {
    ErrorKind.TOKEN_EXPIRED: "the access token expired and could not be refreshed",
    ErrorKind.PORTAL_MOVED: "update the portal's address in Targets and in the secret",
    ErrorKind.AUTH_LOST: (
        "re-authorise the application (`monitorctl portals authorize DOMAIN`), or store new "
        "tokens in the secret (a fleet portal's with `monitorctl tokens set DOMAIN`)"
    ),
    ErrorKind.ACCESS_DENIED: "check the application's scope, plan, payment and user access",
    ErrorKind.RATE_LIMITED: "the portal's REST limits were exceeded; the next run tries again",
    ErrorKind.PORTAL_FAILING: "a portal error, not a connector outage; the next run tries again",
    ErrorKind.PORTAL_UNAVAILABLE: "REST is blocked or the portal is gone; contact Bitrix24 support",
    ErrorKind.BAD_ANSWER: "the portal's answer could not be read; the next run tries again",
    ErrorKind.BAD_REQUEST: "the portal rejected the request; check the target's configuration",
}


def without_advice(detail: str) -> str:
    """A detail without the advice `PortalError.detail` appended (an alert gives its own)."""
    for advice in ADVICE.values():
        if detail.endswith(f" - {advice}"):
            return detail[: -len(advice) - 3]
    return detail


def classify(code: str | None, http_status: int | None) -> ErrorKind:
    """Map a portal's error code (first) or HTTP status (only for unknown codes) to a kind."""
    if code:
        kind = _BY_CODE.get(str(code).upper())
        if kind is not None:
            return kind
    if http_status is None:
        return ErrorKind.BAD_ANSWER
    if http_status == 401:
        return ErrorKind.AUTH_LOST
    if http_status in (402, 403):
        return ErrorKind.ACCESS_DENIED
    if http_status in (429, 503):
        return ErrorKind.RATE_LIMITED if code else ErrorKind.PORTAL_FAILING
    if http_status >= 500:
        return ErrorKind.PORTAL_FAILING
    if http_status >= 400:
        return ErrorKind.BAD_REQUEST
    return ErrorKind.BAD_ANSWER


class PortalError(Exception):
    """A call to a portal failed. The message names the portal and code, never a token."""

    def __init__(
        self,
        kind: ErrorKind,
        portal: str,
        *,
        code: str | None = None,
        description: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.kind = kind
        self.portal = portal
        self.code = clip(code, CODE_LIMIT) if code else None
        self.description = clip(description or "", DESCRIPTION_LIMIT)
        self.http_status = http_status
        self.retry_after = retry_after
        super().__init__(self.summary)

    @property
    def cause(self) -> Cause:
        """Why the targets this error hides stay UNKNOWN: the kind's cause, or a finer one the
        code names (an unpaid or deleted portal)."""
        return _CAUSE_BY_CODE.get((self.code or "").upper(), self.kind.cause)

    @property
    def summary(self) -> str:
        where = f"HTTP {self.http_status}" if self.http_status else "no HTTP answer"
        what = f"{self.code}: {self.description}" if self.code else self.description or where
        return f"{self.portal}: {self.kind.value} ({what}; {where})"

    @property
    def detail(self) -> str:
        """One line for a person: what happened and what to do."""
        return f"{self.summary} - {ADVICE[self.kind]}"
