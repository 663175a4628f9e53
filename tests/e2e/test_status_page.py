"""History and the status page end to end: the history the checker stores (its state machine's
alerts, saved by `StateRepository.save` into a table made from template.yaml, in moto), read
back by the API's handler over `GET /history/...` and `GET /`, and the page opened in a real
headless Chromium against the local API server (`local/api_server.py`).

The browser test needs Debian's `chromium` (.ci/run installs it); it skips, saying so, only
outside CI where the browser is not installed. Its screenshot is kept as
`artifacts/status-page.png`, and one client's page as `artifacts/status-page-client.png`
(.ci/run prints where).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from connector_monitor.api.status_page import StatusPageService
from connector_monitor.aws.registry import Registry
from connector_monitor.aws.repository import StateRepository
from connector_monitor.domain.labels import PortalLabels
from connector_monitor.domain.results import State
from connector_monitor.domain.runs import RunRecord
from connector_monitor.domain.targets import Target
from local.api_server import ApiServer
from tests.e2e.conftest import API_TABLE, REGION
from tests.events import LambdaContext, http_event, load_handler
from tests.support.history import answers_of, store

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "artifacts" / "status-page.png"
CLIENT_SCREENSHOT = ROOT / "artifacts" / "status-page-client.png"
TABLE = API_TABLE
PORTAL = "example.bitrix24.com"
HOSTILE = "hostile.bitrix24.com"
SCRIPT = "<script>document.title='owned'</script>"
RUNBOOK = 'https://wiki.acme.test/runbook?a=1&b="x'
H = timedelta(hours=1)
D = timedelta(days=1)


@pytest.fixture
def world(repository: StateRepository) -> datetime:
    """example: line 12 up with a 2-hour outage 3 days ago; line 14 down for 5 hours; line 16
    blind (auth lost) for 3 hours. hostile: one line down whose detail is a script."""
    now = datetime.now(UTC).replace(microsecond=0)
    up = Target(PORTAL, "myconnector", 12)
    store(
        repository,
        answers_of(up, now, [(70 * H, State.UP), (2 * H, State.DOWN), (3 * D, State.UP)]),
    )
    down = Target(PORTAL, "myconnector", 14)
    store(
        repository,
        answers_of(down, now, [(2 * H, State.UP), (5 * H, State.DOWN)]),
        line_name="Support <b>",  # the portal's name for the line, escaped like any answer
    )
    blind = Target(PORTAL, "myconnector", 16)
    store(repository, answers_of(blind, now, [(2 * H, State.UP), (3 * H, State.UNKNOWN)]))
    evil = Target(HOSTILE, "myconnector", 1)
    store(repository, answers_of(evil, now, [(3 * H, State.DOWN)]), detail=SCRIPT)
    repository.save_run(RunRecord("run-1", now - timedelta(seconds=3), now, {"targets": 4}, {}))
    return now


@pytest.fixture
def api(world: datetime, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The handler, its clock stopped at the world's `now` (so durations are exact)."""
    handler = load_handler("snapshot_api")
    monkeypatch.setattr(handler, "utcnow", lambda: world)
    return handler


def call(api: ModuleType, path: str, **query: str) -> dict[str, Any]:
    """A request as API Gateway sends it (events/: the route's own event, or the page's)."""
    parts = path.strip("/").split("/")
    base = "status_page_get"
    if parts[0] == "history":
        base = "history_target_get" if len(parts) == 4 else "history_portal_get"
    event = http_event(base, path=path, query=query)
    event.pop("pathParameters", None)  # the resolver reads the path itself
    return api.lambda_handler(event, LambdaContext())  # type: ignore[no-any-return]


def test_the_page_shows_the_client_labels_the_registry_holds(
    api: ModuleType, world: datetime
) -> None:
    # The deployed wiring: labels set as `monitorctl targets label` sets them, read by the page.
    registry = Registry(TABLE, client=boto3.client("dynamodb", region_name=REGION))
    registry.set_labels(PORTAL, PortalLabels(client="Acme Corp", tier="gold"), by="ops", at=world)
    answer = call(api, "/", portal=PORTAL)
    assert answer["statusCode"] == 200, answer["body"]
    assert "Acme Corp" in answer["body"] and "gold" in answer["body"]
    assert "<td>Support &lt;b&gt; (14)</td>" in answer["body"]  # the line's name from the portal
    assert "Acme Corp" not in call(api, "/", portal=HOSTILE)["body"]


def test_a_targets_history_has_its_incidents_and_uptime(api: ModuleType, world: datetime) -> None:
    answer = call(api, f"/history/{PORTAL}/myconnector/12")
    assert answer["statusCode"] == 200, answer["body"]
    body = json.loads(answer["body"])
    (incident,) = body["incidents"]
    assert (incident["kind"], incident["cause"], incident["open"]) == (
        "DOWN",
        "connector_down",
        False,
    )
    assert incident["duration_seconds"] == 2 * 3600
    uptime = {u["window"]: u for u in body["uptime"]}
    assert uptime["24h"]["percent"] == 100.0
    assert uptime["7d"]["down_seconds"] == 2 * 3600
    assert uptime["7d"]["percent"] == round(100 * (1 - 2 / (7 * 24)), 3)
    assert len(body["days"]) == 30 and "down" in [d["mark"] for d in body["days"]]


def test_a_portals_history_counts_blind_time_apart(api: ModuleType, world: datetime) -> None:
    body = json.loads(call(api, f"/history/{PORTAL}")["body"])
    assert [t["line"] for t in body["targets"]] == [12, 14, 16]
    open_ones = {(i["line"], i["kind"], i["cause"]) for i in body["incidents"] if i["open"]}
    assert open_ones == {(14, "DOWN", "connector_down"), (16, "BLIND", "auth_lost")}
    day = {u["window"]: u for u in body["uptime"]}["24h"]
    # Three targets' days: line 14 down 5 h, line 16 unseen 3 h; the rest up.
    assert day["down_seconds"] == 5 * 3600
    assert day["blind_seconds"] == 3 * 3600
    assert day["percent"] == round(100 * (72 - 3 - 5) / (72 - 3), 3)


def test_history_of_nothing_watched_is_404_and_a_bad_portal_400(
    api: ModuleType, world: datetime
) -> None:
    assert call(api, "/history/nobody.bitrix24.com/myconnector/1")["statusCode"] == 404
    assert call(api, "/history/nobody.bitrix24.com")["statusCode"] == 404
    bad = call(api, "/history/not a domain")
    assert bad["statusCode"] == 400 and json.loads(bad["body"])["error"] == "BAD_TARGET"


def test_the_page_is_html_with_a_strict_policy_and_escapes_what_portals_said(
    api: ModuleType, world: datetime
) -> None:
    answer = call(api, "/")
    assert answer["statusCode"] == 200
    headers = answer["headers"]
    assert headers["Content-Type"].startswith("text/html")
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert "unsafe-inline" not in policy
    page = answer["body"]
    (style,) = re.findall(r"<style>(.*?)</style>", page, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in policy  # the browser applies the page's style
    assert "<script" not in page
    assert "&lt;script&gt;document.title=&#x27;owned&#x27;&lt;/script&gt;" in page
    assert "token" not in page.lower().replace("token revoked", "")


def test_filters_work_on_the_server(api: ModuleType, world: datetime) -> None:
    down = call(api, "/", state="down")["body"]
    assert re.findall(r'data-state="(\w+)"', down) == ["DOWN", "DOWN"]
    one = call(api, "/", portal=HOSTILE)["body"]
    assert re.findall(r'data-portal="([^"]+)"', one) == [HOSTILE]
    assert "Incidents in the last 30 days" in one
    assert call(api, "/", state="sideways")["statusCode"] == 400


# ---- a real browser --------------------------------------------------------------------------
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed here (apt-get install chromium); CI runs this")
    return found


def browse(url: str, *args: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                f"--user-data-dir={profile}",
                *args,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture
def served(api: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiServer]:
    # Client labels as the registry gives them, one of them hostile.
    labels = {
        PORTAL: {"client": "Acme Corp", "owner": "ops@acme.test", "runbook": RUNBOOK},
        HOSTILE: {"client": SCRIPT, "runbook": "javascript:document.title='owned'"},
    }

    def labels_of(portals: list[str]) -> dict[str, dict[str, str]]:
        return {p: labels[p] for p in portals if p in labels}

    monkeypatch.setattr(
        api, "status_page", lambda: StatusPageService(api.service(), api.history(), labels_of)
    )
    with ApiServer(api.lambda_handler) as server:
        yield server


@pytest.mark.browser
def test_a_browser_shows_the_page_filtered_and_escaped(served: ApiServer, world: datetime) -> None:
    dom = browse(f"{served.url}/?state=DOWN", "--dump-dom")
    assert "<title>Connector monitor: status</title>" in dom  # no script ran to change it
    assert re.findall(r'data-state="(\w+)"', dom) == ["DOWN", "DOWN"]
    assert "Acme Corp" in dom
    assert "<script" not in dom and "&lt;script&gt;" in dom
    # A runbook is a link; a label that is not an https URL is only text.
    assert '<a href="https://wiki.acme.test/runbook?a=1&amp;b=&quot;x" rel="noopener' in dom
    assert 'href="javascript' not in dom and "javascript:document.title" in dom
    client = browse(f"{served.url}/?portal={PORTAL}", "--dump-dom")
    assert re.findall(r'data-portal="([^"]+)"', client) == [PORTAL]
    assert re.findall(r'data-state="(\w+)"', client) == ["UP", "DOWN", "UNKNOWN"]

    SCREENSHOT.parent.mkdir(exist_ok=True)
    for url, picture in (
        (f"{served.url}/", SCREENSHOT),
        (f"{served.url}/?portal={PORTAL}", CLIENT_SCREENSHOT),
    ):
        picture.unlink(missing_ok=True)
        browse(url, f"--screenshot={picture}", "--window-size=1280,900")
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
