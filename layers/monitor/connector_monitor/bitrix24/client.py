"""The Bitrix24 REST client of one portal: calls, batches and status checks within a deadline.

Every failure becomes a `PortalError` of the taxonomy in `errors.py`. Retries are bounded twice:
by the retry policy and by the invocation's deadline, which no request and no wait outlasts.
The access token travels only in the request body, never in a URL, a message or a log line.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests

from ..deadline import Deadline, DeadlineExceeded, ExchangeCutOff
from ..domain.inventory import Inventory, LineInfo
from ..domain.results import Cause, CheckResult
from ..domain.targets import Target
from .answers import (
    BATCH_LIMIT,
    CONNECTORS_METHOD,
    LINES_METHOD,
    LINES_PAGE,
    AnswerError,
    BatchAnswer,
    batch_command,
    lines_params,
    read_batch,
    read_connectors,
    read_envelope,
    read_lines,
    read_status,
    status_command,
)
from .credentials import PortalCredentials, TokenSource
from .errors import CredentialsError, ErrorKind, PortalError, TokenStoreError
from .limits import LeakyBucket, OperatingTime, command_method
from .transport import (
    AnswerTooLarge,
    InvalidEndpoint,
    TransportError,
    exchange,
    guard,
    new_session,
    require_safe_endpoint,
)

__all__ = [
    "BatchAnswer",
    "PortalCheck",
    "PortalClient",
    "RetryPolicy",
    "Timeouts",
    "TokenSourceError",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

# After these, the other chunks of the portal would fail the same way (or make it worse):
# no more requests to that portal in this run.
_STOPPING = frozenset(
    {
        ErrorKind.AUTH_LOST,
        ErrorKind.ACCESS_DENIED,
        ErrorKind.PORTAL_UNAVAILABLE,
        ErrorKind.RATE_LIMITED,
        ErrorKind.PORTAL_MOVED,
    }
)
_RETRY_RESERVE = 0.1  # seconds a retry needs after its wait to be worth sending
# The most a REST answer may weigh, as sent and once decompressed. The largest real one (a page
# of 200 open lines, or 50 statuses with their timings) is tens of KB.
REST_ANSWER_LIMIT = 2 * 1024 * 1024
_CONNECTORS = "connectors"  # batch command names of the inventory
_LINES = "lines"
_MAX_LINE_PAGES = 50  # 10,000 lines; a portal ignoring `offset` must not loop us forever
LINES_KEPT = _MAX_LINE_PAGES * LINES_PAGE  # whatever pages a portal sends, no more lines
_DEADLINE_DETAIL = "the run's deadline was reached before this line was checked"
_ENTRIES_SHOWN = 10


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


@dataclass(frozen=True)
class PortalCheck:
    """One portal's check: exactly one result per requested target, in the order asked."""

    results: list[CheckResult]


class TokenSourceError(Exception):
    """The token source could not give credentials. The message never holds the source's text."""

    def __init__(self, portal: str, cause: Cause, detail: str) -> None:
        self.portal = portal
        self.cause = cause
        self.detail = detail
        super().__init__(detail)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class PortalClient:
    """REST access to one portal. One instance per portal and per thread; not thread-safe.

    `call`, `batch` and `inventory` raise `PortalError`, `DeadlineExceeded` (nothing was sent)
    or `TokenSourceError`; `check` never raises for a portal's problems.
    """

    def __init__(
        self,
        portal: str,
        tokens: TokenSource,
        *,
        session: requests.Session | None = None,
        timeouts: Timeouts = Timeouts(),
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.portal = portal
        self.http_requests = 0
        self._tokens = tokens
        self._owns_session = session is None
        self._session = guard(session) if session is not None else new_session()
        self._timeouts = timeouts
        self._retry = retry
        self._sleep = sleep
        self._clock = clock
        self._credentials: PortalCredentials | None = None
        self._bucket: LeakyBucket | None = None
        self._operating = OperatingTime()

    def __repr__(self) -> str:
        return f"PortalClient(portal={self.portal!r}, http_requests={self.http_requests})"

    def __enter__(self) -> PortalClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (a session handed in stays its owner's to close)."""
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
        payload = self._request("batch", {"halt": 0, "cmd": dict(commands)}, deadline)
        try:
            return read_batch(self.portal, payload["result"], http_status=200)
        except AnswerError as exc:
            failure = PortalError(
                ErrorKind.BAD_ANSWER, self.portal, description=str(exc), http_status=200
            )
        self._log_failure(failure, "batch", 1)
        raise failure

    def inventory(self, deadline: Deadline) -> Inventory:
        """The portal's active connectors and its open lines (all pages), in one request and
        more only for more than 200 lines.

        `imconnector.list` needs a user allowed to change Open Lines connectors (core
        imconnector/lib/rest/common.php::list(): ACCESS_DENIED, HTTP 400, otherwise); refused
        so, the inventory has no connectors (None) and the lines still count. Raises
        `PortalError` (the request failed, or a part of the answer is unreadable),
        `DeadlineExceeded` or `TokenSourceError`.
        """
        answer = self.batch(_inventory_commands(), deadline)
        first_page = _command_value(self.portal, answer, _LINES, LINES_METHOD)
        denied = answer.errors.get(_CONNECTORS)
        connectors: frozenset[str] | None = None
        if denied is None or denied.kind is not ErrorKind.ACCESS_DENIED:
            raw = _command_value(self.portal, answer, _CONNECTORS, CONNECTORS_METHOD)
            connectors = _parsed(self.portal, CONNECTORS_METHOD, read_connectors, raw)
        return Inventory(connectors, self._all_lines(first_page, deadline))

    # --- checking -----------------------------------------------------------------------------

    def check(self, targets: Sequence[Target], deadline: Deadline) -> PortalCheck:
        """Every target's status, at most 50 per HTTP request; never raises for the portal."""
        wanted = list(targets)
        results: list[CheckResult | None] = [None] * len(wanted)
        halted: tuple[Cause, str] | None = None

        def settle(span: range, cause: Cause, detail: str) -> None:
            at = self._clock()
            for index in span:
                results[index] = CheckResult.unknown(wanted[index], cause, detail, checked_at=at)

        for span in _chunks(len(wanted)):
            if halted is not None:
                settle(span, *halted)
                continue
            commands = {f"t{i}": status_command(wanted[i]) for i in span}
            try:
                answer = self.batch(commands, deadline)
            except ExchangeCutOff as exc:
                settle(span, Cause.DEADLINE, str(exc))
                continue
            except DeadlineExceeded:
                settle(span, Cause.DEADLINE, _DEADLINE_DETAIL)
                continue
            except TokenSourceError as exc:
                halted = (exc.cause, exc.detail)
                settle(span, *halted)
                continue
            except PortalError as err:
                detail = err.detail
                if err.kind is ErrorKind.PORTAL_MOVED:
                    detail = f"{detail}: {_entries_to_update(wanted)}"
                settle(span, err.kind.cause, detail)
                if err.kind in _STOPPING:
                    halted = (err.kind.cause, detail)
                continue
            self._settle_answer(wanted, span, answer, results)

        done = [result for result in results if result is not None]
        assert len(done) == len(wanted), "every target gets exactly one result"
        return PortalCheck(done)

    def _settle_answer(
        self,
        wanted: list[Target],
        span: range,
        answer: BatchAnswer,
        results: list[CheckResult | None],
    ) -> None:
        at = self._clock()
        failed: list[PortalError] = []
        missing = 0
        for index in span:
            target, name = wanted[index], f"t{index}"
            error = answer.errors.get(name)
            if error is not None:
                failed.append(error)
                results[index] = CheckResult.unknown(
                    target, error.kind.cause, error.detail, checked_at=at
                )
            elif name in answer.results:
                results[index] = read_status(target, answer.results[name], checked_at=at)
            else:
                missing += 1
                results[index] = CheckResult.unknown(
                    target,
                    Cause.BAD_ANSWER,
                    f"{self.portal}: the portal answered without this line",
                    checked_at=at,
                )
        if missing:
            _log.warning(
                "%s: the batch answer left out %d of %d lines",
                self.portal,
                missing,
                len(span),
                extra={
                    "portal": self.portal,
                    "method": "batch",
                    "kind": "bad_answer",
                    "missing_lines": missing,
                },
            )
        if failed:
            codes = sorted({error.code or error.kind.value for error in failed})
            _log.warning(
                "%s: %d of %d status commands failed (%s)",
                self.portal,
                len(failed),
                len(span),
                ", ".join(codes),
                extra={
                    "portal": self.portal,
                    "method": "batch",
                    "kind": failed[0].kind.value,
                    "code": codes[0],
                    "codes": codes,
                    "failed_commands": len(failed),
                },
            )

    def _all_lines(self, first_page: object, deadline: Deadline) -> dict[int, LineInfo]:
        """Open lines from the first page, fetching more pages only when a page came full."""
        page = _parsed(self.portal, LINES_METHOD, read_lines, first_page)
        lines = dict(page)
        offset = 0
        for _ in range(_MAX_LINE_PAGES):
            if len(page) < LINES_PAGE or len(lines) >= LINES_KEPT:
                break
            offset += LINES_PAGE
            raw = self.call(LINES_METHOD, lines_params(offset), deadline)
            page = _parsed(self.portal, LINES_METHOD, read_lines, raw)
            if not page.keys() - lines.keys():
                break  # the portal ignores `offset`
            lines.update(page)
        return dict(sorted(lines.items())[:LINES_KEPT])

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
        except (PortalError, TokenSourceError):
            raise failure from None
        if self._current_credentials().client_endpoint == used.client_endpoint:
            raise failure

    def _pace(self, methods: tuple[str, ...], deadline: Deadline) -> None:
        """Wait for room in the portal's request bucket, and pause a method that has nearly
        used its operating time, before the portal refuses either."""
        paused = self._operating.paused(methods, self._clock().timestamp())
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
                retry_after=None if reset is None else max(0.0, reset - self._clock().timestamp()),
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
            now=self._clock().timestamp(),
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
                    delay = max(0.0, reset - self._clock().timestamp())
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
        # The one line a refresh logs (hourly for every portal: a fleet's largest log item).
        _log.info(
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
        except CredentialsError as exc:
            failure = TokenSourceError(self.portal, Cause.CONFIGURATION, str(exc))
        except TokenStoreError as exc:
            failure = TokenSourceError(self.portal, Cause.MONITOR_ERROR, f"{self.portal}: {exc}")
        except Exception as exc:
            failure = TokenSourceError(
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


def _chunks(count: int) -> list[range]:
    """Index ranges of at most 50 commands each."""
    return [range(start, min(count, start + BATCH_LIMIT)) for start in range(0, count, BATCH_LIMIT)]


def _entries_to_update(targets: Sequence[Target]) -> str:
    """The Targets entries of a moved portal, for the alert that asks to update them."""
    shown = ", ".join(t.key for t in targets[:_ENTRIES_SHOWN])
    more = f" and {len(targets) - _ENTRIES_SHOWN} more" if len(targets) > _ENTRIES_SHOWN else ""
    return f"Targets entries to update: {shown}{more}"


def _inventory_commands() -> dict[str, str]:
    return {
        _CONNECTORS: CONNECTORS_METHOD,
        _LINES: batch_command(LINES_METHOD, lines_params(0)),
    }


def _command_value(portal: str, answer: BatchAnswer, name: str, method: str) -> Any:
    error = answer.errors.get(name)
    if error is not None:
        raise PortalError(
            error.kind,
            portal,
            code=error.code,
            description=f"{method}: {error.description}",
            http_status=error.http_status,
        )
    if name not in answer.results:
        raise PortalError(
            ErrorKind.BAD_ANSWER, portal, description=f"the portal answered without {method}"
        )
    return answer.results[name]


def _parsed(portal: str, method: str, reader: Callable[[object], _T], raw: object) -> _T:
    try:
        return reader(raw)
    except AnswerError as exc:
        failure = PortalError(ErrorKind.BAD_ANSWER, portal, description=f"{method}: {exc}")
    raise failure


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
