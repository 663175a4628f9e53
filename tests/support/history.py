"""A target's history as the checker stores it: answers fed through the state machine, the
final status and every alert it decided saved by the state repository (status and history
items in one write, as a run writes them)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from connector_monitor.aws.repository import StateRepository
from connector_monitor.domain.alerts import Alert
from connector_monitor.domain.results import Cause, CheckResult, State
from connector_monitor.domain.targets import Target
from connector_monitor.domain.transitions import TargetStatus, Thresholds, advance

H = timedelta(hours=1)


def answers_of(
    target: Target, now: datetime, plan: list[tuple[timedelta, State]]
) -> list[CheckResult]:
    """Hourly answers: each (how long, state) in turn, ending at `now`."""
    total = sum((span for span, _ in plan), timedelta(0))
    at, results = now - total, []
    for span, state in plan:
        for _ in range(int(span / H)):
            if state is State.UNKNOWN:
                results.append(
                    CheckResult.unknown(target, Cause.AUTH_LOST, "token revoked", checked_at=at)
                )
            else:
                up = state is State.UP
                results.append(
                    CheckResult.from_flags(
                        target, configured=True, error=not up, status=up, checked_at=at
                    )
                )
            at += H
    return results


def store(
    repository: StateRepository,
    results: list[CheckResult],
    detail: str | None = None,
    line_name: str = "",
) -> TargetStatus:
    """What the checker would have stored after these answers: the status and its history."""
    status: TargetStatus | None = None
    alerts: list[Alert] = []
    for result in results:
        step = advance(status, result, Thresholds(failure=2))
        status, alerts = step.status, alerts + list(step.alerts)
    assert status is not None
    status = replace(status, pending=(), detail=detail or status.detail)
    status = replace(status, line_name=line_name or status.line_name)
    repository.save([status], claims={}, history={status.subject.key: alerts})
    return status
