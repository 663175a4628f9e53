"""The REST client against the local portal over real HTTP: batching, faults, tokens, deadlines."""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

import pytest
import requests

from connector_monitor.bitrix24.client import (
    PortalCheck,
    PortalClient,
    RetryPolicy,
    Timeouts,
    TokenSourceError,
)
from connector_monitor.deadline import Deadline, DeadlineExceeded
from connector_monitor.domain.inventory import LineInfo, find_misconfigured
from connector_monitor.domain.portal_errors import ErrorKind, PortalError, classify
from connector_monitor.domain.results import Cause, State
from connector_monitor.domain.targets import Target
from connector_monitor.tokens.credentials import PortalCredentials
from connector_monitor.tokens.errors import UnusableCredentials
from local.bitrix24_portal import LocalPortal

CONNECTOR = "myconnector"
FAST = RetryPolicy(failing_retries=2, rate_limit_retries=4, base_delay=0.01, max_delay=0.05)
_names = itertools.count()


class OAuthTokens:
    """A tiny token source: the pair in memory, refreshed at the portal's OAuth endpoint.

    The refresh is a form POST so that no secret rides in a URL that urllib3 might log.
    """

    def __init__(self, portal: str, entry: dict[str, str]) -> None:
        self.creds = PortalCredentials.from_secret_entry(portal, entry)
        self.seen: set[str] = {
            entry["access_token"],
            entry["refresh_token"],
            entry["client_secret"],
        }
        self.refreshes = 0

    def credentials(self, portal: str) -> PortalCredentials:
        return self.creds

    def refresh(
        self, portal: str, stale: PortalCredentials, deadline: Deadline | None = None
    ) -> PortalCredentials:
        if stale.access_token != self.creds.access_token:
            return self.creds  # already rotated
        reply = requests.post(
            self.creds.oauth_endpoint,
            data={
                "grant_type": "refresh_token",
                "client_id": self.creds.client_id,
                "client_secret": self.creds.client_secret,
                "refresh_token": self.creds.refresh_token,
            },
            timeout=5,
        )
        body = reply.json()
        if "error" in body:
            code = str(body["error"])
            raise PortalError(classify(code, reply.status_code), portal, code=code)
        self.refreshes += 1
        self.seen |= {body["access_token"], body["refresh_token"]}
        self.creds = self.creds.with_tokens(
            body["access_token"], body["refresh_token"], body["expires"]
        )
        return self.creds


class BrokenTokens:
    """A token source that fails the way a store can: a corrupt entry or an unexpected error."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def credentials(self, portal: str) -> PortalCredentials:
        raise self.exc

    def refresh(
        self, portal: str, stale: PortalCredentials, deadline: Deadline | None = None
    ) -> PortalCredentials:
        raise self.exc


class Sleeps:
    """Records the waits instead of sleeping, so backoff can be asserted exactly."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def portal(shared_portal: LocalPortal) -> LocalPortal:
    return shared_portal


def new_portal(portal: LocalPortal, lines: int = 3, connected: set[int] | None = None) -> str:
    """A fresh portal with `lines` open lines; the connector works on `connected` (all if None)."""
    domain = f"p{next(_names)}.bitrix24.test"
    portal.add_portal(
        domain,
        connectors={CONNECTOR: "My connector", "telegrambot": "Telegram"},
        lines={n: f"Line {n}" for n in range(1, lines + 1)},
    )
    for line in connected if connected is not None else range(1, lines + 1):
        portal.connect(domain, CONNECTOR, line)
    return domain


def targets_of(domain: str, count: int) -> list[Target]:
    return [Target(domain, CONNECTOR, n) for n in range(1, count + 1)]


def client_for(
    portal: LocalPortal, domain: str, tokens: Any = None, **kwargs: Any
) -> tuple[PortalClient, OAuthTokens]:
    source = tokens or OAuthTokens(domain, portal.credentials(domain))
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("sleep", Sleeps())
    return PortalClient(domain, source, **kwargs), source


def states(check: PortalCheck) -> list[State]:
    return [r.state for r in check.results]


def causes(check: PortalCheck) -> set[Cause | None]:
    return {r.cause for r in check.results}


# --- batching ---------------------------------------------------------------------------------


def test_120_lines_cost_3_http_requests(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=120, connected=set(range(1, 121, 2)))
    client, _ = client_for(portal, domain)
    targets = targets_of(domain, 120)

    check = client.check(targets, Deadline.after(10))

    assert portal.request_count(domain) == 3
    assert portal.request_count(domain, method="batch") == 3
    assert client.http_requests == 3
    assert [r.target for r in check.results] == targets
    assert states(check) == [State.UP if n % 2 else State.DOWN for n in range(1, 121)]
    down = check.results[1]
    assert (down.configured, down.error, down.status) == (False, False, False)


def test_the_inventory_is_one_request_of_its_own(portal: LocalPortal) -> None:
    """Validation comes before the statuses, so a pair the portal does not have is never asked
    about (the cycle leaves it out); it costs one request a validation (every 4 hours)."""
    domain = new_portal(portal, lines=120)
    client, _ = client_for(portal, domain)

    inventory = client.inventory(Deadline.after(10))

    assert portal.request_count(domain) == 1
    assert set(portal.requests(domain)[0].params["cmd"]) == {"connectors", "lines"}
    assert inventory.connectors == {CONNECTOR, "telegrambot"}
    assert len(inventory.lines) == 120
    assert inventory.lines[7] == LineInfo("Line 7", active=True)


def test_a_mistyped_target_is_found_from_the_inventory(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=2)
    client, _ = client_for(portal, domain)
    typo, missing = Target(domain, "myconector", 1), Target(domain, CONNECTOR, 99)
    wanted = [Target(domain, CONNECTOR, 1), typo, missing]

    # The portal answers an unknown pair with all flags false: it looks like an outage ...
    assert states(client.check(wanted, Deadline.after(10))) == [State.UP, State.DOWN, State.DOWN]
    # ... which the inventory shows to be a configuration error.
    inventory = client.inventory(Deadline.after(10))
    assert set(find_misconfigured(wanted, inventory)) == {typo, missing}


def test_more_than_200_lines_are_paged_with_extra_calls(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=450, connected={1})
    client, _ = client_for(portal, domain)

    inventory = client.inventory(Deadline.after(10))

    assert sorted(inventory.lines) == list(range(1, 451))
    assert portal.request_count(domain, method="batch") == 1
    assert portal.request_count(domain, method="imopenlines.config.list.get") == 2


def test_a_portal_that_will_not_list_connectors_still_lists_its_lines(
    portal: LocalPortal,
) -> None:
    """imconnector.list answers ACCESS_DENIED (HTTP 400) to an app installed by a user who may
    not change Open Lines connectors (core imconnector/lib/rest/common.php::list())."""
    domain = new_portal(portal, lines=2)
    portal.deny_connector_list(domain)
    client, _ = client_for(portal, domain)

    inventory = client.inventory(Deadline.after(10))

    assert inventory.connectors is None
    assert set(inventory.lines) == {1, 2}


@pytest.mark.parametrize(
    ("fault", "method", "says"),
    [
        ("truncated", None, "bad_answer"),
        ("not_json", "imopenlines.config.list.get", "not JSON"),  # the second page of lines
    ],
)
def test_an_unreadable_inventory_is_a_portal_error(
    portal: LocalPortal, fault: str, method: str | None, says: str
) -> None:
    domain = new_portal(portal, lines=250)
    portal.inject(domain, fault, count=1, method=method)
    client, _ = client_for(portal, domain)

    with pytest.raises(PortalError) as caught:
        client.inventory(Deadline.after(10))

    assert says in caught.value.detail
    assert set(states(client.check(targets_of(domain, 3), Deadline.after(10)))) == {State.UP}


def test_no_targets_no_request(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=2)
    client, _ = client_for(portal, domain)
    assert client.check([], Deadline.after(10)).results == []
    assert portal.request_count(domain) == 0


def test_one_failing_command_only_touches_its_target(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=5)
    portal.fail_command(domain, CONNECTOR, 3, "ACCESS_DENIED")
    client, _ = client_for(portal, domain)

    check = client.check(targets_of(domain, 5), Deadline.after(10))

    assert states(check) == [State.UP, State.UP, State.UNKNOWN, State.UP, State.UP]
    failed = check.results[2]
    assert failed.cause is Cause.ACCESS_DENIED
    assert failed.detail is not None
    assert "ACCESS_DENIED" in failed.detail
    assert portal.request_count(domain) == 1


def test_a_line_missing_from_the_answer_is_unknown(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=3)
    portal.answer_only(domain, {1, 3})
    client, _ = client_for(portal, domain)

    check = client.check(targets_of(domain, 3), Deadline.after(10))

    assert states(check) == [State.UP, State.UNKNOWN, State.UP]
    assert check.results[1].cause is Cause.BAD_ANSWER
    assert check.results[1].detail is not None
    assert "the portal answered without this line" in check.results[1].detail


def test_call_returns_the_result(portal: LocalPortal) -> None:
    domain = new_portal(portal)
    client, _ = client_for(portal, domain)

    answer = client.call(
        "imconnector.status", {"CONNECTOR": CONNECTOR, "LINE": 2}, Deadline.after(5)
    )

    assert answer["STATUS"] is True
    assert answer["LINE"] == 2


def test_a_batch_holds_at_most_50_commands(portal: LocalPortal) -> None:
    domain = new_portal(portal)
    client, _ = client_for(portal, domain)
    with pytest.raises(ValueError, match="at most 50"):
        client.batch({f"c{i}": "imconnector.list" for i in range(51)}, Deadline.after(5))
    assert portal.request_count(domain) == 0


# --- bad answers and failing portals ----------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "cause", "attempts"),
    [
        ("html", Cause.PORTAL_FAILING, 3),
        ("http_500", Cause.PORTAL_FAILING, 3),
        ("http_502", Cause.PORTAL_FAILING, 3),
        ("http_503", Cause.PORTAL_FAILING, 3),
        ("drop", Cause.PORTAL_FAILING, 3),
        ("INTERNAL_SERVER_ERROR", Cause.PORTAL_FAILING, 3),
        ("truncated", Cause.BAD_ANSWER, 1),
        ("not_json", Cause.BAD_ANSWER, 1),
        ("wrong_shape", Cause.BAD_ANSWER, 1),
    ],
)
def test_unreadable_or_failing_portal_leaves_targets_unknown(
    portal: LocalPortal, fault: str, cause: Cause, attempts: int
) -> None:
    domain = new_portal(portal, lines=3)
    portal.inject(domain, fault)
    client, _ = client_for(portal, domain)

    check = client.check(targets_of(domain, 3), Deadline.after(10))

    assert states(check) == [State.UNKNOWN] * 3
    assert causes(check) == {cause}
    detail = check.results[0].detail
    assert detail is not None
    assert detail.startswith(f"{domain}: ")
    assert portal.request_count(domain) == attempts  # retried only when it may help


def test_a_failing_portal_that_recovers_is_retried(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=3)
    portal.inject(domain, "http_502", count=2)
    sleeps = Sleeps()
    client, _ = client_for(portal, domain, sleep=sleeps)

    check = client.check(targets_of(domain, 3), Deadline.after(10))

    assert set(states(check)) == {State.UP}
    assert portal.request_count(domain) == 3
    assert len(sleeps.delays) == 2


def test_a_failed_chunk_does_not_stop_the_others(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=120)
    portal.inject(domain, "truncated", count=1)
    client, _ = client_for(portal, domain)

    check = client.check(targets_of(domain, 120), Deadline.after(10))

    assert states(check) == [State.UNKNOWN] * 50 + [State.UP] * 70
    assert portal.request_count(domain) == 3


def test_read_timeout_leaves_targets_unknown_portal_failing(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=3)
    portal.inject(domain, "timeout", delay=3.0)
    client, _ = client_for(
        portal,
        domain,
        timeouts=Timeouts(connect=1.0, read=0.3),
        retry=RetryPolicy(failing_retries=1, base_delay=0.01, max_delay=0.01),
    )
    started = time.monotonic()

    check = client.check(targets_of(domain, 3), Deadline.after(10))

    assert time.monotonic() - started < 2.0
    assert causes(check) == {Cause.PORTAL_FAILING}
    assert check.results[0].detail is not None
    assert "no answer within 0.30 s" in check.results[0].detail
    assert portal.request_count(domain) == 2


def test_timeouts_are_capped_by_the_deadline(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=1)
    seen: list[Any] = []

    class Recording(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> requests.Response:
            seen.append(kwargs.get("timeout"))
            return super().request(*args, **kwargs)

    session = Recording()
    client, _ = client_for(
        portal, domain, session=session, timeouts=Timeouts(connect=3.05, read=10)
    )

    client.check(targets_of(domain, 1), Deadline.after(2.0))
    client.close()

    connect, read = seen[0]
    assert connect <= 2.0
    assert 1.5 < read <= 2.0
    assert session.adapters  # a handed-in session stays open for its owner
    session.close()


# --- tokens -----------------------------------------------------------------------------------


def test_expired_token_mid_run_refreshes_once_then_succeeds(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=120)
    client, tokens = client_for(portal, domain)
    deadline = Deadline.after(10)
    first = client.check(targets_of(domain, 120), deadline)
    old = tokens.creds.access_token

    portal.expire_access_tokens(domain)
    second = client.check(targets_of(domain, 120), deadline)

    assert set(states(first)) == set(states(second)) == {State.UP}
    assert portal.refresh_count(domain) == 1
    assert tokens.creds.access_token != old
    assert portal.request_count(domain) == 3 + 1 + 3  # one refused request, retried once


def test_expired_again_after_refresh_is_auth_lost(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=120)
    portal.inject(domain, "expired_token", count=2)
    client, _ = client_for(portal, domain)

    check = client.check(targets_of(domain, 120), Deadline.after(10))

    assert causes(check) == {Cause.AUTH_LOST}
    assert portal.refresh_count(domain) == 1
    assert portal.request_count(domain) == 2  # no request for the other chunks
    detail = check.results[-1].detail
    assert detail is not None
    assert "re-authorise" in detail


def test_revoked_application_is_auth_lost_without_more_requests(portal: LocalPortal) -> None:
    """invalid_token is refreshed once, like expired_token; the refresh token is revoked too,
    so the OAuth server's invalid_grant says a person must re-authorise."""
    domain = new_portal(portal, lines=120)
    client, _ = client_for(portal, domain)
    portal.revoke(domain)

    check = client.check(targets_of(domain, 120), Deadline.after(10))

    assert states(check) == [State.UNKNOWN] * 120
    assert causes(check) == {Cause.AUTH_LOST}
    assert check.results[0].detail is not None
    assert "invalid_grant" in check.results[0].detail
    assert portal.request_count(domain) == 1
    assert portal.refresh_count(domain) == 0


@pytest.mark.parametrize("code", ["invalid_token", "expired_token"])
def test_a_stale_token_is_refreshed_once_whichever_code_the_portal_sends(
    portal: LocalPortal, code: str
) -> None:
    """What a day-old access token answers is not settled by the sources: expired_token (the
    old OAuth server's code for a signed token past its hour) or invalid_token (a token the
    portal's cache and the OAuth server no longer know). Both get one refresh and one retry,
    as the official JS SDK does (bitrix24/b24jssdk packages/jssdk/src/core/http/
    abstract-http.ts, _isAuthError)."""
    domain = new_portal(portal, lines=3)
    portal.expired_token_code = code
    client, tokens = client_for(portal, domain)
    portal.expire_access_tokens(domain)

    check = client.check(targets_of(domain, 3), Deadline.after(10))

    assert set(states(check)) == {State.UP}
    assert tokens.refreshes == 1
    assert portal.request_count(domain) == 2


@pytest.mark.parametrize("old_token", ["valid", "expired"])
def test_a_pair_refreshed_by_someone_else(portal: LocalPortal, old_token: str) -> None:
    """Whether a refresh ends the old access token is open (docs/bitrix24-rest-notes.md): both
    readings. Valid till its hour is up: the monitor goes on with it, and only then finds its
    refresh token spent. Ended at once (the safe reading): the monitor finds out now."""
    portal.old_token_after_refresh = old_token
    domain = new_portal(portal, lines=2)
    entry = portal.credentials(domain)
    client, _ = client_for(portal, domain, tokens=OAuthTokens(domain, entry))
    # Someone else refreshed with the same pair: our refresh token is spent, our token expired.
    requests.post(
        entry["oauth_endpoint"],
        data={
            "grant_type": "refresh_token",
            "client_id": entry["client_id"],
            "client_secret": entry["client_secret"],
            "refresh_token": entry["refresh_token"],
        },
        timeout=5,
    ).raise_for_status()

    check = client.check(targets_of(domain, 2), Deadline.after(10))

    assert portal.request_count(domain) == 1
    if old_token == "valid":
        assert set(states(check)) == {State.UP}
        return
    assert causes(check) == {Cause.AUTH_LOST}
    assert check.results[0].detail is not None
    assert "invalid_grant" in check.results[0].detail


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        ("WRONG_AUTH_TYPE", Cause.ACCESS_DENIED),
        ("PAYMENT_REQUIRED", Cause.ACCESS_DENIED),
        ("OVERLOAD_LIMIT", Cause.PORTAL_FAILING),
        ("PORTAL_DELETED", Cause.PORTAL_FAILING),
    ],
)
def test_cannot_see_errors_stop_the_portal_after_one_request(
    portal: LocalPortal, fault: str, cause: Cause
) -> None:
    domain = new_portal(portal, lines=120)
    portal.inject(domain, fault)
    client, _ = client_for(portal, domain)

    check = client.check(targets_of(domain, 120), Deadline.after(10))

    assert causes(check) == {cause}
    assert portal.request_count(domain) == 1


@pytest.mark.parametrize(
    ("exc", "cause"),
    [
        (UnusableCredentials("secret entry for x lacks refresh_token"), Cause.CONFIGURATION),
        (
            RuntimeError("GET https://oauth/?refresh_token=LEAKED-SECRET failed"),
            Cause.MONITOR_ERROR,
        ),
    ],
)
def test_a_failing_token_source_leaves_targets_unknown(
    portal: LocalPortal, exc: Exception, cause: Cause
) -> None:
    domain = new_portal(portal, lines=60)
    client, _ = client_for(portal, domain, tokens=BrokenTokens(exc))

    check = client.check(targets_of(domain, 60), Deadline.after(5))

    assert causes(check) == {cause}
    assert all("LEAKED-SECRET" not in (r.detail or "") for r in check.results)
    assert portal.request_count(domain) == 0
    with pytest.raises(TokenSourceError) as caught:
        client.call("imconnector.list", {}, Deadline.after(5))
    assert caught.value.__context__ is None
    assert caught.value.__cause__ is None


def test_plain_http_to_a_remote_host_is_refused(portal: LocalPortal) -> None:
    domain = new_portal(portal)
    entry = {**portal.credentials(domain), "client_endpoint": "http://example.invalid/rest/"}
    client, _ = client_for(portal, domain, tokens=OAuthTokens(domain, entry))

    check = client.check(targets_of(domain, 2), Deadline.after(5))

    assert causes(check) == {Cause.BAD_REQUEST}
    assert "https" in (check.results[0].detail or "")


def test_the_token_travels_in_the_body_never_the_url(portal: LocalPortal) -> None:
    domain = new_portal(portal)
    client, tokens = client_for(portal, domain)
    client.inventory(Deadline.after(5))
    client.check(targets_of(domain, 3), Deadline.after(5))
    for request in portal.requests(domain):
        assert tokens.creds.access_token not in request.path
        assert "auth" not in request.params  # the portal took it out of the body


# --- rate limits ------------------------------------------------------------------------------


def test_query_limit_twice_then_ok_backs_off_with_bounded_jitter(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=3)
    portal.inject(domain, "QUERY_LIMIT_EXCEEDED", count=2)
    sleeps = Sleeps()
    policy = RetryPolicy(rate_limit_retries=4, base_delay=0.5, max_delay=8.0)
    client, _ = client_for(portal, domain, retry=policy, sleep=sleeps)
    deadline = Deadline.after(10)

    check = client.check(targets_of(domain, 3), deadline)

    assert set(states(check)) == {State.UP}
    assert portal.request_count(domain) == 3
    assert len(sleeps.delays) == 2
    assert 0 <= sleeps.delays[0] <= 0.5
    assert 0 <= sleeps.delays[1] <= 1.0
    assert sum(sleeps.delays) < 10


def test_full_jitter_spreads_the_waits(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=1)
    delays: list[float] = []
    for _ in range(20):
        portal.inject(domain, "QUERY_LIMIT_EXCEEDED", count=1)
        sleeps = Sleeps()
        client, _ = client_for(
            portal, domain, retry=RetryPolicy(base_delay=1.0, max_delay=8.0), sleep=sleeps
        )
        client.check(targets_of(domain, 1), Deadline.after(30))
        delays += sleeps.delays
    assert all(0 <= d <= 1.0 for d in delays)
    assert len({round(d, 3) for d in delays}) > 10


def test_sustained_query_limit_stops_before_the_deadline(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=120)
    portal.inject(domain, "QUERY_LIMIT_EXCEEDED")
    policy = RetryPolicy(rate_limit_retries=50, base_delay=0.2, max_delay=0.4)
    client, _ = client_for(portal, domain, retry=policy, sleep=time.sleep)
    started = time.monotonic()

    check = client.check(targets_of(domain, 120), Deadline.after(1.0))

    assert time.monotonic() - started < 1.0
    assert causes(check) == {Cause.RATE_LIMITED}
    assert portal.request_count(domain, method="batch") >= 2
    # no hammering: the other chunks are not tried against a limited portal
    assert all(len(r.params["cmd"]) == 50 for r in portal.requests(domain))


def test_operating_limit_far_away_gives_up_at_once(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=3)
    portal.inject(domain, "OPERATION_TIME_LIMIT")
    sleeps = Sleeps()
    client, _ = client_for(portal, domain, sleep=sleeps)

    check = client.check(targets_of(domain, 3), Deadline.after(10))

    assert causes(check) == {Cause.RATE_LIMITED}
    assert sleeps.delays == []
    assert portal.request_count(domain) == 1


def test_operating_limit_resetting_soon_is_waited_for(portal: LocalPortal) -> None:
    """An error body has no time block: the wait comes from operating_reset_at of the last
    successful answer (bitrix24/b24restdocs limits.md), here the first check's."""
    domain = new_portal(portal, lines=3)
    portal.operating_reset_in = 1.0
    sleeps = Sleeps()
    client, _ = client_for(portal, domain, sleep=sleeps)
    client.check(targets_of(domain, 3), Deadline.after(10))
    portal.inject(domain, "OPERATION_TIME_LIMIT", count=1)

    check = client.check(targets_of(domain, 3), Deadline.after(10))

    assert set(states(check)) == {State.UP}
    assert len(sleeps.delays) == 1
    assert 0 <= sleeps.delays[0] <= 1.0


def test_a_method_near_its_operating_time_limit_is_paused_before_the_portal_refuses(
    portal: LocalPortal,
) -> None:
    """Successful answers carry the method's operating time; past 80 % of the core's 420 s the
    client stops asking until it resets, instead of running into OPERATION_TIME_LIMIT (429)."""
    domain = new_portal(portal, lines=60)
    portal.set_operating(domain, "imconnector.status", 0.85 * 420)
    sleeps = Sleeps()
    client, _ = client_for(portal, domain, sleep=sleeps)

    check = client.check(targets_of(domain, 60), Deadline.after(10))

    assert set(states(check)[:50]) == {State.UP}  # that answer said operating = 357 s
    assert {r.cause for r in check.results[50:]} == {Cause.RATE_LIMITED}
    assert "operating-time limit" in (check.results[-1].detail or "")
    assert portal.request_count(domain) == 1  # the second chunk was never sent
    assert sleeps.delays == []  # the reset is 10 minutes away: no waiting


# --- deadline ---------------------------------------------------------------------------------


def test_deadline_counts_down() -> None:
    deadline = Deadline.after(5)
    assert 4.5 < deadline.remaining() <= 5
    assert not deadline.expired
    assert deadline.timeout(1.0) == 1.0
    assert deadline.timeout(10.0) <= 5
    gone = Deadline(time.monotonic() - 1)
    assert gone.expired
    assert gone.remaining() == 0.0
    assert gone.timeout(3.0) == 0.0


def test_no_request_starts_after_the_deadline(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=60)
    client, _ = client_for(portal, domain)
    gone = Deadline(time.monotonic() - 0.01)

    check = client.check(targets_of(domain, 60), gone)

    assert causes(check) == {Cause.DEADLINE}
    with pytest.raises(DeadlineExceeded):
        client.inventory(gone)
    with pytest.raises(DeadlineExceeded):
        client.call("imconnector.list", {}, gone)
    assert portal.request_count(domain) == 0


def test_deadline_reached_between_chunks(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=120)
    portal.latency = 0.4
    client, _ = client_for(portal, domain)
    started = time.monotonic()

    check = client.check(targets_of(domain, 120), Deadline.after(0.6))

    assert time.monotonic() - started < 0.9
    assert states(check)[:50] == [State.UP] * 50
    assert {r.cause for r in check.results[100:]} == {Cause.DEADLINE}
    assert client.http_requests == 2  # the third chunk was never sent


# --- secrets stay secret ----------------------------------------------------------------------


@pytest.fixture
def client_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> pytest.LogCaptureFixture:
    """Capture the library's records even if a JSON logger elsewhere stopped their propagation."""
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith("connector_monitor") and isinstance(logger, logging.Logger):
            monkeypatch.setattr(logger, "propagate", True)
    caplog.set_level(logging.DEBUG)
    return caplog


def test_a_failing_run_logs_no_token(
    portal: LocalPortal,
    client_log: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    domain = new_portal(portal, lines=60)
    client, tokens = client_for(portal, domain)
    deadline = Deadline.after(20)
    details: list[str] = []

    portal.expire_access_tokens(domain)  # refresh, then:
    portal.inject(domain, "html", count=1)
    portal.inject(domain, "QUERY_LIMIT_EXCEEDED", count=1)
    portal.fail_command(domain, CONNECTOR, 3, "invalid_token")
    details += [r.detail or "" for r in client.check(targets_of(domain, 60), deadline).results]
    portal.clear_faults()
    portal.inject(domain, "expired_token", count=2)
    details += [r.detail or "" for r in client.check(targets_of(domain, 60), deadline).results]
    portal.revoke(domain)
    details += [r.detail or "" for r in client.check(targets_of(domain, 60), deadline).results]

    assert tokens.refreshes == 2
    assert "failed" in client_log.text  # the failures were logged ...
    warnings = [r for r in client_log.records if r.name == "connector_monitor.bitrix24.client"]
    assert {getattr(r, "kind", None) for r in warnings} >= {"portal_failing", "rate_limited"}
    printed = capsys.readouterr()
    everything = "\n".join(
        [client_log.text, *details, repr(client), repr(tokens.creds), printed.out, printed.err]
    )
    for secret in tokens.seen:  # ... and no token or client secret, old or new, anywhere
        assert secret not in everything


def test_reprs_hold_no_token(portal: LocalPortal) -> None:
    domain = new_portal(portal)
    client, tokens = client_for(portal, domain)
    shown = repr(client) + repr(tokens.creds) + str(tokens.creds)
    assert domain in shown
    for secret in tokens.seen:
        assert secret not in shown


def test_portal_errors_carry_no_requests_text(portal: LocalPortal) -> None:
    domain = new_portal(portal)
    portal.inject(domain, "drop")
    client, _ = client_for(portal, domain, retry=RetryPolicy(failing_retries=0))
    with pytest.raises(PortalError) as caught:
        client.call("imconnector.list", {}, Deadline.after(5))
    err = caught.value
    assert err.kind is ErrorKind.PORTAL_FAILING
    assert err.__cause__ is None
    assert err.__context__ is None
    assert "127.0.0.1" not in str(err)
    assert "dropped" in err.detail
