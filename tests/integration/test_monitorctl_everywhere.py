"""monitorctl wherever the monitor runs: silences and acknowledgements against moto, every verb's
help with an example, and the command `make run` prints reaching that local run's tables."""

from __future__ import annotations

import io
import json
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from connector_monitor.aws.repository import StateRepository
from connector_monitor.domain.results import CheckResult
from connector_monitor.domain.targets import Target
from connector_monitor.domain.transitions import Thresholds, advance
from local.template import table_definition
from monitorctl.cli import COMMANDS, main
from tests.conftest import MOTO_REGION

ROOT = Path(__file__).resolve().parents[2]
TABLE = "monitor"
A = "client.bitrix24.com"


@pytest.fixture
def aws(moto_account: None) -> None:
    boto3.client("dynamodb", region_name=MOTO_REGION).create_table(
        TableName=TABLE, **table_definition()
    )


def ctl(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(["--table", TABLE, *args], out), out.getvalue()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_verbs_help_shows_an_example(
    command: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    words = [w for w in command if w]
    with pytest.raises(SystemExit) as ended:
        main([*words, "--help"])
    assert ended.value.code == 0
    shown = capsys.readouterr().out
    example = re.search(r"^example:\n  (python -m monitorctl .+)$", shown, re.MULTILINE)
    assert example, shown
    assert f" {' '.join(words)} " in example.group(1) + " "  # an example of this very verb


def test_silences_are_added_listed_and_removed(aws: None) -> None:
    code, added = ctl(
        "silence", "add", "--portal", A.upper(), "--for", "2h", "--why", "upgrade", "--by", "ops"
    )
    assert code == 0, added
    silence_id = re.match(r"added: (\S+)\t" + re.escape(A) + r"/\*/\* until ", added)
    assert silence_id, added

    code, listing = ctl("silence", "list")
    first, last = listing.splitlines()
    assert first.startswith(f"{silence_id.group(1)}\tactive\t{A}/*/*\tuntil ")
    assert first.endswith("\tby ops\tupgrade")
    assert last == "1 silences (1 active)"

    assert ctl("silence", "remove", silence_id.group(1))[0] == 0
    assert ctl("silence", "list")[1].strip() == "0 silences (0 active)"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--for", "2 hours", "--why", "x", "--portal", A], "write 30m, 2h or 3d"),
        (["--for", "2h", "--why", "x"], "needs a portal, a connector or a cause"),
        (["--for", "2h", "--why", "x", "--cause", "unpaid"], "unknown cause 'unpaid'"),
        (["--until", "tomorrow", "--why", "x", "--portal", A], "--until"),
        (["--for", "200d", "--why", "x", "--portal", A], "--for: Input should be less than"),
    ],
)
def test_a_bad_silence_says_why_and_adds_nothing(
    aws: None, args: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = ctl("silence", "add", *args)
    assert code == 2
    assert said in capsys.readouterr().err
    assert ctl("silence", "list")[1].strip() == "0 silences (0 active)"


def test_removing_a_silence_that_is_not_there_fails(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl("silence", "remove", "nope")[0] == 2
    assert "no silence 'nope'" in capsys.readouterr().err


def test_ack_marks_the_open_outage(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    target = Target(A, "myconnector", 12)
    at = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    down = CheckResult.from_flags(
        target, configured=False, error=False, status=False, checked_at=at
    )
    repository = StateRepository(TABLE, client=boto3.client("dynamodb", region_name=MOTO_REGION))
    assert ctl("ack", target.key)[0] == 2  # nothing open
    assert "has no open outage" in capsys.readouterr().err

    repository.save([advance(None, down, Thresholds(failure=1)).status], claims={})
    code, said = ctl("ack", f"{A}/MyConnector/12", "--by", "ops")

    assert code == 0
    assert said.strip() == (
        f"acknowledged: {target.key} (outage since 2026-12-06T12:00:00Z); no more reminders for it"
    )
    stored = repository.get_target(target)
    assert stored is not None and (stored.acked_since, stored.acked_by) == (at, "ops")
    assert ctl("ack", f"{A}/myconnector/*")[0] == 2  # a watch is not one outage


def test_local_without_a_local_run_says_how_to_start_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--local", str(tmp_path / "none.json"), "silence", "list"]) == 2
    assert "start one with `make run`" in capsys.readouterr().err


@pytest.fixture
def local_run(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`python -m local.run` as `make run` starts it; the monitorctl command its banner prints."""
    run_file = tmp_path / "run.json"
    command = [sys.executable, "-m", "local.run", "--port-portal", "0", "--port-api", "0"]
    process = subprocess.Popen(
        [*command, "--interval", "60", "--run-file", str(run_file)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(60, process.kill)
    watchdog.start()
    try:
        assert process.stdout is not None
        seen = []
        while (line := process.stdout.readline()) and not line.startswith("run 1: "):
            seen.append(line)
        printed = re.search(r"^  monitorctl +(.+) silence list$", "".join(seen), re.MULTILINE)
        assert printed, "".join(seen)
        yield printed.group(1), run_file
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=15)
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert not run_file.exists()  # removed when the run stops


def test_the_command_make_run_prints_reaches_its_tables_and_secret(
    local_run: tuple[str, Path],
) -> None:
    command, run_file = local_run
    assert command.endswith(f"-m monitorctl --local {run_file}")
    assert json.loads(run_file.read_text())["endpoint_url"].startswith("http://127.0.0.1:")

    def monitorctl(*args: str) -> str:
        words = shlex.split(command)
        words[0] = sys.executable  # the printed interpreter, relative to the repository
        done = subprocess.run(
            [*words, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    # make run installs its demo portal through the install route: the pair is in the table
    assert "demo.bitrix24.local\ttable" in monitorctl("tokens", "list")
    monitorctl("silence", "add", "--connector", "myconnector", "--for", "1h", "--why", "demo")
    assert monitorctl("silence", "list").splitlines()[-1] == "1 silences (1 active)"
    assert monitorctl("targets", "list").splitlines()[-1] == "0 entries"
