"""The status page (`GET /`): one HTML page, no framework, no script, no external resource.

Every portal with its targets' states, 30-day uptime bars and open incidents, filtered on the
server by portal and state (a plain GET form, so it works without JavaScript); `/?portal=X`
is one client's page, with its closed incidents too. Every value that came from a portal, the
registry or a caller is escaped; the Content-Security-Policy allows only the page's own inline
style (by its hash) and nothing else, so even a value that escaped escaping could not run.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from itertools import groupby
from urllib.parse import urlencode

from ..domain.history import Day, Incident, Uptime, combined_days
from ..domain.results import State
from ..domain.timestamps import stamp
from .history_service import HistoryService, TargetHistory, newest_first, together
from .snapshot_service import SnapshotQuery, SnapshotService, is_stale, target_view
from .views import TargetView

PAGE_LIMIT = 500  # targets one page shows (each costs a history query)
LABEL_LIMIT = 200  # characters of one label shown

# The labels of these portals (client name, owner, tier, runbook URL...), from the registry when
# it has them: portal → {name: value}, one read for the page; shown as they are (escaped).
Labels = Callable[[list[str]], Mapping[str, Mapping[str, str]]]

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2430}
header{background:#1d2430;color:#fff;padding:12px 20px}header h1{font-size:18px;margin:0}
header p{margin:4px 0 0;color:#c9d1dc}main{padding:12px 20px}
form{margin:0 0 12px;display:flex;gap:8px;align-items:end;flex-wrap:wrap}
label{display:flex;flex-direction:column;font-size:12px;color:#555}
input,select,button{font:inherit;padding:4px 6px}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;margin:0 0 14px;
padding:10px 14px}
h2{font-size:16px;margin:0 0 6px}h2 a{color:inherit}h3{font-size:14px;margin:10px 0 4px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 6px;
border-bottom:1px solid #eef0f3;vertical-align:top}th{font-size:12px;color:#555}
.state{font-weight:600;padding:1px 6px;border-radius:3px;font-size:12px}
.s-UP{background:#d8f3dc;color:#1b5e20}.s-DOWN{background:#ffd6d6;color:#9b1c1c}
.s-UNKNOWN{background:#e7e3f7;color:#4a3a8c}
.bar{display:flex;gap:1px}.bar span{width:7px;height:18px;border-radius:1px;background:#2e9e55}
.bar .down{background:#d64545}.bar .blind{background:#9d8ed6}
.labels{color:#444;margin:0 0 6px}.labels b{font-weight:600}.when{white-space:nowrap}
.detail{color:#555;font-size:12px}
.warn{background:#fff4d6;border:1px solid #e8c66a;padding:6px 10px;border-radius:4px}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
.legend .up{background:#2e9e55}.legend .down{background:#d64545}.legend .blind{background:#9d8ed6}
"""
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
CAUSE_WORDS = {"connector_down": "connector down"}


@dataclass(frozen=True)
class StatusPageService:
    snapshot: SnapshotService
    history: HistoryService
    labels: Labels | None = None

    def page(self, query: SnapshotQuery, now: datetime) -> str:
        """The whole page for a validated filter (`parse_query`'s state and portal)."""
        statuses, more = self.snapshot.select(
            SnapshotQuery(query.state, query.portal, min(query.limit, PAGE_LIMIT))
        )
        run = self.snapshot.reader.load_run()
        histories = self.history.histories(statuses, now)
        shown = [(target_view(s, run), h) for s, h in zip(statuses, histories, strict=True)]
        head = [
            "<h1>Connector monitor: status</h1>",
            f"<p>Generated {_text(stamp(now))}; last check run "
            f"{_text(stamp(run.finished_at)) if run else 'never'}</p>",
        ]
        body = [_filters(query)]
        if is_stale(run, now, self.snapshot.stale_after):
            body.append(
                '<p class="warn">The last check run is too old (or there was none): '
                "these states may be out of date.</p>"
            )
        if more:
            body.append(
                f'<p class="warn">More targets than one page shows ({PAGE_LIMIT}): filter by '
                "portal or state to see the rest.</p>"
            )
        body.append(_summary([v.state for v, _ in shown]))
        body.append(_open_incidents([i for _, h in shown for i in h.incidents if i.open], now))
        if not shown:
            body.append('<section><p id="empty">No watched target matches.</p></section>')
        groups = [(p, list(g)) for p, g in groupby(shown, key=lambda pair: pair[0].portal)]
        labels = self.labels([p for p, _ in groups]) if self.labels and groups else {}
        for portal, group in groups:
            body.append(
                _portal(portal, group, labels.get(portal, {}), now, one=query.portal is not None)
            )
        body.append(_legend())
        return _document(head, body)


def _portal(
    portal: str,
    shown: list[tuple[TargetView, TargetHistory]],
    labels: Mapping[str, str],
    now: datetime,
    one: bool,
) -> str:
    histories = [h for _, h in shown]
    days = combined_days([h.days(now) for h in histories])
    rows = [_target_row(view, h, now) for view, h in shown]
    parts = [
        f'<section class="portal" data-portal="{_attr(portal)}">',
        f'<h2><a href="?{_attr(urlencode({"portal": portal}))}">{_text(portal)}</a></h2>',
        _labels(labels),
        f"<p>{_uptimes(histories, now)}</p>",
        _bar(days, f"{portal}, last 30 days"),
        "<table><thead><tr><th>Connector</th><th>Line</th><th>State</th><th>Since</th>"
        "<th>Uptime 30 d</th><th>Last 30 days</th></tr></thead><tbody>",
        *rows,
        "</tbody></table>",
    ]
    if one:
        every = newest_first([i for h in histories for i in h.incidents])
        parts.append(_incident_table("Incidents in the last 30 days", every, now))
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    shown = " · ".join(
        f"<b>{_text(name, 60)}</b>: {_label_value(value)}" for name, value in sorted(labels.items())
    )
    return f'<p class="labels">{shown}</p>'


def _target_row(view: TargetView, history: TargetHistory, now: datetime) -> str:
    month = history.uptime(now)[-1][1]
    detail = f'<div class="detail">{_text(view.detail)}</div>' if view.detail else ""
    # the portal's own name for the line (the inventory's LINE_NAME) where it is known
    line = f"{_text(view.line_name, LABEL_LIMIT)} ({view.line})" if view.line_name else view.line
    return (
        f'<tr class="target" data-state="{_attr(view.state)}">'
        f"<td>{_text(view.connector)}{detail}</td><td>{line}</td>"
        f'<td><span class="state s-{_attr(view.state)}">{_text(view.state)}</span></td>'
        f'<td class="when">{_text(view.since)}</td><td>{_percent(month)}</td>'
        f"<td>{_bar(history.days(now), f'{view.connector} line {view.line}')}</td></tr>"
    )


def _filters(query: SnapshotQuery) -> str:
    options = "".join(
        f'<option value="{s}"{" selected" if query.state and query.state.value == s else ""}>'
        f"{s or 'any'}</option>"
        for s in ("", *(state.value for state in State))
    )
    return (
        '<form method="get" action="">'
        f'<label>Portal<input name="portal" value="{_attr(query.portal or "")}" '
        'placeholder="client.bitrix24.com" maxlength="300"></label>'
        f'<label>State<select name="state">{options}</select></label>'
        '<button type="submit">Filter</button> <a href="?">all portals</a></form>'
    )


def _summary(states: Sequence[str]) -> str:
    counts = ", ".join(f"{states.count(s.value)} {s.value}" for s in State)
    return f'<p id="summary">{len(states)} targets shown: {counts}</p>'


def _open_incidents(found: Sequence[Incident], now: datetime) -> str:
    if not found:
        return '<section id="open"><h2>Open incidents</h2><p>None.</p></section>'
    table = _incident_table("", newest_first(found), now)
    return f'<section id="open"><h2>Open incidents ({len(found)})</h2>{table}</section>'


def _incident_table(title: str, found: Sequence[Incident], now: datetime) -> str:
    heading = f"<h3>{_text(title)}</h3>" if title else ""
    if not found:
        return f"{heading}<p>None.</p>"
    rows = "".join(
        f'<tr class="incident"><td>{_text(i.target)}</td><td>{_text(i.kind.value)}</td>'
        f"<td>{_text(CAUSE_WORDS.get(i.cause, i.cause))}</td>"
        f'<td class="when">{_text(stamp(i.start))}</td>'
        f"<td>{_text(stamp(i.end)) if i.end else 'open'}</td>"
        f"<td>{_text(_duration(i, now))}</td></tr>"
        for i in found
    )
    return (
        f"{heading}<table><thead><tr><th>Target</th><th>Kind</th><th>Cause</th><th>Start</th>"
        f"<th>End</th><th>Duration</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _uptimes(histories: Sequence[TargetHistory], now: datetime) -> str:
    return " · ".join(f"Uptime {name}: {_percent(u)}" for name, u in together(histories, now))


def _percent(split: Uptime) -> str:
    percent = split.percent
    text = "not seen" if percent is None else f"{percent:.2f}%"
    if split.blind_percent >= 0.01:
        text += f" ({split.blind_percent:.1f}% unseen)"
    return _text(text)


def _bar(days: Iterable[Day], what: str) -> str:
    cells = "".join(
        f'<span class="{d.mark.value}" title="{_attr(d.start.strftime("%Y-%m-%d"))}: '
        f'{_attr(_day_text(d))}"></span>'
        for d in days
    )
    return f'<div class="bar" role="img" aria-label="{_attr(what)}">{cells}</div>'


def _day_text(day: Day) -> str:
    percent = day.uptime.percent
    return "not seen" if percent is None else f"{percent:.2f}% up, {day.mark.value}"


def _duration(incident: Incident, now: datetime) -> str:
    seconds = int(incident.duration(now).total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"


def _legend() -> str:
    return (
        '<p class="legend">Bars: one cell a UTC day, today last.<span class="up"></span>up'
        '<span class="down"></span>some downtime<span class="blind"></span>the monitor could '
        "not see (counted apart, not as downtime)</p>"
    )


def _document(head: Sequence[str], body: Sequence[str]) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Connector monitor: status</title><style>{STYLE}</style></head><body>"
        f"<header>{''.join(head)}</header><main>{''.join(body)}</main></body></html>"
    )


def _label_value(value: str) -> str:
    """A label's value; an https URL (a runbook) as a link that leaks nothing to its target."""
    text = _text(value, LABEL_LIMIT)
    if value.startswith("https://") and len(value) <= LABEL_LIMIT and value.isprintable():
        return f'<a href="{_attr(value)}" rel="noopener noreferrer">{text}</a>'
    return text


def _text(value: object, limit: int = 2000) -> str:
    text = str(value)
    return escape(text if len(text) <= limit else text[: limit - 1] + "…", quote=True)


def _attr(value: object) -> str:
    return escape(str(value), quote=True)
