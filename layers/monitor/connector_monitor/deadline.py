"""The time one invocation may still spend: every wait and every request is bounded by it."""

from __future__ import annotations

import time
from dataclasses import dataclass


class DeadlineExceeded(Exception):
    """The run's deadline passed. Raised as such: before a request could start; nothing was
    sent."""


class ExchangeCutOff(DeadlineExceeded):
    """The deadline passed while an exchange with a host was under way (connecting or
    answering): it was cut off, its answer unread."""


@dataclass(frozen=True)
class Deadline:
    """A point in `time.monotonic()` time after which no request starts and no wait ends."""

    expires_at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.expires_at - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def timeout(self, cap: float) -> float:
        """A timeout for one step: at most `cap`, and never past the deadline."""
        return min(cap, self.remaining())
