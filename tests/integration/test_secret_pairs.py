"""The token store: Secrets Manager (moto) + OAuth refresh against the local portal over HTTP."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from connector_monitor.aws.lease import Lease
from connector_monitor.bitrix24.oauth import refresh_tokens
from connector_monitor.bitrix24.transport import HttpAnswer, HttpRequest, HttpSession, new_session
from connector_monitor.deadline import Deadline
from connector_monitor.domain.portal_errors import ErrorKind, PortalError
from connector_monitor.tokens.credentials import PortalCredentials
from connector_monitor.tokens.errors import TokenStoreError, UnusableCredentials
from connector_monitor.tokens.refresh import RefreshingTokens, RefreshPolicy
from local.bitrix24_portal import LocalPortal
from local.template import table_definition
from tests.wiring import token_source

REGION = "us-east-1"
SECRET = "connector-monitor/tokens"
TABLE = "monitor-test"
A = "a.bitrix24.test"
B = "b.bitrix24.test"
CONNECTOR = "myconnector"
LINES = (12, 14, 16)
FAST = (0.5, 2.0)  # OAuth connect/read timeouts for tests


# --- fixtures ------------------------------------------------------------------------------


@dataclass
class Leaks:
    """Every token and client secret a test saw; none may reach a log line or a message."""

    values: set[str] = field(default_factory=set)

    def watch_entry(self, entry: dict[str, Any]) -> None:
        for key in ("client_secret", "access_token", "refresh_token"):
            if entry.get(key):
                self.values.add(str(entry[key]))

    def watch(self, creds: PortalCredentials) -> None:
        self.values.update((creds.client_secret, creds.access_token, creds.refresh_token))

    def check(self, *texts: str) -> None:
        for text in texts:
            found = [v for v in self.values if v in text]
            assert not found, f"a token or client secret leaked into: {text[:200]!r}"

    def check_error(self, exc: BaseException) -> None:
        self.check(str(exc), repr(exc), getattr(exc, "detail", ""))


@pytest.fixture(scope="module")
def server() -> Iterator[LocalPortal]:
    with LocalPortal(token_ttl=3600.0) as portal:
        yield portal


_serial = iter(range(1_000_000))


@pytest.fixture
def portal(server: LocalPortal) -> Iterator[LocalPortal]:
    yield server
    server.clear_faults()
    server.old_token_after_refresh = "valid"


@pytest.fixture
def domains(portal: LocalPortal) -> tuple[str, str]:
    """Two fresh portals per test (the server is shared by the module)."""
    n = next(_serial)
    names = (f"a{n}.bitrix24.test", f"b{n}.bitrix24.test")
    for name in names:
        portal.add_portal(name, connectors={CONNECTOR: "My"}, lines=dict.fromkeys(LINES, "Line"))
        for line in LINES:
            portal.connect(name, CONNECTOR, line)
    return names


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, atomic_moto_items: None) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName=TABLE, **table_definition()
        )
        yield


@pytest.fixture
def sm(aws: None) -> Any:
    return boto3.client("secretsmanager", region_name=REGION)


def propagate_library_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing a handler (e2e tests) copies Powertools' config onto the library's loggers,
    which stops them propagating to caplog; undo that for this test."""
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith("connector_monitor") and isinstance(logger, logging.Logger):
            monkeypatch.setattr(logger, "propagate", True)


@pytest.fixture
def leaks(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[Leaks]:
    """Capture every log line at DEBUG (urllib3 and botocore included) and check it at the end."""
    propagate_library_logs(monkeypatch)
    caplog.set_level(logging.DEBUG)
    found = Leaks()
    yield found
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    records = [*caplog.get_records("setup"), *caplog.get_records("call")]
    assert records, "nothing was captured: the leak check would prove nothing"
    for record in records:
        found.check(formatter.format(record))  # message, arguments and any traceback


@pytest.fixture
def secret(sm: Any, portal: LocalPortal, domains: tuple[str, str], leaks: Leaks) -> dict[str, Any]:
    """The secret as an operator would store it, with fields the monitor does not know."""
    a, b = domains
    entry_a = {**portal.credentials(a), "installed_by": "ops@example.com", "app": {"v": 3}}
    entry_b = portal.credentials(b)
    document = {"version": 7, "note": "managed by ops", "portals": {a: entry_a, b: entry_b}}
    leaks.watch_entry(entry_a)
    leaks.watch_entry(entry_b)
    sm.create_secret(Name=SECRET, SecretString=json.dumps(document))
    return document


def stored(sm: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(sm.get_secret_value(SecretId=SECRET)["SecretString"])
    return document


def put_secret(sm: Any, document: dict[str, Any]) -> None:
    sm.put_secret_value(SecretId=SECRET, SecretString=json.dumps(document))


class CountingSession(HttpSession):
    """Counts OAuth requests, successful or not (the portal counts only successful refreshes)."""

    def __init__(self) -> None:
        super().__init__()
        self.oauth_calls = 0
        self._count_lock = threading.Lock()

    def send(self, request: HttpRequest, **kwargs: Any) -> HttpAnswer:
        with self._count_lock:
            self.oauth_calls += 1
        return super().send(request, **kwargs)


def make_store(
    sm: Any,
    *,
    lease: bool = True,
    session: HttpSession | None = None,
    sleep: Callable[[float], None] = lambda _s: None,
    **kwargs: Any,
) -> RefreshingTokens:
    """One invocation's store: its own lease client and HTTP session, like a separate Lambda."""
    kwargs.setdefault("oauth_timeout", FAST)
    return token_source(
        SECRET,
        client=sm,
        lease=Lease(TABLE, client=boto3.client("dynamodb", region_name=REGION)) if lease else None,
        session=session or new_session(),
        sleep=sleep,
        **kwargs,
    )


def status(creds: PortalCredentials, line: int = 12) -> dict[str, Any]:
    answer = requests.post(
        f"{creds.client_endpoint}imconnector.status",
        json={"CONNECTOR": CONNECTOR, "LINE": line, "auth": creds.access_token},
        timeout=5,
    )
    body: dict[str, Any] = answer.json()
    return body


def check(store: RefreshingTokens, portal: str, line: int = 12) -> dict[str, Any]:
    """What the REST client does: call, on expired_token refresh once and retry."""
    creds = store.credentials(portal)
    body = status(creds, line)
    if body.get("error") == "expired_token":
        body = status(store.refresh(portal, creds), line)
    return body


def works(body: dict[str, Any]) -> bool:
    return bool(body.get("result", {}).get("STATUS") is True)


# --- reading the secret --------------------------------------------------------------------


def test_reads_every_portal_and_its_credentials(secret: dict[str, Any], sm: Any) -> None:
    store = make_store(sm)
    store.load()
    a, b = list(secret["portals"])
    assert store.credentials(b).portal == b
    creds = store.credentials(a)
    assert creds.extra == {"installed_by": "ops@example.com", "app": {"v": 3}}
    assert works(status(creds))


def test_corrupt_json_is_a_clear_error_without_content(sm: Any, aws: None) -> None:
    sm.create_secret(Name=SECRET, SecretString='{"portals": {"x": {"client_secret": "s3cr3t-xyz"')
    with pytest.raises(TokenStoreError) as caught:
        make_store(sm).load()
    message = str(caught.value)
    assert SECRET in message
    assert "not valid JSON" in message
    assert "s3cr3t-xyz" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"tokens": {}}, 'no "portals" object'),
        ({"portals": ["a.bitrix24.com"]}, 'no "portals" object'),
        (["portals"], "not a JSON object"),
    ],
)
def test_a_document_of_the_wrong_shape_is_a_clear_error(
    sm: Any, aws: None, value: object, expected: str
) -> None:
    sm.create_secret(Name=SECRET, SecretString=json.dumps(value))
    with pytest.raises(TokenStoreError, match=expected):
        make_store(sm).load()


def test_missing_secret_names_it(sm: Any, aws: None) -> None:
    with pytest.raises(TokenStoreError) as caught:
        make_store(sm).load()
    assert str(caught.value).startswith(f"secret {SECRET}: ResourceNotFoundException")
    assert "does not exist" in str(caught.value)


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        ("AccessDeniedException", "IAM policy"),
        ("DecryptionFailure", "kms:Decrypt"),
        ("ThrottlingException", "throttled"),
        ("InternalServiceError", "could not be used"),
    ],
)
def test_secrets_manager_errors_are_explained(code: str, hint: str) -> None:
    client = boto3.client(
        "secretsmanager",
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stub:
        stub.add_client_error("get_secret_value", service_error_code=code, http_status_code=400)
        with pytest.raises(TokenStoreError) as caught:
            token_source(SECRET, client=client).load()
    assert SECRET in str(caught.value)
    assert code in str(caught.value)
    assert hint in str(caught.value)


def test_unreachable_secrets_manager_is_explained() -> None:
    client = boto3.client(
        "secretsmanager",
        region_name=REGION,
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(connect_timeout=0.5, retries={"max_attempts": 1}),
    )
    with pytest.raises(TokenStoreError, match=r"could not reach Secrets Manager \(Endpoint"):
        token_source(SECRET, client=client).load()


def test_an_entry_without_refresh_token_fails_only_that_portal(
    sm: Any, portal: LocalPortal, domains: tuple[str, str], leaks: Leaks
) -> None:
    a, b = domains
    entry_a, entry_b = portal.credentials(a), portal.credentials(b)
    leaks.watch_entry(entry_a)
    leaks.watch_entry(entry_b)
    del entry_b["refresh_token"]
    sm.create_secret(Name=SECRET, SecretString=json.dumps({"portals": {a: entry_a, b: entry_b}}))
    store = make_store(sm)
    store.load()

    with pytest.raises(UnusableCredentials, match=f"{b} lacks refresh_token") as caught:
        store.credentials(b)
    leaks.check_error(caught.value)
    assert works(check(store, a))


def test_a_portal_without_an_entry_is_a_credentials_error(secret: dict[str, Any], sm: Any) -> None:
    store = make_store(sm)
    with pytest.raises(UnusableCredentials, match=r"no entry for portal c\.bitrix24\.test"):
        store.credentials("c.bitrix24.test")


def test_reads_the_secret_once_per_load(secret: dict[str, Any], sm: Any) -> None:
    store = make_store(sm)
    store.load()
    a, _ = list(secret["portals"])
    put_secret(sm, {"portals": {}})  # changed behind the store's back
    assert store.credentials(a).access_token == secret["portals"][a]["access_token"]
    store.load()  # the next invocation
    with pytest.raises(UnusableCredentials, match="no entry"):
        store.credentials(a)


@pytest.mark.parametrize(("count", "warned"), [(4, False), (5, True)])
def test_a_secret_with_more_portals_than_its_write_budget_is_warned_about(
    sm: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    count: int,
    warned: bool,
) -> None:
    # Each portal's refresh writes the secret about hourly; Secrets Manager keeps every version
    # younger than a day and allows about 100, so a fifth portal locks one out within a day.
    propagate_library_logs(monkeypatch)
    entry = {"client_id": "id", "client_secret": "s", "access_token": "a", "refresh_token": "r"}
    portals = {f"p{n}.bitrix24.test": entry for n in range(count)}
    sm.create_secret(Name=SECRET, SecretString=json.dumps({"portals": portals}))
    with caplog.at_level(logging.WARNING, logger="connector_monitor"):
        make_store(sm).load()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if warned:
        assert len(warnings) == 1
        assert f"{SECRET} holds {count} portals" in warnings[0]
        assert "at most 4 portals" in warnings[0]
    else:
        assert warnings == []


# --- refreshing ----------------------------------------------------------------------------


def test_expiry_mid_run_refreshes_once_and_stores_the_new_pair(
    secret: dict[str, Any], sm: Any, portal: LocalPortal, leaks: Leaks
) -> None:
    a, b = list(secret["portals"])
    store = make_store(sm)
    store.load()
    assert all(works(check(store, a, line)) for line in LINES)

    portal.expire_access_tokens(a)
    start = threading.Barrier(len(LINES))
    answers: dict[int, dict[str, Any]] = {}

    def run(line: int) -> None:
        start.wait()
        answers[line] = check(store, a, line)

    threads = [threading.Thread(target=run, args=(line,)) for line in LINES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert all(works(answers[line]) for line in LINES)
    assert portal.refresh_count(a) == 1
    fresh = store.credentials(a)
    leaks.watch(fresh)
    after = stored(sm)
    entry = after["portals"][a]
    assert (entry["access_token"], entry["refresh_token"]) == (
        fresh.access_token,
        fresh.refresh_token,
    )
    assert entry["refresh_token"] != secret["portals"][a]["refresh_token"]
    assert abs(entry["expires_at"] - (time.time() + 3600)) < 30
    # Unknown fields are kept, top-level and per portal; the other portal is untouched.
    assert entry["installed_by"] == "ops@example.com"
    assert entry["app"] == {"v": 3}
    assert {k: after[k] for k in ("version", "note")} == {"version": 7, "note": "managed by ops"}
    assert after["portals"][b] == secret["portals"][b]
    assert abs(entry["refreshed_at"] - time.time()) < 30  # the refresh budget counts from it
    managed = ("expires_at", "refreshed_at", "member_id")
    assert {k: v for k, v in entry.items() if "token" not in k and k not in managed} == {
        k: v for k, v in secret["portals"][a].items() if "token" not in k
    }


def test_two_invocations_refreshing_at_once_make_one_oauth_call(
    secret: dict[str, Any], sm: Any, portal: LocalPortal, leaks: Leaks
) -> None:
    a, _ = list(secret["portals"])
    sessions = [CountingSession(), CountingSession()]
    stores = [make_store(sm, session=s) for s in sessions]
    for store in stores:
        store.load()
    # Slow OAuth answers keep the first refresh in flight while the second one arrives.
    portal.inject(a, "timeout", method="oauth", delay=0.3, count=1)
    portal.expire_access_tokens(a)
    start = threading.Barrier(2)
    answers: list[dict[str, Any]] = [{}, {}]

    def run(i: int) -> None:
        start.wait()
        answers[i] = check(stores[i], a)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert all(works(answer) for answer in answers)
    assert portal.refresh_count(a) == 1
    assert sum(s.oauth_calls for s in sessions) == 1  # the second waited, then re-read
    final = stored(sm)["portals"][a]
    for store in stores:
        creds = store.credentials(a)
        leaks.watch(creds)
        assert creds.access_token == final["access_token"]
        assert creds.refresh_token == final["refresh_token"]
        assert works(check(store, a))


def test_without_lease_a_refresh_token_rotated_elsewhere_is_picked_up(
    secret: dict[str, Any], sm: Any, portal: LocalPortal, leaks: Leaks
) -> None:
    """Another run rotated the pair but had not stored it yet when this run tried its refresh.
    (With the old access token ended by the refresh: the reading in which this run finds out
    at once; under the other, it goes on with the old token until its hour is up.)"""
    portal.old_token_after_refresh = "expired"
    a, _ = list(secret["portals"])
    store_doc = secret["portals"][a]
    old = PortalCredentials.from_secret_entry(a, store_doc)
    newer = refresh_tokens(
        old, session=new_session(), deadline=Deadline.after(30), timeouts=FAST
    )  # the other run
    leaks.watch(newer)
    sleeps: list[float] = []

    def other_run_stores_its_pair(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:  # lands while this run is re-reading
            document = stored(sm)
            document["portals"][a].update(
                access_token=newer.access_token, refresh_token=newer.refresh_token
            )
            put_secret(sm, document)

    store = make_store(sm, lease=False, sleep=other_run_stores_its_pair)
    store.load()
    body = check(store, a)  # expired_token -> invalid_grant -> re-read -> the newer pair

    assert works(body)
    assert len(sleeps) == 2
    assert portal.refresh_count(a) == 1  # only the other run's
    assert store.credentials(a).refresh_token == newer.refresh_token
    assert stored(sm)["portals"][a]["refresh_token"] == newer.refresh_token


def test_two_invocations_refreshing_different_portals_keep_both_pairs(
    secret: dict[str, Any], sm: Any, portal: LocalPortal, leaks: Leaks
) -> None:
    a, b = list(secret["portals"])
    first, second = make_store(sm), make_store(sm)
    first.load()
    second.load()
    for domain in (a, b):
        # A slow OAuth server: without the lease both runs would read the secret before either
        # wrote, and the second write would bring back the other portal's spent pair.
        portal.inject(domain, "timeout", method="oauth", delay=0.3, count=1)
        portal.expire_access_tokens(domain)
    start = threading.Barrier(2)
    answers: dict[str, dict[str, Any]] = {}

    def run(store: RefreshingTokens, domain: str) -> None:
        start.wait()
        answers[domain] = check(store, domain)

    threads = [
        threading.Thread(target=run, args=(first, a)),
        threading.Thread(target=run, args=(second, b)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert works(answers[a]) and works(answers[b])
    assert portal.refresh_count(a) == 1 and portal.refresh_count(b) == 1
    after = stored(sm)
    for domain, store in ((a, first), (b, second)):
        creds = PortalCredentials.from_secret_entry(domain, after["portals"][domain])
        leaks.watch(creds)
        assert creds.access_token == store.credentials(domain).access_token
        assert works(status(creds))  # the stored pair is the live one
        assert refresh_tokens(
            creds, session=new_session(), deadline=Deadline.after(30), timeouts=FAST
        ).access_token


def test_revoked_authorisation_is_auth_lost(
    secret: dict[str, Any], sm: Any, portal: LocalPortal, leaks: Leaks
) -> None:
    a, _ = list(secret["portals"])
    sleeps: list[float] = []
    store = make_store(sm, sleep=sleeps.append, policy=RefreshPolicy(reread_attempts=3))
    store.load()
    stale = store.credentials(a)
    portal.revoke(a)
    with pytest.raises(PortalError) as caught:
        store.refresh(a, stale)
    error = caught.value
    assert error.kind is ErrorKind.AUTH_LOST
    assert error.code == "invalid_grant"
    assert "re-authorise" in error.detail
    assert len(sleeps) == 3  # it looked for a pair rotated by another run first
    assert stored(sm) == secret
    leaks.check_error(error)


@pytest.mark.parametrize("fault", ["invalid_client", "wrong_client"])
def test_a_refused_client_is_auth_lost_at_once(
    secret: dict[str, Any], sm: Any, portal: LocalPortal, leaks: Leaks, fault: str
) -> None:
    a, _ = list(secret["portals"])
    sleeps: list[float] = []
    store = make_store(sm, sleep=sleeps.append)
    store.load()
    portal.inject(a, fault, method="oauth", count=1)
    with pytest.raises(PortalError) as caught:
        store.refresh(a, store.credentials(a))
    assert caught.value.kind is ErrorKind.AUTH_LOST
    assert caught.value.code == fault
    assert sleeps == []
    assert stored(sm) == secret
    leaks.check_error(caught.value)


def test_a_wrong_client_secret_is_auth_lost(
    secret: dict[str, Any], sm: Any, portal: LocalPortal, leaks: Leaks
) -> None:
    a, _ = list(secret["portals"])
    document = json.loads(json.dumps(secret))
    document["portals"][a]["client_secret"] = "not-the-secret-0123456789"
    leaks.values.add("not-the-secret-0123456789")
    put_secret(sm, document)
    store = make_store(sm)
    with pytest.raises(PortalError) as caught:
        store.refresh(a, store.credentials(a))
    assert (caught.value.kind, caught.value.code) == (ErrorKind.AUTH_LOST, "invalid_client")
    leaks.check_error(caught.value)


def test_oauth_timeout_is_portal_failing_and_the_secret_untouched(
    secret: dict[str, Any], sm: Any, portal: LocalPortal, leaks: Leaks
) -> None:
    a, _ = list(secret["portals"])
    store = make_store(sm, oauth_timeout=(0.5, 0.3))
    store.load()
    portal.inject(a, "timeout", method="oauth", delay=5.0, count=1)
    started = time.monotonic()
    with pytest.raises(PortalError) as caught:
        store.refresh(a, store.credentials(a))
    assert time.monotonic() - started < 3
    assert caught.value.kind is ErrorKind.PORTAL_FAILING
    assert "timed out" in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__
    assert stored(sm) == secret
    leaks.check_error(caught.value)


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("html", ErrorKind.PORTAL_FAILING),
        ("http_503", ErrorKind.PORTAL_FAILING),
        ("INTERNAL_SERVER_ERROR", ErrorKind.PORTAL_FAILING),
        ("drop", ErrorKind.PORTAL_FAILING),
        ("not_json", ErrorKind.BAD_ANSWER),
        ("truncated", ErrorKind.BAD_ANSWER),
    ],
)
def test_a_broken_oauth_answer_is_classified_and_stores_nothing(
    secret: dict[str, Any],
    sm: Any,
    portal: LocalPortal,
    leaks: Leaks,
    fault: str,
    kind: ErrorKind,
) -> None:
    a, _ = list(secret["portals"])
    store = make_store(sm)
    store.load()
    portal.inject(a, fault, method="oauth", count=1)
    with pytest.raises(PortalError) as caught:
        store.refresh(a, store.credentials(a))
    assert caught.value.kind is kind
    assert stored(sm) == secret
    leaks.check_error(caught.value)


def test_an_unreachable_oauth_server_is_portal_failing(
    sm: Any, portal: LocalPortal, domains: tuple[str, str], leaks: Leaks
) -> None:
    a, _ = domains
    entry = {**portal.credentials(a), "oauth_endpoint": "http://127.0.0.1:9/oauth/token/"}
    leaks.watch_entry(entry)
    sm.create_secret(Name=SECRET, SecretString=json.dumps({"portals": {a: entry}}))
    store = make_store(sm)
    with pytest.raises(PortalError) as caught:
        store.refresh(a, store.credentials(a))
    assert caught.value.kind is ErrorKind.PORTAL_FAILING
    assert "could not connect" in str(caught.value)
    leaks.check_error(caught.value)


class FailingWrites:
    """A Secrets Manager client whose PutSecretValue is denied (a broken IAM policy)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.put_attempts = 0

    def get_secret_value(self, **kwargs: Any) -> Any:
        return self.inner.get_secret_value(**kwargs)

    def put_secret_value(self, **kwargs: Any) -> Any:
        self.put_attempts += 1
        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "denied"}}, "PutSecretValue"
        )


def test_a_failed_write_back_is_loud_and_the_run_keeps_the_new_pair(
    secret: dict[str, Any],
    sm: Any,
    portal: LocalPortal,
    leaks: Leaks,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, _ = list(secret["portals"])
    client = FailingWrites(sm)
    store = token_source(SECRET, client=client, oauth_timeout=FAST, sleep=lambda _s: None)
    store.load()
    stale = store.credentials(a)
    with pytest.raises(TokenStoreError) as caught:
        store.refresh(a, stale)
    assert caught.value.pair_lost

    message = str(caught.value)
    assert "could not be stored" in message and "re-authorise" in message
    assert "AccessDeniedException" in message
    assert client.put_attempts == 3
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "NEW REFRESH TOKEN NOT STORED" in errors[0].getMessage()
    fresh = store.credentials(a)  # the rest of this run goes on with the only live pair
    leaks.watch(fresh)
    assert fresh.access_token != stale.access_token
    assert works(status(fresh))
    assert stored(sm) == secret
    leaks.check_error(caught.value)


def test_lease_held_elsewhere_uses_tokens_rotated_meanwhile(
    secret: dict[str, Any], sm: Any, portal: LocalPortal, leaks: Leaks
) -> None:
    a, _ = list(secret["portals"])
    store = make_store(sm, policy=RefreshPolicy(lease_wait=0.2))
    store.load()
    stale = store.credentials(a)
    rotated = refresh_tokens(
        stale, session=new_session(), deadline=Deadline.after(30), timeouts=FAST
    )
    leaks.watch(rotated)
    other = Lease(TABLE, client=boto3.client("dynamodb", region_name=REGION))
    with other.hold(f"secret:{sm.describe_secret(SecretId=SECRET)['ARN']}"):
        document = stored(sm)
        document["portals"][a].update(
            access_token=rotated.access_token, refresh_token=rotated.refresh_token
        )
        put_secret(sm, document)  # the holder stored its pair and is still busy
        got = store.refresh(a, stale)
    assert got.access_token == rotated.access_token
    assert works(status(got))


def test_lease_held_elsewhere_and_nothing_rotated_gives_up_for_this_run(
    secret: dict[str, Any], sm: Any, portal: LocalPortal, leaks: Leaks
) -> None:
    a, _ = list(secret["portals"])
    store = make_store(sm, policy=RefreshPolicy(lease_wait=0.2))
    store.load()
    other = Lease(TABLE, client=boto3.client("dynamodb", region_name=REGION))
    with (
        other.hold(f"secret:{sm.describe_secret(SecretId=SECRET)['ARN']}"),
        pytest.raises(TokenStoreError, match="next run tries again") as caught,
    ):
        store.refresh(a, store.credentials(a))
    assert portal.refresh_count(a) == 0
    assert stored(sm) == secret
    leaks.check_error(caught.value)


def test_no_debug_line_shows_the_refresh_url(
    secret: dict[str, Any], sm: Any, caplog: pytest.LogCaptureFixture, leaks: Leaks
) -> None:
    # urllib3 logged every request line at DEBUG; the transport (http.client) logs none.
    caplog.set_level(logging.DEBUG)
    a, _ = list(secret["portals"])
    store = make_store(sm)
    store.load()
    stale = store.credentials(a)
    fresh = store.refresh(a, stale)
    leaks.watch(fresh)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "/oauth/token/?" not in text
    assert stale.refresh_token not in text and stale.client_secret not in text
