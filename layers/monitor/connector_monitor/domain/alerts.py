"""Alerts: what a person receives. The wording lives here, with no knowledge of SNS.

Every alert names its cause (`domain/causes.py`): a word in the subject, the `cause` message
attribute, and advice for that cause and deployment. Alerts of one run that share a portal, an
event and a cause are one message (`combine`); the same connector failing on many portals is
one fleet message. Each target's alert is still decided, stored, acknowledged and recovered on
its own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from .causes import CONNECTOR_DOWN, NOT_KNOWN, Severity, words_for
from .client_context import NO_CONTEXT, AlertContext
from .portal_errors import without_advice
from .results import Cause
from .targets import ConfigIssue, ConfigProblem, Subject, Target
from .text import DETAIL_LIMIT, MESSAGE_LIMIT, clip
from .timestamps import stamp

__all__ = ["Alert", "AlertEvent", "Facts", "Severity", "ascii_line", "combine", "make_alert"]

SUBJECT_LIMIT = 100  # SNS refuses longer subjects
ENTRY_SHOWN = 200  # a Targets entry quoted in an alert
GROUP_LISTING_LIMIT = 50  # targets listed in one grouped message; the rest are counted
FLEET_PORTALS = 5  # this many portals failing alike in one run are one fleet-wide message


class AlertEvent(StrEnum):
    CONNECTOR_DOWN = "connector.down"
    CONNECTOR_RECOVERED = "connector.recovered"
    CHECK_FAILED = "check.failed"
    CHECK_RECOVERED = "check.recovered"


RECOVERIES = (AlertEvent.CONNECTOR_RECOVERED, AlertEvent.CHECK_RECOVERED)
CONNECTOR_EVENTS = (AlertEvent.CONNECTOR_DOWN, AlertEvent.CONNECTOR_RECOVERED)


@dataclass(frozen=True)
class Alert:
    """One notification, identified so that a retried run cannot send it twice. A grouped
    message is an Alert too, with `targets` > 1 (it is sent, never stored)."""

    id: str
    event: AlertEvent
    portal: str
    connector: str
    line: str
    subject: str
    message: str
    created_at: datetime
    cause: Cause | None = None  # why the monitor could not see (check.* alerts)
    closing: bool = False  # closes an incident of a target no longer monitored
    detail: str = ""  # what happened, one line without the portal's name (for group listings)
    advice: str = ""  # what to do
    since: datetime | None = None  # when the incident began
    reminder: int = 0  # the reminder's number while still down (0: the first alert)
    targets: int = 1  # targets a message covers

    @property
    def reason(self) -> str:
        """The `cause` attribute: `connector_down` for connector.*, else why it was blind."""
        if self.event in CONNECTOR_EVENTS:
            return CONNECTOR_DOWN
        return self.cause.value if self.cause else NOT_KNOWN

    @property
    def severity(self) -> Severity:
        if self.event in RECOVERIES:
            return Severity.INFO
        return words_for(self.reason).severity

    @property
    def attributes(self) -> dict[str, str]:
        """The contract's filterable attributes (every value a non-empty string)."""
        return {
            "event": self.event.value,
            "portal": self.portal or "-",
            "connector": self.connector or "-",
            "line": self.line or "-",
            "severity": self.severity.value,
            "cause": self.reason,
            "targets": str(self.targets),
        }


@dataclass(frozen=True)
class Facts:
    """What the alert text reports: the latest answer and the incident's timeline."""

    detail: str | None
    status: bool | None
    configured: bool | None
    error: bool | None
    cause: Cause | None
    incident_since: datetime
    now: datetime
    reminder: int = 0
    closing: bool = False  # the target left the configuration while this incident was open
    # (a closing alert's `detail`, when set, says why it left: its line was deleted)


def make_alert(
    event: AlertEvent, subject: Subject, facts: Facts, context: AlertContext = NO_CONTEXT
) -> Alert:
    portal, connector, line = _names(subject)
    suffix = f"#{facts.reminder}" if facts.reminder else ""
    cause = facts.cause if event not in CONNECTOR_EVENTS else None
    draft = Alert(
        id=f"{subject.key}|{event.value}|{stamp(facts.incident_since)}{suffix}",
        event=event,
        portal=portal,
        connector=connector,
        line=line,
        subject="",
        message="",
        created_at=facts.now,
        cause=cause,
        closing=facts.closing,
        detail=_plain(facts.detail, portal),
        since=facts.incident_since,
        reminder=facts.reminder,
    )
    draft = replace(draft, advice=_action(draft, facts, subject, context))
    return replace(
        draft,
        subject=_subject_line(draft, subject, context),
        message=clip(_message(draft, subject, facts, context), MESSAGE_LIMIT),
    )


def _names(subject: Subject) -> tuple[str, str, str]:
    if isinstance(subject, Target):
        return subject.portal, subject.connector, str(subject.line)
    return subject.portal, subject.connector, subject.line


def _plain(detail: str | None, portal: str) -> str:
    """The detail as an alert shows it: without the portal's name (the alert names it) and
    without the advice an error appends (the alert says what to do once)."""
    text = without_advice(detail or "")
    while portal and text.startswith(f"{portal}: "):
        text = text[len(portal) + 2 :]
    return clip(text, DETAIL_LIMIT)


def _head(alert: Alert) -> str:
    """The subject's first words: the event for recoveries, else the cause's word."""
    if alert.closing:  # a closing alert's detail says why it left: its line was deleted
        return "NO LONGER MONITORED" + (" (LINE DELETED)" if alert.detail else "")
    word = words_for(alert.reason).word
    if alert.event is AlertEvent.CONNECTOR_DOWN:
        return "CONNECTOR STILL DOWN" if alert.reminder else word
    if alert.event is AlertEvent.CONNECTOR_RECOVERED:
        return "CONNECTOR RECOVERED"
    if alert.event is AlertEvent.CHECK_RECOVERED:
        return "CHECK OK" if alert.reason == NOT_KNOWN else f"CHECK OK after {word}"
    return word


def _subject_line(alert: Alert, subject: Subject, context: AlertContext) -> str:
    head = _head(alert)
    if _discovery(subject):  # a notice, not a target: what it says is discovery's progress
        state = "DONE" if alert.closing or alert.event in RECOVERIES else "UNFINISHED"
        text = f"DISCOVERY {state}: {subject.connector} at {subject.portal}"
    elif isinstance(subject, ConfigIssue) and subject.problem is ConfigProblem.VALIDATION:
        state = "OK" if alert.event in RECOVERIES else "OFF"
        text = f"VALIDATION {state} at {subject.portal}"
    elif isinstance(subject, ConfigIssue):
        text = f"{head}: bad target {subject.entry}"
    else:
        line = context.line(alert.portal, alert.line)
        text = f"{head}: {alert.connector} on line {line} at {alert.portal}"
    return ascii_line(text, SUBJECT_LIMIT)


def _discovery(subject: Subject) -> bool:
    """A portal's notice about one watched connector's discovery (not its validation)."""
    return (
        isinstance(subject, ConfigIssue)
        and subject.problem is ConfigProblem.VALIDATION
        and bool(subject.connector)
    )


def ascii_line(text: str, limit: int) -> str:
    """SNS subjects must be one line of printable ASCII under the limit."""
    clean = "".join(c if " " <= c <= "~" else "?" for c in text)
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def _message(alert: Alert, subject: Subject, facts: Facts, context: AlertContext) -> str:
    portal, connector, line = _names(subject)
    lines = [_headline(alert, subject, context), ""]
    lines += context.labels_of(portal).lines()
    lines += [
        f"Portal:    {portal or '-'}",
        f"Connector: {connector or '-'}",
        f"Open line: {context.line(portal, line) if line else '-'}",
    ]
    if isinstance(subject, ConfigIssue):
        lines.append(f"Entry:     {clip(subject.entry, ENTRY_SHOWN)}")
    lines.append(_timeline(alert, facts.now))
    if facts.status is not None:
        lines.append(
            "Answer:    "
            f"STATUS={_flag(facts.status)} CONFIGURED={_flag(facts.configured)} "
            f"ERROR={_flag(facts.error)}"
        )
    if alert.detail and not alert.closing:  # a closing alert's headline says why
        lines += ["", f"What happened: {alert.detail}"]
    if alert.advice:
        lines += ["", f"What to do: {alert.advice}"]
    lines += ["", f"Checked at {stamp(facts.now)} by the Bitrix24 connector monitor."]
    return "\n".join(lines)


def _timeline(alert: Alert, now: datetime) -> str:
    since = alert.since or now
    span = _span(now - since)
    if alert.closing:
        return f"Incident:  since {stamp(since)} ({span}), left open"
    if alert.event is AlertEvent.CONNECTOR_RECOVERED:
        return f"Outage:    {stamp(since)} to {stamp(now)} ({span})"
    if alert.event is AlertEvent.CHECK_RECOVERED:
        return f"Not seen:  {stamp(since)} to {stamp(now)} ({span})"
    return f"Since:     {stamp(since)} ({span} ago)"


def _headline(alert: Alert, subject: Subject, context: AlertContext) -> str:
    event = alert.event
    if alert.closing and isinstance(subject, ConfigIssue):
        if subject.problem is ConfigProblem.LIST:
            return "TARGETS can be read again: the monitor checks its targets once more."
        if _discovery(subject):
            return f"Discovery of {subject.connector} on {subject.portal} has finished."
        if subject.problem is ConfigProblem.VALIDATION:
            return f"Connector validation works again on {subject.portal}."
    if alert.closing:
        what = (
            f"The Targets entry '{clip(subject.entry, ENTRY_SHOWN)}'"
            if isinstance(subject, ConfigIssue)
            else f"Connector '{subject.connector}' on open line "
            f"{context.line(subject.portal, str(subject.line))} of {subject.portal}"
        )
        why = alert.detail or "it left the configuration"
        return (
            f"{what} is no longer monitored: {why} while its "
            f"{'outage' if event is AlertEvent.CONNECTOR_RECOVERED else 'check failure'} was "
            "open. This closes that alert; it does not say the connector works."
        )
    if isinstance(subject, ConfigIssue):
        if _discovery(subject):
            return f"The monitor has not found all the lines of {subject.connector} yet."
        if subject.problem is ConfigProblem.VALIDATION:
            if event in RECOVERIES:
                return f"Connector validation works again on {subject.portal}."
            return f"The monitor cannot validate the targets of {subject.portal}."
        if event in RECOVERIES:
            return f"The target '{clip(subject.entry, ENTRY_SHOWN)}' can be checked again."
        return f"The monitor cannot check the target '{subject.entry}': it is misconfigured."
    name = (
        f"connector '{subject.connector}' on open line "
        f"{context.line(subject.portal, str(subject.line))} of {subject.portal}"
    )
    if event is AlertEvent.CONNECTOR_DOWN:
        again = f" (reminder {alert.reminder})" if alert.reminder else ""
        return f"{_upper_first(name)} is DOWN{again}: {words_for(CONNECTOR_DOWN).meaning}."
    if event is AlertEvent.CONNECTOR_RECOVERED:
        return f"{_upper_first(name)} is working again (STATUS=true)."
    if event is AlertEvent.CHECK_FAILED:
        return f"{words_for(alert.reason).word}: the monitor cannot see {name}. " + _blind_note(
            alert
        )
    return f"The monitor can see {name} again."


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _blind_note(alert: Alert) -> str:
    words = words_for(alert.reason)
    note = f"Its state is UNKNOWN: {words.meaning}."
    if words.severity is not Severity.CRITICAL:
        note += " This is not a connector outage."
    return note


def _action(alert: Alert, facts: Facts, subject: Subject, context: AlertContext) -> str:
    if alert.closing and alert.detail:
        return "nothing, if the line was deleted on purpose; otherwise recreate it."
    if alert.closing:
        return "nothing, if the target was removed on purpose; otherwise add it again."
    if alert.event is AlertEvent.CONNECTOR_DOWN:
        if facts.error:
            return "call imconnector.activate (CONNECTOR, LINE, ACTIVE=1) after fixing the cause."
        if facts.configured is False:
            return "reconnect the connector to the open line (Contact Center settings)."
        return words_for(CONNECTOR_DOWN).advice
    if alert.event is AlertEvent.CHECK_FAILED:
        if _discovery(subject):
            return (
                "nothing at once; if it lasts, give the portal more request room or name "
                "the lines in Targets."
            )
        if isinstance(subject, ConfigIssue) and subject.problem is ConfigProblem.VALIDATION:
            return "reinstall the application as a portal administrator (see above)."
        return words_for(alert.reason).advice_for(context.deployment, alert.portal)
    return ""


def _flag(value: bool | None) -> str:
    return "?" if value is None else str(value).lower()


def _span(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


# ---- one message per outage ---------------------------------------------------------------------

# portal, event, cause, closing, reminder, and the connector for connector.* events
_GroupKey = tuple[str, AlertEvent, str, bool, bool, str]


def combine(
    alerts: list[Alert], context: AlertContext = NO_CONTEXT, *, fleet: int = FLEET_PORTALS
) -> list[tuple[Alert, list[Alert]]]:
    """Messages to send for these alerts, each with the alerts it carries: one per portal,
    event and cause (three lines down on one portal are one message; for connector.*, one per
    connector), and one per event, cause and connector across the fleet when `fleet` portals
    or more fail alike. A group of one is the alert itself."""
    by_portal: dict[_GroupKey, list[Alert]] = {}
    for alert in sorted(alerts, key=lambda a: (a.created_at, a.id)):
        connector = alert.connector if alert.event in CONNECTOR_EVENTS else "*"
        key = (
            alert.portal,
            alert.event,
            alert.reason,
            alert.closing,
            alert.reminder > 0,
            connector,
        )
        by_portal.setdefault(key, []).append(alert)
    by_fleet: dict[tuple[object, ...], list[list[Alert]]] = {}
    for (portal, *rest), members in by_portal.items():
        fleet_key = (*rest,) if portal else (portal, *rest)  # Targets-wide notices stay apart
        by_fleet.setdefault(fleet_key, []).append(members)
    messages: list[tuple[Alert, list[Alert]]] = []
    for groups in by_fleet.values():
        if len(groups) >= fleet:
            members = [a for group in groups for a in group]
            messages.append((_grouped(members, context, fleet=True), members))
            continue
        for members in groups:
            single = len(members) == 1
            messages.append((members[0] if single else _grouped(members, context), members))
    return sorted(messages, key=lambda pair: (pair[0].created_at, pair[0].id))


def _grouped(members: list[Alert], context: AlertContext, *, fleet: bool = False) -> Alert:
    first = members[0]
    count = len(members)
    connectors = {a.connector for a in members}
    connector = next(iter(connectors)) if len(connectors) == 1 and first.connector else ""
    if fleet:
        portals = len({a.portal for a in members})
        short = f"{connector or f'{count} targets'} on {portals} portals"
        scope = f"{connector} on {portals} portals ({count} lines)" if connector else short
        portal = where = "*"
    else:
        where = first.portal or "Targets"
        what = f"{connector} on {count} lines" if connector else f"{count} targets"
        scope = short = f"{what} at {where}"
        portal = first.portal
    body = [_group_headline(first, scope), ""]
    if not fleet:
        body += context.labels_of(first.portal).lines()
    body.append(f"Portal:    {where if not fleet else f'{portals} portals'}")
    if connector:
        body.append(f"Connector: {connector}")
    body.append(f"Targets:   {count}")
    earliest = min((a.since or a.created_at for a in members), default=first.created_at)
    if first.event not in RECOVERIES:
        body.append(f"Since:     {stamp(earliest)} ({_span(first.created_at - earliest)} ago)")
    shared = len({a.detail for a in members}) == 1
    body += ["", *_listing(members, context, fleet=fleet, with_detail=not shared), ""]
    if shared and first.detail:
        body += [f"What happened: {first.detail}", ""]
    advice = list(dict.fromkeys(a.advice for a in members if a.advice))
    if advice:
        body += [f"What to do: {' / '.join(advice[:3])}", ""]
    if first.event not in RECOVERIES:
        body += ["Each target is followed on its own; its recovery is announced when it comes.", ""]
    body.append(f"Checked at {stamp(first.created_at)} by the Bitrix24 connector monitor.")
    return replace(
        first,
        id=f"{portal}|{first.event.value}|group|{first.id}",
        portal=portal,
        connector="*",
        line="*",
        subject=ascii_line(f"{_head(first)}: {short}", SUBJECT_LIMIT),
        message=clip("\n".join(body), MESSAGE_LIMIT),
        targets=count,
    )


def _group_headline(first: Alert, scope: str) -> str:
    words = words_for(first.reason)
    if first.closing:
        return (
            f"No longer monitored: {scope}. They left the configuration with an incident "
            "open; this closes those alerts, it does not say the connectors work."
        )
    if first.event is AlertEvent.CONNECTOR_DOWN:
        again = " (reminder)" if first.reminder else ""
        return f"{words.word}{again}: {scope}. {_upper_first(words.meaning)}."
    if first.event is AlertEvent.CONNECTOR_RECOVERED:
        return f"Working again (STATUS=true): {scope}."
    if first.event is AlertEvent.CHECK_RECOVERED:
        return f"The monitor can see again: {scope}."
    note = f"Their state is UNKNOWN: {words.meaning}."
    if words.severity is not Severity.CRITICAL:
        note += " This is not a connector outage."
    return f"{words.word}: the monitor cannot see {scope}. {note}"


def _listing(
    members: list[Alert], context: AlertContext, *, fleet: bool, with_detail: bool
) -> list[str]:
    shown: list[str] = []
    for alert in members[:GROUP_LISTING_LIMIT]:
        item = f"- {alert.connector or '-'} on line {context.line(alert.portal, alert.line)}"
        if fleet:
            item += f" at {alert.portal}"
        if alert.event in RECOVERIES and alert.since is not None:
            item += f" ({'down' if alert.event in CONNECTOR_EVENTS else 'not seen'} "
            item += f"{_span(alert.created_at - alert.since)})"
        if with_detail and alert.detail:
            item += f": {clip(alert.detail, 200)}"
        shown.append(item)
    if len(members) > GROUP_LISTING_LIMIT:
        shown.append(f"- and {len(members) - GROUP_LISTING_LIMIT} more")
    return shown
