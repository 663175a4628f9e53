"""Alerts: what a person receives. The wording lives here, with no knowledge of SNS."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from .results import Cause
from .targets import ConfigIssue, ConfigProblem, Subject, Target
from .text import MESSAGE_LIMIT, clip
from .timestamps import stamp

SUBJECT_LIMIT = 100  # SNS refuses longer subjects
ENTRY_SHOWN = 200  # a Targets entry quoted in an alert


class AlertEvent(StrEnum):
    CONNECTOR_DOWN = "connector.down"
    CONNECTOR_RECOVERED = "connector.recovered"
    CHECK_FAILED = "check.failed"
    CHECK_RECOVERED = "check.recovered"


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


GROUPED_EVENTS = (AlertEvent.CHECK_FAILED, AlertEvent.CHECK_RECOVERED)

SEVERITY = {
    AlertEvent.CONNECTOR_DOWN: Severity.CRITICAL,
    AlertEvent.CONNECTOR_RECOVERED: Severity.INFO,
    AlertEvent.CHECK_FAILED: Severity.WARNING,
    AlertEvent.CHECK_RECOVERED: Severity.INFO,
}


@dataclass(frozen=True)
class Alert:
    """One notification, identified so that a retried run cannot send it twice."""

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

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.event]

    @property
    def attributes(self) -> dict[str, str]:
        """The contract's filterable attributes (every value a non-empty string)."""
        return {
            "event": self.event.value,
            "portal": self.portal or "-",
            "connector": self.connector or "-",
            "line": self.line or "-",
            "severity": self.severity.value,
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


def make_alert(event: AlertEvent, subject: Subject, facts: Facts) -> Alert:
    portal, connector, line = _names(subject)
    suffix = f"#{facts.reminder}" if facts.reminder else ""
    return Alert(
        id=f"{subject.key}|{event.value}|{stamp(facts.incident_since)}{suffix}",
        event=event,
        portal=portal,
        connector=connector,
        line=line,
        subject=_subject_line(event, subject, facts),
        message=clip(_message(event, subject, facts), MESSAGE_LIMIT),
        created_at=facts.now,
        cause=facts.cause if event in GROUPED_EVENTS else None,
        closing=facts.closing,
    )


def _names(subject: Subject) -> tuple[str, str, str]:
    if isinstance(subject, Target):
        return subject.portal, subject.connector, str(subject.line)
    return subject.portal, subject.connector, subject.line


def _subject_line(event: AlertEvent, subject: Subject, facts: Facts) -> str:
    portal, connector, line = _names(subject)
    head = {
        AlertEvent.CONNECTOR_DOWN: "DOWN" if not facts.reminder else "STILL DOWN",
        AlertEvent.CONNECTOR_RECOVERED: "RECOVERED",
        AlertEvent.CHECK_FAILED: "CHECK FAILED",
        AlertEvent.CHECK_RECOVERED: "CHECK OK",
    }[event]
    if facts.closing:
        head = "NO LONGER MONITORED" + (" (LINE DELETED)" if facts.detail else "")
    if _discovery(subject):
        text = f"{head}: discovery of {connector} at {portal}"
    elif isinstance(subject, ConfigIssue) and subject.problem is ConfigProblem.VALIDATION:
        text = f"{head}: validation off at {subject.portal}"
    elif isinstance(subject, ConfigIssue):
        text = f"{head}: bad target {subject.entry}"
    else:
        text = f"{head}: {connector} on line {line} at {portal}"
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


def _message(event: AlertEvent, subject: Subject, facts: Facts) -> str:
    portal, connector, line = _names(subject)
    lines = [_headline(event, subject, facts), ""]
    lines += [
        f"Portal:    {portal or '-'}",
        f"Connector: {connector or '-'}",
        f"Open line: {line or '-'}",
    ]
    if isinstance(subject, ConfigIssue):
        lines.append(f"Entry:     {clip(subject.entry, ENTRY_SHOWN)}")
    span = _span(facts.now - facts.incident_since)
    if facts.closing:
        lines.append(f"Incident:  since {stamp(facts.incident_since)} ({span}), left open")
    elif event in (AlertEvent.CONNECTOR_RECOVERED, AlertEvent.CHECK_RECOVERED):
        lines.append(f"Outage:    {stamp(facts.incident_since)} to {stamp(facts.now)} ({span})")
    else:
        lines.append(f"Since:     {stamp(facts.incident_since)} ({span} ago)")
    if facts.status is not None:
        lines.append(
            "Answer:    "
            f"STATUS={_flag(facts.status)} CONFIGURED={_flag(facts.configured)} "
            f"ERROR={_flag(facts.error)}"
        )
    if facts.detail and not facts.closing:  # a closing alert's headline says it
        lines += ["", f"What it means: {facts.detail}"]
    action = _action(event, facts, subject)
    if action:
        lines += ["", f"What to do: {action}"]
    lines += ["", f"Checked at {stamp(facts.now)} by the Bitrix24 connector monitor."]
    return "\n".join(lines)


def _headline(event: AlertEvent, subject: Subject, facts: Facts) -> str:
    if facts.closing and isinstance(subject, ConfigIssue):
        if subject.problem is ConfigProblem.LIST:
            return "TARGETS can be read again: the monitor checks its targets once more."
        if _discovery(subject):
            return f"Discovery of {subject.connector} on {subject.portal} has finished."
        if subject.problem is ConfigProblem.VALIDATION:
            return f"Connector validation works again on {subject.portal}."
    if facts.closing:
        what = (
            f"The Targets entry '{clip(subject.entry, ENTRY_SHOWN)}'"
            if isinstance(subject, ConfigIssue)
            else f"Connector '{subject.connector}' on open line {subject.line} of {subject.portal}"
        )
        why = facts.detail or "it left the configuration"
        return (
            f"{what} is no longer monitored: {why} while its "
            f"{'outage' if event is AlertEvent.CONNECTOR_RECOVERED else 'check failure'} was "
            "open. This closes that alert; it does not say the connector works."
        )
    if isinstance(subject, ConfigIssue):
        if _discovery(subject):
            return f"The monitor has not found all the lines of {subject.connector} yet."
        if subject.problem is ConfigProblem.VALIDATION:
            return f"The monitor cannot validate the targets of {subject.portal}."
        return f"The monitor cannot check the target '{subject.entry}': it is misconfigured."
    name = f"Connector '{subject.connector}' on open line {subject.line} of {subject.portal}"
    if event is AlertEvent.CONNECTOR_DOWN:
        again = f" (reminder {facts.reminder})" if facts.reminder else ""
        return f"{name} is DOWN{again}: customer messages are not reaching operators."
    if event is AlertEvent.CONNECTOR_RECOVERED:
        return f"{name} is working again (STATUS=true)."
    if event is AlertEvent.CHECK_FAILED:
        return f"The monitor cannot see {name.lower()[0]}{name[1:]}; its state is UNKNOWN."
    return f"The monitor can see {name.lower()[0]}{name[1:]} again."


def _action(event: AlertEvent, facts: Facts, subject: Subject) -> str | None:
    if facts.closing and facts.detail:
        return "nothing, if the line was deleted on purpose; otherwise recreate it."
    if facts.closing:
        return "nothing, if the target was removed on purpose; otherwise put it back in Targets."
    if event is AlertEvent.CONNECTOR_DOWN:
        if facts.error:
            return "call imconnector.activate (CONNECTOR, LINE, ACTIVE=1) after fixing the cause."
        if facts.configured is False:
            return "reconnect the connector to the open line (Contact Center settings)."
        return "check the connector's settings and the application's own service."
    if event is AlertEvent.CHECK_FAILED:
        if _discovery(subject):
            return (
                "nothing at once; if it lasts, give the portal more request room or name "
                "the lines in Targets."
            )
        if isinstance(subject, ConfigIssue) and subject.problem is ConfigProblem.VALIDATION:
            return "reinstall the application as a portal administrator (see above)."
        if facts.cause is Cause.CONFIGURATION:
            return "fix the Targets parameter (domain/connector/line) or the secret, then redeploy."
        if facts.cause is Cause.AUTH_LOST:
            domain = subject.portal or "DOMAIN"
            return (
                f"re-authorise the application with `monitorctl portals authorize {domain}` (a "
                "portal administrator opens the link it prints; the stack stores the new "
                "tokens). Tokens obtained another way go in the secret, or, if the token table "
                f"holds the portal's pair (a fleet), in with `monitorctl tokens set {domain}`."
            )
        return "this is not a connector outage; the monitor keeps trying on every run."
    return None


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


GROUP_LISTING_LIMIT = 50


def combine(alerts: list[Alert]) -> list[tuple[Alert, list[Alert]]]:
    """Messages to send for these alerts: one per alert, except that the monitor's own
    blindness on one portal (`check.*` for many targets at once, e.g. a revoked token) is one
    message per portal and event, not one per line. Misconfigured targets and targets no longer
    monitored are grouped apart from blindness, so neither reads as a portal outage. Each
    message comes with the alerts it carries.
    """
    singles: list[tuple[Alert, list[Alert]]] = []
    groups: dict[tuple[str, AlertEvent, str], list[Alert]] = {}
    for alert in sorted(alerts, key=lambda a: (a.created_at, a.id)):
        if alert.event in GROUPED_EVENTS:
            groups.setdefault((alert.portal, alert.event, _group_kind(alert)), []).append(alert)
        else:
            singles.append((alert, [alert]))
    for (_, _, kind), members in groups.items():
        singles.append((members[0] if len(members) == 1 else _grouped(members, kind), members))
    return sorted(singles, key=lambda pair: (pair[0].created_at, pair[0].id))


def _group_kind(alert: Alert) -> str:
    if alert.closing:
        return "closing"
    return "configuration" if alert.cause is Cause.CONFIGURATION else "blind"


# subject head, what the first sentence says the monitor does, by group kind and event
_GROUP_WORDS: dict[tuple[str, AlertEvent], tuple[str, str]] = {
    ("blind", AlertEvent.CHECK_FAILED): ("CHECK FAILED", "cannot see"),
    ("blind", AlertEvent.CHECK_RECOVERED): ("CHECK OK", "can see again"),
    ("configuration", AlertEvent.CHECK_FAILED): (
        "MISCONFIGURED",
        "cannot check, because they are misconfigured (the portal itself answers),",
    ),
    ("configuration", AlertEvent.CHECK_RECOVERED): ("CONFIG OK", "can check again"),
    ("closing", AlertEvent.CHECK_RECOVERED): ("NO LONGER MONITORED", "no longer monitors"),
}


def _grouped(members: list[Alert], kind: str) -> Alert:
    first = members[0]
    count = len(members)
    head, verb = _GROUP_WORDS.get((kind, first.event), _GROUP_WORDS[("blind", first.event)])
    where = first.portal or "Targets"
    listing = [
        f"- {a.connector} on line {a.line}: {a.message.splitlines()[0]}"
        for a in members[:GROUP_LISTING_LIMIT]
    ]
    if count > GROUP_LISTING_LIMIT:
        listing.append(f"- and {count - GROUP_LISTING_LIMIT} more")
    body = [f"The monitor {verb} {count} targets on {where}.", "", *listing, ""]
    body += ["First target's details:", "", first.message]
    return Alert(
        id=f"{first.portal}|{first.event.value}|group|{first.id}",
        event=first.event,
        portal=first.portal,
        connector="*",
        line="*",
        subject=ascii_line(f"{head}: {count} targets at {where}", SUBJECT_LIMIT),
        message=clip("\n".join(body), MESSAGE_LIMIT),
        created_at=first.created_at,
        cause=first.cause,
        closing=first.closing,
    )
