"""Silences and acknowledgements, as the API's routes and the CLI ask for them: validate, add,
list, remove, acknowledge. No HTTP here and no DynamoDB (the store behind `ports/silences.py`)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..domain.silences import Silence, SilenceError, matcher_of
from ..domain.targets import Target
from ..domain.timestamps import stamp
from ..ports.silences import SilenceStore
from .errors import ApiError, NotFound
from .views import (
    SILENCE_MINUTES_LIMIT,
    AcknowledgementView,
    SilenceRequest,
    SilencesView,
    SilenceView,
)

LONGEST = timedelta(minutes=SILENCE_MINUTES_LIMIT)
SILENCE_ID = re.compile(r"[0-9A-Za-z-]{1,64}")


def new_silence_id(at: datetime) -> str:
    """Sorts by creation, and two operators in the same second do not collide."""
    return f"{at.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class SilenceService:
    store: SilenceStore
    new_id: Callable[[datetime], str] = field(default=new_silence_id)

    def list(self, now: datetime) -> SilencesView:
        return SilencesView(silences=[silence_view(s, now) for s in self.store.silences()])

    def add(self, request: SilenceRequest, *, by: str, at: datetime) -> SilenceView:
        until = _until(request, at)
        try:
            matcher = matcher_of(request.portal, request.connector, request.line, request.cause)
            silence = Silence(self.new_id(at), matcher, until, by, request.why, at)
        except SilenceError as exc:
            raise ApiError(str(exc)) from None
        self.store.add(silence)
        return silence_view(silence, at)

    def remove(self, silence_id: str, now: datetime) -> SilenceView:
        # An id this service never hands out names no silence (and never reaches DynamoDB).
        removed = self.store.remove(silence_id) if SILENCE_ID.fullmatch(silence_id) else None
        if removed is None:
            raise NotFound(f"no silence {silence_id[:64]!r}")
        return silence_view(removed, now)

    def acknowledge(self, target: Target, *, by: str, at: datetime) -> AcknowledgementView:
        since = self.store.acknowledge(target, by=by)
        if since is None:
            raise NotFound(f"{target.key} has no open outage to acknowledge")
        return AcknowledgementView(
            target=target.key,
            incident_since=stamp(since),
            acknowledged_by=by,
            acknowledged_at=stamp(at),
        )


def _until(request: SilenceRequest, at: datetime) -> datetime:
    if (request.until is None) == (request.minutes is None):
        raise ApiError("give either until (a time) or minutes (from now)")
    if request.minutes is not None:
        return at + timedelta(minutes=request.minutes)
    try:
        until = datetime.fromisoformat(str(request.until).replace("Z", "+00:00"))
    except ValueError:  # the shape is checked already: a month 13, a 30 February
        raise ApiError(f"until {request.until} is not a time") from None
    if until <= at:
        raise ApiError(f"until {request.until} is not in the future")
    if until - at > LONGEST:
        raise ApiError(f"a silence lasts {LONGEST.days} days at most")
    return until


def silence_view(silence: Silence, now: datetime) -> SilenceView:
    matcher = silence.matcher
    return SilenceView(
        id=silence.id,
        portal=matcher.portal,
        connector=matcher.connector,
        line=matcher.line,
        cause=matcher.cause.value if matcher.cause else None,
        created_at=stamp(silence.created_at),
        until=stamp(silence.until),
        active=silence.active(now),
        by=silence.by,
        why=silence.why,
    )
