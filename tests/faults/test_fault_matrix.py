"""THE FAULT MATRIX: each way the portal, the network or AWS can fail, one row each.

Every row starts from a healthy world (portal A: myconnector on lines 12, 14, 16; portal B: line
1; one baseline run done, all UP), injects its fault, runs the checker enough times to cross the
failure threshold (2), and checks what a user would notice:

- states:  each target's stored state and cause (targets a row does not name must be UP);
- alerts:  what SNS delivered, exactly (event, portal, connector, line, severity), each once;
           a portal-wide `check.failed` is one message with connector and line "*";
- records: STATE items (state, cause, pending alerts), the RUN item of the last good run, the
           secret (untouched, or only the named portals' token pair rotated), OAuth refreshes
           and REST requests per portal;
- log:     a JSON log line naming the portal (where there is one) and the error.

Then the fault clears: the next run delivers what is due (the recoveries, or what was held back)
once, and the run after is silent. Finally: each target's history holds the alerts delivered for
it, and no token or client secret appeared in a log line, a stored item, an alert or a return
value.

Rows marked xfail state the right behaviour for a known bug (the reason names it).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connector_monitor.bitrix24.rest_session import RetryPolicy
from connector_monitor.domain.results import Cause
from tests.faults.conftest import (
    AS_DEPLOYED,
    B_LINE,
    CONNECTOR,
    FAST,
    WRITES,
    A,
    B,
    C,
    Waits,
    World,
    closed_port,
    key,
)

THRESHOLD = 2  # FAILURE_THRESHOLD of the stack
SEVERITY = {
    "connector.down": "critical",
    "connector.recovered": "info",
    "check.failed": "warning",
    "check.recovered": "info",
}
RECOVERY = {"connector.down": "connector.recovered", "check.failed": "check.recovered"}


# ---- the vocabulary of the table ---------------------------------------------------------------
@dataclass(frozen=True)
class Seen:
    """A stored state, and the causes an UNKNOWN may carry."""

    state: str
    causes: frozenset[str] = frozenset()

    def matches(self, state: str, cause: str | None) -> bool:
        if state != self.state:
            return False
        return cause in self.causes if self.causes else cause is None

    def __str__(self) -> str:
        return f"{self.state}/{'|'.join(sorted(self.causes))}" if self.causes else self.state


UP = Seen("UP")
DOWN = Seen("DOWN")


def unknown(*causes: Cause) -> Seen:
    return Seen("UNKNOWN", frozenset(c.value for c in causes))


@dataclass(frozen=True)
class Sent:
    """One alert SNS delivered; `says` is a substring of its message."""

    event: str
    portal: str
    connector: str = "*"
    line: str = "*"
    says: str = ""
    severity: str = ""  # when the cause's severity is not the event's usual one

    @property
    def attributes(self) -> tuple[str, str, str, str, str]:
        severity = self.severity or SEVERITY[self.event]
        return (self.event, self.portal, self.connector, self.line, severity)

    def recovery(self) -> Sent:
        return Sent(RECOVERY[self.event], self.portal, self.connector, self.line)


def down(portal: str, line: int, says: str = "") -> Sent:
    return Sent("connector.down", portal, CONNECTOR, str(line), says)


def failed(
    portal: str, connector: str = "*", line: int | str = "*", says: str = "", severity: str = ""
) -> Sent:
    return Sent("check.failed", portal, connector, str(line), says, severity)


@dataclass(frozen=True)
class Expect:
    states: Mapping[str, Seen]  # by target key, else by portal; targets not named: UP
    alerts: tuple[Sent, ...] = ()  # delivered during the fault runs, each exactly once
    log: tuple[str, ...] = ()  # each in some JSON log line that names the row's portal
    pending: Mapping[str, int] = field(default_factory=dict)  # stored, by target (others: 0)
    secret: tuple[str, ...] = ()  # portals whose token pair was rotated (the rest: untouched)
    refreshes: Mapping[str, int] = field(default_factory=dict)  # OAuth refreshes (others: 0)
    refreshes_in_all: int | None = None  # instead: all portals' together (which: either)
    requests: Mapping[str, int] = field(default_factory=dict)  # REST requests, by portal
    summary: Mapping[str, int] = field(default_factory=dict)  # figures of the last run
    fails: str | None = None  # every fault run is a Lambda error whose text holds this
    also: Callable[[World], None] | None = None  # a row's own extra check
    after: tuple[Sent, ...] | None = None  # first run after clearing (default: recoveries)
    after_states: Mapping[str, Seen] = field(default_factory=dict)


def nothing(_: World) -> None:
    """No clean-up beyond dropping the injected faults and hooks."""


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[World], None]
    expect: Expect
    clear: Callable[[World], None] = nothing
    runs: int = THRESHOLD
    remaining_ms: int = 120_000  # the Lambda's remaining time (the handler keeps 15 s back)
    tuning: Waits = FAST
    portal: str | None = A  # the portal the log lines must name (None: an AWS-wide fault)
    xfail: str | None = None  # a known bug: the row states the right behaviour
    modes: tuple[str, ...] = ("secret", "fleet")  # the worlds it applies to (conftest.World)


# ---- injections ---------------------------------------------------------------------------------
def on_portal(fault: str, portal: str = A, **options: Any) -> Callable[[World], None]:
    return lambda w: w.portal.inject(portal, fault, **options)


def endpoint(url: str) -> Callable[[World], None]:
    return lambda w: w.edit_entry(A, client_endpoint=url)


def refused_connection(w: World) -> None:
    w.edit_entry(A, client_endpoint=f"http://127.0.0.1:{closed_port()}/rest/")


def restore_secret(w: World) -> None:
    w.restore_pairs()


def reauthorise(w: World) -> None:
    w.reauthorise(A)


def refresh_token_refused(w: World) -> None:
    w.portal.inject(A, "expired_token")  # every REST call: the access token expired
    w.portal.revoke(A)  # and the refresh token is no longer valid: invalid_grant


def oauth_server_failing(w: World) -> None:
    w.portal.expire_access_tokens(A)
    w.portal.inject(A, "http_503", method="oauth")


def write_back_refused(w: World) -> None:
    w.portal.expire_access_tokens(A)
    w.refuse_pair_writes()


def every_token_expired_and_pair_writes_refused(w: World) -> None:
    for domain in w.portals:
        w.portal.expire_access_tokens(domain)
    w.refuse_pair_writes()


def pairs_lost(w: World) -> list[str]:
    """The portals whose refreshed pair the run could not store: its loud log line names them."""
    lines = [line for line in w.log_lines() if "NEW REFRESH TOKEN NOT STORED" in line]
    return [p for p in w.portals if any(f"portal {p}:" in line for line in lines)]


def reauthorise_the_lost(w: World) -> None:
    """What a person does after the loud log line: re-authorise the portals it names."""
    for domain in pairs_lost(w):
        w.reauthorise(domain)


def one_pair_lost_the_other_left_for_the_next_run(w: World) -> None:
    (lost,) = pairs_lost(w)  # one re-authorisation at most
    (left,) = [p for p in w.portals if p != lost]
    detail = {str(item["detail"]) for t, item in w.states().items() if t.startswith(f"{left}/")}
    assert len(detail) == 1 and "not refreshed: the token store refused a write" in detail.pop()


def expired_token_mid_batch(w: World) -> None:
    w.add_portal(C, lines=C_LINES)  # the inventory, then 2 batch requests: 50 statuses, then 3
    w.portal.inject(C, "timeout", count=2, delay=0.01)  # the first two requests pass untouched
    w.portal.inject(C, "expired_token", count=1)  # the second chunk is refused once


def deadline_mid_cycle(w: World) -> None:
    w.add_portal(C, lines=C_LINES)

    def arm() -> None:  # every run: the first chunk answers, the second hangs past the deadline
        w.portal.inject(C, "timeout", count=1, delay=0.01)
        w.portal.inject(C, "timeout", count=1, delay=10.0)  # the 10 s read would wait

    w.per_run.append(arm)


def corrupt_secret(w: World) -> None:
    w.put_secret_text(w.original_secret[: len(w.original_secret) // 2])  # a cut-off edit


def two_connectors_down(w: World) -> None:
    w.portal.disconnect(A, CONNECTOR, 12)
    w.portal.disconnect(A, CONNECTOR, 14)


def after_one_down_run(fault: Callable[[World], None]) -> Callable[[World], None]:
    """Line 14 goes down and one run stores it; the fault then hits the run that crosses the
    threshold, where connector.down is due."""

    def inject(w: World) -> None:
        w.portal.disconnect(A, CONNECTOR, 14)
        outcome = w.invoke()
        assert isinstance(outcome, dict), outcome
        fault(w)

    return inject


def reconnect_14(w: World) -> None:
    w.portal.connect(A, CONNECTOR, 14)


def throttled(times: int) -> Callable[[World], None]:
    def check(w: World) -> None:
        assert w.throttled == times  # the SDK retried each one and then succeeded

    return check


def secret_versions_added(count: int) -> Callable[[World], None]:
    def check(w: World) -> None:
        assert w.pair_writes() - w.secret_versions_before == count

    return check


def tokens_refreshed(count: int, runs: int = THRESHOLD) -> Callable[[World], None]:
    """The fault runs' summaries (their one log line each) count `count` refreshed pairs."""

    def check(w: World) -> None:
        summaries = [o for o in w.outcomes[-runs:] if isinstance(o, dict)]
        assert sum(o["tokens_refreshed"] for o in summaries) == count
        assert sum("tokens_refreshed" in line for line in w.log_lines()) >= len(summaries)

    return check


def within(seconds: float, runs: int = THRESHOLD) -> Callable[[World], None]:
    """Each of the last `runs` invocations (the fault runs) took less than `seconds`."""

    def check(w: World) -> None:
        assert max(w.durations[-runs:]) < seconds

    return check


PATIENT_RATE_LIMIT = Waits(FAST.timeouts, RetryPolicy(rate_limit_retries=1000, base_delay=0.05))
NOT_AN_OUTAGE = "not a connector outage"
REAUTHORISE = "re-authorise"
C_LINES = 53  # more than one batch (50 commands) holds
PAST_FIRST_50 = {
    key(C, n): unknown(Cause.DEADLINE, Cause.PORTAL_FAILING) for n in range(51, C_LINES + 1)
}
A_UNKNOWN = {A: unknown(Cause.PORTAL_FAILING)}


# ---- a hostile world and a tired operator ------------------------------------------------------
MB = 2**20
LAST_GOOD_TARGETS = "-"  # the attributes of an alert about TARGETS as a whole: no portal, no line


def open_incident(w: World) -> None:
    """Line 14 down for two runs: connector.down delivered (and set aside for the history)."""
    w.portal.disconnect(A, CONNECTOR, 14)
    for _ in range(THRESHOLD):
        assert isinstance(w.invoke(), dict)
    assert [a["event"] for a in w.alerts()] == ["connector.down"]


def slip(value: str) -> Callable[[World], None]:
    """An incident is open on line 14; a deploy then sets TARGETS to `value`, and line 14
    comes back while the slip lasts."""

    def inject(w: World) -> None:
        open_incident(w)
        w.deploy_targets(value)
        w.portal.connect(A, CONNECTOR, 14)

    return inject


def restore_targets(w: World) -> None:
    w.set_targets(w.monitored)


def whole_list(event: str, says: str = "") -> Sent:
    return Sent(event, LAST_GOOD_TARGETS, LAST_GOOD_TARGETS, LAST_GOOD_TARGETS, says)


def run_failed(reason: str) -> Callable[[World], None]:
    """The run record says the run checked nothing, and why (GET /health answers 503)."""

    def check(w: World) -> None:
        (run,) = w.items("RUN")
        assert reason in run["failed"]
        assert (run["summary"]["targets"], run["summary"]["up"]) == (0, 0)

    return check


def remove_line_14_while_down(w: World) -> None:
    open_incident(w)
    w.set_targets([t for t in w.monitored if t != key(A, 14)])


def stored_a_day_ahead(w: World) -> None:
    """A run on a clock one day fast stored line 14; then line 14 really goes down."""
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    w.edit_state(key(A, 14), checked_at=tomorrow.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    w.portal.disconnect(A, CONNECTOR, 14)


def hostile(fault: str, **options: Any) -> Callable[[World], None]:
    """Portal A answers every request with `fault`; the runs' memory is measured."""

    def inject(w: World) -> None:
        w.measure_memory()
        w.portal.inject(A, fault, **options)

    return inject


def hostile_oauth(fault: str, **options: Any) -> Callable[[World], None]:
    """A's access tokens expire, and its OAuth server answers every refresh with `fault`."""

    def inject(w: World) -> None:
        w.measure_memory()
        w.portal.expire_access_tokens(A)
        w.portal.inject(A, fault, method="oauth", **options)

    return inject


def adds_memory_below(megabytes: float) -> Callable[[World], None]:
    def check(w: World) -> None:
        assert max(w.peaks) < megabytes, f"a run's peak added {max(w.peaks):.1f} MB"

    return check


def inventory_item_below(portal: str, kilobytes: int) -> Callable[[World], None]:
    def check(w: World) -> None:
        (item,) = [i for i in w.items("INVENTORY") if i["sk"] == portal]
        assert len(repr(item)) < kilobytes * 1024
        assert len(item["line_ids"]) == LONG_NAMED_LINES

    return check


def with_long_line_names(w: World) -> None:
    """A portal with 200 open lines named with 3 KB each, every line a target."""
    w.add_portal(D, lines=LONG_NAMED_LINES, name=lambda n: f"{n} " + "N" * 3000)


D = "named.bitrix24.com"
LONG_NAMED_LINES = 200


# ---- a live portal, as its core behaves --------------------------------------------------------
def connector_list_refused(w: World) -> None:
    """The app was installed by a user without the Open Lines right to change connectors."""
    w.portal.deny_connector_list(A)
    w.forget_inventory(A)


def connector_list_allowed(w: World) -> None:
    w.portal.deny_connector_list(A, False)
    w.forget_inventory(A)


TYPO = f"{A}/myconector/12"


def mistyped_target(w: World) -> None:
    w.set_targets([*w.monitored, TYPO])
    w.forget_inventory(A)


def drop_mistyped_target(w: World) -> None:
    w.set_targets([t for t in w.monitored if t != TYPO])


def never_asked_about(connector: str) -> Callable[[World], None]:
    """No status command for `connector` reached the portal: an unknown pair is not asked."""

    def check(w: World) -> None:
        commands = [
            str(c) for r in w.portal.requests(A) for c in (r.params.get("cmd") or {}).values()
        ]
        assert commands and not any(f"CONNECTOR={connector}&" in c for c in commands)

    return check


def operating_time_nearly_spent(w: World) -> None:
    """imconnector.status used 90 % of the core's 420 s in this 10-minute window, on a portal
    checked in two chunks: the first chunk's answer says so, the second is not sent."""
    w.add_portal(C, lines=C_LINES)
    w.portal.set_operating(C, "imconnector.status", 0.9 * 420)


def operating_time_reset(w: World) -> None:
    w.portal.set_operating(C, "imconnector.status", 0.0)


# ---- THE TABLE ----------------------------------------------------------------------------------
FAULTS: list[Fault] = [
    # -- the portal: it answers, but the connector is down (the control row) --
    Fault(
        "connector genuinely down (control)",
        inject=lambda w: w.portal.disconnect(A, CONNECTOR, 14),
        clear=reconnect_14,
        expect=Expect(
            states={key(A, 14): DOWN},
            alerts=(down(A, 14, says="CONFIGURED=false"),),
            log=("connector.down",),
            requests={A: 2},
        ),
    ),
    # -- the portal cannot be reached or answers garbage: UNKNOWN, check.failed, never down --
    Fault(
        "portal timeout (no answer within the read timeout)",
        inject=on_portal("timeout", delay=1.0),
        expect=Expect(
            states=A_UNKNOWN,
            alerts=(failed(A, says=NOT_AN_OUTAGE),),
            log=("no answer within",),
            requests={A: 6},  # 1 + 2 retries per run
        ),
    ),
    Fault(
        "connection refused (client_endpoint on a closed port)",
        inject=refused_connection,
        clear=restore_secret,
        expect=Expect(
            states=A_UNKNOWN,
            alerts=(failed(A, says=NOT_AN_OUTAGE),),
            log=("the connection was refused",),
            requests={A: 0},
        ),
    ),
    Fault(
        "DNS failure (client_endpoint on a .invalid host)",
        inject=endpoint("https://no-such-host.invalid/rest/"),
        clear=restore_secret,
        expect=Expect(
            states=A_UNKNOWN,
            alerts=(failed(A, says=NOT_AN_OUTAGE),),
            log=("host name could not be resolved",),
            requests={A: 0},
        ),
    ),
    Fault(
        "connection dropped without an answer",
        inject=on_portal("drop"),
        expect=Expect(states=A_UNKNOWN, alerts=(failed(A),), log=("dropped",), requests={A: 6}),
    ),
    *(
        Fault(
            f"bare HTTP {status}",
            inject=on_portal(f"http_{status}"),
            expect=Expect(
                states=A_UNKNOWN,
                alerts=(failed(A, says=NOT_AN_OUTAGE),),
                log=(f"HTTP {status}",),
                requests={A: 6},
            ),
        )
        for status in (500, 502, 503)
    ),
    Fault(
        "HTML error page (nginx 502)",
        inject=on_portal("html"),
        expect=Expect(states=A_UNKNOWN, alerts=(failed(A),), log=("HTML page",), requests={A: 6}),
    ),
    Fault(
        "truncated JSON",
        inject=on_portal("truncated"),
        expect=Expect(
            states={A: unknown(Cause.BAD_ANSWER)},
            alerts=(failed(A, says="could not be read"),),
            log=("truncated or invalid JSON",),
            requests={A: 2},  # a bad answer is not retried within the run
        ),
    ),
    Fault(
        "not JSON (plain text, HTTP 200)",
        inject=on_portal("not_json"),
        expect=Expect(
            states={A: unknown(Cause.BAD_ANSWER)},
            alerts=(failed(A),),
            log=("not JSON",),
            requests={A: 2},
        ),
    ),
    Fault(
        "valid JSON of the wrong shape",
        inject=on_portal("wrong_shape"),
        expect=Expect(
            states={A: unknown(Cause.BAD_ANSWER)},
            alerts=(failed(A),),
            log=("not an object",),
            requests={A: 2},
        ),
    ),
    # -- rate limits: back off within the deadline, never hammer --
    Fault(
        "QUERY_LIMIT_EXCEEDED sustained past the deadline",
        inject=on_portal("QUERY_LIMIT_EXCEEDED"),
        remaining_ms=16_000,  # 1 s to check after the handler's 15 s reserve
        tuning=PATIENT_RATE_LIMIT,  # retries would go on: only the deadline stops them
        expect=Expect(
            states={A: unknown(Cause.RATE_LIMITED)},
            alerts=(failed(A, says="REST limits"),),
            log=("QUERY_LIMIT_EXCEEDED",),
            also=within(4.0),
        ),
    ),
    Fault(
        "OPERATION_TIME_LIMIT (reset in 10 minutes)",
        inject=on_portal("OPERATION_TIME_LIMIT"),
        expect=Expect(
            states={A: unknown(Cause.RATE_LIMITED)},
            alerts=(failed(A),),
            log=("OPERATION_TIME_LIMIT",),
            requests={A: 2},  # no retry before operating_reset_at
        ),
    ),
    Fault(
        "OVERLOAD_LIMIT (REST blocked by the vendor)",
        inject=on_portal("OVERLOAD_LIMIT"),
        expect=Expect(
            states=A_UNKNOWN,
            alerts=(failed(A, says="contact Bitrix24 support"),),
            log=("OVERLOAD_LIMIT",),
            requests={A: 2},
        ),
    ),
    # -- OAuth: refresh once on expired_token; a lost authorisation is check.failed, not down --
    Fault(
        "expired_token mid-batch (second of two chunks)",
        inject=expired_token_mid_batch,
        portal=C,
        expect=Expect(
            states={},
            secret=(C,),
            refreshes={C: 1},
            also=tokens_refreshed(1),  # the run's summary line counts it (no line of its own)
            # run 1: inventory, chunk, refused chunk, that chunk again; run 2: two chunks
            requests={C: 6},
        ),
    ),
    Fault(
        "expired_token even to a token just refreshed (refresh budget)",
        inject=on_portal("expired_token"),
        runs=6,  # half an hour of runs: one refresh, one new secret version
        expect=Expect(
            states={A: unknown(Cause.AUTH_LOST)},
            alerts=(failed(A, says="rejects fresh tokens"),),
            log=("expired_token", "rejects fresh tokens"),
            secret=(A,),
            refreshes={A: 1},  # then none until the budget's interval has passed
            requests={A: 7},  # the first run retries once after its refresh
            also=secret_versions_added(1),
        ),
    ),
    Fault(
        "tokens revoked (invalid_token)",
        inject=lambda w: w.portal.revoke(A),
        clear=reauthorise,
        expect=Expect(
            states={A: unknown(Cause.AUTH_LOST)},
            alerts=(failed(A, says=REAUTHORISE),),
            log=("invalid_token",),
            requests={A: 2},
        ),
    ),
    Fault(
        "refresh token revoked (invalid_grant)",
        inject=refresh_token_refused,
        clear=reauthorise,
        expect=Expect(
            states={A: unknown(Cause.AUTH_LOST)},
            alerts=(failed(A, says=REAUTHORISE),),
            log=("invalid_grant",),
            requests={A: 2},
        ),
    ),
    Fault(
        "OAuth server answering 503 to the refresh",
        inject=oauth_server_failing,
        expect=Expect(
            states=A_UNKNOWN,
            alerts=(failed(A, says=NOT_AN_OUTAGE),),
            log=("OAuth server",),
            requests={A: 2},
        ),
    ),
    *(
        Fault(
            code,
            inject=on_portal(code),
            expect=Expect(
                states={A: unknown(Cause.ACCESS_DENIED)},
                alerts=(failed(A, says="scopes"),),
                log=(code,),
                requests={A: 2},
            ),
        )
        for code in ("WRONG_AUTH_TYPE", "ACCESS_DENIED")
    ),
    # its own cause, word and severity: an unpaid portal is the client's outage to come
    Fault(
        "PAYMENT_REQUIRED",
        inject=on_portal("PAYMENT_REQUIRED"),
        expect=Expect(
            states={A: unknown(Cause.PORTAL_UNPAID)},
            alerts=(failed(A, says="renew the portal's plan", severity="critical"),),
            log=("PAYMENT_REQUIRED",),
            requests={A: 2},
        ),
    ),
    # -- partial answers: only the lines concerned are UNKNOWN --
    Fault(
        "one command failing inside the batch",
        inject=lambda w: w.portal.fail_command(A, CONNECTOR, 14, "ERROR_UNEXPECTED_ANSWER"),
        expect=Expect(
            states={key(A, 14): unknown(Cause.PORTAL_FAILING)},
            alerts=(failed(A, CONNECTOR, 14),),
            log=("ERROR_UNEXPECTED_ANSWER",),
        ),
    ),
    Fault(
        "portal answering for only some lines",
        inject=lambda w: w.portal.answer_only(A, {12}),
        expect=Expect(
            states={key(A, 14): unknown(Cause.BAD_ANSWER), key(A, 16): unknown(Cause.BAD_ANSWER)},
            alerts=(failed(A, says="answered without this line"),),
            log=("bad_answer",),
        ),
    ),
    Fault(
        "client_endpoint in plain http to a remote host (token would travel in clear)",
        inject=endpoint("http://portal.example.com/rest/"),
        clear=restore_secret,
        expect=Expect(
            states={A: unknown(Cause.BAD_REQUEST)},
            alerts=(failed(A, says="https"),),
            log=("must be an https URL",),
            requests={A: 0},
        ),
    ),
    # -- the Lambda deadline: UNKNOWN for what was not checked, the rest stored --
    Fault(
        "Lambda deadline reached mid-cycle (second chunk hangs)",
        inject=deadline_mid_cycle,
        remaining_ms=16_000,  # 1 s to check
        tuning=AS_DEPLOYED,  # the handler's own client: its 10 s read is cut by the deadline
        portal=C,
        expect=Expect(
            states=PAST_FIRST_50,  # run 2's second chunk (inventory cached: 50 + 3)
            alerts=(failed(C, says="cannot see myconnector on 3 lines"),),
            log=("deadline passed while the host was still answering",),
            also=within(6.0),  # the deadline (1 s) and storing; not the 10 s hold
        ),
    ),
    Fault(
        "OAuth server hanging during a refresh at the deadline",
        inject=lambda w: (
            w.portal.expire_access_tokens(A),
            w.portal.inject(A, "timeout", method="oauth", delay=8.0),
        ),
        runs=1,
        remaining_ms=16_000,  # 1 s to check
        tuning=Waits(FAST.timeouts, FAST.retry, oauth_timeout=(0.5, 5.0)),  # 10 s deployed
        expect=Expect(
            states={A: unknown(Cause.DEADLINE, Cause.PORTAL_FAILING)},
            log=("expired_token",),
            also=within(3.5, runs=1),  # the 1 s deadline, plus storing the results
        ),
    ),
    # -- a hostile portal: bounded in time, in size and in what is stored --
    Fault(
        "portal trickling one byte every 2 s (no read timeout ever trips)",
        inject=on_portal("trickle", delay=2.0),
        remaining_ms=20_000,  # 5 s to check after the handler's 15 s reserve
        tuning=AS_DEPLOYED,  # the handler's own 10 s read timeout: it never trips
        expect=Expect(
            states={A: unknown(Cause.DEADLINE)},
            alerts=(failed(A, says="deadline passed while"),),
            log=("deadline passed while the host was still answering",),
            requests={A: 2},
            also=within(7.0),  # the 5 s deadline and storing, whatever the portal does
        ),
    ),
    Fault(
        "OAuth server trickling one byte every 2 s during a refresh",
        inject=hostile_oauth("trickle", delay=2.0),
        remaining_ms=20_000,
        tuning=AS_DEPLOYED,
        expect=Expect(
            states={A: unknown(Cause.DEADLINE)},
            alerts=(failed(A, says="OAuth server"),),
            log=("expired_token",),
            requests={A: 2},
            also=within(7.0),
        ),
    ),
    Fault(
        "portal answering a 100 MB body",
        inject=hostile("huge"),
        expect=Expect(
            states={A: unknown(Cause.BAD_ANSWER)},
            alerts=(failed(A, says="larger than 2097152 bytes"),),
            log=("larger than",),
            requests={A: 2},
            also=adds_memory_below(20),
        ),
    ),
    Fault(
        "portal answering a gzip bomb (200 KB expanding to 200 MB)",
        inject=hostile("gzip_bomb"),
        expect=Expect(
            states={A: unknown(Cause.BAD_ANSWER)},
            alerts=(failed(A, says="expands past"),),
            log=("expands past",),
            requests={A: 2},
            also=adds_memory_below(20),
        ),
    ),
    Fault(
        "OAuth server answering a gzip bomb to the refresh",
        inject=hostile_oauth("gzip_bomb"),
        expect=Expect(
            states={A: unknown(Cause.BAD_ANSWER)},
            alerts=(failed(A, says="OAuth server's answer is too large"),),
            log=("OAuth server's answer is too large",),
            requests={A: 2},
            also=adds_memory_below(20),
        ),
    ),
    Fault(
        "portal answering an error code of 450 KB",
        inject=hostile("huge_error_code"),
        expect=Expect(
            states={A: unknown(Cause.BAD_REQUEST)},
            alerts=(failed(A, says="EEEE"),),
            log=("EEEE",),
            requests={A: 2},
            also=adds_memory_below(20),  # and every item small (checked for every row)
        ),
    ),
    Fault(
        "200 open lines named with 3 KB each",
        inject=with_long_line_names,
        portal=None,
        runs=1,
        expect=Expect(states={}, also=inventory_item_below(D, 16), after=()),
    ),
    Fault(
        "token echoed JSON-escaped in every batch command's error",
        inject=on_portal("echo_token"),
        expect=Expect(
            states={A: unknown(Cause.BAD_REQUEST)},
            alerts=(failed(A, says="[redacted]"),),
            log=("INVALID_REQUEST",),
            requests={A: 2},
        ),
    ),
    Fault(
        "portal redirecting REST to another host the OAuth server does not name",
        inject=on_portal("redirect"),
        expect=Expect(
            # the redirect is never followed; the OAuth server, asked once (a refresh), names
            # the same endpoint: the move is the operator's to make, and the alert says so
            states={A: unknown(Cause.CONFIGURATION)},
            alerts=(failed(A, says="Targets entries to update"),),
            log=("the portal moved",),
            secret=(A,),
            refreshes={A: 1},  # run 2 finds the refresh budget spent
            requests={A: 2},  # no retry: the OAuth server named no other address
        ),
    ),
    Fault(
        "OAuth server redirecting the refresh (not followed)",
        inject=hostile_oauth("redirect"),
        expect=Expect(
            states={A: unknown(Cause.BAD_REQUEST)},
            alerts=(failed(A, says="redirect"),),
            log=("redirect",),
            requests={A: 2},
        ),
    ),
    Fault(
        "oauth_endpoint in plain http to a remote host (secrets would travel in clear)",
        inject=lambda w: (
            w.edit_entry(A, oauth_endpoint="http://oauth.example.com/oauth/token/"),
            w.portal.expire_access_tokens(A),
        ),
        clear=reauthorise,
        expect=Expect(
            states={A: unknown(Cause.BAD_REQUEST)},
            alerts=(failed(A, says="must be an https URL"),),
            log=("expired_token",),
            requests={A: 2},
        ),
    ),
    # -- a live portal, as its core behaves (issue: real Bitrix24) --
    *(
        Fault(
            f"{code} ({meaning})",
            inject=on_portal(code),
            expect=Expect(
                states=A_UNKNOWN,
                alerts=(failed(A, says=NOT_AN_OUTAGE),),
                log=(code,),
                requests={A: 6},  # retried within the run: it is the portal's, and passes
            ),
        )
        for code, meaning in (
            ("CONNECTION_ERROR", "the portal cannot reach its authorisation server"),
            ("ERROR_CORE", "an uncaught exception in the portal's core"),
        )
    ),
    Fault(
        "imconnector.list refused: the app was installed by a user without Open Lines rights",
        inject=connector_list_refused,
        clear=connector_list_allowed,
        expect=Expect(
            states={},  # every target is still checked: UP
            alerts=(Sent("check.failed", A, "-", "-", says="connector validation is off"),),
            log=("ACCESS_DENIED",),
            after=(Sent("check.recovered", A, "-", "-", says="validation works again"),),
        ),
    ),
    Fault(
        "a mistyped connector in TARGETS (never asked about)",
        inject=mistyped_target,
        clear=drop_mistyped_target,
        expect=Expect(
            states={TYPO: unknown(Cause.CONFIGURATION)},
            alerts=(failed(A, "myconector", 12, says="not among the portal's active"),),
            log=("myconector",),
            also=never_asked_about("myconector"),
            after=(Sent("check.recovered", A, "myconector", "12", says="no longer monitored"),),
        ),
    ),
    Fault(
        "imconnector.status near its operating-time limit (paused before a 429)",
        inject=operating_time_nearly_spent,
        clear=operating_time_reset,
        portal=C,
        expect=Expect(
            states={key(C, n): unknown(Cause.RATE_LIMITED) for n in range(51, C_LINES + 1)},
            alerts=(failed(C, says="operating-time limit"),),
            log=("operating-time limit",),
            requests={C: 3},  # run 1: inventory and chunk 1; run 2: chunk 1; never chunk 2
        ),
    ),
    # -- a tired operator: a slip of TARGETS forgets nothing; a removal closes what was open --
    *(
        Fault(
            f"TARGETS deployed as {name} while an incident is open",
            inject=slip(value),
            clear=restore_targets,
            portal=None,
            modes=("secret",),  # a fleet's targets are registry entries, not TARGETS
            expect=Expect(
                states={key(A, 14): DOWN},  # as stored before the slip: nothing forgotten
                alerts=(whole_list("check.failed", says=reason),),
                log=("no usable target",),
                requests={A: 0, B: 0},
                also=run_failed(reason),
                # the fix: TARGETS is usable again, and the recovery during the slip is told
                after=(
                    whole_list("check.recovered", says="TARGETS can be read again"),
                    Sent("connector.recovered", A, CONNECTOR, "14"),
                ),
            ),
        )
        for name, value, reason in (
            ("an empty value", "", "no target is configured"),
            ("[]", "[]", "no target is configured"),
            ("' , '", " , ", "no target is configured"),
            ("unparseable JSON", '[{"portal": "a.bitrix24.com",', "not valid JSON"),
            ("entries none of which is valid", "a.bitrix24.com/x,b/y/z", "none of the 2"),
        )
    ),
    Fault(
        "a target removed while its incident is open",
        inject=remove_line_14_while_down,
        expect=Expect(
            states={},
            alerts=(Sent("connector.recovered", A, CONNECTOR, "14", says="no longer monitored"),),
            log=("closing the open incident",),
            after=(),
        ),
    ),
    Fault(
        "a status stored by a run whose clock was a day ahead",
        inject=stored_a_day_ahead,
        clear=reconnect_14,
        expect=Expect(
            states={key(A, 14): DOWN},
            alerts=(down(A, 14),),  # not frozen until the clock catches up
            log=("a clock was wrong",),
        ),
    ),
    # -- Secrets Manager --
    Fault(
        "Secrets Manager unreachable",
        inject=lambda w: w.secrets_manager_unreachable(),
        portal=None,
        expect=Expect(
            states={A: unknown(Cause.MONITOR_ERROR), B: unknown(Cause.MONITOR_ERROR)},
            alerts=(failed(A, says="could not read its tokens"), failed(B, CONNECTOR, B_LINE)),
            log=("could not reach Secrets Manager",),
            requests={A: 0, B: 0},
        ),
    ),
    Fault(
        "corrupt secret (not JSON)",
        inject=corrupt_secret,
        clear=restore_secret,
        portal=None,
        expect=Expect(
            states={A: unknown(Cause.MONITOR_ERROR), B: unknown(Cause.MONITOR_ERROR)},
            alerts=(failed(A, says="not valid JSON"), failed(B, CONNECTOR, B_LINE)),
            log=("not valid JSON",),
            requests={A: 0, B: 0},
        ),
    ),
    Fault(
        "partial secret (portal entry without refresh_token)",
        inject=lambda w: w.edit_entry(A, refresh_token=None),
        clear=restore_secret,
        expect=Expect(
            states={A: unknown(Cause.NO_TOKENS)},  # B is still checked: UP
            alerts=(failed(A, says="lacks refresh_token"),),  # at once, and only once
            log=("lacks refresh_token",),
            requests={A: 0},
        ),
    ),
    Fault(
        "refreshed pair refused by Secrets Manager (write-back fails)",
        inject=write_back_refused,
        clear=reauthorise,
        expect=Expect(
            # run 1 refreshed and could not store; run 2 finds the spent refresh token
            states={A: unknown(Cause.AUTH_LOST)},
            alerts=(failed(A, says=REAUTHORISE),),
            log=("NEW REFRESH TOKEN NOT STORED",),
            refreshes={A: 1},
        ),
    ),
    Fault(
        "refreshed pairs refused for a run while every portal's token expired",
        inject=every_token_expired_and_pair_writes_refused,
        clear=reauthorise_the_lost,
        runs=1,  # the store refuses for one run; the next run finds it healthy
        portal=None,  # A or B is refreshed first (portals are checked in parallel)
        expect=Expect(
            # the first refresh's pair is lost; no other refresh starts in that run, and the
            # next run refreshes the other portal: every portal checked, one re-authorisation
            states={A: unknown(Cause.MONITOR_ERROR), B: unknown(Cause.MONITOR_ERROR)},
            log=("NEW REFRESH TOKEN NOT STORED", "not refreshed: the token store refused a write"),
            refreshes_in_all=1,
            summary={"up": 0, "unknown": 4},
            also=one_pair_lost_the_other_left_for_the_next_run,
        ),
    ),
    # -- DynamoDB --
    Fault(
        "DynamoDB throttling the first 3 requests (the SDK retries)",
        inject=after_one_down_run(lambda w: w.throttle_dynamodb(times=3)),
        clear=reconnect_14,
        runs=1,
        expect=Expect(
            states={key(A, 14): DOWN},
            alerts=(down(A, 14),),
            log=("connector.down",),
            also=throttled(3),
        ),
    ),
    Fault(
        "DynamoDB throttling every request (run fails at load)",
        inject=after_one_down_run(lambda w: w.throttle_dynamodb()),
        portal=None,
        expect=Expect(
            states={key(A, 14): DOWN},  # as the good run before stored it
            fails="ProvisionedThroughputExceededException",
            after=(down(A, 14),),  # the alert that was due, once
            after_states={key(A, 14): DOWN},
        ),
    ),
    Fault(
        "DynamoDB throttling every write (run fails at save)",
        inject=after_one_down_run(lambda w: w.throttle_dynamodb(operations=WRITES)),
        portal=None,
        expect=Expect(
            states={key(A, 14): DOWN},
            fails="ProvisionedThroughputExceededException",
            after=(down(A, 14),),
            after_states={key(A, 14): DOWN},
        ),
    ),
    Fault(
        "DynamoDB throttling the history write (after the state is stored)",
        inject=after_one_down_run(
            lambda w: w.throttle_dynamodb(operations=WRITES, touching="HISTORY#")
        ),
        portal=None,
        expect=Expect(
            states={key(A, 14): DOWN},
            fails="ProvisionedThroughputExceededException",
            after=(down(A, 14),),
            after_states={key(A, 14): DOWN},
        ),
    ),
    Fault(
        "conditional check failed (another writer stored the target first)",
        inject=after_one_down_run(lambda w: w.bump_version_before_next_save(key(A, 14))),
        runs=1,
        portal=None,
        expect=Expect(
            states={key(A, 14): DOWN},
            summary={"conflicts": 1, "alerts_published": 0},  # its decision stands, not ours
            log=('"conflicts":1',),  # the run summary: Powertools writes compact JSON
            after=(down(A, 14),),  # the next run decides again: one alert
            after_states={key(A, 14): DOWN},
        ),
    ),
    # -- SNS: a failed publish stays pending and is sent next run, once --
    Fault(
        "SNS publish failing once",
        inject=lambda w: (two_connectors_down(w), w.fail_sns(times=1)),
        expect=Expect(
            states={key(A, 12): DOWN, key(A, 14): DOWN},
            # A's two lines are one message: refused once, both alerts stay pending
            pending={key(A, 12): 1, key(A, 14): 1},
            summary={"alerts_published": 0, "alerts_pending": 2},
            log=("alert not published",),
            after=(Sent("connector.down", A, says="myconnector on 2 lines"),),  # once, whole
            after_states={key(A, 12): DOWN, key(A, 14): DOWN},
        ),
    ),
    Fault(
        "SNS publish failing for a whole run",
        inject=lambda w: (two_connectors_down(w), w.fail_sns()),
        expect=Expect(
            states={key(A, 12): DOWN, key(A, 14): DOWN},
            pending={key(A, 12): 1, key(A, 14): 1},
            summary={"alerts_published": 0, "alerts_pending": 2},
            log=("alert not published",),
            after=(Sent("connector.down", A, says="myconnector on 2 lines"),),
            after_states={key(A, 12): DOWN, key(A, 14): DOWN},
        ),
    ),
]


# ---- the test -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(
            f,
            id=f.name,
            marks=[pytest.mark.xfail(strict=True, reason=f.xfail)] if f.xfail else [],
        )
        for f in FAULTS
    ],
)
def test_fault(fault: Fault, world: World) -> None:
    if world.mode not in fault.modes:
        pytest.skip(f"a fault of the {', '.join(fault.modes)} world only")
    expect = fault.expect
    fault.inject(world)
    world.tuning, world.remaining_ms = fault.tuning, fault.remaining_ms
    secret_before, table_before = world.pairs_text(), world.table()
    world.secret_versions_before = world.pair_writes()
    refreshes_before = {p: world.portal.refresh_count(p) for p in world.portals}
    requests_before = {p: world.portal.request_count(p) for p in world.portals}

    outcomes = [world.invoke() for _ in range(fault.runs)]

    if expect.fails:
        assert [expect.fails in str(o) for o in outcomes] == [True] * fault.runs
        assert world.table() == table_before  # nothing half-written
    else:
        assert [type(o).__name__ for o in outcomes if isinstance(o, Exception)] == []
        last: Any = outcomes[-1]
        assert {k: last[k] for k in expect.summary} == dict(expect.summary)
    check_states(world, expect.states)
    check_alerts(world.alerts(), expect.alerts)
    check_records(world, expect.pending)
    check_pairs(secret_before, world.pairs_text(), expect.secret)
    refreshes = {p: world.portal.refresh_count(p) - n for p, n in refreshes_before.items()}
    if expect.refreshes_in_all is not None:
        assert sum(refreshes.values()) == expect.refreshes_in_all
    else:
        assert refreshes == {p: expect.refreshes.get(p, 0) for p in world.portals}
    requests = {p: world.portal.request_count(p) - requests_before[p] for p in expect.requests}
    assert requests == dict(expect.requests)
    if expect.also:
        expect.also(world)

    fault.clear(world)
    world.clear()
    assert isinstance(world.invoke(), dict)
    check_states(world, expect.after_states)
    due = expect.after if expect.after is not None else tuple(s.recovery() for s in expect.alerts)
    check_alerts(world.alerts(), due)
    check_records(world, {})
    assert isinstance(world.invoke(), dict)
    assert world.alerts() == []  # nothing twice

    check_history(world)
    check_item_sizes(world)
    check_no_secret_leaked(world)
    check_log(world, fault.portal, expect.log)


# ---- the checks ---------------------------------------------------------------------------------
def check_states(world: World, expected: Mapping[str, Seen]) -> None:
    """Every target has its item, in the expected state and cause; the others are UP."""
    stored = world.states()
    assert sorted(stored) == sorted(world.targets())
    wrong: dict[str, tuple[str, str]] = {}
    for target, item in stored.items():
        want = expected.get(target) or expected.get(target.split("/")[0]) or UP
        if not want.matches(item["state"], item.get("cause")):
            wrong[target] = (f"{item['state']}/{item.get('cause') or ''}".rstrip("/"), str(want))
    assert wrong == {}


def check_alerts(delivered: list[dict[str, Any]], expected: tuple[Sent, ...]) -> None:
    """Exactly these alerts (attributes), each once, each message saying what the row says."""
    got = Counter(
        (a["event"], a["portal"], a["connector"], a["line"], a["severity"]) for a in delivered
    )
    assert got == Counter(s.attributes for s in expected)
    for sent in expected:
        messages = [
            a["message"]
            for a in delivered
            if (a["event"], a["portal"], a["connector"], a["line"]) == sent.attributes[:4]
        ]
        assert any(sent.says in m for m in messages), (sent.says, messages)
    assert all(len(a["subject"]) <= 100 and "\n" not in a["subject"] for a in delivered)


def check_records(world: World, pending: Mapping[str, int]) -> None:
    """Pending alerts as expected; the RUN item is the last good run's and agrees with STATE."""
    stored = world.states()
    counts = {t: len(item.get("pending") or {}) for t, item in stored.items()}
    assert counts == {t: pending.get(t, 0) for t in stored}
    runs = world.items("RUN")
    assert [r["run_id"] for r in runs] == [world.ok_run_ids[-1]]
    if runs[0].get("failed"):  # a run that checked nothing (TARGETS unusable) counts nothing
        return
    by_state = Counter(item["state"] for item in stored.values())
    summary = runs[0]["summary"]
    assert (summary["up"], summary["down"], summary["unknown"]) == (
        by_state["UP"],
        by_state["DOWN"],
        by_state["UNKNOWN"],
    )


def check_pairs(before: str, after: str, rotated: tuple[str, ...]) -> None:
    """The monitor wrote a pair only to store a refreshed one, keeping everything else (in the
    secret or in the token table)."""
    if not rotated:
        unchanged = before == after
        assert unchanged, "the monitor rewrote a token pair"
        return
    old, new = json.loads(before)["portals"], json.loads(after)["portals"]
    assert sorted(old) == sorted(new)
    for portal in old:
        if portal not in rotated:
            same = old[portal] == new[portal]
            assert same, f"{portal}'s entry changed"
            continue
        pair_changed = all(
            old[portal][f] != new[portal][f] for f in ("access_token", "refresh_token")
        )
        assert pair_changed, f"{portal}: the refreshed pair was not stored"
        assert new[portal]["expires_at"] > 0
        rest = ("access_token", "refresh_token", "expires_at", "refreshed_at", "member_id")
        rest += ("version",)  # a token table item's write count
        kept = {k: v for k, v in old[portal].items() if k not in rest} == {
            k: v for k, v in new[portal].items() if k not in rest
        }
        assert kept, f"{portal}: fields other than the token pair changed"


def check_history(world: World) -> None:
    """Each target's history holds every alert delivered for it, connector.* exactly once.

    (A grouped message names no line: its targets' items are counted by the message's
    `targets` attribute, per portal and event.)"""
    delivered = Counter(
        (f"{a['portal']}/{a['connector']}/{a['line']}", a["event"])
        for a in world.sent
        if a["line"] != "*"
    )
    grouped = Counter(
        (a["portal"], a["event"])
        for a in world.sent
        if a["line"] == "*"
        for _ in range(int(a.get("targets", "1")))
    )
    history = Counter(
        (i["pk"].removeprefix("HISTORY#"), i["event"])
        for i in world.table()
        if i["pk"].startswith("HISTORY#")
    )
    wrong: dict[str, tuple[int, int]] = {}
    for target in world.targets():
        recorded = Counter({e: n for (t, e), n in history.items() if t == target})
        for event in SEVERITY:
            sent, have = delivered[(target, event)], recorded[event]
            in_groups = grouped[(target.split("/")[0], event)]
            if event.startswith("connector.") and in_groups:
                sent = have  # counted portal-wide below
            if have != sent if event.startswith("connector.") else have < sent:
                wrong[f"{target} {event}"] = (have, sent)
    for (portal, event), count in grouped.items():
        if event.startswith("connector."):
            have = sum(n for (t, e), n in history.items() if e == event and t.startswith(portal))
            single = sum(
                n for (t, e), n in delivered.items() if e == event and t.startswith(portal)
            )
            if have != count + single:
                wrong[f"{portal} {event}"] = (have, count + single)
    assert wrong == {}  # (history items, alerts delivered)


def check_item_sizes(world: World) -> None:
    """Whatever a portal sent, no item comes near DynamoDB's 400 KB (nor any alert SNS's
    256 KB): every string from a portal is cut before it is stored or published."""
    sizes = {f"{i['pk']}/{i['sk']}"[:80]: len(repr(i)) for i in world.table(leases=True)}
    assert {k: v for k, v in sizes.items() if v > 64 * 1024} == {}
    assert all(len(a["message"]) < 16 * 1024 for a in world.sent)


def check_no_secret_leaked(world: World) -> None:
    """No token or client secret the row ever saw is in a log, an item, an alert or a result."""
    secrets = world.known_secrets
    assert len(secrets) >= 6  # A's and B's pairs and client secrets at least
    places = {
        "logs": world.log.getvalue(),
        "table": repr(world.table(leases=True)),
        "alerts": repr(world.sent),
        "results": repr(world.outcomes) + " ".join(map(str, world.outcomes)),
    }
    leaks = sorted(where for where, text in places.items() if any(s in text for s in secrets))
    assert leaks == []


def check_log(world: World, portal: str | None, wanted: tuple[str, ...]) -> None:
    """JSON lines only; each wanted text in some line that also names the portal."""
    lines = world.log_lines()
    assert [line[:80] for line in lines if not _is_json_object(line)] == []
    missing = [
        text
        for text in wanted
        if not any(text in line and (portal is None or portal in line) for line in lines)
    ]
    assert missing == []


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


# ---- a fleet's watches: no line dropped, discovery converges (issue 18, items 11 and 12) --------
# These rows run in the fleet's world only: a watch (`portal/connector/*`) is a registry entry.
WATCH_A = f"{A}/{CONNECTOR}/*"
WATCH_C = f"{C}/{CONNECTOR}/*"
FLEET = pytest.mark.parametrize("world", ["fleet"], indirect=True)


def events(alerts: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return sorted((a["event"], a["portal"], a["line"]) for a in alerts)


def big_portal(world: World, lines: int, configured: set[int]) -> None:
    """Portal C with `lines` open lines, the connector configured on `configured` only, watched
    (instead of every other target)."""
    world.add_portal(C, lines=lines)
    for line in range(1, lines + 1):
        if line not in configured:
            world.portal.disconnect(C, CONNECTOR, line)
    world.set_targets([WATCH_C])


@FLEET
def test_one_inventory_answer_omitting_a_down_line_ends_nothing(world: World) -> None:
    world.set_targets([WATCH_A, key(B, B_LINE)])
    world.invoke()
    world.portal.set_status(A, CONNECTOR, 14, configured=True, error=True)
    world.invoke()
    world.invoke()
    assert events(world.alerts()) == [("connector.down", A, "14")]
    world.portal.omit_lines(A, {14})  # one answer of the inventory leaves line 14 out
    world.validate_again(A)

    world.invoke()  # held: still a target, still DOWN
    world.invoke()  # the next run's inventory lists it again

    assert world.alerts() == []  # no NO LONGER MONITORED, no second connector.down
    state = world.states()[key(A, 14)]
    assert state["state"] == "DOWN" and "down_since" in state
    assert "missing" not in world.inventory(A)
    assert world.portal.request_count(A, method="batch") > 0


@FLEET
def test_a_line_deleted_between_two_pages_skips_no_line(world: World) -> None:
    big_portal(world, 450, configured={201, 300})
    world.invoke()
    assert sorted(k for k in world.states() if k.startswith(C)) == [key(C, 201), key(C, 300)]
    world.portal.set_status(C, CONNECTOR, 201, configured=True, error=True)
    world.invoke()
    world.invoke()
    assert events(world.alerts()) == [("connector.down", C, "201")]
    world.portal.delete_lines_after_next_page(C, {5})  # offsets would shift: 201 skipped
    world.validate_again(C)

    world.invoke()
    world.invoke()

    assert world.alerts() == []  # no down, recovered, down for one outage
    assert world.states()[key(C, 201)]["state"] == "DOWN"
    record = world.inventory(C)
    assert 201 in record["line_ids"] and "missing" not in record
    world.validate_again(C)
    world.invoke()
    assert list(world.inventory(C)["missing"]) == ["5"]  # the deleted line: held once
    world.invoke()
    assert 5 not in world.inventory(C)["line_ids"]  # and gone at the next inventory
    assert world.alerts() == []


@FLEET
def test_a_large_portal_is_discovered_within_a_bounded_number_of_runs(world: World) -> None:
    big_portal(world, 300, configured={150, 290})
    world.configure("DISCOVERY_PROBES_PER_RUN", "100")
    world.portal.clear_requests()

    runs = 0
    while runs < 3:
        before = world.portal.request_count(C, method="batch")
        world.invoke()
        runs += 1
        # at most 100 probes and the discovered targets: 2 or 3 batches, plus the inventory's
        assert world.portal.request_count(C, method="batch") - before <= 4
    record = world.inventory(C)

    assert "progress" not in record  # converged in the 3 runs 300 lines take at 100 a run
    assert sorted(k for k in world.states() if k.startswith(C)) == [key(C, 150), key(C, 290)]
    assert world.portal.request_count(C, method="imopenlines.config.list.get") == 1  # read once
    assert world.alerts() == []


@FLEET
def test_a_portal_whose_discovery_cannot_converge_says_so(world: World) -> None:
    big_portal(world, 300, configured={150, 290})
    world.configure("DISCOVERY_PROBES_PER_RUN", "100")
    world.portal.fail_command(C, CONNECTOR, 250, "QUERY_LIMIT_EXCEEDED")  # never answered

    for _ in range(6):  # 3 runs for 300 lines at 100 a run, and 3 spare
        world.invoke()
    assert world.alerts() == []
    world.invoke()

    notice = world.items("CONFIG")
    (issue,) = [i for i in notice if i["sk"] == f"validation:{C}/{CONNECTOR}"]
    assert issue["state"] == "UNKNOWN" and issue["cause"] == "configuration"
    assert (
        f"discovery of {CONNECTOR} on {C} has not finished: 299 of 300 lines probed"
        in (issue["detail"])
    )
    (alert,) = world.alerts()
    assert (alert["event"], alert["portal"], alert["connector"]) == ("check.failed", C, CONNECTOR)
    assert alert["subject"] == f"DISCOVERY UNFINISHED: {CONNECTOR} at {C}"
    assert any("discovery has not converged" in line for line in world.log_lines())
    world.portal.clear_faults(C)

    world.invoke()

    assert not [i for i in world.items("CONFIG") if i["sk"] == f"validation:{C}/{CONNECTOR}"]
    (closing,) = world.alerts()
    assert closing["event"] == "check.recovered"
    assert closing["subject"] == f"DISCOVERY DONE: {CONNECTOR} at {C}"
    assert "Discovery of myconnector on big.bitrix24.com has finished" in closing["message"]


def test_every_row_has_its_own_name() -> None:
    assert len({f.name for f in FAULTS}) == len(FAULTS) >= 30  # the names are the test ids
