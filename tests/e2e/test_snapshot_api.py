"""The Snapshot API end to end: HTTP API events in, the handler, DynamoDB (moto) behind it.

The state is written the way the checker writes it (`StateRepository.save` / `save_run`), the
table is created from template.yaml, and requests are the real-shaped events from events/.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import boto3
import pytest
import requests

from connector_monitor.aws.records import status_to_item
from connector_monitor.aws.repository import StateRepository
from connector_monitor.domain.results import Cause, State
from connector_monitor.domain.runs import PortalRun, RunRecord
from connector_monitor.domain.targets import Target
from connector_monitor.domain.transitions import TargetStatus
from local.api_server import ApiServer
from tests.e2e.conftest import API_TABLE, REGION
from tests.events import LambdaContext, http_event, load_event, load_handler

TABLE = API_TABLE
PORTAL = "example.bitrix24.com"
OTHER = "other.bitrix24.com"
STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
TARGET_FIELDS = [
    "portal",
    "connector",
    "line",
    "state",
    "status",
    "configured",
    "error",
    "since",
    "checked_at",
    "detail",
    "line_name",  # issue 20: extended, nothing removed
    "labels",
]
LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024


@pytest.fixture
def api(repository: StateRepository) -> ModuleType:
    """The snapshot handler, freshly imported (its settings and repository not built yet)."""
    return load_handler("snapshot_api")


Answer = tuple[int, dict[str, str], Any]


def call(api: ModuleType, event: dict[str, Any]) -> Answer:
    response = api.lambda_handler(event, LambdaContext())
    assert response["headers"]["Content-Type"] == "application/json"
    return response["statusCode"], response["headers"], json.loads(response["body"])


def get(api: ModuleType, path: str, **query: str) -> Answer:
    base = "snapshot_get" if path == "/snapshot" else "snapshot_target_get"
    if path == "/health":
        base = "health_get"
    return call(api, http_event(base, path=path, query=query))


def status(
    line: int,
    state: State = State.UP,
    *,
    portal: str = PORTAL,
    connector: str = "myconnector",
    checked_at: datetime | None = None,
    detail: str | None = None,
) -> TargetStatus:
    now = datetime.now(UTC)
    seen = state is not State.UNKNOWN
    return TargetStatus(
        Target(portal, connector, line),
        state,
        since=now - timedelta(hours=2),
        checked_at=checked_at or now - timedelta(minutes=1),
        status=(state is State.UP) if seen else None,
        configured=True if seen else None,
        error=(state is State.DOWN) if seen else None,
        cause=None if seen else Cause.PORTAL_FAILING,
        detail=detail,
    )


def finished_run(age: timedelta = timedelta(seconds=20), *portals: str) -> RunRecord:
    finished = datetime.now(UTC) - age
    return RunRecord(
        "run-1",
        finished - timedelta(seconds=2),
        finished,
        {"targets": 3, "up": 1, "down": 1, "unknown": 1, "http_requests": 2},
        {p: PortalRun(finished - timedelta(seconds=1), 1) for p in portals or (PORTAL,)},
    )


def fleet(repository: StateRepository) -> list[TargetStatus]:
    """Three targets of one portal, one in each state, and a fresh run."""
    statuses = [
        status(12),
        status(14, State.DOWN, detail="ERROR=true: call imconnector.activate"),
        status(16, State.UNKNOWN, detail="portal answered 502 Bad Gateway"),
    ]
    repository.save(statuses, claims={})
    repository.save_run(finished_run())
    return statuses


# ---- GET /snapshot ----------------------------------------------------------------------------
def test_snapshot_answers_the_contract(api: ModuleType, repository: StateRepository) -> None:
    fleet(repository)
    run = repository.load_run()
    assert run is not None

    code, _, body = call(api, load_event("snapshot_get"))

    assert code == 200
    assert list(body) == [
        "generated_at",
        "last_run_at",
        "stale",
        "summary",
        "targets",
        "next_cursor",
    ]
    assert STAMP.match(body["generated_at"])
    assert body["last_run_at"] == run.finished_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert body["stale"] is False
    assert body["summary"] == {"total": 3, "up": 1, "down": 1, "unknown": 1}
    assert body["next_cursor"] is None
    assert [list(t) for t in body["targets"]] == [TARGET_FIELDS] * 3
    up, down, unknown = body["targets"]
    assert (up["portal"], up["connector"], up["line"]) == (PORTAL, "myconnector", 12)
    assert (up["state"], up["status"], up["configured"], up["error"]) == ("UP", True, True, False)
    assert up["detail"] is None
    assert (down["state"], down["status"], down["error"]) == ("DOWN", False, True)
    assert "imconnector.activate" in down["detail"]
    assert (unknown["state"], unknown["status"], unknown["configured"]) == ("UNKNOWN", None, None)
    assert unknown["detail"] == "portal answered 502 Bad Gateway"
    # the checker stores only changed statuses: the portal's run time is the freshest
    portal_checked = run.portals[PORTAL].checked_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert {t["checked_at"] for t in body["targets"]} == {portal_checked}
    assert all(STAMP.match(t["since"]) for t in body["targets"])


def test_snapshot_is_stale_after_two_missed_runs_and_before_the_first(
    api: ModuleType, repository: StateRepository
) -> None:
    repository.save([status(12)], claims={})
    assert get(api, "/snapshot")[2]["stale"] is True  # no run yet
    assert get(api, "/snapshot")[2]["last_run_at"] is None

    repository.save_run(finished_run(timedelta(minutes=9)))  # limit: 2 x 5 minutes
    assert get(api, "/snapshot")[2]["stale"] is False

    repository.save_run(finished_run(timedelta(minutes=11)))
    code, _, body = get(api, "/snapshot")
    assert (code, body["stale"]) == (200, True)  # still served, flagged


def test_stale_after_seconds_overrides_the_schedule(
    monkeypatch: pytest.MonkeyPatch, repository: StateRepository
) -> None:
    monkeypatch.setenv("STALE_AFTER_SECONDS", "60")
    api = load_handler("snapshot_api")
    repository.save_run(finished_run(timedelta(seconds=90)))

    assert get(api, "/snapshot")[2]["stale"] is True


def test_snapshot_filters_by_state_in_any_case_and_by_portal(
    api: ModuleType, repository: StateRepository
) -> None:
    fleet(repository)
    repository.save([status(3, State.DOWN, portal=OTHER)], claims={})

    code, _, down = get(api, "/snapshot", state="down")
    assert code == 200
    assert [(t["portal"], t["line"]) for t in down["targets"]] == [(PORTAL, 14), (OTHER, 3)]
    assert down["summary"] == {"total": 2, "up": 0, "down": 2, "unknown": 0}

    _, _, other = get(api, "/snapshot", portal="Other.Bitrix24.com")
    assert [(t["portal"], t["line"]) for t in other["targets"]] == [(OTHER, 3)]

    _, _, both = get(api, "/snapshot", portal=PORTAL, state="UNKNOWN")
    assert [t["line"] for t in both["targets"]] == [16]


@pytest.mark.parametrize(
    ("query", "code", "message"),
    [
        ({"state": "BROKEN"}, "BAD_FILTER", "state must be one of UP, DOWN, UNKNOWN"),
        ({"portal": "https://x.bitrix24.com"}, "BAD_FILTER", "not a portal domain"),
        ({"limit": "0"}, "BAD_FILTER", "query parameter 'limit'"),
        ({"limit": "1001"}, "BAD_FILTER", "query parameter 'limit'"),
        ({"limit": "ten"}, "BAD_FILTER", "query parameter 'limit'"),
        ({"cursor": "bm90IGEga2V5"}, "BAD_CURSOR", "cursor is not valid"),
        ({"cursor": "%%%"}, "BAD_CURSOR", "cursor is not valid"),
    ],
)
def test_bad_query_parameters_are_400_in_the_contracts_shape(
    api: ModuleType, repository: StateRepository, query: dict[str, str], code: str, message: str
) -> None:
    status_code, _, body = get(api, "/snapshot", **query)

    assert status_code == 400
    assert set(body) == {"error", "message"}
    assert body["error"] == code
    assert message in body["message"]


# ---- GET /snapshot/{portal}/{connector}/{line} ------------------------------------------------
def test_one_target_answers_the_same_object_as_the_list(
    api: ModuleType, repository: StateRepository
) -> None:
    fleet(repository)
    listed = {t["line"]: t for t in get(api, "/snapshot")[2]["targets"]}

    code, _, body = call(api, load_event("snapshot_target_get"))  # .../myconnector/12

    assert code == 200
    assert body == listed[12]
    assert get(api, f"/snapshot/{PORTAL}/MyConnector/14")[2] == listed[14]


def test_a_target_nobody_watches_is_404(api: ModuleType, repository: StateRepository) -> None:
    fleet(repository)

    code, _, body = get(api, f"/snapshot/{PORTAL}/myconnector/99")

    assert code == 404
    assert body["error"] == "NOT_FOUND"
    assert f"{PORTAL}/myconnector/99" in body["message"]


@pytest.mark.parametrize(
    "path",
    [
        f"/snapshot/{PORTAL}/myconnector/abc",
        f"/snapshot/{PORTAL}/myconnector/0",
        f"/snapshot/{PORTAL}/myconnector/-3",
        f"/snapshot/{PORTAL}/myconnector/1.5",
        "/snapshot/bad_portal!/myconnector/12",
        f"/snapshot/{PORTAL}/my%20connector/12",
    ],
)
def test_a_path_that_names_no_target_is_400_bad_target(
    api: ModuleType, repository: StateRepository, path: str
) -> None:
    code, _, body = get(api, path)

    assert (code, body["error"]) == (400, "BAD_TARGET")
    assert body["message"]


# ---- GET /health ------------------------------------------------------------------------------
def test_health_is_ok_while_runs_finish_in_time(
    api: ModuleType, repository: StateRepository
) -> None:
    fleet(repository)

    code, _, body = call(api, load_event("health_get"))

    assert code == 200
    assert body["status"] == "ok"
    assert body["stale"] is False
    assert STAMP.match(body["last_run_at"])
    assert body["targets"] == {"total": 3, "up": 1, "down": 1, "unknown": 1}
    assert body["unknown_share"] == 0.3333  # one of three: the monitor still sees most


def test_health_is_503_before_the_first_run_and_after_a_late_one(
    api: ModuleType, repository: StateRepository
) -> None:
    code, _, body = get(api, "/health")
    assert (code, body["error"]) == (503, "STALE")
    assert "no check run" in body["message"]

    repository.save_run(finished_run(timedelta(minutes=30)))
    code, _, body = get(api, "/health")
    assert (code, body["error"]) == (503, "STALE")
    assert re.search(r"last run at \S+Z is older than 600 seconds", body["message"])


def test_health_reads_one_item_and_nothing_else(
    api: ModuleType, repository: StateRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet(repository)
    operations = count_operations(api, monkeypatch)

    assert get(api, "/health")[0] == 200
    assert operations == ["GetItem"]


# ---- routes, methods, failures ----------------------------------------------------------------
def test_an_unknown_route_is_a_json_404(api: ModuleType, repository: StateRepository) -> None:
    for path in ("/nothing", "/snapshot/", f"/snapshot/{PORTAL}/myconnector"):
        code, _, body = get(api, path)
        assert (code, body["error"]) == (404, "NOT_FOUND"), path


@pytest.mark.parametrize(
    ("base", "path"),
    [
        ("snapshot_get", "/snapshot"),
        ("snapshot_target_get", f"/snapshot/{PORTAL}/myconnector/12"),
        ("health_get", "/health"),
    ],
)
def test_another_method_is_405_naming_the_allowed_one(
    api: ModuleType, repository: StateRepository, base: str, path: str
) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        code, headers, body = call(api, http_event(base, path=path, method=method))
        assert (code, body["error"]) == (405, "METHOD_NOT_ALLOWED")
        assert headers["Allow"] == "GET"


def test_an_unexpected_error_is_500_with_the_details_only_in_the_log(
    api: ModuleType,
    repository: StateRepository,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> None:
        raise RuntimeError("the flux capacitor at 0xdeadbeef")

    monkeypatch.setattr(api, "service", broken)

    code, _, body = get(api, "/snapshot")

    assert (code, body) == (500, {"error": "INTERNAL", "message": "internal error"})
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.getMessage() == "unexpected error"
    assert "flux capacitor" in caplog.text  # the traceback, in the log only


def test_missing_settings_are_500_and_named_in_the_log(
    api: ModuleType,
    repository: StateRepository,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv("TABLE_NAME")

    code, _, body = get(api, "/snapshot")

    assert (code, body["error"]) == (500, "INTERNAL")
    assert "TABLE_NAME" in caplog.text
    assert "TABLE_NAME" not in body["message"]


def test_an_unreadable_table_is_503_unavailable(
    monkeypatch: pytest.MonkeyPatch, repository: StateRepository
) -> None:
    monkeypatch.setenv("TABLE_NAME", "no-such-table")
    api = load_handler("snapshot_api")

    for path in ("/snapshot", "/health", f"/snapshot/{PORTAL}/myconnector/12"):
        code, _, body = get(api, path)
        assert (code, body["error"]) == (503, "UNAVAILABLE"), path
        assert "no-such-table" not in body["message"]


# ---- secrets never leave --------------------------------------------------------------------
def test_no_answer_contains_a_token_or_client_secret(
    api: ModuleType,
    repository: StateRepository,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    secrets = {
        "client_secret": "CLIENT-SECRET-7f3a9c",
        "access_token": "ACCESS-TOKEN-51d2e8",
        "refresh_token": "REFRESH-TOKEN-c40b17",
    }
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="monitor/tokens",
        SecretString=json.dumps({"portals": {PORTAL: {"client_id": "local.1", **secrets}}}),
    )
    fleet(repository)
    client = boto3.client("dynamodb", region_name=REGION)
    for key in ({"pk": "STATE", "sk": f"{PORTAL}/myconnector/12"}, {"pk": "RUN", "sk": "LATEST"}):
        client.update_item(
            TableName=TABLE,
            Key={k: {"S": v} for k, v in key.items()},
            UpdateExpression="SET access_token = :a, refresh_token = :r, client_secret = :c",
            ExpressionAttributeValues={
                ":a": {"S": secrets["access_token"]},
                ":r": {"S": secrets["refresh_token"]},
                ":c": {"S": secrets["client_secret"]},
            },
        )

    bodies = [
        api.lambda_handler(http_event(base, path=path, query=query), LambdaContext())["body"]
        for base, path, query in [
            ("snapshot_get", "/snapshot", {}),
            ("snapshot_get", "/snapshot", {"state": "up", "limit": "1"}),
            ("snapshot_target_get", f"/snapshot/{PORTAL}/myconnector/12", {}),
            ("health_get", "/health", {}),
            ("snapshot_get", "/snapshot", {"state": "nope"}),
            ("snapshot_get", "/nothing", {}),
        ]
    ]

    assert '"line":12' in bodies[2]  # the item carrying the tokens was served
    log = capsys.readouterr().out + caplog.text
    for value in secrets.values():
        assert not any(value in body for body in bodies)
        assert value not in log


# ---- a big fleet ------------------------------------------------------------------------------
def count_operations(api: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Have the handler use a DynamoDB client whose every call is recorded by operation."""
    operations: list[str] = []
    client = boto3.client("dynamodb", region_name=REGION)

    def record(model: Any, **_: Any) -> None:
        operations.append(model.name)

    client.meta.events.register("before-call.dynamodb.*", record)
    counted = StateRepository(TABLE, client=client)
    monkeypatch.setattr(api, "repository", lambda: counted)
    api.service.cache_clear()
    return operations


def store_many(statuses: list[TargetStatus]) -> None:
    """Write statuses in the repository's own item layout (`status_to_item`), by batch.

    `StateRepository.save` would do, but moto's transactions get slower with every item already
    in the table (minutes for thousands); the items written here are byte for byte the same.
    """
    table = boto3.resource("dynamodb", region_name=REGION).Table(TABLE)
    with table.batch_writer() as batch:
        for item in map(status_to_item, statuses):
            batch.put_item(Item=item)


def invoke_size(response: dict[str, Any]) -> int:
    """Bytes of the invoke response as the python3.13 runtime sends it (Unicode unescaped)."""
    return len(json.dumps(response, ensure_ascii=False).encode())


@pytest.mark.slow
def test_a_fleet_of_3000_is_paged_by_query_never_by_scan(
    api: ModuleType, repository: StateRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    portals = [f"portal{n}.bitrix24.com" for n in range(30)]
    statuses = [status(line, portal=p) for p in portals for line in range(1, 101)]
    statuses[1234] = status(35, State.DOWN, portal=portals[12])  # was UP, the same target
    store_many(statuses)
    repository.save_run(finished_run(timedelta(seconds=5), *portals))
    operations = count_operations(api, monkeypatch)

    keys: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {"cursor": cursor} if cursor else {}
        response = api.lambda_handler(http_event("snapshot_get", query=query), LambdaContext())
        assert response["statusCode"] == 200
        assert invoke_size(response) < LAMBDA_RESPONSE_LIMIT
        body = json.loads(response["body"])
        pages += 1
        assert len(body["targets"]) <= 1000
        # every page counts the whole fleet, not itself
        assert body["summary"] == {"total": 3000, "up": 2999, "down": 1, "unknown": 0}
        keys += [f"{t['portal']}/{t['connector']}/{t['line']}" for t in body["targets"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert pages == 3
    assert keys == sorted(s.subject.key for s in statuses)
    assert "Scan" not in operations
    assert set(operations) == {"Query", "GetItem"}
    # each page: one read of its targets and one count of the whole selection (one query
    # while the fleet's items fit DynamoDB's 1 MB a read)
    assert operations.count("Query") == 6

    broken = statuses[1234].subject
    assert isinstance(broken, Target)
    _, _, down = get(api, "/snapshot", state="DOWN", portal=broken.portal)
    assert [t["line"] for t in down["targets"]] == [broken.line]
    assert "Scan" not in operations


@pytest.mark.slow
def test_a_page_of_1000_long_details_stays_under_the_6_mb_response_limit(
    api: ModuleType, repository: StateRepository
) -> None:
    # Characters that cost the most once escaped in the body and again in the invoke response.
    worst = ('\x01\x1f\U0001f600"\\\x02\x03' * 400)[:2000]
    portal = "a-rather-long-portal-name-for-a-customer-1234567890.bitrix24.com"
    store_many(
        [
            status(line, State.DOWN, portal=portal, connector="c" * 64, detail=worst)
            for line in range(1, 1001)
        ]
    )

    response = api.lambda_handler(http_event("snapshot_get", query={}), LambdaContext())

    body = json.loads(response["body"])
    assert len(body["targets"]) == 1000
    assert all(t["detail"] == worst[:499] + "…" for t in body["targets"])
    assert invoke_size(response) < LAMBDA_RESPONSE_LIMIT


# ---- events and the local server --------------------------------------------------------------
def test_the_sample_events_carry_an_iam_caller() -> None:
    for name in ("snapshot_get", "snapshot_target_get", "health_get"):
        event = load_event(name)
        assert event["version"] == "2.0"
        assert event["requestContext"]["authorizer"]["iam"]["userArn"].startswith("arn:aws:iam::")
        assert event["routeKey"] == f"GET {event['routeKey'].split(' ', 1)[1]}"


@pytest.fixture
def served(api: ModuleType) -> Iterator[ApiServer]:
    with ApiServer(api.lambda_handler) as server:
        yield server


def test_the_local_server_serves_the_handler_over_http(
    served: ApiServer, repository: StateRepository
) -> None:
    fleet(repository)
    http: Callable[..., requests.Response] = requests.request

    listing = http("GET", f"{served.url}/snapshot?state=Down", timeout=5)
    assert listing.status_code == 200
    assert listing.headers["Content-Type"] == "application/json"
    assert [t["line"] for t in listing.json()["targets"]] == [14]

    one = http("GET", f"{served.url}/snapshot/{PORTAL}/myconnector/12", timeout=5)
    assert (one.status_code, one.json()["state"]) == (200, "UP")

    assert http("GET", f"{served.url}/health", timeout=5).json()["status"] == "ok"
    refused = http("POST", f"{served.url}/snapshot", data=b"{}", timeout=5)
    assert (refused.status_code, refused.headers["Allow"]) == (405, "GET")
    assert http("GET", f"{served.url}/nowhere", timeout=5).json()["error"] == "NOT_FOUND"
    assert http("GET", f"{served.url}/snapshot?limit=0", timeout=5).status_code == 400


def test_the_local_server_answers_500_like_api_gateway_when_the_handler_fails() -> None:
    def failing(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    with ApiServer(failing) as server:
        answer = requests.get(f"{server.url}/snapshot", timeout=5)

    assert answer.status_code == 500
    assert answer.json() == {"message": "Internal Server Error"}
