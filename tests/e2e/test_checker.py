"""The checker end to end: scheduled event in, DynamoDB records and SNS alerts out."""

from __future__ import annotations

import io
import threading
from types import ModuleType
from typing import Any

import pytest

from local.handlers import LambdaContext
from tests.e2e.conftest import CONNECTOR, PORTAL, Stack, scheduled_event


def invoke(checker: ModuleType, **context: Any) -> dict[str, Any]:
    result: dict[str, Any] = checker.lambda_handler(scheduled_event(), LambdaContext(**context))
    return result


def states(stack: Stack) -> dict[str, str]:
    return {item["sk"]: item["state"] for item in stack.items("STATE")}


def test_a_healthy_fleet_is_stored_and_nobody_is_paged(checker: ModuleType, stack: Stack) -> None:
    summary = invoke(checker)
    assert summary["up"] == 3
    assert summary["http_requests"] == 2  # target validation, then the statuses
    assert set(states(stack).values()) == {"UP"}
    assert stack.alerts() == []
    run = stack.items("RUN")[0]
    assert run["summary"]["up"] == 3


def test_connector_down_once_after_threshold_then_silence_then_one_recovery(
    checker: ModuleType, stack: Stack
) -> None:
    invoke(checker)
    stack.portal.set_status(PORTAL, CONNECTOR, 14, configured=True, error=True)

    invoke(checker)  # first bad answer: below the threshold of 2
    assert stack.alerts() == []
    assert states(stack)[f"{PORTAL}/{CONNECTOR}/14"] == "DOWN"

    invoke(checker)
    alerts = stack.alerts()
    assert len(alerts) == 1
    down = alerts[0]
    assert {k: down[k] for k in ("event", "portal", "connector", "line", "severity")} == {
        "event": "connector.down",
        "portal": PORTAL,
        "connector": CONNECTOR,
        "line": "14",
        "severity": "critical",
    }
    assert "imconnector.activate" in down["message"]
    assert len(down["subject"]) <= 100

    invoke(checker)
    invoke(checker)
    assert stack.alerts() == []  # still down: no repeat

    stack.portal.set_status(PORTAL, CONNECTOR, 14, configured=True, error=False)
    invoke(checker)
    recovered = stack.alerts()
    assert [a["event"] for a in recovered] == ["connector.recovered"]
    assert recovered[0]["line"] == "14"
    history = stack.items(f"HISTORY#{PORTAL}/{CONNECTOR}/14")
    assert [h["event"] for h in history] == ["connector.down", "connector.recovered"]
    assert all(int(h["expires_at"]) > 0 for h in history)


def test_overlapping_invocations_send_one_alert(checker: ModuleType, stack: Stack) -> None:
    invoke(checker)
    stack.portal.disconnect(PORTAL, CONNECTOR, 12)
    invoke(checker)
    stack.portal.latency = 0.3  # both runs load the state before either stores its decision
    results: list[dict[str, Any]] = []
    runs = [threading.Thread(target=lambda: results.append(invoke(checker))) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    alerts = stack.alerts()
    assert [a["event"] for a in alerts] == ["connector.down"]
    assert (
        sum(r["conflicts"] for r in results) >= 1 or sum(r["alerts_decided"] for r in results) == 1
    )


def test_a_failed_publish_stays_pending_and_is_sent_once_next_run(
    checker: ModuleType, stack: Stack
) -> None:
    invoke(checker)
    stack.portal.disconnect(PORTAL, CONNECTOR, 16)
    invoke(checker)

    def refuse(**_: Any) -> None:
        raise RuntimeError("SNS is down")

    client = checker.root().publisher._client
    client.meta.events.register("before-call.sns.Publish", refuse)
    summary = invoke(checker)
    assert summary["alerts_decided"] == 1
    assert summary["alerts_pending"] == 1
    assert stack.alerts() == []
    item = next(i for i in stack.items("STATE") if i["sk"].endswith("/16"))
    assert len(item["pending"]) == 1

    client.meta.events.unregister("before-call.sns.Publish", refuse)
    summary = invoke(checker)
    assert summary["alerts_published"] == 1
    assert [a["event"] for a in stack.alerts()] == ["connector.down"]
    invoke(checker)
    assert stack.alerts() == []


def test_a_revoked_token_is_check_failed_not_connector_down(
    checker: ModuleType, stack: Stack
) -> None:
    invoke(checker)
    stack.portal.revoke(PORTAL)
    invoke(checker)
    invoke(checker)
    alerts = stack.alerts()
    assert [a["event"] for a in alerts] == ["check.failed"]  # one message for the whole portal
    assert alerts[0]["severity"] == "warning"
    assert "re-authorise" in alerts[0]["message"]
    assert set(states(stack).values()) == {"UNKNOWN"}


def test_a_bad_targets_entry_is_reported_and_the_others_still_checked(
    checker: ModuleType, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TARGETS", f"{PORTAL}/{CONNECTOR}/12,{PORTAL}/{CONNECTOR}/twelve")
    summary = invoke(checker)
    assert summary["up"] == 1
    assert summary["config_errors"] == 1
    alerts = stack.alerts()
    assert [a["event"] for a in alerts] == ["check.failed"]
    assert "twelve" in alerts[0]["message"]
    invoke(checker)
    assert stack.alerts() == []  # one alert per problem, not one per run


def test_a_mistyped_connector_or_line_is_a_configuration_error_not_an_outage(
    checker: ModuleType, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "TARGETS", f"{PORTAL}/{CONNECTOR}/12,{PORTAL}/myconector/12,{PORTAL}/{CONNECTOR}/99"
    )
    invoke(checker)
    invoke(checker)
    alerts = stack.alerts()
    assert {a["event"] for a in alerts} == {"check.failed"}
    text = " ".join(a["message"] for a in alerts)
    assert "myconector" in text
    assert "99" in text
    assert states(stack)[f"{PORTAL}/myconector/12"] == "UNKNOWN"


def test_an_expired_access_token_is_refreshed_once_and_stored(
    checker: ModuleType, stack: Stack
) -> None:
    before = stack.secret()["portals"][PORTAL]
    stack.portal.expire_access_tokens(PORTAL)
    summary = invoke(checker)
    assert summary["up"] == 3
    assert stack.portal.refresh_count(PORTAL) == 1
    after = stack.secret()["portals"][PORTAL]
    assert after["refresh_token"] != before["refresh_token"]
    assert after["access_token"] != before["access_token"]
    assert after["expires_at"] > 0


def test_no_token_reaches_the_logs_or_the_summary(
    checker: ModuleType, stack: Stack, log_stream: io.StringIO
) -> None:
    secret_before = stack.secret()["portals"][PORTAL]
    stack.portal.expire_access_tokens(PORTAL)
    summary = invoke(checker)
    stack.portal.revoke(PORTAL)
    invoke(checker)
    invoke(checker)
    secret_after = stack.secret()["portals"][PORTAL]
    text = log_stream.getvalue() + repr(summary) + repr(stack.items("STATE")) + repr(stack.alerts())
    assert "run finished" in text
    for entry in (secret_before, secret_after):
        for field in ("access_token", "refresh_token", "client_secret"):
            assert entry[field] not in text


def test_a_steady_run_writes_only_the_run_record(checker: ModuleType, stack: Stack) -> None:
    invoke(checker)
    invoke(checker)  # streaks count up to the threshold, then stop changing
    calls: list[str] = []
    client = checker.root().repository._client
    client.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: calls.append(model.name)
    )
    invoke(checker)
    writes = [c for c in calls if c not in ("Query", "GetItem", "BatchGetItem")]
    assert writes == ["PutItem"]  # the run record; unchanged targets cost nothing


def test_the_deadline_leaves_targets_unknown_never_half_written(
    checker: ModuleType, stack: Stack
) -> None:
    invoke(checker)
    stack.portal.inject(PORTAL, "timeout", delay=5.0)
    summary = invoke(checker, remaining_ms=16_500)  # 1.5 s for checking after the reserve
    assert summary["unknown"] == 3
    assert set(states(stack).values()) == {"UNKNOWN"}
    assert all(i["version"] >= 1 for i in stack.items("STATE"))
