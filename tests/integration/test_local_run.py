"""`python -m local.run` (what `make run` starts), run as a user runs it: a subprocess.

Everything stays on 127.0.0.1: moto inside the runner, its local portal (or, with --secret-file,
a local portal this test starts in its own process, standing in for a real one).
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from local.bitrix24_portal import LocalPortal

ROOT = Path(__file__).resolve().parents[2]
# Its own file for monitorctl --local: a developer's `make run` keeps .local-run.json.
RUN_FILE = Path(tempfile.gettempdir()) / f"test-local-run-{os.getpid()}.json"
COMMAND = [
    sys.executable,
    "-m",
    "local.run",
    "--port-portal",
    "0",
    "--port-api",
    "0",
    "--run-file",
    str(RUN_FILE),
]
# Access and refresh tokens of the local portal are 70 hex digits, client secrets 48 url-safe
# characters: nothing else the runner prints is a run of 40 such characters.
TOKEN_LIKE = re.compile(r"[A-Za-z0-9_-]{40,}")


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TARGETS"}
    return {**env, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}


def run(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def summary_line(output: str, number: int) -> int:
    """Where run `number`'s summary line starts in the output."""
    match = re.search(rf"^run {number}: ", output, re.MULTILINE)
    assert match, f"no summary line for run {number}"
    return match.start()


def test_demo_outage_sends_one_down_alert_then_one_recovery() -> None:
    result = run("--runs", "7", "--interval", "0.2", "--demo-outage")
    output = result.stdout

    assert result.returncode == 0, result.stderr
    assert re.search(r"^PORTAL\s+CONNECTOR\s+LINE\s+STATE\s+SINCE\s+DETAIL$", output, re.M)
    assert re.search(
        r"^demo\.bitrix24\.local\s+myconnector\s+2\s+DOWN\s+\S+\s+ERROR=true", output, re.M
    )
    assert re.search(r"^run 7: 3 targets, 3 up, 0 down, 0 unknown", output, re.M)
    downs = re.findall(r"^ALERT connector\.down \[critical\] (.*)$", output, re.M)
    recoveries = re.findall(r"^ALERT connector\.recovered \[info\] (.*)$", output, re.M)
    # the line's name from the local portal's inventory, the cause first
    assert downs == ["CONNECTOR DOWN: myconnector on line Support (2) at demo.bitrix24.local"]
    assert len(recoveries) == 1
    assert "line Support (2)" in recoveries[0]
    # the run summary counts messages (a grouped one carries several targets' alerts)
    assert re.search(r"\| alerts: 1 message sent, 0 waiting to be sent \|", output)
    # Two failed checks (runs 2 and 3) before the down alert; the first good one recovers.
    down_at, recovered_at = output.index("ALERT connector.down"), output.index("ALERT connector.r")
    assert summary_line(output, 2) < down_at < summary_line(output, 3)
    assert summary_line(output, 5) < recovered_at < summary_line(output, 6)
    # The portal speaks HTTPS; the control commands trust its local authority
    assert re.search(r"Bitrix24 portal  https://127\.0\.0\.1:\d+ ", output)
    assert re.search(r"curl --cacert \S+ca\.pem -X POST https://127\.0\.0\.1:", output)
    assert "/_control/demo.bitrix24.local/status" in output
    # The demo portal was onboarded through the install route: it posted ONAPPINSTALL to the
    # inbound handler, which verified it (app.info), stored the pair and bound the events; the
    # checks above ran on that pair (the secret holds only the application).
    assert re.search(
        r"^installed on demo\.bitrix24\.local: pair stored, 3 events bound$", output, re.M
    )
    for route in ("install", "events", "authorized"):
        assert re.search(rf"^  \S.* +http://127\.0\.0\.1:\d+/app/[0-9a-f-]+/{route}$", output, re.M)
    assert not TOKEN_LIKE.search(output + result.stderr)
    assert "Traceback" not in result.stderr


def test_snapshot_api_answers_and_ctrl_c_stops_everything_cleanly() -> None:
    process = subprocess.Popen(
        [*COMMAND, "--interval", "60"],
        cwd=ROOT,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(30, process.kill)  # readline() must not wait forever
    watchdog.start()
    try:
        seen: list[str] = []
        assert process.stdout is not None
        while True:
            line = process.stdout.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith("run 1: "):
                break
        assert any(line.startswith("run 1: ") for line in seen), "".join(seen)
        api = re.search(r"curl (http://127\.0\.0\.1:\d+/snapshot)", "".join(seen))
        assert api, "the banner names the snapshot API"
        snapshot = requests.get(api.group(1), timeout=5).json()
        assert snapshot["summary"] == {"total": 3, "up": 3, "down": 0, "unknown": 0}
        page_url = re.search(r"Status page +(http://127\.0\.0\.1:\d+/) ", "".join(seen))
        assert page_url, "the banner names the status page"
        page = requests.get(page_url.group(1), timeout=10)
        assert page.headers["Content-Type"].startswith("text/html")
        assert 'data-portal="demo.bitrix24.local"' in page.text
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=10)
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode in (0, 130)
    assert time.monotonic() - started < 5  # does not wait for the 60 s interval
    assert "Traceback" not in errors + rest
    assert "stopped" in rest


@pytest.fixture
def real_portal() -> Iterator[LocalPortal]:
    """Stands in for a real Bitrix24 portal: the runner reaches it only through the secret."""
    with LocalPortal() as portal:
        portal.add_portal(
            "example.bitrix24.com", connectors={"myconnector": "Mine"}, lines={12: "S"}
        )
        portal.connect("example.bitrix24.com", "myconnector", 12)
        yield portal


def test_secret_file_gets_the_refreshed_tokens_back(
    real_portal: LocalPortal, tmp_path: Path
) -> None:
    domain = "example.bitrix24.com"
    entry = {**real_portal.credentials(domain), "note": "kept as it is"}
    secret_file = tmp_path / "secret.json"
    secret_file.write_text(json.dumps({"portals": {domain: entry}}))
    secret_file.chmod(0o644)
    real_portal.expire_access_tokens(domain)  # the first call answers expired_token

    result = run(
        "--secret-file", str(secret_file), "--targets", f"{domain}/myconnector/12",
        "--runs", "2", "--interval", "0.2",
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^example\.bitrix24\.com\s+myconnector\s+12\s+UP", result.stdout, re.M)
    assert "refreshed tokens written back to" in result.stdout
    assert real_portal.refresh_count(domain) == 1
    stored = json.loads(secret_file.read_text())["portals"][domain]
    assert stored["refresh_token"] != entry["refresh_token"]  # the old one is spent
    assert stored["access_token"] != entry["access_token"]
    assert stored["note"] == "kept as it is"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    for token in (entry["access_token"], entry["refresh_token"], entry["client_secret"]):
        assert token not in result.stdout + result.stderr
    for token in (stored["access_token"], stored["refresh_token"]):
        assert token not in result.stdout + result.stderr
    assert "Bitrix24 portal  http" not in result.stdout  # the local demo portal did not start


def test_secret_file_that_is_not_a_secret_is_refused_without_showing_it(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret.json"
    secret_file.write_text('{"access_token": "abc123-do-not-print", ')

    result = run("--secret-file", str(secret_file), "--targets", "a.bitrix24.com/c/1")

    assert result.returncode == 2
    assert "is not valid JSON" in result.stdout
    assert "abc123-do-not-print" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
