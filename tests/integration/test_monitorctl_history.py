"""monitorctl status and history against moto: what an operator reads in a terminal."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from connector_monitor.aws.repository import StateRepository
from connector_monitor.domain.results import State
from connector_monitor.domain.targets import Target
from local.template import table_definition
from monitorctl.cli import main
from tests.conftest import MOTO_REGION
from tests.support.history import answers_of, store

TABLE = "monitor"
PORTAL = "client.bitrix24.com"
H = timedelta(hours=1)


@pytest.fixture
def repository(moto_account: None) -> StateRepository:
    client = boto3.client("dynamodb", region_name=MOTO_REGION)
    client.create_table(TableName=TABLE, **table_definition())
    repository = StateRepository(TABLE, client=client)
    now = datetime.now(UTC)
    store(repository, answers_of(Target(PORTAL, "c", 1), now, [(5 * H, State.UP)]))
    store(
        repository,
        answers_of(Target(PORTAL, "c", 2), now, [(2 * H, State.UP), (4 * H, State.DOWN)]),
        detail="ERROR=true\x1b[31m: reconnect",  # a terminal escape a portal might send
    )
    store(
        repository,
        answers_of(Target(PORTAL, "c", 3), now, [(2 * H, State.UP), (3 * H, State.UNKNOWN)]),
    )
    return repository


def ctl(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(["--table", TABLE, *args], out), out.getvalue()


def test_status_lists_every_target_and_counts_them(repository: StateRepository) -> None:
    code, text = ctl("status")
    lines = text.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["UP", "DOWN", "UNKNOWN"]
    assert "\x1b" not in text and "ERROR=true?[31m: reconnect" in text
    assert lines[-1].startswith("3 targets: 1 UP, 1 DOWN, 1 UNKNOWN")
    assert code == 1  # one is DOWN: scripts can tell

    code, only_up = ctl("status", "--state", "up")
    assert code == 0 and only_up.splitlines()[0].startswith(f"UP      {PORTAL}/c/1")


def test_history_of_a_portal_and_of_a_target(repository: StateRepository) -> None:
    code, text = ctl("history", PORTAL)
    assert code == 0
    assert text.splitlines()[0] == f"{PORTAL}: 3 targets"
    assert "2 incidents, newest first:" in text
    assert "BLIND " in text and "auth_lost" in text
    assert "DOWN  " in text and "connector_down" in text

    code, one = ctl("history", f"{PORTAL}/c/2")
    assert code == 0
    assert one.splitlines()[0] == f"{PORTAL}/c/2: DOWN"
    assert "24h " in one and "open" in one


def test_history_of_something_unknown_says_so(
    repository: StateRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl("history", "nobody.bitrix24.com")[0] == 2
    assert "no target of nobody.bitrix24.com is watched" in capsys.readouterr().err
    assert ctl("history", "not a portal")[0] == 2
