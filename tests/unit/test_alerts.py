"""Alert wording and grouping: what lands in a person's inbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connector_monitor.domain.alerts import Alert, AlertEvent, Facts, combine, make_alert
from connector_monitor.domain.causes import WORDS, Deployment
from connector_monitor.domain.client_context import AlertContext
from connector_monitor.domain.labels import LabelError, PortalLabels
from connector_monitor.domain.portal_errors import ErrorKind, PortalError
from connector_monitor.domain.results import Cause
from connector_monitor.domain.targets import Target
from connector_monitor.domain.text import MESSAGE_LIMIT

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def alert(event: AlertEvent, line: int, portal: str = "a.bitrix24.com", minutes: int = 0):  # type: ignore[no-untyped-def]
    facts = Facts(
        detail="a.bitrix24.com: auth_lost (invalid_token)",
        status=None,
        configured=None,
        error=None,
        cause=Cause.AUTH_LOST,
        incident_since=T0,
        now=T0 + timedelta(minutes=minutes),
    )
    return make_alert(event, Target(portal, "tg", line), facts)


def test_blindness_on_one_portal_is_one_message() -> None:
    alerts = [alert(AlertEvent.CHECK_FAILED, n) for n in range(1, 61)]
    messages = combine(alerts)
    assert len(messages) == 1
    message, members = messages[0]
    assert len(members) == 60
    assert message.attributes["connector"] == "*"
    assert message.attributes["line"] == "*"
    assert message.attributes["event"] == "check.failed"
    assert message.attributes["targets"] == "60"
    assert message.attributes["cause"] == "auth_lost"
    assert message.subject == "APP REVOKED: tg on 60 lines at a.bitrix24.com"
    assert "and 10 more" in message.message


def down_alert(line: int, portal: str = "a.bitrix24.com", connector: str = "tg") -> Alert:
    facts = Facts(
        "CONFIGURED=false: the connector is no longer registered",
        False,
        False,
        False,
        None,
        incident_since=T0,
        now=T0 + timedelta(minutes=10),
    )
    return make_alert(AlertEvent.CONNECTOR_DOWN, Target(portal, connector, line), facts)


def test_three_lines_down_on_one_portal_are_one_page() -> None:
    ((message, members),) = combine([down_alert(n) for n in (1, 2, 3)])
    assert len(members) == 3
    assert message.subject == "CONNECTOR DOWN: tg on 3 lines at a.bitrix24.com"
    assert message.attributes == {
        "event": "connector.down",
        "portal": "a.bitrix24.com",
        "connector": "*",
        "line": "*",
        "severity": "critical",
        "cause": "connector_down",
        "targets": "3",
    }
    listed = [line for line in message.message.splitlines() if line.startswith("- ")]
    assert listed == ["- tg on line 1", "- tg on line 2", "- tg on line 3"]
    # the shared explanation once, not once per line
    assert message.message.count("CONFIGURED=false") == 1
    assert "its recovery is announced" in message.message


def test_one_connector_failing_across_the_fleet_is_one_page() -> None:
    portals = [f"p{n}.bitrix24.com" for n in range(212)]
    downs = [down_alert(1, p, "myconnector") for p in portals] + [down_alert(2, portals[0])]
    messages = combine(downs)
    fleet = [m for m, ms in messages if m.portal == "*"]
    assert len(fleet) == 1
    assert fleet[0].subject == "CONNECTOR DOWN: myconnector on 212 portals"
    assert fleet[0].attributes["targets"] == "212"
    assert "- myconnector on line 1 at p0.bitrix24.com" in fleet[0].message
    # the other connector on the first portal is its own message
    assert sorted(len(ms) for _, ms in messages) == [1, 212]


def test_a_few_portals_failing_alike_stay_per_portal() -> None:
    downs = [down_alert(1, f"p{n}.bitrix24.com") for n in range(4)]
    assert [m.portal for m, _ in combine(downs)] == [f"p{n}.bitrix24.com" for n in range(4)]


def test_a_down_and_its_reminder_are_not_merged() -> None:
    first = down_alert(1)
    reminder = Facts(None, False, False, False, None, T0, T0 + timedelta(hours=1), reminder=1)
    again = make_alert(AlertEvent.CONNECTOR_DOWN, Target("a.bitrix24.com", "tg", 2), reminder)
    subjects = sorted(m.subject for m, _ in combine([first, again]))
    assert subjects[0].startswith("CONNECTOR DOWN: ")
    assert subjects[1].startswith("CONNECTOR STILL DOWN: ")


def test_groups_are_per_portal_and_event_in_time_order() -> None:
    alerts = [
        alert(AlertEvent.CHECK_FAILED, 1, "a.bitrix24.com"),
        alert(AlertEvent.CHECK_FAILED, 2, "b.bitrix24.com"),
        alert(AlertEvent.CONNECTOR_DOWN, 3, "a.bitrix24.com", minutes=-1),
    ]
    events = [(m.event.value, m.portal, len(ms)) for m, ms in combine(alerts)]
    assert events == [
        ("connector.down", "a.bitrix24.com", 1),
        ("check.failed", "a.bitrix24.com", 1),
        ("check.failed", "b.bitrix24.com", 1),
    ]


def test_lost_authorisation_names_the_command_that_stores_a_fleet_portals_new_pair() -> None:
    ((message, _),) = combine([alert(AlertEvent.CHECK_FAILED, 7)])
    assert "in the secret" in message.message  # a small stack's portal
    assert "`monitorctl tokens set a.bitrix24.com`" in message.message  # a fleet portal's
    # the way that needs no tokens copied by hand: the stack's own re-authorisation link
    assert "`monitorctl portals authorize a.bitrix24.com`" in message.message


def test_a_single_check_failed_keeps_its_own_attributes() -> None:
    ((message, _),) = combine([alert(AlertEvent.CHECK_FAILED, 7)])
    assert message.attributes["line"] == "7"
    assert "re-authorise" in message.message


def test_a_down_alert_says_how_long_ago_and_a_recovery_how_long_it_lasted() -> None:
    base = Facts(None, False, False, False, None, incident_since=T0, now=T0 + timedelta(minutes=10))
    down = make_alert(AlertEvent.CONNECTOR_DOWN, Target("a.bitrix24.com", "tg", 1), base)
    assert "Since:     2026-11-24T12:00:00Z (10 min ago)" in down.message
    later = Facts(None, True, True, False, None, incident_since=T0, now=T0 + timedelta(hours=3))
    up = make_alert(AlertEvent.CONNECTOR_RECOVERED, Target("a.bitrix24.com", "tg", 1), later)
    assert "Outage:    2026-11-24T12:00:00Z to 2026-11-24T15:00:00Z (3 h 0 min)" in up.message


def config_alert(line: int, portal: str = "a.bitrix24.com"):  # type: ignore[no-untyped-def]
    facts = Facts(
        detail="open line 99 does not exist on the portal",
        status=None,
        configured=None,
        error=None,
        cause=Cause.CONFIGURATION,
        incident_since=T0,
        now=T0,
    )
    return make_alert(AlertEvent.CHECK_FAILED, Target(portal, "tg", line), facts)


def test_misconfigured_targets_on_a_healthy_portal_do_not_read_as_an_outage() -> None:
    messages = combine([config_alert(n) for n in range(1, 6)])
    (message, members) = messages[0]
    assert len(messages) == 1 and len(members) == 5
    assert message.subject == "MISCONFIGURED: tg on 5 lines at a.bitrix24.com"
    assert "the portal answers" in message.message
    assert "not a connector outage" in message.message


def test_blindness_and_misconfiguration_on_one_portal_are_two_messages() -> None:
    blind = [alert(AlertEvent.CHECK_FAILED, n) for n in (1, 2)]
    wrong = [config_alert(n) for n in (3, 4)]
    subjects = sorted(m.subject for m, _ in combine(blind + wrong))
    assert subjects == [
        "APP REVOKED: tg on 2 lines at a.bitrix24.com",
        "MISCONFIGURED: tg on 2 lines at a.bitrix24.com",
    ]


def test_an_alert_message_is_bounded_whatever_the_detail() -> None:
    facts = Facts(
        detail="x" * 1_000_000,
        status=None,
        configured=None,
        error=None,
        cause=Cause.BAD_ANSWER,
        incident_since=T0,
        now=T0,
    )
    made = make_alert(AlertEvent.CHECK_FAILED, Target("a.bitrix24.com", "tg", 1), facts)
    assert len(made.message) <= MESSAGE_LIMIT
    grouped, _ = combine([made, *[alert(AlertEvent.CHECK_FAILED, n) for n in range(2, 200)]])[0]
    assert len(grouped.message) <= MESSAGE_LIMIT


def blind(code: str, http_status: int, deployment: Deployment = Deployment.TARGETS) -> Alert:
    """The check.failed alert of a portal answering this error code."""
    error = PortalError(ErrorKind.ACCESS_DENIED, "c.bitrix24.com", code=code, http_status=403)
    from connector_monitor.domain.portal_errors import classify

    error = PortalError(classify(code, http_status), "c.bitrix24.com", code=code)
    facts = Facts(error.detail, None, None, None, error.cause, incident_since=T0, now=T0)
    target = Target("c.bitrix24.com", "tg", 1)
    return make_alert(AlertEvent.CHECK_FAILED, target, facts, AlertContext(deployment))


# Codes from bitrix24/b24restdocs _includes/system-errors.md; statuses as the local portal
# answers them (local/bitrix24_portal/protocol.py).
@pytest.mark.parametrize(
    ("code", "status", "word", "cause", "severity"),
    [
        ("PAYMENT_REQUIRED", 402, "PORTAL UNPAID", "portal_unpaid", "critical"),
        ("PORTAL_DELETED", 403, "PORTAL DELETED", "portal_deleted", "critical"),
        ("invalid_grant", 400, "APP REVOKED", "auth_lost", "warning"),
        ("insufficient_scope", 401, "ACCESS DENIED", "access_denied", "warning"),
        ("QUERY_LIMIT_EXCEEDED", 503, "RATE LIMITED", "rate_limited", "warning"),
        ("INTERNAL_SERVER_ERROR", 500, "PORTAL FAILING", "portal_failing", "warning"),
    ],
)
def test_every_cause_is_a_word_in_the_subject_and_an_attribute(
    code: str, status: int, word: str, cause: str, severity: str
) -> None:
    made = blind(code, status)
    assert made.subject == f"{word}: tg on line 1 at c.bitrix24.com"
    assert made.attributes["cause"] == cause
    assert made.attributes["severity"] == severity


def test_unpaid_deleted_and_scope_each_have_their_own_advice() -> None:
    advice = {code: blind(code, 403).advice for code in WORDS_BY_CODE}
    assert len(set(advice.values())) == len(WORDS_BY_CODE)
    assert "renew" in advice["PAYMENT_REQUIRED"]
    assert "Bitrix24 support" not in advice["PORTAL_DELETED"]
    assert "scopes" in advice["insufficient_scope"]


WORDS_BY_CODE = ("PAYMENT_REQUIRED", "PORTAL_DELETED", "insufficient_scope", "QUERY_LIMIT_EXCEEDED")


def test_every_cause_has_a_word_severity_and_advice() -> None:
    assert set(WORDS) >= {c.value for c in Cause} | {"connector_down"}
    for words in WORDS.values():
        assert words.word.isupper() and words.meaning and words.advice


def test_advice_follows_the_deployment() -> None:
    facts = Facts("no usable credentials", None, None, None, Cause.NO_TOKENS, T0, T0)
    target = Target("c.bitrix24.com", "tg", 1)
    listed = make_alert(AlertEvent.CHECK_FAILED, target, facts, AlertContext(Deployment.TARGETS))
    registered = make_alert(
        AlertEvent.CHECK_FAILED, target, facts, AlertContext(Deployment.REGISTRY)
    )
    assert listed.subject.startswith("NO TOKENS: ")
    assert "secret" in listed.advice and "redeploy" in listed.advice
    assert "`monitorctl tokens set c.bitrix24.com`" in registered.advice
    assert "Targets parameter" not in registered.message


def test_no_internals_in_the_operator_s_text() -> None:
    made = blind("INTERNAL_SERVER_ERROR", 500)
    # the portal named once per field, not "c.bitrix24.com: c.bitrix24.com: ..."
    assert "c.bitrix24.com: " not in made.message
    # the error's own advice is not repeated next to "What to do"
    assert made.message.count("the next run tries again") == 0
    assert made.message.count("What to do:") == 1


def test_client_labels_and_line_names_appear_in_alerts() -> None:
    context = AlertContext(
        Deployment.REGISTRY,
        labels={
            "c.bitrix24.com": PortalLabels(
                client="Acme", owner="jane@example.com", tier="gold", runbook="https://wiki/acme"
            )
        },
        line_names={"c.bitrix24.com/2": "Support", "c.bitrix24.com/3": "Sales"},
    )
    facts = Facts(None, False, True, True, None, incident_since=T0, now=T0)
    single = make_alert(
        AlertEvent.CONNECTOR_DOWN, Target("c.bitrix24.com", "tg", 2), facts, context
    )
    assert "Open line: Support (2)" in single.message
    assert "Client:    Acme (owner: jane@example.com, tier: gold)" in single.message
    assert "Runbook:   https://wiki/acme" in single.message
    assert "on line Support (2) at" in single.subject
    other = make_alert(AlertEvent.CONNECTOR_DOWN, Target("c.bitrix24.com", "tg", 3), facts)
    ((group, _),) = combine([single, other], context)
    assert "- tg on line Sales (3)" in group.message
    assert "Client:    Acme" in group.message


@pytest.mark.parametrize(
    "labels",
    [
        {"client": "x" * 81},
        {"client": "Acme\nSubject: fake"},
        {"runbook": "http://insecure.example.com"},
        {"runbook": "javascript:alert(1)"},
        {"colour": "red"},
        {"tier": 3},
    ],
)
def test_bad_labels_are_refused_with_a_reason(labels: dict[str, object]) -> None:
    with pytest.raises(LabelError):
        PortalLabels.from_fields(labels)
