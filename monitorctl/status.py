"""`monitorctl status` and `monitorctl history`: the snapshot and the history, readable in a
terminal. What a portal sent (details) is shown with control characters replaced, so a hostile
answer cannot move the cursor or recolour the operator's terminal."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TextIO

from connector_monitor.api.history_service import HistoryService
from connector_monitor.api.history_views import IncidentView, UptimeView
from connector_monitor.api.snapshot_service import SnapshotService, parse_query, parse_target
from connector_monitor.domain.text import clip

DETAIL_SHOWN = 90


def print_status(
    service: SnapshotService, now: datetime, out: TextIO, *, state: str | None, portal: str | None
) -> int:
    """Every selected target, page after page; the counts over the whole selection."""
    query = parse_query(state=state, portal=portal)
    counts = {"UP": 0, "DOWN": 0, "UNKNOWN": 0}
    cursor: str | None = None
    last_run = "never"
    while True:
        page = service.snapshot(
            parse_query(state=state, portal=query.portal, cursor=cursor) if cursor else query, now
        )
        last_run = page.last_run_at or "never"
        for target in page.targets:
            counts[target.state] += 1
            detail = (
                f"  {terminal_safe(clip(target.detail, DETAIL_SHOWN))}" if target.detail else ""
            )
            print(
                f"{target.state:<8}{target.portal}/{target.connector}/{target.line}"
                f"  since {target.since}{detail}",
                file=out,
            )
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    total = sum(counts.values())
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    print(f"{total} targets: {summary}; last run {last_run}", file=out)
    return 1 if counts["DOWN"] else 0


def print_history(service: HistoryService, what: str, now: datetime, out: TextIO) -> int:
    """PORTAL or PORTAL/CONNECTOR/LINE: uptime per window, then incidents, newest first."""
    parts = what.split("/")
    if len(parts) == 3:
        view = service.target(parse_target(*parts), now)
        print(
            f"{view.portal}/{view.connector}/{view.line}: {view.state or 'not watched'}", file=out
        )
        print_uptime(view.uptime, out)
        print_incidents(view.incidents, out)
        return 0
    portal = parse_target(what, "connector", 1).portal
    found = service.portal(portal, now)
    print(f"{found.portal}: {len(found.targets)} targets", file=out)
    print_uptime(found.uptime, out)
    for target in found.targets:
        month = target.uptime[-1]
        print(
            f"  {target.state or '-':<8}{target.connector}/{target.line}  30d {percent(month)}",
            file=out,
        )
    print_incidents(found.incidents, out)
    if found.truncated:
        print("(more targets than one read covers: only the first ones are shown)", file=out)
    return 0


def print_uptime(windows: Sequence[UptimeView], out: TextIO) -> None:
    print("uptime: " + ", ".join(f"{u.window} {percent(u)}" for u in windows), file=out)


def print_incidents(incidents: Sequence[IncidentView], out: TextIO) -> None:
    if not incidents:
        print("no incidents in the last 30 days", file=out)
        return
    print(f"{len(incidents)} incidents, newest first:", file=out)
    for i in incidents:
        end = i.end or "open"
        print(
            f"  {i.kind:<6}{i.portal}/{i.connector}/{i.line}  {i.start} .. {end}"
            f"  {duration(i.duration_seconds)}  {terminal_safe(i.cause)}",
            file=out,
        )


def percent(uptime: UptimeView) -> str:
    text = "not seen" if uptime.percent is None else f"{uptime.percent:.2f}%"
    if uptime.blind_seconds:
        text += f" ({uptime.blind_percent:.1f}% unseen)"
    return text


def duration(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d {hours}h" if days else f"{hours}h {rest // 60}m"


def terminal_safe(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)
