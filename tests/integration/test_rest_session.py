"""The REST session against the local portal over real HTTP: single calls and batches, failing
portals and retries, token refresh, rate limits, deadlines, and secrets kept out of every text.

Most go through `ConnectorChecks.check`, whose results show what the session did."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
import requests

from connector_monitor.bitrix24.connector_checks import ConnectorChecks
from connector_monitor.bitrix24.rest_session import RetryPolicy, Timeouts
from connector_monitor.bitrix24.transport import HttpAnswer, HttpRequest, HttpSession
from connector_monitor.deadline import Deadline, DeadlineExceeded
from connector_monitor.domain.portal_errors import ErrorKind, PortalError
from connector_monitor.domain.results import Cause, State
from connector_monitor.tokens.errors import TokensUnavailable, UnusableCredentials
from local.bitrix24_portal import LocalPortal
from tests.integration.rest_portal import (
    CONNECTOR,
    BrokenTokens,
    OAuthTokens,
    Sleeps,
    causes,
    checks_for,
    new_portal,
    session_for,
    states,
    targets_of,
)

# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def portal(shared_portal: LocalPortal) -> LocalPortal:
    return shared_portal


# --- single calls and batches --------------------------------------------------------------------


def test_call_returns_the_result(portal: LocalPortal) -> None:
    domain = new_portal(portal)
    session, _ = session_for(portal, domain)

    answer = session.call(
        "imconnector.status", {"CONNECTOR": CONNECTOR, "LINE": 2}, Deadline.after(5)
    )

    assert answer["STATUS"] is True
    assert answer["LINE"] == 2


def test_a_batch_holds_at_most_50_commands(portal: LocalPortal) -> None:
    domain = new_portal(portal)
    session, _ = session_for(portal, domain)
    with pytest.raises(ValueError, match="at most 50"):
        session.batch({f"c{i}": "imconnector.list" for i in range(51)}, Deadline.after(5))
    assert portal.request_count(domain) == 0


# --- bad answers and failing portals -------------------------------------------------------------


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
    client, _ = checks_for(portal, domain)

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
    client, _ = checks_for(portal, domain, sleep=sleeps)

    check = client.check(targets_of(domain, 3), Deadline.after(10))

    assert set(states(check)) == {State.UP}
    assert portal.request_count(domain) == 3
    assert len(sleeps.delays) == 2


def test_read_timeout_leaves_targets_unknown_portal_failing(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=3)
    portal.inject(domain, "timeout", delay=3.0)
    client, _ = checks_for(
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

    class Recording(HttpSession):
        def send(self, request: HttpRequest, **kwargs: Any) -> HttpAnswer:
            seen.append(kwargs["timeouts"])
            return super().send(request, **kwargs)

    session = Recording()
    client, _ = checks_for(
        portal, domain, session=session, timeouts=Timeouts(connect=3.05, read=10)
    )

    client.check(targets_of(domain, 1), Deadline.after(2.0))
    client.close()

    connect, read = seen[0]
    assert connect <= 2.0
    assert 1.5 < read <= 2.0
    assert session.idle_connections == 1  # a handed-in session stays open for its owner
    session.close()


# --- tokens --------------------------------------------------------------------------------------


def test_expired_token_mid_run_refreshes_once_then_succeeds(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=120)
    client, tokens = checks_for(portal, domain)
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
    client, _ = checks_for(portal, domain)

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
    client, _ = checks_for(portal, domain)
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
    client, tokens = checks_for(portal, domain)
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
    client, _ = checks_for(portal, domain, tokens=OAuthTokens(domain, entry))
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
    ("exc", "cause"),
    [
        (UnusableCredentials("secret entry for x lacks refresh_token"), Cause.NO_TOKENS),
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
    session, _ = session_for(portal, domain, tokens=BrokenTokens(exc))
    client = ConnectorChecks(session)

    check = client.check(targets_of(domain, 60), Deadline.after(5))

    assert causes(check) == {cause}
    assert all("LEAKED-SECRET" not in (r.detail or "") for r in check.results)
    assert portal.request_count(domain) == 0
    with pytest.raises(TokensUnavailable) as caught:
        session.call("imconnector.list", {}, Deadline.after(5))
    assert caught.value.__context__ is None
    assert caught.value.__cause__ is None


def test_plain_http_to_a_remote_host_is_refused(portal: LocalPortal) -> None:
    domain = new_portal(portal)
    entry = {**portal.credentials(domain), "client_endpoint": "http://example.invalid/rest/"}
    client, _ = checks_for(portal, domain, tokens=OAuthTokens(domain, entry))

    check = client.check(targets_of(domain, 2), Deadline.after(5))

    assert causes(check) == {Cause.BAD_REQUEST}
    assert "https" in (check.results[0].detail or "")


def test_the_token_travels_in_the_body_never_the_url(portal: LocalPortal) -> None:
    domain = new_portal(portal)
    client, tokens = checks_for(portal, domain)
    client.inventory(Deadline.after(5))
    client.check(targets_of(domain, 3), Deadline.after(5))
    for request in portal.requests(domain):
        assert tokens.creds.access_token not in request.path
        assert "auth" not in request.params  # the portal took it out of the body


# --- rate limits ---------------------------------------------------------------------------------


def test_query_limit_twice_then_ok_backs_off_with_bounded_jitter(portal: LocalPortal) -> None:
    domain = new_portal(portal, lines=3)
    portal.inject(domain, "QUERY_LIMIT_EXCEEDED", count=2)
    sleeps = Sleeps()
    policy = RetryPolicy(rate_limit_retries=4, base_delay=0.5, max_delay=8.0)
    client, _ = checks_for(portal, domain, retry=policy, sleep=sleeps)
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
        client, _ = checks_for(
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
    client, _ = checks_for(portal, domain, retry=policy, sleep=time.sleep)
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
    client, _ = checks_for(portal, domain, sleep=sleeps)

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
    client, _ = checks_for(portal, domain, sleep=sleeps)
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
    client, _ = checks_for(portal, domain, sleep=sleeps)

    check = client.check(targets_of(domain, 60), Deadline.after(10))

    assert set(states(check)[:50]) == {State.UP}  # that answer said operating = 357 s
    assert {r.cause for r in check.results[50:]} == {Cause.RATE_LIMITED}
    assert "operating-time limit" in (check.results[-1].detail or "")
    assert portal.request_count(domain) == 1  # the second chunk was never sent
    assert sleeps.delays == []  # the reset is 10 minutes away: no waiting


# --- deadline ------------------------------------------------------------------------------------


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
    session, _ = session_for(portal, domain)
    client = ConnectorChecks(session)
    gone = Deadline(time.monotonic() - 0.01)

    check = client.check(targets_of(domain, 60), gone)

    assert causes(check) == {Cause.DEADLINE}
    with pytest.raises(DeadlineExceeded):
        client.inventory(gone)
    with pytest.raises(DeadlineExceeded):
        session.call("imconnector.list", {}, gone)
    assert portal.request_count(domain) == 0


# --- secrets stay secret -------------------------------------------------------------------------


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
    client, tokens = checks_for(portal, domain)
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
    warnings = [
        r for r in client_log.records if r.name == "connector_monitor.bitrix24.rest_session"
    ]
    assert {getattr(r, "kind", None) for r in warnings} >= {"portal_failing", "rate_limited"}
    printed = capsys.readouterr()
    everything = "\n".join(
        [client_log.text, *details, repr(client), repr(tokens.creds), printed.out, printed.err]
    )
    for secret in tokens.seen:  # ... and no token or client secret, old or new, anywhere
        assert secret not in everything


def test_reprs_hold_no_token(portal: LocalPortal) -> None:
    domain = new_portal(portal)
    client, tokens = checks_for(portal, domain)
    shown = repr(client) + repr(tokens.creds) + str(tokens.creds)
    assert domain in shown
    for secret in tokens.seen:
        assert secret not in shown


def test_portal_errors_carry_no_requests_text(portal: LocalPortal) -> None:
    domain = new_portal(portal)
    portal.inject(domain, "drop")
    session, _ = session_for(portal, domain, retry=RetryPolicy(failing_retries=0))
    with pytest.raises(PortalError) as caught:
        session.call("imconnector.list", {}, Deadline.after(5))
    err = caught.value
    assert err.kind is ErrorKind.PORTAL_FAILING
    assert err.__cause__ is None
    assert err.__context__ is None
    assert "127.0.0.1" not in str(err)
    assert "dropped" in err.detail
