"""How the monitor's records look in DynamoDB: one table, keys designed for queries.

| pk          | sk                          | what                                           |
|-------------|-----------------------------|------------------------------------------------|
| STATE       | portal/connector/line       | a target's status (snapshot reads this by query)|
| CONFIG      | the bad TARGETS entry       | a TARGETS entry that cannot be checked           |
| HISTORY#key | time#event                  | one alert of a target's history (TTL)            |
| RUN         | LATEST                      | the last run: when, counts, shards, failures     |
| RUN         | CURRENT                     | a fanned-out run while its shards work           |
| INVENTORY   | portal                      | connectors, open lines, lines seen configured    |
| REGISTRY    | portal/connector/line or *  | an entry of the target registry                  |
| LOCK        | name                        | a lease (token refresh)                          |
| SILENCE     | the silence's id            | a silence: matcher, until, who, why (TTL)        |
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ..domain.alerts import Alert, AlertEvent
from ..domain.history import HistoryRecord, incident_start
from ..domain.inventory import NAMES_KEPT, CachedInventory, Inventory, LineInfo, Progress
from ..domain.results import Cause, State
from ..domain.runs import COUNTS, ERRORS_KEPT, PortalRun, RunPlan, RunRecord, ShardRun
from ..domain.shards import KeyRange
from ..domain.targets import ConfigIssue, ConfigProblem, Subject, Target
from ..domain.text import DETAIL_LIMIT, clip
from ..domain.transitions import TargetStatus

STATE_PK = "STATE"
CONFIG_PK = "CONFIG"
RUN_PK = "RUN"
RUN_SK = "LATEST"
CURRENT_SK = "CURRENT"  # a fanned-out run while its shards work
INVENTORY_PK = "INVENTORY"
HISTORY_PREFIX = "HISTORY#"
TTL_ATTRIBUTE = "expires_at"
RUN_ERROR_LIMIT = 200  # one portal's error in the run record


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    """A time `iso` wrote (fromisoformat: a few times faster than strptime, which a run of a
    fleet calls for every stored status)."""
    if not (len(text) == 27 and text.endswith("Z")):
        raise ValueError(f"not a time this monitor wrote: {text[:40]!r}")
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)


def status_key(subject: Subject) -> dict[str, str]:
    if isinstance(subject, Target):
        return {"pk": STATE_PK, "sk": subject.key}
    return {"pk": CONFIG_PK, "sk": subject.key}


def status_to_item(status: TargetStatus) -> dict[str, Any]:
    """A plain-Python item (the repository serialises it for DynamoDB); None values omitted."""
    subject = status.subject
    item: dict[str, Any] = {**status_key(subject)}
    if isinstance(subject, Target):
        item.update(portal=subject.portal, connector=subject.connector, line=subject.line)
    else:
        item.update(
            portal=subject.portal,
            connector=subject.connector,
            line_text=subject.line,
            entry=subject.entry,
            reason=subject.reason,
            problem=subject.problem.value,
        )
    item.update(
        state=status.state.value,
        since=iso(status.since),
        checked_at=iso(status.checked_at),
        status=status.status,
        configured=status.configured,
        error=status.error,
        cause=status.cause.value if status.cause else None,
        detail=status.detail,
        line_name=status.line_name,
        seen_state=status.seen_state.value if status.seen_state else None,
        seen_since=_opt_iso(status.seen_since),
        seen_streak=status.seen_streak,
        visible_streak=status.visible_streak,
        blind_streak=status.blind_streak,
        down_since=_opt_iso(status.down_since),
        blind_since=_opt_iso(status.blind_since),
        blind_cause=status.blind_cause.value if status.blind_cause else None,
        reminders=status.reminders,
        last_alert_at=_opt_iso(status.last_alert_at),
        pending={alert.id: alert_to_map(alert) for alert in status.pending},
        held_since=_opt_iso(status.held_since),
        acked_since=_opt_iso(status.acked_since),
        acked_by=status.acked_by,
        version=status.version,
    )
    return {k: v for k, v in item.items() if v is not None}


def status_from_item(item: dict[str, Any]) -> TargetStatus:
    subject: Subject
    if item["pk"] == STATE_PK:
        subject = Target(str(item["portal"]), str(item["connector"]), int(item["line"]))
    else:
        subject = ConfigIssue(
            str(item["entry"]),
            str(item.get("reason", "")),
            str(item.get("portal", "")),
            str(item.get("connector", "")),
            str(item.get("line_text", "")),
            ConfigProblem(item.get("problem") or ConfigProblem.ENTRY),
        )
    pending = sorted(
        (alert_from_map(a) for a in (item.get("pending") or {}).values()),
        key=lambda a: (a.created_at, a.id),
    )
    return TargetStatus(
        subject=subject,
        state=State(item["state"]),
        since=parse_iso(item["since"]),
        checked_at=parse_iso(item["checked_at"]),
        status=item.get("status"),
        configured=item.get("configured"),
        error=item.get("error"),
        cause=Cause(item["cause"]) if item.get("cause") else None,
        detail=item.get("detail"),
        line_name=item.get("line_name"),
        seen_state=State(item["seen_state"]) if item.get("seen_state") else None,
        seen_since=_opt_parse(item.get("seen_since")),
        seen_streak=int(item.get("seen_streak", 0)),
        visible_streak=int(item.get("visible_streak", 0)),
        blind_streak=int(item.get("blind_streak", 0)),
        down_since=_opt_parse(item.get("down_since")),
        blind_since=_opt_parse(item.get("blind_since")),
        blind_cause=Cause(item["blind_cause"]) if item.get("blind_cause") else None,
        reminders=int(item.get("reminders", 0)),
        last_alert_at=_opt_parse(item.get("last_alert_at")),
        pending=tuple(pending),
        held_since=_opt_parse(item.get("held_since")),
        acked_since=_opt_parse(item.get("acked_since")),
        acked_by=str(item["acked_by"]) if item.get("acked_by") else None,
        version=int(item.get("version", 0)),
    )


def alert_to_map(alert: Alert) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": alert.id,
        "event": alert.event.value,
        "portal": alert.portal,
        "connector": alert.connector,
        "line": alert.line,
        "subject": alert.subject,
        "message": alert.message,
        "created_at": iso(alert.created_at),
    }
    if alert.cause is not None:
        data["cause"] = alert.cause.value
    if alert.closing:
        data["closing"] = True
    if alert.detail:
        data["detail"] = alert.detail
    if alert.advice:
        data["advice"] = alert.advice
    if alert.since is not None:
        data["since"] = iso(alert.since)
    if alert.reminder:
        data["reminder"] = alert.reminder
    return data


def alert_from_map(data: dict[str, Any]) -> Alert:
    return Alert(
        id=str(data["id"]),
        event=AlertEvent(data["event"]),
        portal=str(data["portal"]),
        connector=str(data["connector"]),
        line=str(data["line"]),
        subject=str(data["subject"]),
        message=str(data["message"]),
        created_at=parse_iso(data["created_at"]),
        cause=Cause(data["cause"]) if data.get("cause") else None,
        closing=bool(data.get("closing", False)),
        detail=str(data.get("detail", "")),
        advice=str(data.get("advice", "")),
        since=_opt_parse(data.get("since")),
        reminder=int(data.get("reminder", 0)),
    )


def history_item(key: str, alert: Alert, expires_at: int) -> dict[str, Any]:
    return {
        "pk": HISTORY_PREFIX + key,
        "sk": f"{iso(alert.created_at)}#{alert.event.value}",
        **alert_to_map(alert),
        TTL_ATTRIBUTE: expires_at,
    }


def history_record_from_item(item: dict[str, Any]) -> HistoryRecord:
    """A history item read back: what incidents and uptime need of it (not its text)."""
    at = parse_iso(str(item["created_at"]))
    since, reminder = incident_start(str(item.get("id", "")), at)
    return HistoryRecord(
        event=AlertEvent(item["event"]),
        at=at,
        incident_since=since,
        cause=str(item["cause"]) if item.get("cause") else None,
        reminder=reminder,
        closing=bool(item.get("closing", False)),
    )


def run_to_item(run: RunRecord) -> dict[str, Any]:
    """The last run: its counts, its shards, and the portals whose check failed (a few; a
    steady run of a large fleet writes about a kilobyte, not a line per portal)."""
    failing = sorted(run.portals.items())[:ERRORS_KEPT]
    item: dict[str, Any] = {
        "pk": RUN_PK,
        "sk": RUN_SK,
        "run_id": run.run_id,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "summary": dict(run.summary),
        "portals": {
            name: {
                k: v
                for k, v in {
                    "checked_at": iso(p.checked_at),
                    "http_requests": p.http_requests,
                    "error": clip(p.error, RUN_ERROR_LIMIT) if p.error else None,
                }.items()
                if v is not None
            }
            for name, p in failing
        },
        "shards": [shard_to_value(s) for s in run.shards],
    }
    if run.failed:
        item["failed"] = clip(run.failed, DETAIL_LIMIT)
    return item


def run_from_item(item: dict[str, Any]) -> RunRecord:
    portals = {
        name: PortalRun(
            checked_at=parse_iso(p["checked_at"]),
            http_requests=int(p.get("http_requests", 0)),
            error=p.get("error"),
        )
        for name, p in (item.get("portals") or {}).items()
    }
    return RunRecord(
        run_id=str(item.get("run_id", "")),
        started_at=parse_iso(item["started_at"]),
        finished_at=parse_iso(item["finished_at"]),
        summary={k: int(v) for k, v in (item.get("summary") or {}).items()},
        portals=portals,
        failed=str(item["failed"]) if item.get("failed") else None,
        shards=tuple(shard_from_value(v) for v in item.get("shards") or []),
    )


def plan_to_item(plan: RunPlan) -> dict[str, Any]:
    """A fanned-out run in progress (RUN/CURRENT): each shard adds its counts when it ends."""
    return {
        "pk": RUN_PK,
        "sk": CURRENT_SK,
        "run_id": plan.run_id,
        "started_at": iso(plan.started_at),
        "ranges": [range_to_value(r) for r in plan.shards],
        "done": {str(i): shard_to_value(s) for i, s in plan.done.items()},
        "summary": {name: int(plan.summary.get(name, 0)) for name in COUNTS},
        "working": {str(i): iso(until) for i, until in plan.working.items()},
    }


def plan_from_item(item: dict[str, Any]) -> RunPlan:
    return RunPlan(
        run_id=str(item["run_id"]),
        started_at=parse_iso(item["started_at"]),
        shards=tuple(range_from_value(v) for v in item.get("ranges") or []),
        done={int(i): shard_from_value(v) for i, v in (item.get("done") or {}).items()},
        summary={k: int(v) for k, v in (item.get("summary") or {}).items()},
        working={int(i): parse_iso(v) for i, v in (item.get("working") or {}).items()},
    )


def range_to_value(portals: KeyRange) -> dict[str, str]:
    value = {"lo": portals.lo}
    if portals.hi is not None:
        value["hi"] = portals.hi
    return value


def range_from_value(value: dict[str, Any]) -> KeyRange:
    hi = value.get("hi")
    return KeyRange(str(value.get("lo", "")), str(hi) if hi is not None else None)


def shard_to_value(shard: ShardRun) -> dict[str, Any]:
    return {
        **range_to_value(shard.portals),
        "started_at": iso(shard.started_at),
        "finished_at": iso(shard.finished_at),
    }


def shard_from_value(value: dict[str, Any]) -> ShardRun:
    return ShardRun(
        range_from_value(value), parse_iso(value["started_at"]), parse_iso(value["finished_at"])
    )


def inventory_to_item(cached: CachedInventory) -> dict[str, Any]:
    """What validation needs of a portal's inventory, stored compactly: the connector ids (or
    that the portal would not list them), the line ids, the inactive ones, and the names of the
    first lines (for messages), with what discovery and retiring remember (the lines probed in
    an unfinished round, the lines held as missing). Whatever a portal lists, the item stays
    below DynamoDB's 400 KB (10,000 lines: about 60 KB, twice that while a round is open).
    `validated_at` is when the record last changed: a round that finds the inventory as stored
    writes nothing (`round_owed`: a round was due and not read)."""
    lines = sorted(cached.inventory.lines.items())
    connectors = cached.inventory.connectors
    item: dict[str, Any] = {
        "pk": INVENTORY_PK,
        "sk": cached.portal,
        "validated_at": iso(cached.validated_at),
        "line_ids": [number for number, _ in lines],
        "inactive": [number for number, info in lines if not info.active],
        "names": {str(n): info.name for n, info in lines[:NAMES_KEPT] if info.name},
    }
    if connectors is None:
        item["connectors_denied"] = True
    else:
        item["connectors"] = sorted(connectors)
    if cached.seen:  # watched connectors: the lines each was seen configured on
        item["seen"] = {c: sorted(lines) for c, lines in sorted(cached.seen.items())}
    if not cached.inventory.complete:
        item["incomplete"] = True
    if cached.progress:  # discovery rounds not finished: lines probed, runs spent
        item["progress"] = {
            c: {"probed": _runs_of(p.probed), "runs": p.runs}
            for c, p in sorted(cached.progress.items())
        }
    if cached.missing:  # lines held though the last complete inventory did not list them
        item["missing"] = {str(n): iso(at) for n, at in sorted(cached.missing.items())}
    if cached.owed:
        item["round_owed"] = True
    return item


def inventory_from_item(item: dict[str, Any]) -> CachedInventory:
    if "line_ids" in item:
        inactive = {int(n) for n in item.get("inactive") or []}
        names = {int(n): str(v) for n, v in (item.get("names") or {}).items()}
        lines = {
            int(n): LineInfo(name=names.get(int(n), ""), active=int(n) not in inactive)
            for n in item["line_ids"]
        }
    else:  # the layout of earlier versions: {"lines": {id: {"name", "active"}}}
        lines = {
            int(n): LineInfo(name=str(v.get("name", "")), active=bool(v.get("active", True)))
            for n, v in (item.get("lines") or {}).items()
        }
    connectors = (
        None
        if item.get("connectors_denied")
        else frozenset(str(c) for c in item.get("connectors") or [])
    )
    inventory = Inventory(connectors, lines, complete=not item.get("incomplete"))
    seen = {str(c): frozenset(int(n) for n in v) for c, v in (item.get("seen") or {}).items()}
    progress = {
        str(c): Progress(_from_runs(str(v.get("probed") or "")), int(v.get("runs", 0)))
        for c, v in (item.get("progress") or {}).items()
    }
    missing = {int(n): parse_iso(at) for n, at in (item.get("missing") or {}).items()}
    return CachedInventory(
        str(item["sk"]),
        parse_iso(item["validated_at"]),
        inventory,
        seen,
        progress=progress,
        missing=missing,
        owed=bool(item.get("round_owed")),
    )


def _runs_of(numbers: Iterable[int]) -> str:
    """Line ids as runs of consecutive ids ("1-200,205"): probes go in id order, so the lines
    of an unfinished round are a few runs even on a portal with 10,000 lines."""
    runs: list[list[int]] = []
    for number in sorted(numbers):
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return ",".join(f"{lo}-{hi}" if hi > lo else str(lo) for lo, hi in runs)


def _from_runs(text: str) -> frozenset[int]:
    numbers: set[int] = set()
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        numbers.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(numbers)


def _opt_iso(moment: datetime | None) -> str | None:
    return iso(moment) if moment else None


def _opt_parse(text: Any) -> datetime | None:
    return parse_iso(text) if isinstance(text, str) and text else None
