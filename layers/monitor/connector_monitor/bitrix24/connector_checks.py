"""One portal's Open Lines connectors over its REST session: the portal's inventory and the
status of each target, at most 50 per batch, with every answer read into a `CheckResult`.

The inventory is one batch (`imconnector.list` and the first page of
`imopenlines.config.list.get`), and more calls only for more than 200 lines. A check gives
exactly one result per target and never raises for the portal's problems: a chunk that fails
leaves its targets UNKNOWN with the failure's cause, and a failure that would repeat stops the
portal's remaining chunks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..deadline import Deadline, DeadlineExceeded, ExchangeCutOff
from ..domain.inventory import Inventory, LineInfo
from ..domain.portal_errors import ErrorKind, PortalError
from ..domain.results import Cause, CheckResult
from ..domain.targets import Target
from ..ports.portal import PortalCheck
from ..tokens.errors import TokensUnavailable
from ..tokens.ports import TokenSource
from .answers import (
    BATCH_LIMIT,
    CONNECTORS_METHOD,
    LINES_METHOD,
    LINES_PAGE,
    AnswerError,
    BatchAnswer,
    batch_command,
    lines_params,
    read_connectors,
    read_lines,
    read_status,
    status_command,
)
from .rest_session import RestSession

__all__ = ["LINES_KEPT", "ConnectorChecks", "open_connector_checks"]

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
_CONNECTORS = "connectors"  # batch command names of the inventory
_LINES = "lines"
_MAX_LINE_PAGES = 50  # 10,000 lines; a portal ignoring the filter must not loop us forever
LINES_KEPT = _MAX_LINE_PAGES * LINES_PAGE  # whatever pages a portal sends, no more lines
_DEADLINE_DETAIL = "the run's deadline was reached before this line was checked"
_ENTRIES_SHOWN = 10


def open_connector_checks(
    portal: str, tokens: TokenSource, ca_bundle: str | None = None
) -> ConnectorChecks:
    """The real `ClientFactory` (with `ca_bundle` bound): a portal's checks over a REST session
    of their own, with the default timeouts and retries."""
    return ConnectorChecks(RestSession(portal, tokens, ca_bundle=ca_bundle))


class ConnectorChecks:
    """A portal's inventory and its targets' statuses, over `session` (the `PortalChecker` the
    cycle uses). Closing it closes the session. One instance per portal and per thread.

    `inventory` raises `PortalError`, `DeadlineExceeded` or `TokensUnavailable`; `check` never
    raises for a portal's problems.
    """

    def __init__(self, session: RestSession) -> None:
        self._session = session

    def __repr__(self) -> str:
        return f"ConnectorChecks({self._session!r})"

    @property
    def portal(self) -> str:
        return self._session.portal

    @property
    def http_requests(self) -> int:
        return self._session.http_requests

    def close(self) -> None:
        self._session.close()

    def inventory(self, deadline: Deadline) -> Inventory:
        """The portal's active connectors and its open lines (all pages), in one request and
        more only for more than 200 lines.

        `imconnector.list` needs a user allowed to change Open Lines connectors (core
        imconnector/lib/rest/common.php::list(): ACCESS_DENIED, HTTP 400, otherwise); refused
        so, the inventory has no connectors (None) and the lines still count. Raises
        `PortalError` (the request failed, or a part of the answer is unreadable),
        `DeadlineExceeded` or `TokensUnavailable`.
        """
        answer = self._session.batch(_inventory_commands(), deadline)
        first_page = _command_value(self.portal, answer, _LINES, LINES_METHOD)
        denied = answer.errors.get(_CONNECTORS)
        connectors: frozenset[str] | None = None
        if denied is None or denied.kind is not ErrorKind.ACCESS_DENIED:
            raw = _command_value(self.portal, answer, _CONNECTORS, CONNECTORS_METHOD)
            connectors = _parsed(self.portal, CONNECTORS_METHOD, read_connectors, raw)
        lines, complete = self._all_lines(first_page, deadline)
        return Inventory(connectors, lines, complete)

    # --- checking -----------------------------------------------------------------------------

    def check(self, targets: Sequence[Target], deadline: Deadline) -> PortalCheck:
        """Every target's status, at most 50 per HTTP request; never raises for the portal."""
        wanted = list(targets)
        results: list[CheckResult | None] = [None] * len(wanted)
        halted: tuple[Cause, str] | None = None

        def settle(span: range, cause: Cause, detail: str) -> None:
            at = self._session.clock()
            for index in span:
                results[index] = CheckResult.unknown(wanted[index], cause, detail, checked_at=at)

        for span in _chunks(len(wanted)):
            if halted is not None:
                settle(span, *halted)
                continue
            commands = {f"t{i}": status_command(wanted[i]) for i in span}
            try:
                answer = self._session.batch(commands, deadline)
            except ExchangeCutOff as exc:
                settle(span, Cause.DEADLINE, str(exc))
                continue
            except DeadlineExceeded:
                settle(span, Cause.DEADLINE, _DEADLINE_DETAIL)
                continue
            except TokensUnavailable as exc:
                halted = (exc.cause, exc.detail)
                settle(span, *halted)
                continue
            except PortalError as err:
                detail = err.detail
                if err.kind is ErrorKind.PORTAL_MOVED:
                    detail = f"{detail}: {_entries_to_update(wanted)}"
                settle(span, err.cause, detail)
                if err.kind in _STOPPING:
                    halted = (err.cause, detail)
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
        at = self._session.clock()
        failed: list[PortalError] = []
        missing = 0
        for index in span:
            target, name = wanted[index], f"t{index}"
            error = answer.errors.get(name)
            if error is not None:
                failed.append(error)
                results[index] = CheckResult.unknown(
                    target, error.cause, error.detail, checked_at=at
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

    def _all_lines(
        self, first_page: object, deadline: Deadline
    ) -> tuple[dict[int, LineInfo], bool]:
        """Open lines from the first page, fetching more pages (each after the last ID seen)
        only when a page came full; and whether they are all there. A page with no ID above the
        last one means the portal ignored the filter; past `LINES_KEPT` lines the rest are not
        read: either way the list is incomplete (it may add lines, never retire one)."""
        page = _parsed(self.portal, LINES_METHOD, read_lines, first_page)
        lines = dict(page)
        for _ in range(_MAX_LINE_PAGES):
            if len(page) < LINES_PAGE:
                return dict(sorted(lines.items())), True
            if len(lines) >= LINES_KEPT:
                break
            last = max(lines)
            raw = self._session.call(LINES_METHOD, lines_params(after=last), deadline)
            page = _parsed(self.portal, LINES_METHOD, read_lines, raw)
            if not page or min(page) <= last:
                if not page:
                    return dict(sorted(lines.items())), True
                break  # the portal ignores the filter
            lines.update(page)
        return dict(sorted(lines.items())[:LINES_KEPT]), False


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
        _LINES: batch_command(LINES_METHOD, lines_params()),
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
