"""The snapshot service on an in-memory reader: views, staleness, filters, cursors, pages."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from connector_monitor.api.errors import BadCursor, BadFilter, BadTarget, NotFound, Stale
from connector_monitor.api.paging import MAX_LIMIT, encode_cursor
from connector_monitor.api.snapshot_service import (
    MAX_QUERIES_PER_PAGE,
    SnapshotQuery,
    SnapshotService,
    parse_query,
    parse_target,
)
from connector_monitor.domain.labels import PortalLabels
from connector_monitor.domain.results import Cause, State
from connector_monitor.domain.runs import PortalRun, RunRecord
from connector_monitor.domain.targets import Target
from connector_monitor.domain.text import DETAIL_LIMIT
from connector_monitor.domain.transitions import TargetStatus

NOW = datetime(2026, 11, 24, 12, 0, 5, 123456, tzinfo=UTC)
PORTAL = "example.bitrix24.com"
STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


@dataclass
class FakeReader:
    """The repository's read side, with DynamoDB's paging: `Limit` items at most (fewer when
    `per_read` imitates the 1 MB cap), and a last key whenever a read stopped early."""

    statuses: dict[str, TargetStatus] = field(default_factory=dict)
    run: RunRecord | None = None
    per_read: int = 10_000
    reads: list[tuple[str | None, int, str | None]] = field(default_factory=list)
    counted: list[str | None] = field(default_factory=list)  # count_states' portals

    def add(self, *statuses: TargetStatus) -> None:
        self.statuses.update({s.subject.key: s for s in statuses})

    def page_targets(
        self, *, portal: str | None = None, limit: int = 500, after: str | None = None
    ) -> tuple[list[TargetStatus], str | None]:
        self.reads.append((portal, limit, after))
        keys = sorted(
            k
            for k in self.statuses
            if (portal is None or k.startswith(f"{portal}/")) and (after is None or k > after)
        )
        taken = keys[: min(limit, self.per_read)]
        stopped_early = len(taken) == limit or len(taken) < len(keys)
        return [self.statuses[k] for k in taken], (taken[-1] if taken and stopped_early else None)

    def get_target(self, target: Target) -> TargetStatus | None:
        return self.statuses.get(target.key)

    def load_run(self) -> RunRecord | None:
        return self.run

    def count_states(self, *, portal: str | None = None) -> dict[State, int]:
        self.counted.append(portal)
        counts: dict[State, int] = {}
        for key, found in self.statuses.items():
            if portal is None or key.startswith(f"{portal}/"):
                counts[found.state] = counts.get(found.state, 0) + 1
        return counts


def status(
    line: int,
    state: State = State.UP,
    *,
    portal: str = PORTAL,
    checked_at: datetime = NOW - timedelta(minutes=1),
    detail: str | None = None,
) -> TargetStatus:
    seen = state is not State.UNKNOWN
    return TargetStatus(
        Target(portal, "myconnector", line),
        state,
        since=NOW - timedelta(hours=3),
        checked_at=checked_at,
        status=(state is State.UP) if seen else None,
        configured=True if seen else None,
        error=False if seen else None,
        cause=None if seen else Cause.PORTAL_FAILING,
        detail=detail,
        pending=(),
    )


def run(finished: datetime = NOW - timedelta(seconds=4), **portals: datetime) -> RunRecord:
    return RunRecord(
        "run-1",
        finished - timedelta(seconds=3),
        finished,
        {"targets": 3, "up": 1, "down": 1, "unknown": 1},
        {name.replace("_", "."): PortalRun(at) for name, at in portals.items()},
    )


def service(reader: FakeReader, stale_after: timedelta = timedelta(minutes=10)) -> SnapshotService:
    return SnapshotService(reader, stale_after)


def walk(svc: SnapshotService, **params: object) -> list[list[str]]:
    """Every page of a selection, as target keys."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        query = parse_query(cursor=cursor, **params)  # type: ignore[arg-type]
        view = svc.snapshot(query, NOW)
        pages.append([f"{t.portal}/{t.connector}/{t.line}" for t in view.targets])
        cursor = view.next_cursor
        if cursor is None:
            return pages
        assert len(pages) < 1000


# ---- the view ---------------------------------------------------------------------------------
def test_a_target_shows_its_state_flags_and_times_to_the_second() -> None:
    reader = FakeReader(run=run(example_bitrix24_com=NOW - timedelta(seconds=5)))
    reader.add(status(12, State.DOWN, detail="ERROR=true: reactivate"))

    view = service(reader).snapshot(SnapshotQuery(), NOW)

    assert view.model_dump() == {
        "generated_at": "2026-11-24T12:00:05Z",
        "last_run_at": "2026-11-24T12:00:01Z",
        "stale": False,
        "summary": {"total": 1, "up": 0, "down": 1, "unknown": 0},
        "targets": [
            {
                "portal": PORTAL,
                "connector": "myconnector",
                "line": 12,
                "state": "DOWN",
                "status": False,
                "configured": True,
                "error": False,
                "since": "2026-11-24T09:00:05Z",
                "checked_at": "2026-11-24T12:00:00Z",  # the portal's run, fresher than the item
                "detail": "ERROR=true: reactivate",
                "line_name": None,  # no inventory read yet
                "labels": None,  # none set in the registry
            }
        ],
        "next_cursor": None,
    }


class FakeLabels:
    def __init__(self, labels: dict[str, PortalLabels]) -> None:
        self.labels = labels
        self.asked: list[list[str]] = []

    def labels_of(self, portals: list[str]) -> dict[str, PortalLabels]:
        self.asked.append(portals)
        return {p: self.labels[p] for p in portals if p in self.labels}


def test_targets_carry_their_line_s_name_and_their_client_s_labels() -> None:
    reader = FakeReader(run=run())
    named = replace(status(12), line_name="Support")
    reader.add(named, status(1, portal="other.bitrix24.com"))
    labels = FakeLabels({PORTAL: PortalLabels(client="Acme", runbook="https://wiki/acme")})

    view = SnapshotService(reader, timedelta(minutes=10), labels).snapshot(SnapshotQuery(), NOW)

    by_portal = {t.portal: t.model_dump() for t in view.targets}
    assert by_portal[PORTAL]["line_name"] == "Support"
    assert by_portal[PORTAL]["labels"] == {
        "client": "Acme",
        "owner": None,
        "tier": None,
        "runbook": "https://wiki/acme",
    }
    assert by_portal["other.bitrix24.com"]["labels"] is None
    assert labels.asked == [sorted([PORTAL, "other.bitrix24.com"])]  # one read per page


def test_checked_at_is_the_later_of_the_status_and_its_portals_run() -> None:
    newer = status(1, checked_at=NOW - timedelta(seconds=2))
    reader = FakeReader(run=run(example_bitrix24_com=NOW - timedelta(minutes=5)))
    reader.add(newer, status(2, portal="other.bitrix24.com"))

    targets = service(reader).snapshot(SnapshotQuery(), NOW).targets

    by_portal = {t.portal: t.checked_at for t in targets}
    assert by_portal[PORTAL] == "2026-11-24T12:00:03Z"  # the status itself is newer
    assert by_portal["other.bitrix24.com"] == "2026-11-24T11:59:05Z"  # no run entry: its own


def test_an_unknown_target_has_null_flags_and_a_long_detail_is_cut() -> None:
    reader = FakeReader(run=run())
    reader.add(status(7, State.UNKNOWN, detail="x" * 5000))

    (target,) = service(reader).snapshot(SnapshotQuery(), NOW).targets

    assert (target.status, target.configured, target.error) == (None, None, None)
    assert target.detail == "x" * (DETAIL_LIMIT - 1) + "…"
    assert len(target.detail) == DETAIL_LIMIT
    assert STAMP.match(target.since) and STAMP.match(target.checked_at)


def test_summary_counts_every_state_of_the_answer() -> None:
    reader = FakeReader(run=run())
    reader.add(status(1), status(2), status(3, State.DOWN), status(4, State.UNKNOWN))

    summary = service(reader).snapshot(SnapshotQuery(), NOW).summary

    assert summary.model_dump() == {"total": 4, "up": 2, "down": 1, "unknown": 1}


# ---- staleness ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("age", "stale"),
    [(timedelta(seconds=30), False), (timedelta(minutes=10), False), (timedelta(minutes=11), True)],
)
def test_a_snapshot_is_stale_once_the_last_run_is_older_than_the_limit(
    age: timedelta, stale: bool
) -> None:
    reader = FakeReader(run=run(NOW - age))

    assert service(reader).snapshot(SnapshotQuery(), NOW).stale is stale


def test_before_the_first_run_the_snapshot_is_stale_and_has_no_run_time() -> None:
    view = service(FakeReader()).snapshot(SnapshotQuery(), NOW)

    assert (view.stale, view.last_run_at, view.targets) == (True, None, [])


def test_health_is_ok_with_the_last_runs_fleet_counts() -> None:
    health = service(FakeReader(run=run())).health(NOW)

    assert health.model_dump() == {
        "status": "ok",
        "last_run_at": "2026-11-24T12:00:01Z",
        "stale": False,
        "targets": {"total": 3, "up": 1, "down": 1, "unknown": 1},
        "unknown_share": 0.3333,
    }


@pytest.mark.parametrize(
    ("counts", "status", "share"),
    [
        ({"targets": 4, "up": 4, "unknown": 0}, "ok", 0.0),
        ({"targets": 4, "up": 3, "unknown": 1}, "ok", 0.25),  # one blind portal is its own
        ({"targets": 4, "up": 2, "unknown": 2}, "degraded", 0.5),
        ({"targets": 4, "down": 1, "unknown": 3}, "degraded", 0.75),
        ({"targets": 4, "unknown": 4}, "blind", 1.0),  # the runs finish and see nothing
        ({"targets": 0}, "ok", 0.0),
    ],
)
def test_health_says_how_much_of_the_fleet_the_monitor_cannot_see(
    counts: dict[str, int], status: str, share: float
) -> None:
    record = run()
    record = RunRecord(record.run_id, record.started_at, record.finished_at, counts, {})

    health = service(FakeReader(run=record)).health(NOW)

    assert (health.status, health.unknown_share) == (status, share)
    assert health.targets.unknown == counts.get("unknown", 0)


def test_every_page_counts_the_whole_selection() -> None:
    reader = FakeReader(run=run())
    reader.add(*[status(n, State.DOWN if n % 4 == 0 else State.UP) for n in range(1, 11)])
    reader.add(status(1, State.UNKNOWN, portal="other.bitrix24.com"))
    svc = service(reader)

    first = svc.snapshot(parse_query(limit=3), NOW)
    last = svc.snapshot(parse_query(limit=3, cursor=encode_cursor(f"{PORTAL}/myconnector/9")), NOW)
    down = svc.snapshot(parse_query(limit=1, state="DOWN"), NOW)
    mine = svc.snapshot(parse_query(limit=3, portal=PORTAL), NOW)

    everything = {"total": 11, "up": 8, "down": 2, "unknown": 1}
    assert len(first.targets) == 3 and first.summary.model_dump() == everything
    assert last.next_cursor is None and last.summary.model_dump() == everything
    assert down.summary.model_dump() == {"total": 2, "up": 0, "down": 2, "unknown": 0}
    assert mine.summary.model_dump() == {"total": 10, "up": 8, "down": 2, "unknown": 0}


def test_an_answer_holding_the_whole_selection_is_counted_without_another_read() -> None:
    reader = FakeReader(run=run())
    reader.add(status(1), status(2, State.DOWN))

    view = service(reader).snapshot(SnapshotQuery(), NOW)

    assert view.summary.total == 2
    assert reader.counted == []


def test_health_is_stale_without_a_run_or_after_a_late_one() -> None:
    with pytest.raises(Stale, match="no check run"):
        service(FakeReader()).health(NOW)
    with pytest.raises(Stale, match=r"last run at 2026-11-24T11:30:05Z is older than 600 seconds"):
        service(FakeReader(run=run(NOW - timedelta(minutes=30)))).health(NOW)


# ---- one target --------------------------------------------------------------------------------
def test_one_target_by_its_path_parts_connector_in_any_case() -> None:
    reader = FakeReader(run=run())
    reader.add(status(12, State.DOWN))

    view = service(reader).target(parse_target("Example.Bitrix24.com", "MyConnector", "12"))

    assert (view.portal, view.connector, view.line, view.state) == (
        PORTAL,
        "myconnector",
        12,
        "DOWN",
    )


def test_a_target_nobody_watches_is_not_found() -> None:
    with pytest.raises(NotFound, match=f"{PORTAL}/myconnector/99"):
        service(FakeReader()).target(parse_target(PORTAL, "myconnector", 99))


@pytest.mark.parametrize(
    ("portal", "connector", "line", "reason"),
    [
        (PORTAL, "myconnector", "abc", "not a whole number"),
        (PORTAL, "myconnector", "0", "positive"),
        (PORTAL, "myconnector", "-3", "not a whole number"),
        ("bad_portal!", "myconnector", "1", "not a portal domain"),
        (PORTAL, "my connector", "1", "not a connector id"),
    ],
)
def test_a_path_that_names_no_target_is_a_bad_target(
    portal: str, connector: str, line: str, reason: str
) -> None:
    with pytest.raises(BadTarget, match=reason):
        parse_target(portal, connector, line)


# ---- filters -----------------------------------------------------------------------------------
def test_state_filter_is_case_insensitive_and_keeps_only_that_state() -> None:
    reader = FakeReader(run=run())
    reader.add(status(1), status(2, State.DOWN), status(3, State.UNKNOWN), status(4, State.DOWN))

    view = service(reader).snapshot(parse_query(state="down"), NOW)

    assert [t.line for t in view.targets] == [2, 4]
    assert view.summary.model_dump() == {"total": 2, "up": 0, "down": 2, "unknown": 0}


def test_portal_filter_reads_only_that_portal_and_normalises_it() -> None:
    reader = FakeReader(run=run())
    reader.add(status(1), status(2, portal="other.bitrix24.com"))

    view = service(reader).snapshot(parse_query(portal="Other.Bitrix24.com."), NOW)

    assert [t.portal for t in view.targets] == ["other.bitrix24.com"]
    assert {portal for portal, _, _ in reader.reads} == {"other.bitrix24.com"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"state": "broken"}, "state must be one of UP, DOWN, UNKNOWN"),
        ({"state": ""}, "state must be one of"),
        ({"portal": "https://example.bitrix24.com"}, "portal: .* is not a portal domain"),
        ({"portal": ""}, "portal: the portal domain is empty"),
        ({"limit": 0}, "limit must be between 1 and 1000"),
        ({"limit": MAX_LIMIT + 1}, "limit must be between 1 and 1000"),
    ],
)
def test_bad_filters_are_refused_with_the_reason(params: dict[str, object], message: str) -> None:
    with pytest.raises(BadFilter, match=message):
        parse_query(**params)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "cursor",
    [
        "!!not base64!!",
        "gA",  # valid base64url, not UTF-8
        encode_cursor("no slashes"),
        encode_cursor("example.bitrix24.com/myconnector/zero"),
        encode_cursor("EXAMPLE.bitrix24.com/myconnector/1"),  # not a stored key's spelling
        encode_cursor("example.bitrix24.com/myconnector/1/extra"),
    ],
)
def test_a_cursor_the_api_did_not_hand_out_is_refused(cursor: str) -> None:
    with pytest.raises(BadCursor):
        parse_query(cursor=cursor)


def test_a_cursor_from_another_portal_is_refused_under_a_portal_filter() -> None:
    cursor = encode_cursor("other.bitrix24.com/myconnector/1")

    assert parse_query(cursor=cursor).after == "other.bitrix24.com/myconnector/1"
    with pytest.raises(BadCursor):
        parse_query(portal=PORTAL, cursor=cursor)


# ---- pages -------------------------------------------------------------------------------------
def test_pages_cover_the_fleet_once_in_key_order_and_the_last_page_says_so() -> None:
    reader = FakeReader(run=run())
    reader.add(*(status(line) for line in range(1, 26)))

    pages = walk(service(reader), limit=10)

    assert [len(p) for p in pages] == [10, 10, 5]
    keys = [k for page in pages for k in page]
    assert keys == sorted(reader.statuses)
    assert all(limit == 11 for _, limit, _ in reader.reads)  # one extra to know what is left


def test_a_fleet_of_exactly_n_pages_has_no_empty_page_after_it() -> None:
    reader = FakeReader(run=run())
    reader.add(*(status(line) for line in range(1, 21)))

    assert [len(p) for p in walk(service(reader), limit=10)] == [10, 10]


def test_a_read_cut_short_by_the_size_cap_is_continued_within_the_page() -> None:
    reader = FakeReader(run=run(), per_read=4)
    reader.add(*(status(line) for line in range(1, 26)))

    pages = walk(service(reader), limit=10)

    assert [len(p) for p in pages] == [10, 10, 5]
    assert [k for page in pages for k in page] == sorted(reader.statuses)


def test_state_filter_pages_through_the_fleet_without_losing_a_match() -> None:
    reader = FakeReader(run=run(), per_read=7)
    down = {3, 4, 9, 15, 16, 17, 22, 30}
    reader.add(*(status(n, State.DOWN if n in down else State.UP) for n in range(1, 31)))

    pages = walk(service(reader), state="DOWN", limit=3)

    found = [k for page in pages for k in page]
    assert found == sorted(f"{PORTAL}/myconnector/{n}" for n in down)  # key (string) order
    assert all(len(page) <= 3 for page in pages)


def test_a_rare_state_in_a_huge_fleet_ends_the_page_early_with_a_cursor() -> None:
    reader = FakeReader(run=run(), per_read=100)
    reader.add(*(status(n) for n in range(1, 2001)), status(2001, State.DOWN))
    svc = service(reader)

    first = svc.snapshot(parse_query(state="DOWN"), NOW)
    assert first.targets == []
    assert first.next_cursor is not None
    assert len(reader.reads) == MAX_QUERIES_PER_PAGE

    pages = walk(svc, state="DOWN")
    assert [k for page in pages for k in page] == [f"{PORTAL}/myconnector/2001"]
