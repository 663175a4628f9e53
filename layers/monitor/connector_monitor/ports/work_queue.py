"""The work queue port: a shard's order, and where the planner sends the orders."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from ..domain.shards import KeyRange


class ShardOrder(BaseModel):
    """One worker's order, as the queue carries it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str = Field(min_length=1, max_length=200)
    index: int = Field(ge=0, lt=10_000)
    shards: int = Field(ge=1, le=10_000)
    lo: str = Field(max_length=300)
    hi: str | None = Field(default=None, max_length=300)
    started_at: datetime

    @property
    def portals(self) -> KeyRange:
        return KeyRange(self.lo, self.hi)


class WorkQueue(Protocol):
    """Where shard orders go (`aws/work_queue.py` sends them to SQS)."""

    def send(self, orders: Sequence[ShardOrder]) -> None: ...
