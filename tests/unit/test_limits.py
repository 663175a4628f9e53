"""The client's view of a portal's REST limits (bitrix24/b24restdocs limits.md): the leaky
bucket it paces its requests to, and each method's operating time from successful answers."""

from __future__ import annotations

import pytest

from connector_monitor.bitrix24.limits import (
    OPERATING_LIMIT,
    LeakyBucket,
    OperatingTime,
    command_method,
)


def test_a_burst_of_50_passes_then_one_request_each_half_second() -> None:
    bucket = LeakyBucket()
    for _ in range(50):
        assert bucket.wait(100.0) == 0.0
        bucket.take(100.0)
    assert bucket.wait(100.0) == pytest.approx(0.5)
    assert bucket.wait(100.5) == pytest.approx(0.0)
    assert bucket.wait(110.0) == 0.0  # drained meanwhile


def test_enterprise_portals_get_250_and_5_a_second() -> None:
    bucket = LeakyBucket.for_plan("Enterprise")
    assert (bucket.burst, bucket.per_second) == (250, 5.0)
    assert (LeakyBucket.for_plan(None).burst, LeakyBucket.for_plan("basic").burst) == (50, 50)


def test_operating_time_comes_from_successful_answers_per_method() -> None:
    usage = OperatingTime()
    usage.note("imconnector.status", {"operating": 12.5, "operating_reset_at": 2000})
    usage.note("imconnector.list", {"start": 1.0})  # no operating: nothing known
    assert usage.paused(["imconnector.status"], now=1000) is None
    usage.note(
        "imconnector.status", {"operating": OPERATING_LIMIT * 0.8, "operating_reset_at": 2000}
    )
    paused = usage.paused(["imconnector.list", "imconnector.status"], now=1000)
    assert paused is not None and paused[0] == "imconnector.status"
    assert usage.paused(["imconnector.status"], now=2000) is None  # reset by then
    assert usage.reset_at(["imconnector.status"]) == 2000


def test_a_batch_counts_its_commands_not_itself() -> None:
    usage = OperatingTime()
    commands = {"t0": "imconnector.status?CONNECTOR=c&LINE=1", "t1": "imconnector.list"}
    result = {
        "result_time": {
            "t0": {"operating": 400.0, "operating_reset_at": 5000},
            "t1": {"operating": 1.0, "operating_reset_at": 5000},
        }
    }
    usage.note_batch(commands, result)
    assert usage.paused(["imconnector.status"], now=0) is not None
    assert usage.paused(["imconnector.list"], now=0) is None
    assert command_method(commands["t0"]) == "imconnector.status"


@pytest.mark.parametrize("odd", [None, "x", {"operating": "lots"}, {"operating": float("inf")}])
def test_odd_timings_are_ignored(odd: object) -> None:
    usage = OperatingTime()
    usage.note("m", odd)
    assert usage.methods == {}
