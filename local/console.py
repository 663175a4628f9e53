"""What the local run prints: a table of target states after each run, the run's summary line,
and every alert SNS delivered. Plain text (colour only on a terminal, never with NO_COLOR).

Only states, alert texts and counts pass through here: none of them carries a token.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from connector_monitor.domain.targets import Target
from connector_monitor.domain.transitions import TargetStatus
from local.aws import ReceivedAlert

HEADERS = ("PORTAL", "CONNECTOR", "LINE", "STATE", "SINCE", "DETAIL")
_COLOURS = {"UP": "32", "DOWN": "31", "UNKNOWN": "33", "critical": "31", "warning": "33"}
_MIN_DETAIL = 20


@dataclass(frozen=True)
class StateRow:
    portal: str
    connector: str
    line: str
    state: str
    since: datetime
    detail: str


def rows_from_statuses(statuses: Iterable[TargetStatus]) -> list[StateRow]:
    """One row per target (sorted by portal, connector, line), then bad TARGETS entries."""
    rows: list[tuple[tuple[int, str, str, int, str], StateRow]] = []
    for status in statuses:
        subject = status.subject
        detail = (status.detail or "").replace("\n", " ")
        if isinstance(subject, Target):
            order = (0, subject.portal, subject.connector, subject.line, "")
            line = str(subject.line)
        else:
            order = (1, subject.portal, subject.connector, 0, subject.entry)
            line = subject.line or "?"
            detail = detail or subject.reason
        row = StateRow(
            subject.portal or "?",
            subject.connector or "?",
            line,
            status.state.value,
            status.since,
            detail,
        )
        rows.append((order, row))
    return [row for _, row in sorted(rows, key=lambda pair: pair[0])]


def format_since(moment: datetime, now: datetime) -> str:
    moment, now = moment.astimezone(UTC), now.astimezone(UTC)
    clock = moment.strftime("%H:%M:%SZ")
    return clock if moment.date() == now.date() else moment.strftime("%Y-%m-%d ") + clock


def format_table(rows: Sequence[StateRow], *, now: datetime, width: int = 0) -> list[str]:
    """The state table as lines; DETAIL is cut to fit `width` (0: never cut)."""
    if not rows:
        return ["(no targets stored yet)"]
    cells = [
        [r.portal, r.connector, r.line, r.state, format_since(r.since, now), r.detail] for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(HEADERS[:-1])]
    fixed = sum(widths) + 2 * len(widths)
    room = max(_MIN_DETAIL, width - fixed) if width else 0
    lines = [_join(HEADERS, widths)]
    for cell in cells:
        detail = cell[-1]
        if room and len(detail) > room:
            detail = detail[: room - 1] + "…"
        lines.append(_join([*cell[:-1], detail], widths))
    return lines


def _join(cells: Sequence[str], widths: Sequence[int]) -> str:
    parts = []
    for index, (cell, size) in enumerate(zip(cells, widths, strict=False)):
        # LINE is a number: right-aligned reads better.
        parts.append(cell.rjust(size) if index == 2 else cell.ljust(size))
    parts.append(cells[-1])
    return "  ".join(parts).rstrip()


def format_summary(number: int, summary: Mapping[str, Any], seconds: float) -> str:
    """`run 3: 3 targets, 2 up, 1 down, 0 unknown | alerts: 1 message sent (3 targets), 0
    waiting | ...`: a grouped message counts once, with the targets it covers."""
    text = (
        f"run {number}: {_count(summary.get('targets', 0), 'target')}, {summary.get('up', 0)} up, "
        f"{summary.get('down', 0)} down, {summary.get('unknown', 0)} unknown"
    )
    if summary.get("config_errors"):
        text += f", {_count(summary['config_errors'], 'bad TARGETS entry')}"
    alerts, messages = summary.get("alerts_published", 0), summary.get("messages_published")
    sent = f"{alerts} sent"
    if messages is not None:  # a run of this version: messages and the targets they cover
        sent = _count(messages, "message") + " sent"
        sent += f" ({_count(alerts, 'target')})" if alerts != messages else ""
    text += (
        f" | alerts: {sent}, "
        f"{summary.get('alerts_pending', 0)} waiting to be sent"
        + (f", {summary['alerts_held']} held by silences" if summary.get("alerts_held") else "")
        + f" | {_count(summary.get('http_requests', 0), 'portal request')} in {seconds:.2f} s"
    )
    for portal, error in sorted((summary.get("portal_errors") or {}).items()):
        text += f"\n  {portal}: {error}"
    return text


def _count(number: int, noun: str) -> str:
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{number} {noun if number == 1 else plural}"


def format_alert(alert: ReceivedAlert) -> list[str]:
    head = f"ALERT {alert.event} [{alert.severity}] {alert.subject}"
    body = [f"    {line}".rstrip() for line in alert.message.splitlines()]
    return [head, *body]


class Console:
    """Thread-safe printing to one stream (stdout by default), flushed line by line."""

    def __init__(self, stream: TextIO | None = None, *, colour: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        if colour is None:
            colour = _isatty(self.stream) and "NO_COLOR" not in os.environ
        self.colour = colour
        self._lock = threading.Lock()

    def print(self, *lines: str) -> None:
        with self._lock:
            for line in lines:
                self.stream.write(line + "\n")
            self.stream.flush()

    def note(self, text: str) -> None:
        self.print(self._paint(text, "2"))

    def error(self, text: str) -> None:
        self.print(self._paint(text, "1;31"))

    def table(self, rows: Sequence[StateRow], *, now: datetime | None = None) -> None:
        width = shutil.get_terminal_size((120, 24)).columns if _isatty(self.stream) else 0
        lines = format_table(rows, now=now or datetime.now(UTC), width=width)
        header, body = lines[0], lines[1:]
        self.print(self._paint(header, "1"), *(self._paint_state(line) for line in body))

    def summary(self, number: int, summary: Mapping[str, Any], seconds: float) -> None:
        self.print(self._paint(format_summary(number, summary, seconds), "2"))

    def alert(self, alert: ReceivedAlert) -> None:
        head, *body = format_alert(alert)
        self.print(self._paint(head, _COLOURS.get(alert.severity, "1")), *body)

    def _paint_state(self, line: str) -> str:
        if not self.colour:
            return line
        for state, code in _COLOURS.items():
            marker = f"  {state}  "
            if state.isupper() and marker in line:
                return line.replace(marker, f"  {self._paint(state, code)}  ", 1)
        return line

    def _paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour else text


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
