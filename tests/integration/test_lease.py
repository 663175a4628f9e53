"""The DynamoDB lease that serialises token refreshes across overlapping invocations (moto)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from connector_monitor.aws.lease import Lease
from connector_monitor.tokens.errors import LeaseUnavailable
from local.template import table_definition

REGION = "us-east-1"
TABLE = "monitor-test"


@pytest.fixture
def ddb(monkeypatch: pytest.MonkeyPatch, atomic_moto_items: None) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(TableName=TABLE, **table_definition())
        yield client


class FakeClock:
    """Time that moves only when someone sleeps: waits and expiries without real waiting."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def lock_item(ddb: Any, name: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = ddb.get_item(
        TableName=TABLE, Key={"pk": {"S": "LOCK"}, "sk": {"S": name}}, ConsistentRead=True
    ).get("Item")
    return item


def test_only_one_holder_at_a_time_across_instances(ddb: Any) -> None:
    leases = [Lease(TABLE, client=ddb) for _ in range(4)]
    inside = 0
    most_inside = 0
    entries = 0
    guard = threading.Lock()
    start = threading.Barrier(len(leases))

    def work(lease: Lease) -> None:
        nonlocal inside, most_inside, entries
        start.wait()
        for _ in range(3):
            with lease.hold("secret:tokens", ttl=30, wait=20):
                with guard:
                    inside += 1
                    entries += 1
                    most_inside = max(most_inside, inside)
                time.sleep(0.02)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=work, args=(lease,)) for lease in leases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert entries == 12
    assert most_inside == 1
    assert lock_item(ddb, "secret:tokens") is None  # the last holder released it


def test_item_carries_owner_and_ttl_attribute_while_held(ddb: Any) -> None:
    clock = FakeClock()
    with Lease(TABLE, client=ddb, clock=clock).hold("secret:tokens", ttl=30):
        item = lock_item(ddb, "secret:tokens")
        assert item is not None
        assert item["owner"]["S"]
        assert int(item["expires_at"]["N"]) == int(clock.now) + 30
    assert lock_item(ddb, "secret:tokens") is None


def test_waits_then_gives_up_with_lease_unavailable(ddb: Any) -> None:
    clock = FakeClock()
    holder = Lease(TABLE, client=ddb, clock=clock)
    waiter = Lease(TABLE, client=ddb, clock=clock, sleep=clock.sleep)
    with holder.hold("secret:tokens", ttl=60):
        started = clock.now
        with (
            pytest.raises(LeaseUnavailable, match="held by another owner"),
            waiter.hold("secret:tokens", ttl=60, wait=5),
        ):
            pytest.fail("the body must not run without the lease")
        assert clock.now - started == pytest.approx(5)
        assert len(clock.slept) > 2  # it polled with short pauses, not one long sleep
        assert max(clock.slept) <= 0.75  # 0.5 s at most, plus jitter


def test_different_names_do_not_block_each_other(ddb: Any) -> None:
    one, two = Lease(TABLE, client=ddb), Lease(TABLE, client=ddb)
    with one.hold("secret:a", wait=0), two.hold("secret:b", wait=0):
        assert lock_item(ddb, "secret:a") is not None
        assert lock_item(ddb, "secret:b") is not None


def test_expired_lease_of_a_dead_owner_is_taken_over(ddb: Any) -> None:
    clock = FakeClock()
    dead = Lease(TABLE, client=ddb, clock=clock).hold("secret:tokens", ttl=30)
    dead.__enter__()  # the invocation died holding it: never exits

    survivor = Lease(TABLE, client=ddb, clock=clock, sleep=clock.sleep)
    with pytest.raises(LeaseUnavailable), survivor.hold("secret:tokens", wait=10):
        pass  # 10 s later it is still within the dead owner's 30 s

    clock.now += 21  # now past expires_at
    ran = False
    with survivor.hold("secret:tokens", wait=0):
        ran = True
    assert ran


def test_release_only_by_the_owner(
    ddb: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A handler imported by another test may have stopped the library's loggers propagating.
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith("connector_monitor") and isinstance(logger, logging.Logger):
            monkeypatch.setattr(logger, "propagate", True)
    clock = FakeClock()
    slow = Lease(TABLE, client=ddb, clock=clock)
    other = Lease(TABLE, client=ddb, clock=clock)
    third = Lease(TABLE, client=ddb, clock=clock)

    with caplog.at_level(logging.WARNING), slow.hold("secret:tokens", ttl=10):
        clock.now += 11  # the slow holder overran its ttl ...
        taken = other.hold("secret:tokens", ttl=30)
        taken.__enter__()  # ... and another invocation took the lease over
        owner = lock_item(ddb, "secret:tokens")
    # The slow holder's release must not delete the new owner's lease.
    assert lock_item(ddb, "secret:tokens") == owner
    assert "taken over" in caplog.text
    with pytest.raises(LeaseUnavailable), third.hold("secret:tokens", wait=0):
        pass
    taken.__exit__(None, None, None)
    assert lock_item(ddb, "secret:tokens") is None


def test_released_even_when_the_body_raises(ddb: Any) -> None:
    lease = Lease(TABLE, client=ddb)
    with pytest.raises(RuntimeError), lease.hold("secret:tokens"):
        raise RuntimeError("boom")
    assert lock_item(ddb, "secret:tokens") is None


def test_missing_table_is_a_clear_lease_unavailable(ddb: Any) -> None:
    lease = Lease("no-such-table", client=ddb)
    with (
        pytest.raises(LeaseUnavailable, match=r"no-such-table \(ResourceNotFoundException\)"),
        lease.hold("secret:tokens", wait=0),
    ):
        pass


@pytest.fixture
def silent_dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A DynamoDB endpoint that accepts connections and never answers (a hung service)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    accepting = threading.Thread(
        target=lambda: held.extend(server.accept()[0] for _ in iter(int, 1)), daemon=True
    )
    accepting.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    yield
    server.close()
    for connection in held:
        connection.close()


def test_a_hung_dynamodb_costs_a_bounded_wait_not_the_whole_run(silent_dynamodb: None) -> None:
    # The lease's own client (as the checker builds it) must time out: with boto3's defaults
    # (60 s read timeout, five attempts) one refresh would hang for minutes.
    started = time.monotonic()
    with (
        pytest.raises(LeaseUnavailable, match="could not reach DynamoDB"),
        Lease(TABLE).hold("portal.bitrix24.com", wait=0.1),
    ):
        pass
    assert time.monotonic() - started < 30
