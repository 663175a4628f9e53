"""One portal's REST session: single calls and batches, paced, retried and re-authorised,
within a deadline.

Pacing keeps to the portal's leaky bucket and to each method's operating time (`limits.py`).
A failing portal and a rate limit are retried with full-jitter backoff; an expired or invalid
token is refreshed through the `TokenSource` and the request retried once; a portal that moved
is followed only where the OAuth server says it went. Every failure becomes a `PortalError` of
the taxonomy in `errors.py`. Retries are bounded twice: by the retry policy and by the
invocation's deadline, which no request and no wait outlasts. The access token travels only in
the request body, never in a URL, a message or a log line.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from ..deadline import Deadline, DeadlineExceeded, ExchangeCutOff
from ..domain.portal_errors import ErrorKind, PortalError
from ..domain.results import Cause
from ..tokens.credentials import PortalCredentials
from ..tokens.errors import TokenStoreError, TokensUnavailable, UnusableCredentials
from ..tokens.ports import TokenSource
from .answers import BATCH_LIMIT, AnswerError, BatchAnswer, read_batch, read_envelope
from .limits import LeakyBucket, OperatingTime, command_method
from .transport import (
    AnswerTooLarge,
    HttpSession,
    InvalidEndpoint,
    TransportError,
    exchange,
    new_session,
    require_safe_endpoint,
)

__all__ = [
    "REST_ANSWER_LIMIT",
    "RestSession",
    "RetryPolicy",
    "Timeouts",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

_RETRY_RESERVE = 0.1  # seconds a retry needs after its wait to be worth sending
# The most a REST answer may weigh, as sent and once decompressed. The largest real one (a page
# of 200 open lines, or 50 statuses with their timings) is tens of KB.
REST_ANSWER_LIMIT = 2 * 1024 * 1024


@dataclass(frozen=True)
class Timeouts:
    """Seconds to connect and to wait for an answer; both are also capped by the deadline."""

    connect: float = 3.05
    read: float = 10.0


@dataclass(frozen=True)
class RetryPolicy:
    """Retries after a failing portal and after rate limits, with full-jitter backoff."""

    failing_retries: int = 2
    rate_limit_retries: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class RestSession:
    """REST calls to one portal. One instance per portal and per thread; not thread-safe.

    `call` and `batch` raise `PortalError`, `DeadlineExceeded` (nothing was sent; its
    `ExchangeCutOff` when the deadline cut a request off) or `TokensUnavailable`.
    `clock` is the wall clock the portal's answers are read against.
    """

    def __init__(
        self,
        portal: str,
        tokens: TokenSource,
        *,
        session: HttpSession | None = None,
        ca_bundle: str | None = None,
        timeouts: Timeouts = Timeouts(),
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.portal = portal
        self.http_requests = 0
        self.clock = clock
        self._tokens = tokens
        self._owns_session = session is None
        self._session = session if session is not None else new_session(ca_bundle=ca_bundle)
        self._timeouts = timeouts
        self._retry = retry
        self._sleep = sleep
        self._credentials: PortalCredentials | None = None
        self._bucket: LeakyBucket | None = None
        self._operating = OperatingTime()

    def __repr__(self) -> str:
        return f"RestSession(portal={self.portal!r}, http_requests={self.http_requests})"

    def __enter__(self) -> RestSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the portal's connection (a session handed in stays its owner's to close)."""
        if self._owns_session:
            self._session.close()

    # --- single requests ----------------------------------------------------------------------

    def call(self, method: str, params: Mapping[str, Any], deadline: Deadline) -> Any:
        """The `result` of one REST call."""
        return self._request(method, dict(params), deadline)["result"]

    def batch(self, commands: Mapping[str, str], deadline: Deadline) -> BatchAnswer:
        """Up to 50 commands in one HTTP request; a failed command lands in `errors`."""
        if len(commands) > BATCH_LIMIT:
            raise ValueError(f"a batch holds at most {BATCH_LIMIT} commands, not {len(commands)}")
        if not commands:
            return BatchAnswer()
        # No "halt": it defaults to false, every command runs (bitrix24/b24restdocs,
        # api-reference/how-to-call-rest-api/batch.md): 9 bytes a batch saved.
        payload = self._request("batch", {"cmd": dict(commands)}, deadline)
        try:
            return read_batch(self.portal, payload["result"], http_status=200)
        except AnswerError as exc:
            failure = PortalError(
                ErrorKind.BAD_ANSWER, self.portal, description=str(exc), http_status=200
            )
        self._log_failure(failure, "batch", 1)
        raise failure

    # --- one logical request, with refresh and retries ----------------------------------------

    def _request(self, method: str, body: dict[str, Any], deadline: Deadline) -> dict[str, Any]:
        """The answer's JSON object, after at most one token refresh and the policy's retries."""
        if deadline.expired:
            raise DeadlineExceeded(f"{self.portal}: the deadline passed before {method} was sent")
        methods = _methods(method, body)
        failing = limited = attempt = 0
        refreshed = False
        while True:
            attempt += 1
            used = self._current_credentials()
            try:
                self._pace(methods, deadline)
                payload = self._send(method, body, used, deadline)
            except PortalError as err:
                failure = err
            else:
                self._note_operating(method, body, payload)
                return payload
            if failure.kind in (ErrorKind.TOKEN_EXPIRED, ErrorKind.PORTAL_MOVED):
                # An expired token that a refresh cures is routine (hourly): the refresh logs
                # one line. Only a refusal the refresh does not cure is a warning.
                self._log_failure(failure, method, attempt, routine=not refreshed)
                if refreshed:
                    raise _after_refresh(failure)
                try:
                    self._refresh_for(failure, used, deadline)
                except Exception:
                    self._log_failure(failure, method, attempt)
                    raise
                refreshed = True
                if deadline.expired:
                    raise DeadlineExceeded(f"{self.portal}: the deadline passed during a refresh")
                continue
            self._log_failure(failure, method, attempt)
            delay = self._backoff(
                failure, methods, failing=failing, limited=limited, deadline=deadline
            )
            if delay is None:
                raise failure
            if failure.kind is ErrorKind.RATE_LIMITED:
                limited += 1
            else:
                failing += 1
            self._sleep(delay)

    def _refresh_for(
        self, failure: PortalError, used: PortalCredentials, deadline: Deadline
    ) -> None:
        """A fresh pair after expired_token or invalid_token. After a redirect away from the
        portal's endpoint (it moved), the OAuth server's answer says where it is now: only its
        word is followed, never the redirect's; if it names no other address, the move stands."""
        if failure.kind is not ErrorKind.PORTAL_MOVED:
            self._refresh(used, deadline, failure)
            return
        try:
            self._refresh(used, deadline, failure)
        except (PortalError, TokensUnavailable):
            raise failure from None
        if self._current_credentials().client_endpoint == used.client_endpoint:
            raise failure

    def _pace(self, methods: tuple[str, ...], deadline: Deadline) -> None:
        """Wait for room in the portal's request bucket, and pause a method that has nearly
        used its operating time, before the portal refuses either."""
        paused = self._operating.paused(methods, self.clock().timestamp())
        if paused is not None:
            name, usage = paused
            reset = usage.reset_at
            raise PortalError(
                ErrorKind.RATE_LIMITED,
                self.portal,
                code="OPERATION_TIME_LIMIT",
                description=(
                    f"{name} paused before the portal's operating-time limit: it used "
                    f"{usage.seconds:.0f} of {self._operating.limit:.0f} s in 10 minutes"
                ),
                retry_after=None if reset is None else max(0.0, reset - self.clock().timestamp()),
            )
        bucket = self._rate()
        wait = bucket.wait(time.monotonic())
        if wait > 0:
            if wait + _RETRY_RESERVE > deadline.remaining():
                raise DeadlineExceeded(
                    f"{self.portal}: the portal's request rate leaves no room before the deadline"
                )
            self._sleep(wait)
        bucket.take(time.monotonic())

    def _rate(self) -> LeakyBucket:
        if self._bucket is None:
            plan = self._current_credentials().extra.get("plan")
            self._bucket = LeakyBucket.for_plan(plan)
        return self._bucket

    def _note_operating(self, method: str, body: dict[str, Any], payload: dict[str, Any]) -> None:
        if method == "batch":
            self._operating.note_batch(body.get("cmd") or {}, payload.get("result"))
        else:
            self._operating.note(method, payload.get("time"))

    def _send(
        self, method: str, body: dict[str, Any], creds: PortalCredentials, deadline: Deadline
    ) -> dict[str, Any]:
        """One HTTP request, bounded by the deadline and the answer cap. Errors are built outside
        `except`, so no transport text rides along."""
        problem: tuple[ErrorKind, str] | None = None
        cut: str | None = None
        self.http_requests += 1
        try:
            answer = exchange(
                self._session,
                "POST",
                self._endpoint(creds) + method,
                deadline=deadline,
                timeouts=(self._timeouts.connect, self._timeouts.read),
                max_bytes=REST_ANSWER_LIMIT,
                json={**body, "auth": creds.access_token},
            )
        except ExchangeCutOff as exc:
            cut = f"{self.portal}: {method}: {exc}"
        except AnswerTooLarge as exc:
            problem = (ErrorKind.BAD_ANSWER, str(exc))
        except InvalidEndpoint:
            problem = (ErrorKind.BAD_REQUEST, "client_endpoint in the secret is not a valid URL")
        except TransportError as exc:
            problem = (ErrorKind.PORTAL_FAILING, str(exc))
        if cut is not None:
            _log.warning(
                "%s", cut, extra={"portal": self.portal, "method": method, "kind": "deadline"}
            )
            raise ExchangeCutOff(cut)
        if problem is not None:
            raise PortalError(problem[0], self.portal, description=problem[1])
        return read_envelope(
            self.portal,
            answer.status,
            answer.body,
            content_type=answer.content_type,
            retry_after_header=answer.retry_after,
            now=self.clock().timestamp(),
            secrets=(creds.access_token, creds.refresh_token, creds.client_secret),
            location=answer.location,
            endpoint=creds.client_endpoint,
        )

    def _endpoint(self, creds: PortalCredentials) -> str:
        """The REST base URL; plain http only to this machine, so a token never crosses a network
        in clear text."""
        try:
            return require_safe_endpoint(creds.client_endpoint, "client_endpoint in the secret")
        except InvalidEndpoint as exc:
            failure = PortalError(ErrorKind.BAD_REQUEST, self.portal, description=str(exc))
        raise failure

    def _backoff(
        self,
        failure: PortalError,
        methods: tuple[str, ...],
        *,
        failing: int,
        limited: int,
        deadline: Deadline,
    ) -> float | None:
        """How long to wait before retrying, or None to give up now."""
        policy = self._retry
        if failure.kind is ErrorKind.RATE_LIMITED:
            if limited >= policy.rate_limit_retries:
                return None
            if (failure.code or "").upper() == "OPERATION_TIME_LIMIT":
                # The budget comes back at operating_reset_at, which only successful answers
                # carry: an earlier retry only fails again.
                delay = failure.retry_after
                if delay is None and (reset := self._operating.reset_at(methods)) is not None:
                    delay = max(0.0, reset - self.clock().timestamp())
                if delay is None:
                    return None
            else:
                delay = max(_jitter(policy, limited), failure.retry_after or 0.0)
        elif failure.kind is ErrorKind.PORTAL_FAILING:
            if failing >= policy.failing_retries:
                return None
            delay = _jitter(policy, failing)
        else:
            return None
        if delay + _RETRY_RESERVE > deadline.remaining():
            return None
        return delay

    # --- credentials --------------------------------------------------------------------------

    def _current_credentials(self) -> PortalCredentials:
        if self._credentials is None:
            self._credentials = self._from_tokens(
                lambda: self._tokens.credentials(self.portal), "read"
            )
        return self._credentials

    def _refresh(self, stale: PortalCredentials, deadline: Deadline, cause: PortalError) -> None:
        fresh = self._from_tokens(
            lambda: self._tokens.refresh(self.portal, stale, deadline), "refresh"
        )
        self._credentials = fresh
        # DEBUG: hourly for every portal it would be a fleet's largest log item (CloudWatch Logs
        # is billed by the byte); the run's summary counts the refreshes (`tokens_refreshed`).
        _log.debug(
            "%s: access token refreshed after %s",
            self.portal,
            cause.code or cause.kind.value,
            extra={"portal": self.portal},
        )

    def _from_tokens(self, fetch: Callable[[], _T], action: str) -> _T:
        """Ask the token source; its own exceptions (which may quote an OAuth URL) stay inside."""
        failure: Exception
        try:
            return fetch()
        except DeadlineExceeded:
            raise
        except PortalError as err:
            if err.kind is not ErrorKind.TOKEN_EXPIRED:
                raise
            failure = PortalError(
                ErrorKind.AUTH_LOST,
                self.portal,
                code=err.code,
                description="the token refresh was refused",
                http_status=err.http_status,
            )
        except UnusableCredentials as exc:
            failure = TokensUnavailable(self.portal, Cause.NO_TOKENS, str(exc))
        except TokenStoreError as exc:
            failure = TokensUnavailable(self.portal, Cause.MONITOR_ERROR, f"{self.portal}: {exc}")
        except Exception as exc:
            failure = TokensUnavailable(
                self.portal,
                Cause.MONITOR_ERROR,
                f"{self.portal}: the token store failed to {action} credentials "
                f"({type(exc).__name__})",
            )
        _log.warning(
            "%s: token %s failed: %s",
            self.portal,
            action,
            failure,
            extra={"portal": self.portal, "method": f"token.{action}"},
        )
        raise failure

    # --- logging ------------------------------------------------------------------------------

    def _log_failure(
        self, err: PortalError, method: str, attempt: int, *, routine: bool = False
    ) -> None:
        _log.log(
            logging.DEBUG if routine else logging.WARNING,
            "%s %s failed (attempt %d): %s",
            self.portal,
            method,
            attempt,
            err.summary,
            extra={
                "portal": self.portal,
                "method": method,
                "kind": err.kind.value,
                "code": err.code,
                "http_status": err.http_status,
                "attempt": attempt,
            },
        )


def _after_refresh(failure: PortalError) -> PortalError:
    """What a failure means when it comes again right after a refresh."""
    if failure.kind is ErrorKind.PORTAL_MOVED:
        return failure
    return PortalError(
        ErrorKind.AUTH_LOST,
        failure.portal,
        code=failure.code,
        description="the portal refused the access token again right after a refresh",
        http_status=failure.http_status,
    )


def _methods(method: str, body: Mapping[str, Any]) -> tuple[str, ...]:
    """The methods a request runs: a batch's commands, or the method itself."""
    if method != "batch":
        return (method,)
    commands = body.get("cmd")
    if not isinstance(commands, Mapping):
        return ()
    return tuple(dict.fromkeys(command_method(str(c)) for c in commands.values()))


def _jitter(policy: RetryPolicy, retry: int) -> float:
    """Full jitter: anywhere between no wait and the exponential cap."""
    return random.uniform(0.0, min(policy.max_delay, policy.base_delay * 2**retry))
