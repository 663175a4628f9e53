"""Properties of the alert state machine over random histories (pure: hundreds of examples/s).

A history is a random sequence of answers for one target (UP, three kinds of DOWN, UNKNOWN for
every cause, CONFIGURATION included), random time steps and random thresholds. Each property is
checked straight on the alerts the machine produced, and the final status against a reference
model written from the rules in `domain/transitions.py`'s docstring (full history, no capped
counters), so the two implementations have to agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from hypothesis import event, example, given, note, settings
from hypothesis import strategies as st

from connector_monitor.aws.records import status_from_item, status_to_item
from connector_monitor.domain.alerts import Alert, AlertEvent
from connector_monitor.domain.results import Cause, CheckResult, State
from connector_monitor.domain.targets import ConfigIssue, Subject, Target
from connector_monitor.domain.transitions import TargetStatus, Thresholds, acknowledge, advance
from tests.properties.conftest import PROPERTIES, examples

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
TARGET = Target("example.bitrix24.com", "myconnector", 12)
BAD_ENTRY = ConfigIssue("example.bitrix24.com/myconnector", "expected domain/connector/line")

DOWN = AlertEvent.CONNECTOR_DOWN
RECOVERED = AlertEvent.CONNECTOR_RECOVERED
FAILED = AlertEvent.CHECK_FAILED
SEEN_AGAIN = AlertEvent.CHECK_RECOVERED

# Answer codes: U = STATUS true; D = CONFIGURED false; E = ERROR true; S = STATUS false alone;
# "?<cause>" = UNKNOWN with that cause.
SEEN_CODES = ("U", "D", "E", "S")
UNKNOWN_CODES = tuple(f"?{cause.value}" for cause in Cause)
CONFIG_CODE = f"?{Cause.CONFIGURATION.value}"
# Causes a person must fix in the configuration: one such UNKNOWN is a check.failed at once.
AT_ONCE = tuple(f"?{cause.value}" for cause in Cause if cause.is_configuration)


def answer(code: str, subject: Subject, at: datetime) -> CheckResult:
    if code.startswith("?"):
        cause = Cause(code[1:])
        return CheckResult.unknown(subject, cause, f"could not see ({cause.value})", checked_at=at)
    assert isinstance(subject, Target)
    configured, error = {"U": (True, False), "D": (False, False), "E": (True, True)}.get(
        code, (True, False)
    )
    return CheckResult.from_flags(
        subject, configured=configured, error=error, status=code == "U", checked_at=at
    )


def state_of(code: str) -> State:
    if code.startswith("?"):
        return State.UNKNOWN
    return State.UP if code == "U" else State.DOWN


# --- strategies ---------------------------------------------------------------------------------

codes = st.sampled_from(SEEN_CODES + UNKNOWN_CODES)
# Whole seconds: alert ids carry the incident's start to the second, so two incidents of one
# target must not start within one second (a new one needs two more checks: minutes apart).
gaps = st.one_of(
    st.just(timedelta(minutes=5)),
    st.integers(1, 4 * 3600).map(lambda s: timedelta(seconds=s)),
)
# A history is runs of one answer (so thresholds are reached) and single answers (flapping); one
# gap per run and a bit mask of replayed answers keep the draws few and generation fast.
runs = st.tuples(codes, st.integers(1, 6), gaps, st.integers(0, 63))
thresholds = st.builds(
    Thresholds,
    failure=st.integers(1, 5),
    recovery=st.integers(1, 3),
    renotify=st.one_of(st.none(), st.integers(1, 180).map(lambda m: timedelta(minutes=m))),
)


@dataclass(frozen=True)
class Tick:
    code: str
    at: datetime
    replayed: bool  # the same result is fed a second time (a retried run re-reading the state)


@st.composite
def ticks(draw: st.DrawFn, *, replays: bool = False) -> list[Tick]:
    at, out = T0, []
    for code, length, gap, mask in draw(st.lists(runs, min_size=1, max_size=12)):
        for i in range(length):
            at += gap
            out.append(Tick(code, at, replays and bool(mask >> i & 1)))
    return out


@dataclass(frozen=True)
class Fed:
    """One call of `advance`: what went in and what came out."""

    tick: Tick
    replay: bool  # this call is the replay of the previous call's result
    before: TargetStatus | None
    after: TargetStatus
    alerts: tuple[Alert, ...]


def run(history: list[Tick], th: Thresholds, subject: Subject = TARGET) -> list[Fed]:
    status: TargetStatus | None = None
    fed: list[Fed] = []
    for tick in history:
        result = answer(tick.code, subject, tick.at)
        for replay in (False, True) if tick.replayed else (False,):
            step = advance(status, result, th)
            fed.append(Fed(tick, replay, status, step.status, step.alerts))
            status = step.status
    return fed


def is_reminder(alert: Alert) -> bool:
    return alert.event is DOWN and "#" in alert.id


def reminder_number(alert: Alert) -> int:
    return int(alert.id.rsplit("#", 1)[1]) if is_reminder(alert) else 0


def alternating(first: AlertEvent, second: AlertEvent, count: int) -> list[AlertEvent]:
    return [first if i % 2 == 0 else second for i in range(count)]


def incident_alerts(fed: list[Fed]) -> list[tuple[int, Alert]]:
    """(index of the call, alert) for every alert but reminders."""
    return [(i, a) for i, f in enumerate(fed) for a in f.alerts if not is_reminder(a)]


@contextmanager
def explained(th: Thresholds, fed: list[Fed]) -> Iterator[None]:
    """On a failure, print the history run by run (built only then: it costs)."""
    try:
        yield
    except AssertionError:
        note(f"thresholds: {th}")
        for f in fed:
            mark = " (replay)" if f.replay else ""
            note(f"{f.tick.at:%d %H:%M:%S} {f.tick.code:>16}{mark} -> {[a.id for a in f.alerts]}")
        raise


def label(fed: list[Fed]) -> None:
    """Statistics (pytest --hypothesis-show-statistics): which alerts the examples reached."""
    kinds = {("reminder" if is_reminder(a) else a.event.value) for f in fed for a in f.alerts}
    for kind in sorted(kinds):
        event(f"reached {kind}")


# --- the reference model ----------------------------------------------------------------------

# `advance` ignores a result no newer than the stored status, so a replay is not an answer.
REPLAY_IS_AN_ANSWER = False


@dataclass
class Model:
    """The docstring's rules over the whole history (every answer, replays included)."""

    th: Thresholds
    seen: list[tuple[State, datetime]]
    answers: list[tuple[str, datetime]]
    down_since: datetime | None = None
    blind_since: datetime | None = None
    reminders: int = 0
    last_alert_at: datetime | None = None

    @classmethod
    def start(cls, th: Thresholds) -> Model:
        return cls(th, [], [])

    def feed(self, code: str, at: datetime) -> list[tuple[AlertEvent, int]]:
        """The events (with reminder number) this answer owes."""
        if not REPLAY_IS_AN_ANSWER and self.answers and at <= self.answers[-1][1]:
            return []
        self.answers.append((code, at))
        events: list[tuple[AlertEvent, int]] = []
        state = state_of(code)
        if state is State.UNKNOWN:
            blind_run = _trailing(self.answers, lambda c: c.startswith("?"))
            needed = 1 if code in AT_ONCE else self.th.failure
            if self.blind_since is None and blind_run >= needed:
                self.blind_since = self.answers[-blind_run][1]
                events.append((FAILED, 0))
        else:
            self.seen.append((state, at))
            visible_run = _trailing(self.answers, lambda c: not c.startswith("?"))
            if self.blind_since is not None and visible_run >= self.th.recovery:
                self.blind_since = None
                events.append((SEEN_AGAIN, 0))
            same_run = _trailing(self.seen, lambda s: s is state)
            if state is State.DOWN and self.down_since is None:
                if same_run >= self.th.failure:
                    self.down_since = self.seen[-same_run][1]
                    self.reminders = 0
                    events.append((DOWN, 0))
            elif state is State.DOWN:
                last = self.last_alert_at
                if self.th.renotify and last is not None and at - last >= self.th.renotify:
                    self.reminders += 1
                    events.append((DOWN, self.reminders))
            elif self.down_since is not None and same_run >= self.th.recovery:
                self.down_since = None
                self.reminders = 0
                events.append((RECOVERED, 0))
        if events:
            self.last_alert_at = at
        return events


def _trailing(items: Sequence[Any], test: Callable[[Any], bool]) -> int:
    """How many items at the end pass `test` (for pairs, the test sees the first element)."""
    count = 0
    for item in reversed(items):
        if not test(item[0] if isinstance(item, tuple) else item):
            break
        count += 1
    return count


def _run_start(items: Sequence[tuple[Any, datetime]]) -> datetime | None:
    """When the trailing run of equal values began."""
    if not items:
        return None
    last, start = items[-1]
    for value, at in reversed(items):
        if value != last:
            break
        start = at
    return start


# --- (a) (b) (c) (e): safety of the alert log -------------------------------------------------


@settings(PROPERTIES, max_examples=examples(400))
@given(history=ticks(replays=True), th=thresholds)
def test_incidents_alternate_and_alert_only_when_the_answers_say_so(
    history: list[Tick], th: Thresholds
) -> None:
    fed = run(history, th)
    label(fed)
    with explained(th, fed):
        # (a) never two connector.down without a connector.recovered between them, and
        # (b) never a connector.recovered without an open down before it.
        connector = [a.event for _, a in incident_alerts(fed) if a.event in (DOWN, RECOVERED)]
        assert connector == alternating(DOWN, RECOVERED, len(connector))
        # ... and the same for the monitor's own blindness.
        blind = [a.event for _, a in incident_alerts(fed) if a.event in (FAILED, SEEN_AGAIN)]
        assert blind == alternating(FAILED, SEEN_AGAIN, len(blind))

        # (c) a connector.down only when the last `failure` seen answers were DOWN, a recovery
        # only when the last `recovery` seen answers were UP; check.failed only after `failure`
        # UNKNOWNs in a row (or one CONFIGURATION), check.recovered only after `recovery` seen
        # answers in a row.
        for index, alert in incident_alerts(fed):
            answers = [state_of(f.tick.code) for f in fed[: index + 1]]
            seen = [s for s in answers if s is not State.UNKNOWN]
            if alert.event is DOWN:
                assert len(seen) >= th.failure
                assert set(seen[-th.failure :]) == {State.DOWN}
            elif alert.event is RECOVERED:
                assert len(seen) >= th.recovery
                assert set(seen[-th.recovery :]) == {State.UP}
            elif alert.event is FAILED:
                blind_run = _trailing(answers, lambda s: s is State.UNKNOWN)
                assert blind_run >= th.failure or fed[index].tick.code in AT_ONCE
            else:
                assert _trailing(answers, lambda s: s is not State.UNKNOWN) >= th.recovery

        # Reminders: only while an incident is open, on a DOWN answer, at least `renotify` after the
        # previous alert, numbered 1, 2, 3... within their incident.
        open_down: str | None = None
        numbers: list[int] = []
        for f in fed:
            for alert in f.alerts:
                if is_reminder(alert):
                    assert th.renotify is not None
                    assert open_down is not None and alert.id.startswith(open_down + "#")
                    assert state_of(f.tick.code) is State.DOWN
                    assert f.before is not None and f.before.last_alert_at is not None
                    assert f.tick.at - f.before.last_alert_at >= th.renotify
                    assert alert.subject.startswith("CONNECTOR STILL DOWN")
                    numbers.append(reminder_number(alert))
                    assert numbers == list(range(1, len(numbers) + 1))
                elif alert.event is DOWN:
                    open_down, numbers = alert.id, []
                elif alert.event is RECOVERED:
                    open_down = None

        # (e) alert ids are unique over the whole history, replays included.
        ids = [a.id for f in fed for a in f.alerts]
        assert len(ids) == len(set(ids))


@settings(PROPERTIES, max_examples=examples(400))
@given(history=ticks(replays=True), th=thresholds)
def test_every_step_matches_the_reference_model(history: list[Tick], th: Thresholds) -> None:
    fed = run(history, th)
    label(fed)
    with explained(th, fed):
        model = Model.start(th)
        for f in fed:
            expected = model.feed(f.tick.code, f.tick.at)
            got = [(a.event, reminder_number(a)) for a in f.alerts]
            assert got == expected


# --- (d): the final status is what the answers imply ---------------------------------------


@settings(PROPERTIES, max_examples=examples(400))
@given(history=ticks(replays=True), th=thresholds)
def test_the_final_status_is_what_the_answers_imply(history: list[Tick], th: Thresholds) -> None:
    fed = run(history, th)
    label(fed)
    with explained(th, fed):
        model = Model.start(th)
        for f in fed:
            model.feed(f.tick.code, f.tick.at)
        final = fed[-1].after
        last = fed[-1].tick
        every = [(state_of(code), at) for code, at in model.answers]

        # state and `since`: the last answer's state, since the first answer of its trailing run.
        assert final.state is state_of(last.code)
        assert final.since == _run_start(every)
        assert final.checked_at == last.at
        # The flags, cause and detail are the last answer's, whatever it was.
        expected = answer(last.code, TARGET, last.at)
        assert (final.status, final.configured, final.error, final.cause, final.detail) == (
            expected.status,
            expected.configured,
            expected.error,
            expected.cause,
            expected.detail,
        )
        # seen_state: the last UP/DOWN answer; seen_since: the start of its run (UNKNOWN skipped).
        assert final.seen_state is (model.seen[-1][0] if model.seen else None)
        assert final.seen_since == _run_start(model.seen)
        # A down incident is open iff some run of `failure` DOWN answers (UNKNOWN skipped) has not
        # been followed by `recovery` UP answers in a row; it began at that run's first answer.
        assert final.down_since == model.down_since
        # check.failed is open iff `failure` UNKNOWNs in a row (or one CONFIGURATION UNKNOWN) were
        # not followed by `recovery` seen answers in a row; it began at the spell's first UNKNOWN.
        assert final.blind_since == model.blind_since
        assert final.reminders == model.reminders
        assert final.last_alert_at == model.last_alert_at
        # Nothing was acknowledged: every alert decided is still pending, in the order decided.
        assert final.pending == tuple(a for f in fed for a in f.alerts)


# --- (f): a replayed result ------------------------------------------------------------------


@settings(PROPERTIES, max_examples=examples(300))
@given(history=ticks(replays=True), th=thresholds)
def test_a_replayed_result_never_sends_a_duplicate(history: list[Tick], th: Thresholds) -> None:
    """Replaying the result a run just stored (a retried run that re-reads the stored status)
    never repeats an alert, never opens a second incident, never sends an early reminder."""
    fed = run(history, th)
    label(fed)
    with explained(th, fed):
        sent: set[str] = set()
        for f in fed:
            if f.replay:
                assert not any(is_reminder(a) for a in f.alerts)
                assert not {a.id for a in f.alerts} & sent
            sent |= {a.id for a in f.alerts}


@settings(PROPERTIES, max_examples=examples(100))
@example(codes_=["U", "D"], th=Thresholds(failure=2, recovery=1))
@given(codes_=st.lists(codes, min_size=1, max_size=20), th=thresholds)
def test_a_replayed_result_sends_nothing_the_first_call_did_not(
    codes_: list[str], th: Thresholds
) -> None:
    status: TargetStatus | None = None
    for i, code in enumerate(codes_):
        result = answer(code, TARGET, T0 + i * timedelta(minutes=5))
        first = advance(status, result, th)
        again = advance(first.status, result, th)
        note(f"{code}: first {[a.id for a in first.alerts]}, replay {[a.id for a in again.alerts]}")
        assert {a.id for a in again.alerts} <= {a.id for a in first.alerts}
        status = first.status


# --- (g): a steady target stops changing -----------------------------------------------------


@settings(PROPERTIES, max_examples=examples(300))
@given(
    history=ticks(),
    steady=codes,
    th=thresholds,
    extra=st.integers(0, 3),
    acknowledged=st.booleans(),
)
def test_a_steady_target_stops_changing(
    history: list[Tick], steady: str, th: Thresholds, extra: int, acknowledged: bool
) -> None:
    """After enough identical answers, storing the next one would change nothing but
    `checked_at` (so a steady fleet costs no DynamoDB writes): unless reminders are due."""
    at = history[-1].at
    tail = []
    for _ in range(th.streak_cap + 1 + extra):
        at += timedelta(minutes=5)
        tail.append(Tick(steady, at, False))
    fed = run(history + tail, th)
    label(fed)
    with explained(th, fed):
        previous, last = fed[-2].after, fed[-1]
        if acknowledged:  # as after a successful publish
            previous = acknowledge(previous, {a.id for a in previous.pending})
            again = advance(previous, answer(steady, TARGET, at), th)
            last = replace(last, after=again.status, alerts=again.alerts)
        if any(is_reminder(a) for a in last.alerts):
            assert th.renotify is not None  # a reminder is a change by design
            assert not last.after.same_as(previous)
            return
        assert not last.alerts
        assert last.after.same_as(previous)


# --- the repository codec round-trips every reachable status ---------------------------------

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def through_dynamodb(status: TargetStatus) -> TargetStatus:
    """What a status becomes after a put and a get: plain item -> typed -> plain -> status."""
    typed = {k: _serializer.serialize(v) for k, v in status_to_item(status).items()}
    return status_from_item({k: _deserializer.deserialize(v) for k, v in typed.items()})


odd_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=0, max_size=40)
subjects = st.one_of(
    st.just(TARGET),
    st.builds(
        Target,
        portal=st.sampled_from(["a.bitrix24.com", "b.bitrix24.de", "127.0.0.1:8099"]),
        connector=st.from_regex(r"[a-z0-9_.-]{1,20}", fullmatch=True),
        line=st.integers(1, 2**53),
    ),
    st.just(BAD_ENTRY),
    st.builds(
        ConfigIssue,
        entry=odd_text.filter(bool),
        reason=odd_text,
        portal=odd_text,
        connector=odd_text,
        line=odd_text,
    ),
)


@settings(PROPERTIES, max_examples=examples(100))
@given(
    history=ticks(),
    th=thresholds,
    subject=subjects,
    microseconds=st.integers(0, 999_999),
    acked=st.data(),
    version=st.integers(0, 2**40),
)
def test_every_reachable_status_round_trips_through_the_repository_codec(
    history: list[Tick],
    th: Thresholds,
    subject: Subject,
    microseconds: int,
    acked: st.DataObject,
    version: int,
) -> None:
    """Exactly, for every status a real sequence of runs reaches (checked_at increasing)."""
    if isinstance(subject, ConfigIssue):  # bad entries only ever get CONFIGURATION answers
        history = [replace(t, code=CONFIG_CODE) for t in history]
    history = [replace(t, at=t.at + timedelta(microseconds=microseconds)) for t in history]
    for f in run(history, th, subject):
        status = f.after
        pending_ids = [a.id for a in status.pending]
        if pending_ids:
            gone = acked.draw(st.sets(st.sampled_from(pending_ids)), label="acknowledged")
            status = acknowledge(status, gone)
        status = replace(status, version=version)
        assert through_dynamodb(status) == status


@settings(PROPERTIES, max_examples=examples(50))
@given(history=ticks(replays=True), th=thresholds)
def test_replayed_statuses_round_trip_up_to_the_order_of_pending_alerts(
    history: list[Tick], th: Thresholds
) -> None:
    """A replay decides two alerts at one `checked_at` in two steps (connector.down, then
    check.recovered); the stored map is unordered and loads sorted by (created_at, id)."""
    for f in run(history, th):
        back = through_dynamodb(f.after)
        in_order = tuple(sorted(f.after.pending, key=lambda a: (a.created_at, a.id)))
        assert back == replace(f.after, pending=in_order)
