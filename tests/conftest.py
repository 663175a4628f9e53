"""Fixtures every test layer shares."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from moto import mock_aws
from moto.dynamodb.models import DynamoDBBackend

from local.bitrix24_portal import LocalPortal
from tests.support.moto_speedups import quicker_moto


@pytest.fixture
def atomic_moto_items(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies a conditional write atomically; moto checks and writes in two steps.

    Threads in one process could interleave between them, so serialise moto's item writes the
    way the real service does, or a concurrency test would test moto, not our code.
    """
    lock = threading.RLock()
    for name in ("put_item", "delete_item", "update_item", "transact_write_items"):
        original = getattr(DynamoDBBackend, name)

        def locked(*args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            with lock:
                return _original(*args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, locked)


MOTO_REGION = "eu-central-1"


@pytest.fixture
def moto_account(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An empty moto account in MOTO_REGION, with made-up credentials (nothing reaches AWS)."""
    for key, value in {
        "AWS_DEFAULT_REGION": MOTO_REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield


@pytest.fixture(autouse=True)
def _quicker_moto(request: pytest.FixtureRequest) -> Iterator[None]:
    """moto's TransactWriteItems deep-copies the whole table once per item, and its responses
    walk a shape model per attribute value: a few hundred targets took a fault row 25 s. The
    bench's shortcuts answer the same (tests/integration/test_bench_smoke.py compares them,
    marked `plain_moto`, and checks a cancelled transaction still rolls back)."""
    if request.node.get_closest_marker("plain_moto"):
        yield
        return
    with quicker_moto():
        yield


@pytest.fixture(autouse=True)
def _restore_library_loggers() -> Iterator[None]:
    """Importing a handler copies Powertools' JSON config onto the library's loggers (and stops
    their propagation); put them back after each test so log capture works in the next one."""
    names = [n for n in logging.root.manager.loggerDict if n.startswith("connector_monitor")]
    saved = {
        n: (list(lg.handlers), lg.propagate, lg.level)
        for n in names
        if isinstance(lg := logging.getLogger(n), logging.Logger)
    }
    yield
    for name in logging.root.manager.loggerDict:
        if not name.startswith("connector_monitor"):
            continue
        logger = logging.getLogger(name)
        handlers, propagate, level = saved.get(name, ([], True, logging.NOTSET))
        logger.handlers[:] = handlers
        logger.propagate = propagate
        logger.setLevel(level)


@pytest.fixture(scope="module")
def portal_server() -> Iterator[LocalPortal]:
    """One local portal per test module: starting a server for every test costs time."""
    with LocalPortal() as server:
        yield server


@pytest.fixture
def shared_portal(portal_server: LocalPortal) -> Iterator[LocalPortal]:
    """The module's local portal, with every knob a test may turn put back afterwards."""
    yield portal_server
    portal_server.latency = 0.0
    portal_server.rate_limit = None
    portal_server.token_ttl = 3600.0
    portal_server.operating_reset_in = 600.0
    portal_server.operating_limit = 420.0
    portal_server.old_token_after_refresh = "valid"
    portal_server.expired_token_code = "expired_token"
    portal_server.clear_faults()
