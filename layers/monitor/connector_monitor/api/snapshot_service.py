"""The snapshot: the latest state of the watched targets, read for the API.

Reads go through a small reader interface (the state repository: queries and gets, never a
scan). Views are built from `TargetStatus` fields one by one, never from stored items, so what
else lives in the table (pending alerts, claims) or elsewhere (tokens) cannot reach a response.
No clock and no environment here: the handler passes `now` and the settings in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from ..domain.labels import PortalLabels
from ..domain.results import State
from ..domain.runs import RunRecord
from ..domain.targets import ConfigIssue, Target, check_target
from ..domain.text import DETAIL_LIMIT, clip
from ..domain.timestamps import stamp
from ..domain.transitions import TargetStatus
from .errors import BadCursor, BadFilter, BadTarget, NotFound, RunFailed, Stale
from .paging import MAX_LIMIT, check_limit, decode_cursor, encode_cursor
from .views import HealthView, LabelsView, SnapshotView, Summary, TargetView

# Queries one page may spend (a state filter may skip most of what it reads, and DynamoDB cuts a
# read at 1 MB); past it the page ends early with a cursor, so a rare state in a huge fleet
# cannot run the function out of time.
MAX_QUERIES_PER_PAGE = 10
QUERY_SIZE = 1000  # targets one filtered query asks for


# ---- requests ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SnapshotQuery:
    """A validated `GET /snapshot` request."""

    state: State | None = None
    portal: str | None = None
    limit: int = MAX_LIMIT
    after: str | None = None  # the key the page starts after (decoded cursor)


def parse_query(
    *,
    state: str | None = None,
    portal: str | None = None,
    limit: int = MAX_LIMIT,
    cursor: str | None = None,
) -> SnapshotQuery:
    """Validate the query parameters; raise `BadFilter` or `BadCursor` with a clear message."""
    chosen_state: State | None = None
    if state is not None:
        try:
            chosen_state = State(state.strip().upper())
        except ValueError:
            raise BadFilter(f"state must be one of UP, DOWN, UNKNOWN, not '{state}'") from None
    chosen_portal = parse_portal(portal) if portal is not None else None
    check_limit(limit)
    after = cursor_key(cursor, chosen_portal) if cursor is not None else None
    return SnapshotQuery(chosen_state, chosen_portal, limit, after)


def parse_portal(text: str) -> str:
    """A portal filter, validated exactly as a target's portal is (and normalised the same way)."""
    # A known-good connector and line, so any error check_target reports is about the portal.
    checked = check_target(text, "connector", 1, text)
    if isinstance(checked, ConfigIssue):
        raise BadFilter(f"portal: {checked.reason}")
    return checked.portal


def parse_target(portal: str, connector: str, line: object) -> Target:
    """The target a path names; raise `BadTarget` with the reason when it names none."""
    checked = check_target(portal, connector, line, f"{portal}/{connector}/{line}")
    if isinstance(checked, ConfigIssue):
        raise BadTarget(checked.reason)
    return checked


def cursor_key(cursor: str, portal: str | None) -> str:
    """The key a cursor stands for; it must be a target key inside the selected portal."""
    key = decode_cursor(cursor, lambda key: is_target_key(key, portal))
    if key is None:
        raise BadCursor("cursor is not valid here: pass next_cursor from the previous page as is")
    return key


def is_target_key(key: str, portal: str | None) -> bool:
    """`key` is a target's key as stored (of `portal`, when one is selected)."""
    parts = key.split("/")
    if len(parts) != 3:
        return False
    checked = check_target(parts[0], parts[1], parts[2], key)
    if isinstance(checked, ConfigIssue) or checked.key != key:
        return False
    return portal is None or checked.portal == portal


# ---- the service ------------------------------------------------------------------------------
class StateReader(Protocol):
    """What the snapshot reads (the state repository implements it)."""

    def page_targets(
        self, *, portal: str | None = None, limit: int = 500, after: str | None = None
    ) -> tuple[list[TargetStatus], str | None]: ...

    def get_target(self, target: Target) -> TargetStatus | None: ...

    def load_run(self) -> RunRecord | None: ...

    def count_states(self, *, portal: str | None = None) -> dict[State, int]:
        """How many targets (of `portal`, default all) are in each state."""
        ...


# /health's word for what share of the targets the monitor cannot see (UNKNOWN): from this
# share on the monitor is "degraded" (a few blind portals are those portals' check.failed
# alerts, not the monitor's own trouble), and "blind" when it sees none.
DEGRADED_SHARE = 0.5


class LabelsReader(Protocol):
    """Where the portals' client labels are (the registry)."""

    def labels_of(self, portals: list[str]) -> dict[str, PortalLabels]: ...


@dataclass(frozen=True)
class SnapshotService:
    reader: StateReader
    stale_after: timedelta
    labels: LabelsReader | None = None  # None: targets carry no labels

    def snapshot(self, query: SnapshotQuery, now: datetime) -> SnapshotView:
        run = self.reader.load_run()
        statuses, next_key = self.select(query)
        labels = self.labels_for([s.subject.portal for s in statuses])
        views = [target_view(s, run, labels.get(s.subject.portal)) for s in statuses]
        return SnapshotView(
            generated_at=stamp(now),
            last_run_at=stamp(run.finished_at) if run else None,
            stale=is_stale(run, now, self.stale_after),
            summary=self._summary(query, views, whole=query.after is None and next_key is None),
            targets=views,
            next_cursor=encode_cursor(next_key) if next_key else None,
        )

    def target(self, target: Target) -> TargetView:
        status = self.reader.get_target(target)
        if status is None:
            raise NotFound(f"no target {target.key} is watched (or it was not checked yet)")
        labels = self.labels_for([target.portal]).get(target.portal)
        return target_view(status, self.reader.load_run(), labels)

    def labels_for(self, portals: list[str]) -> dict[str, PortalLabels]:
        """The page's portals' labels: one query of the registry's range of them."""
        if self.labels is None or not portals:
            return {}
        return self.labels.labels_of(sorted(set(portals)))

    def health(self, now: datetime) -> HealthView:
        """Fresh: the watcher runs. Raises `Stale` otherwise. Reads the run record only."""
        run = self.reader.load_run()
        if run is None:
            raise Stale("no check run has finished yet")
        if is_stale(run, now, self.stale_after):
            raise Stale(
                f"last run at {stamp(run.finished_at)} is older than "
                f"{int(self.stale_after.total_seconds())} seconds"
            )
        if run.failed:
            raise RunFailed(
                f"the last run at {stamp(run.finished_at)} checked nothing: {run.failed}"
            )
        total, unknown = run.summary.get("targets", 0), run.summary.get("unknown", 0)
        share = round(unknown / total, 4) if total else 0.0
        return HealthView(
            status="blind" if total and unknown >= total else _degraded_or_ok(share),
            last_run_at=stamp(run.finished_at),
            stale=False,
            targets=Summary(
                total=total,
                up=run.summary.get("up", 0),
                down=run.summary.get("down", 0),
                unknown=unknown,
            ),
            unknown_share=min(share, 1.0),
        )

    def _summary(self, query: SnapshotQuery, views: list[TargetView], *, whole: bool) -> Summary:
        """The counts of the whole selection: from the answer when it holds all of it, else
        read (the selection's statuses, every page: see README's "Snapshot API")."""
        if whole:
            return summarise(views)
        counts = self.reader.count_states(portal=query.portal)
        if query.state is not None:
            counts = {query.state: counts.get(query.state, 0)}
        return Summary(
            total=sum(counts.values()),
            up=counts.get(State.UP, 0),
            down=counts.get(State.DOWN, 0),
            unknown=counts.get(State.UNKNOWN, 0),
        )

    def select(self, query: SnapshotQuery) -> tuple[list[TargetStatus], str | None]:
        """Up to `limit` matching statuses after the cursor, and the key to continue after."""
        found: list[TargetStatus] = []
        after = query.after
        for _ in range(MAX_QUERIES_PER_PAGE):
            missing = query.limit - len(found)
            # Unfiltered: one more than missing, so the last page knows it is the last.
            # Filtered: big steps, since most of what is read may not match.
            size = missing + 1 if query.state is None else QUERY_SIZE
            page, last = self.reader.page_targets(portal=query.portal, limit=size, after=after)
            matching = [s for s in page if query.state is None or s.state is query.state]
            if len(matching) > missing:  # more than fits: this answer ends inside this read
                found += matching[:missing]
                return found, found[-1].subject.key
            found += matching
            if last is None:
                return found, None
            if len(found) == query.limit:
                return found, last
            after = last
        return found, after


def target_view(
    status: TargetStatus, run: RunRecord | None, labels: PortalLabels | None = None
) -> TargetView:
    subject = status.subject
    if not isinstance(subject, Target):  # the repository's target pages hold targets only
        raise TypeError(f"not a target: {subject.key}")
    return TargetView(
        portal=subject.portal,
        connector=subject.connector,
        line=subject.line,
        state=status.state.value,
        status=status.status,
        configured=status.configured,
        error=status.error,
        since=stamp(status.since),
        checked_at=stamp(last_checked(status, run)),
        # Stored details are cut already; this keeps 1,000 targets far below Lambda's 6 MB
        # response limit even for items an older version stored.
        detail=clip(status.detail, DETAIL_LIMIT) if status.detail is not None else None,
        line_name=status.line_name or None,
        labels=LabelsView(**labels.as_dict()) if labels else None,
    )


def last_checked(status: TargetStatus, run: RunRecord | None) -> datetime:
    """The checker stores a status only when it changed, so the last run's check of it (its
    shard's start; a record of an older version: its portal's time) is fresher."""
    if run is None:
        return status.checked_at
    since = run.checked_since(status.subject.key)
    if since is None and (portal_run := run.portals.get(status.subject.portal)) is not None:
        since = portal_run.checked_at
    return max(status.checked_at, since) if since else status.checked_at


def is_stale(run: RunRecord | None, now: datetime, stale_after: timedelta) -> bool:
    return run is None or now - run.finished_at > stale_after


def _degraded_or_ok(share: float) -> Literal["ok", "degraded"]:
    return "degraded" if share >= DEGRADED_SHARE else "ok"


def summarise(views: list[TargetView]) -> Summary:
    states = [v.state for v in views]
    return Summary(
        total=len(states),
        up=states.count("UP"),
        down=states.count("DOWN"),
        unknown=states.count("UNKNOWN"),
    )
