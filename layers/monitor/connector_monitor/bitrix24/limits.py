"""A portal's REST limits as one client sees them, so it slows down before the portal refuses.

- The request rate: a leaky bucket per portal (bitrix24/b24restdocs limits.md: burst 50 and
  2 requests a second; 250 and 5 on Enterprise). Past it the portal answers 503
  QUERY_LIMIT_EXCEEDED. The bucket is shared with every other application calling the portal,
  which the monitor cannot see: this paces the monitor's own requests, and a refusal is still
  backed off with jitter.
- The operating time: what each method spent for this application in the last 10 minutes,
  reported as `time.operating` (and when the oldest minute drops out, `operating_reset_at`) in
  successful answers only; error bodies carry no `time` block (core rest/classes/general/
  rest.php: appendDebugInfo() runs on the success path). Past the limit the next call of the
  method is refused with 429 OPERATION_TIME_LIMIT.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Seconds of operating time a method may use per 10 minutes. The core's default (rest/lib/
# engine/access/loadlimiter.php: $limitTime = 420); the docs' example and the JS SDK say 480,
# and no source gives the cloud's value, so the lower one.
OPERATING_LIMIT = 420.0
OPERATING_SHARE = 0.8  # a method is paused once it used this share of the limit


@dataclass
class LeakyBucket:
    """The portal's request bucket as this client fills it (times from `time.monotonic()`)."""

    burst: int = 50
    per_second: float = 2.0
    level: float = 0.0
    updated: float = 0.0

    @classmethod
    def for_plan(cls, plan: object) -> LeakyBucket:
        """Enterprise portals allow more (`"plan": "enterprise"` in the portal's secret entry)."""
        if isinstance(plan, str) and plan.strip().lower() == "enterprise":
            return cls(burst=250, per_second=5.0)
        return cls()

    def wait(self, now: float) -> float:
        """Seconds until one more request fits."""
        self._drain(now)
        return max(0.0, (self.level + 1 - self.burst) / self.per_second)

    def take(self, now: float) -> None:
        self._drain(now)
        self.level += 1

    def _drain(self, now: float) -> None:
        if self.updated:
            self.level = max(0.0, self.level - (now - self.updated) * self.per_second)
        self.updated = now


@dataclass(frozen=True)
class Usage:
    seconds: float
    reset_at: float | None  # epoch seconds


@dataclass
class OperatingTime:
    """Each method's operating time, from the successful answers this client received."""

    limit: float = OPERATING_LIMIT
    share: float = OPERATING_SHARE
    methods: dict[str, Usage] = field(default_factory=dict)

    def note(self, method: str, timing: object) -> None:
        """Read `time.operating` and `time.operating_reset_at` of an answer, if it has them."""
        if not isinstance(timing, Mapping):
            return
        seconds = _number(timing.get("operating"))
        if seconds is None:
            return
        self.methods[method] = Usage(seconds, _number(timing.get("operating_reset_at")))

    def note_batch(self, commands: Mapping[str, str], result: object) -> None:
        """A batch: each command's own timing is in `result_time` (the batch call itself is
        not counted)."""
        timings = result.get("result_time") if isinstance(result, Mapping) else None
        if not isinstance(timings, Mapping):
            return
        for name, command in commands.items():
            self.note(command_method(command), timings.get(name))

    def paused(self, methods: Iterable[str], now: float) -> tuple[str, Usage] | None:
        """A method of these that has used its share of the limit and has not reset yet."""
        for method in methods:
            usage = self.methods.get(method)
            if usage is None or usage.seconds < self.limit * self.share:
                continue
            if usage.reset_at is not None and usage.reset_at <= now:
                continue
            return method, usage
        return None

    def reset_at(self, methods: Iterable[str]) -> float | None:
        """When the first of these methods may be called again, as far as answers said."""
        found = [u.reset_at for m in methods if (u := self.methods.get(m)) and u.reset_at]
        return min(found) if found else None


def command_method(command: str) -> str:
    """The method of a batch command string (`imconnector.status?CONNECTOR=...`)."""
    return command.partition("?")[0].strip().lower()


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
