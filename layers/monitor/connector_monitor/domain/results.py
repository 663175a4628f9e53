"""What one check of one target found."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from .targets import Subject, Target
from .text import DETAIL_LIMIT, clip


class State(StrEnum):
    UP = "UP"  # the portal answered STATUS=true
    DOWN = "DOWN"  # the portal answered and STATUS is not true
    UNKNOWN = "UNKNOWN"  # the monitor could not get an answer; the cause says why


class Cause(StrEnum):
    """Why the monitor could not see a target. Never a reason to say "connector down"."""

    CONFIGURATION = "configuration"  # bad TARGETS entry, unknown connector or line, moved portal
    NO_TOKENS = "no_tokens"  # the monitor holds no usable credentials for the portal
    AUTH_LOST = "auth_lost"  # tokens revoked or expired for good: a person must re-authorise
    ACCESS_DENIED = "access_denied"  # permission, scope or application context
    PORTAL_UNPAID = "portal_unpaid"  # PAYMENT_REQUIRED: the portal's plan does not allow REST
    PORTAL_DELETED = "portal_deleted"  # PORTAL_DELETED: the portal no longer exists
    RATE_LIMITED = "rate_limited"  # QUERY_LIMIT_EXCEEDED / OPERATION_TIME_LIMIT past our deadline
    PORTAL_FAILING = "portal_failing"  # 5xx, timeouts, connection errors, REST blocked
    BAD_ANSWER = "bad_answer"  # HTML, truncated JSON, a missing field, the wrong shape
    BAD_REQUEST = "bad_request"  # the portal rejected our request: a bug on our side
    DEADLINE = "deadline"  # the invocation ran out of time before this target was checked
    MONITOR_ERROR = "monitor_error"  # our own side failed (secret unreadable, ...)

    @property
    def is_configuration(self) -> bool:
        """A person must change the monitor's configuration: asking again cannot help."""
        return self in (Cause.CONFIGURATION, Cause.NO_TOKENS)


@dataclass(frozen=True)
class CheckResult:
    """One target's answer in one run. Flags are None when the portal did not answer them."""

    target: Subject
    state: State
    checked_at: datetime
    status: bool | None = None
    configured: bool | None = None
    error: bool | None = None
    cause: Cause | None = None
    detail: str | None = None

    def __post_init__(self) -> None:
        if self.detail is not None and len(self.detail) > DETAIL_LIMIT:
            object.__setattr__(self, "detail", clip(self.detail, DETAIL_LIMIT))

    @classmethod
    def from_flags(
        cls, target: Target, *, configured: bool, error: bool, status: bool, checked_at: datetime
    ) -> CheckResult:
        """A portal answer. STATUS decides; CONFIGURED and ERROR explain a DOWN."""
        state = State.UP if status else State.DOWN
        return cls(
            target,
            state,
            checked_at,
            status=status,
            configured=configured,
            error=error,
            detail=None if status else explain_down(configured=configured, error=error),
        )

    @classmethod
    def unknown(
        cls, target: Subject, cause: Cause, detail: str, *, checked_at: datetime
    ) -> CheckResult:
        return cls(target, State.UNKNOWN, checked_at, cause=cause, detail=detail)


def explain_down(*, configured: bool, error: bool) -> str:
    """What a person should understand, and do, about a DOWN answer."""
    if error:
        return (
            "ERROR=true: the connector was marked inoperable on this line and stays so until "
            "imconnector.activate is called again for it"
        )
    if not configured:
        return (
            "CONFIGURED=false: the connector is no longer registered, connected and active on "
            "this open line; reconnect it in the open line settings or call imconnector.activate"
        )
    return (
        "STATUS=false although CONFIGURED=true and ERROR=false: the portal reports it unavailable"
    )
