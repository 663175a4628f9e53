"""The fleet's token table against moto and the local portal: pairs read by query pages, each
refresh one conditional write of its own portal's item under the invocation's refresh claim, the
applications kept once in the secret, and portals moved out of the secret without losing a
pair."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from connector_monitor.aws.lease import Lease
from connector_monitor.aws.secret_pairs import SecretPairs
from connector_monitor.aws.token_table import TablePairs
from connector_monitor.domain.portal_errors import PortalError
from connector_monitor.domain.shards import split
from connector_monitor.tokens.credentials import AppCredentials
from connector_monitor.tokens.errors import (
    LeaseUnavailable,
    TokenStoreError,
    UnusableCredentials,
)
from connector_monitor.tokens.moving import move_to_table, set_pair
from connector_monitor.tokens.refresh import RefreshingTokens
from local.bitrix24_portal import LocalPortal
from local.template import table_definition
from tests.integration.test_secret_pairs import (  # the fixtures too: one world for both
    CONNECTOR,
    FAST,
    LINES,
    REGION,
    SECRET,
    TABLE,
    Leaks,
    aws,
    check,
    domains,
    leaks,
    portal,
    put_secret,
    secret,
    server,
    sm,
    stored,
    works,
)
from tests.support.dynamodb_pages import query_pages, spread_over_pages
from tests.wiring import token_source

__all__ = ["aws", "domains", "leaks", "portal", "secret", "server", "sm"]

TOKENS = "tokens"


@pytest.fixture
def tokens_table(sm: Any) -> str:
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName=TOKENS, **table_definition("TokenTable")
    )
    return TOKENS


def dynamodb() -> Any:
    return boto3.client("dynamodb", region_name=REGION)


def lease() -> Lease:
    return Lease(TABLE, client=dynamodb())


def fleet_source(sm: Any, **kwargs: Any) -> RefreshingTokens:
    """One invocation's token source, as the checker builds it: the table before the secret."""
    given: dict[str, Any] = {
        "table_client": dynamodb(),
        "lease": lease(),
        "oauth_timeout": FAST,
        "sleep": lambda _s: None,
    }
    return token_source(SECRET, tokens_table=TOKENS, client=sm, **{**given, **kwargs})


def moved(sm: Any, portals: list[str] | None = None) -> Any:
    secret = SecretPairs(SECRET, client=sm)
    table = TablePairs(TOKENS, apps=secret.apps, client=dynamodb())
    return move_to_table(secret, table, lease(), portals=portals)


def table_items() -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb", region_name=REGION).Table(TOKENS)
    items: list[dict[str, Any]] = table.scan()["Items"]
    return items


def table_item(portal: str) -> dict[str, Any]:
    table = boto3.resource("dynamodb", region_name=REGION).Table(TOKENS)
    item: dict[str, Any] = table.get_item(Key={"pk": "PORTAL", "sk": portal})["Item"]
    return item


def test_moving_a_portal_keeps_its_pair_working_and_the_app_once_in_the_secret(
    secret: dict[str, Any], sm: Any, tokens_table: str, leaks: Leaks
) -> None:
    a, b = list(secret["portals"])
    before = secret["portals"][a]

    outcome = moved(sm, [a])

    assert (outcome.moved, outcome.already) == ([a], [])
    after = stored(sm)
    assert sorted(after["portals"]) == [b]  # b stays in the secret
    (app,) = [v for v in after["apps"].values() if v["client_id"] == before["client_id"]]
    assert app["client_secret"] == before["client_secret"]
    item = table_item(a)
    assert (item["access_token"], item["refresh_token"]) == (
        before["access_token"],
        before["refresh_token"],
    )
    assert "client_secret" not in item  # the secret of the app is not copied per portal
    source = fleet_source(sm)
    source.load()
    assert works(check(source, a)) and works(check(source, b))


def test_moving_everything_twice_is_the_same_as_once(
    secret: dict[str, Any], sm: Any, tokens_table: str, leaks: Leaks
) -> None:
    first = moved(sm)
    second = moved(sm)
    assert sorted(first.moved) == sorted(secret["portals"])
    assert (second.moved, second.already) == ([], [])
    assert stored(sm)["portals"] == {}


def test_a_crash_between_the_two_writes_loses_no_pair(
    secret: dict[str, Any], sm: Any, tokens_table: str, leaks: Leaks
) -> None:
    """The table is written first; if the secret's write never happens the pair is in both,
    the checker reads the table's, and moving again finishes the job."""
    a, _ = list(secret["portals"])
    original = SecretPairs.replace

    writes: list[dict[str, Any]] = []

    def crash(self: SecretPairs, document: dict[str, Any]) -> None:
        if writes:  # the applications are written; the secret without the portal is not
            raise RuntimeError("killed between the writes")
        writes.append(document)
        original(self, document)

    SecretPairs.replace = crash  # type: ignore[method-assign]
    try:
        with pytest.raises(RuntimeError):
            moved(sm, [a])
    finally:
        SecretPairs.replace = original  # type: ignore[method-assign]
    assert a in stored(sm)["portals"]  # still in the secret ...
    source = fleet_source(sm)
    source.load()
    assert works(check(source, a))  # ... and read from the table
    again = moved(sm, [a])
    assert again.already == [a] and a not in stored(sm)["portals"]


def test_a_move_by_the_secrets_name_waits_for_the_checkers_lease_by_its_arn(
    secret: dict[str, Any], sm: Any, tokens_table: str, portal: LocalPortal, leaks: Leaks
) -> None:
    """The checker knows the secret by its ARN, an operator's `tokens move --secret NAME` by
    its name: both take one lease, so the move waits while the checker refreshes (and had it
    not, the table would keep the spent pair and the secret's new one be deleted)."""
    a, _ = list(secret["portals"])
    arn = sm.describe_secret(SecretId=SECRET)["ARN"]
    checker = SecretPairs(arn, client=sm)
    by_name = SecretPairs(SECRET, client=sm)
    with lease().hold(checker.lease_name(a), ttl=30, wait=1):  # the checker refreshing a
        with pytest.raises(LeaseUnavailable):
            move_to_table(
                by_name,
                TablePairs(TOKENS, apps=by_name.apps, client=dynamodb()),
                lease(),
                lease_wait=0.3,
            )
        document = stored(sm)
        document["portals"][a] = {**document["portals"][a], "refresh_token": "rotated-by-checker"}
        put_secret(sm, document)  # its new pair, stored under its lease
    assert not table_items()  # the move wrote nothing
    assert stored(sm)["portals"][a]["refresh_token"] == "rotated-by-checker"
    assert by_name.lease_name(a) == checker.lease_name(a) == f"secret:{arn}"


def test_a_move_that_outlives_its_lease_writes_nothing_it_read_before(
    secret: dict[str, Any], sm: Any, tokens_table: str, portal: LocalPortal, leaks: Leaks
) -> None:
    """The move stalls past its 120 s lease after reading the secret; a checker takes the
    lease and stores a refreshed pair. The move must not write the document it read (nor
    put the spent pair in the table): the refreshed pair stays in the secret, and works."""
    a, _ = list(secret["portals"])
    now = [time.time()]
    clock = lambda: now[0]  # noqa: E731
    moving_lease = Lease(TABLE, client=dynamodb(), clock=clock)
    checker_lease = Lease(TABLE, client=dynamodb(), clock=clock)

    class Stalling(SecretPairs):
        stalled = False

        def document(self) -> dict[str, Any]:
            read = super().document()
            if not Stalling.stalled:
                Stalling.stalled = True
                now[0] += 200.0  # the move stalls past its lease ...
                with checker_lease.hold(self.lease_name(a), ttl=30, wait=1):
                    source = token_source(SECRET, client=sm, lease=None, oauth_timeout=FAST)
                    source.load()
                    portal.expire_access_tokens(a)
                    assert works(check(source, a))  # ... while the checker refreshes a
            return read

    secret_store = Stalling(SECRET, client=sm)
    table = TablePairs(TOKENS, apps=secret_store.apps, client=dynamodb())
    with pytest.raises(LeaseUnavailable, match="ran out"):
        move_to_table(secret_store, table, moving_lease)
    after = stored(sm)["portals"][a]
    assert after["refresh_token"] != secret["portals"][a]["refresh_token"]  # the checker's
    assert not table_items()
    source = token_source(SECRET, client=sm, lease=None, oauth_timeout=FAST)
    source.load()
    assert works(check(source, a))


def test_a_move_keeps_a_secret_entry_whose_pair_differs_from_the_tables(
    secret: dict[str, Any], sm: Any, tokens_table: str, portal: LocalPortal, leaks: Leaks
) -> None:
    """A fleet portal re-authorised and its new pair stored in the secret (as older alerts
    said): the move must not delete it, though the table holds a pair for the portal."""
    a, _ = list(secret["portals"])
    moved(sm, [a])
    portal.revoke(a)
    fresh = portal.credentials(a)  # re-authorised: a new pair; the table's is revoked
    leaks.watch_entry(fresh)
    document = stored(sm)
    document["portals"][a] = fresh
    put_secret(sm, document)

    outcome = moved(sm, [a])

    assert (outcome.moved, outcome.already, outcome.differing) == ([], [], [a])
    assert stored(sm)["portals"][a]["refresh_token"] == fresh["refresh_token"]
    assert table_item(a)["refresh_token"] == secret["portals"][a]["refresh_token"]


def test_a_pair_set_by_hand_replaces_the_tables_and_is_the_one_refreshed(
    secret: dict[str, Any], sm: Any, tokens_table: str, portal: LocalPortal, leaks: Leaks
) -> None:
    a, _ = list(secret["portals"])
    moved(sm, [a])
    portal.expire_access_tokens(a)
    source = fleet_source(sm)
    source.load()
    assert works(check(source, a))  # refreshed once: refreshed_at set, version 2
    source.end_run()
    portal.revoke(a)
    fresh = portal.credentials(a)  # re-authorised: the table's pair is revoked
    leaks.watch_entry(fresh)
    secret_store = SecretPairs(SECRET, client=sm)
    table = TablePairs(TOKENS, apps=secret_store.apps, client=dynamodb())

    set_pair(table, a, {k: fresh[k] for k in ("access_token", "refresh_token")})

    item = table_item(a)
    assert (item["access_token"], item["refresh_token"], item["version"]) == (
        fresh["access_token"],
        fresh["refresh_token"],
        3,
    )
    assert "refreshed_at" not in item
    source = fleet_source(sm)
    source.load()
    assert works(check(source, a))
    source.end_run()
    portal.expire_access_tokens(a)  # the new pair is refreshed at once: no 55-minute budget
    source = fleet_source(sm)
    source.load()
    assert works(check(source, a))
    assert table_item(a)["version"] == 4


def test_a_revoked_fleet_portal_is_told_to_store_its_new_pair_with_tokens_set(
    secret: dict[str, Any], sm: Any, tokens_table: str, portal: LocalPortal, leaks: Leaks
) -> None:
    """The text a person acts on names the path that works for a fleet portal: a pair put in
    the secret would never be read while the table holds the revoked one."""
    a, b = list(secret["portals"])
    moved(sm, [a])
    for domain in (a, b):
        portal.revoke(domain)
    source = fleet_source(sm)
    source.load()
    for domain, where in ((a, f"with `monitorctl tokens set {a}`"), (b, "in the secret")):
        with pytest.raises(PortalError) as caught:
            source.refresh(domain, source.credentials(domain))
        assert f"store the new tokens {where}" in caught.value.description
        leaks.check_error(caught.value)


def test_a_portal_keyed_in_capitals_is_one_portal_in_the_secret_and_the_table(
    secret: dict[str, Any], sm: Any, tokens_table: str, portal: LocalPortal, leaks: Leaks
) -> None:
    """An operator keys a portal `A0.Bitrix24.TEST.` in the secret; Targets and the registry
    know it as `a0.bitrix24.test`: its tokens are found, refreshed into the same entry (no
    second one), and moved into the table under the one spelling the API and targets use."""
    a, b = list(secret["portals"])
    shouted = a.upper() + "."
    document = stored(sm)
    document["portals"] = {shouted: document["portals"][a], b: document["portals"][b]}
    put_secret(sm, document)
    small = token_source(SECRET, client=sm, lease=lease(), oauth_timeout=FAST)
    small.load()
    assert small.portals() == sorted([a, b])
    portal.expire_access_tokens(a)
    assert works(check(small, a))  # found under its one spelling, and refreshed
    after = stored(sm)["portals"]
    assert sorted(after) == sorted([shouted, b])  # the refreshed pair in the entry as keyed
    assert after[shouted]["refresh_token"] != secret["portals"][a]["refresh_token"]

    outcome = moved(sm, [shouted])

    assert outcome.moved == [a]
    assert [item["sk"] for item in table_items()] == [a]
    assert sorted(stored(sm)["portals"]) == [b]
    source = fleet_source(sm)
    source.load()
    assert source.portals() == sorted([a, b])
    assert works(check(source, a))


def test_a_table_item_keyed_in_capitals_by_hand_is_read_and_refreshed_in_place(
    secret: dict[str, Any], sm: Any, tokens_table: str, portal: LocalPortal, leaks: Leaks
) -> None:
    a, _ = list(secret["portals"])
    moved(sm, [a])
    table = boto3.resource("dynamodb", region_name=REGION).Table(TOKENS)
    item = table_item(a)
    table.delete_item(Key={"pk": "PORTAL", "sk": a})
    table.put_item(Item={**item, "sk": a.upper()})  # written by hand, in capitals
    source = fleet_source(sm)
    source.load()
    assert a in source.portals()
    portal.expire_access_tokens(a)
    assert works(check(source, a))
    (only,) = [i for i in table_items() if str(i["sk"]).lower() == a]
    assert (only["sk"], only["version"]) == (a.upper(), 2)  # refreshed in place
    assert only["refresh_token"] != item["refresh_token"]


def test_an_expired_pair_is_refreshed_in_its_own_item_and_the_secret_is_untouched(
    secret: dict[str, Any], sm: Any, tokens_table: str, portal: LocalPortal, leaks: Leaks
) -> None:
    a, _ = list(secret["portals"])
    moved(sm, [a])
    versions = len(sm.list_secret_version_ids(SecretId=SECRET)["Versions"])
    portal.expire_access_tokens(a)
    source = fleet_source(sm)
    source.load()

    assert works(check(source, a))

    item = table_item(a)
    assert item["version"] == 2
    assert item["member_id"]
    fresh = source.credentials(a)
    leaks.watch(fresh)
    assert item["refresh_token"] == fresh.refresh_token
    assert len(sm.list_secret_version_ids(SecretId=SECRET)["Versions"]) == versions


def test_refreshes_of_different_portals_take_different_leases(
    secret: dict[str, Any], sm: Any, tokens_table: str, portal: LocalPortal, leaks: Leaks
) -> None:
    """A table portal's lease is its own: once the table has taken a pair write in the run, two
    portals refreshing at once do not wait for each other (the secret's portals share one
    lease, since one write replaces them all)."""
    a, b = list(secret["portals"])
    first = f"first-{a}"  # refreshed first: the run's first refresh goes alone
    add_to_secret(sm, portal, first)
    moved(sm)
    portal.expire_access_tokens(first)
    source = fleet_source(sm)
    source.load()
    assert works(check(source, first))
    for domain in (a, b):
        portal.expire_access_tokens(domain)
        portal.inject(domain, "timeout", method="oauth", delay=0.5)
    assert {source.pairs.lease_name(a), source.pairs.lease_name(b)} == {
        f"tokens:{a}",
        f"tokens:{b}",
    }
    started = threading.Barrier(2)
    answers: dict[str, Any] = {}

    def run(domain: str) -> None:
        started.wait()
        answers[domain] = check(source, domain)

    threads = [threading.Thread(target=run, args=(d,)) for d in (a, b)]
    clock = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    took = time.monotonic() - clock
    portal.clear_faults()
    assert works(answers[a]) and works(answers[b])
    assert took < 0.95  # in parallel: two 0.5 s OAuth answers, not one after the other


def add_to_secret(sm: Any, portal: LocalPortal, name: str) -> None:
    """One more healthy portal on the local portal, its pair in the secret."""
    portal.add_portal(name, connectors={CONNECTOR: "My"}, lines=dict.fromkeys(LINES, "Line"))
    for line in LINES:
        portal.connect(name, CONNECTOR, line)
    document = stored(sm)
    document["portals"][name] = portal.credentials(name)
    put_secret(sm, document)


def refusing_pair_writes() -> Any:
    """A DynamoDB client whose refreshed-pair writes the token table refuses (AccessDenied);
    its refresh claim's writes and reads go through."""
    client = dynamodb()

    def deny(params: dict[str, Any], **_: Any) -> None:
        pair_write = params.get("Key", {}).get("pk") == {"S": "PORTAL"}
        if params.get("TableName") == TOKENS and pair_write:
            error = {"Code": "AccessDeniedException", "Message": "not authorized"}
            raise ClientError({"Error": error}, "UpdateItem")

    client.meta.events.register("before-parameter-build.dynamodb.UpdateItem", deny)
    return client


def test_after_a_refused_pair_write_the_run_refreshes_no_other_portal(
    secret: dict[str, Any], sm: Any, tokens_table: str, portal: LocalPortal, leaks: Leaks
) -> None:
    """The store refused the first refreshed pair (that portal needs re-authorising); a second
    refresh would spend the other portal's refresh token and lose its pair too. The next run,
    with the store healthy, refreshes it."""
    a, b = list(secret["portals"])
    moved(sm)
    for domain in (a, b):
        portal.expire_access_tokens(domain)
    refreshes = {d: portal.refresh_count(d) for d in (a, b)}
    source = fleet_source(sm, table_client=refusing_pair_writes())
    source.load()

    with pytest.raises(TokenStoreError) as lost:
        check(source, a)
    with pytest.raises(TokenStoreError, match="not refreshed: the token store refused a write"):
        check(source, b)

    assert lost.value.pair_lost
    assert {d: portal.refresh_count(d) - n for d, n in refreshes.items()} == {a: 1, b: 0}
    source.end_run()
    next_run = fleet_source(sm)
    next_run.load()
    assert works(check(next_run, b))
    assert portal.refresh_count(b) - refreshes[b] == 1
    assert table_item(b)["version"] == 2


def test_until_the_table_takes_a_pair_write_refreshes_go_one_at_a_time(
    secret: dict[str, Any], sm: Any, tokens_table: str, portal: LocalPortal, leaks: Leaks
) -> None:
    """Two portals expire at once while the table refuses pair writes: refreshed side by
    side, both pairs would be spent before the first refusal. One is refreshed (and lost),
    the other is left for the next run."""
    a, b = list(secret["portals"])
    moved(sm)
    for domain in (a, b):
        portal.expire_access_tokens(domain)
        portal.inject(domain, "timeout", method="oauth", delay=0.2)
    refreshes = {d: portal.refresh_count(d) for d in (a, b)}
    source = fleet_source(sm, table_client=refusing_pair_writes())
    source.load()
    started = threading.Barrier(2)
    errors: dict[str, str] = {}

    def run(domain: str) -> None:
        started.wait()
        try:
            check(source, domain)
        except TokenStoreError as exc:
            errors[domain] = str(exc)

    threads = [threading.Thread(target=run, args=(d,)) for d in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    portal.clear_faults()

    assert sum(portal.refresh_count(d) - n for d, n in refreshes.items()) == 1
    assert sorted(errors) == [a, b]
    assert sorted("not refreshed" in text for text in errors.values()) == [False, True]


def test_a_pair_changed_behind_the_stores_back_is_not_overwritten(
    secret: dict[str, Any], sm: Any, tokens_table: str, portal: LocalPortal, leaks: Leaks
) -> None:
    a, _ = list(secret["portals"])
    moved(sm, [a])
    pairs = TablePairs(TOKENS, apps=SecretPairs(SECRET, client=sm).apps, client=dynamodb())
    pairs.load()
    stale = pairs.reread(a)
    dynamodb().update_item(
        TableName=TOKENS,
        Key={"pk": {"S": "PORTAL"}, "sk": {"S": a}},
        UpdateExpression="SET version = version + :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    with pytest.raises(TokenStoreError) as caught:
        pairs.store(stale.with_tokens("new-access", "new-refresh", None))
    assert caught.value.pair_lost
    assert table_item(a)["access_token"] == stale.access_token


def test_a_pair_naming_an_application_the_secret_lacks_is_a_clear_error(
    secret: dict[str, Any], sm: Any, tokens_table: str, leaks: Leaks
) -> None:
    a, _ = list(secret["portals"])
    moved(sm, [a])
    document = stored(sm)
    document["apps"] = {}
    put_secret(sm, document)
    source = fleet_source(sm)
    source.load()
    with pytest.raises(UnusableCredentials, match="does not hold"):
        source.credentials(a)


def moved_fleet(names: list[str], sm: Any, portal: LocalPortal) -> dict[str, AppCredentials]:
    """Portals `names` on the local portal, their pairs moved to the token table: the apps."""
    entries = {}
    for name in names:
        portal.add_portal(name, connectors={"c": "C"}, lines={1: "L"})
        entries[name] = portal.credentials(name)
    sm.create_secret(Name=SECRET, SecretString=json.dumps({"portals": entries}))
    moved(sm)
    return SecretPairs(SECRET, client=sm).apps


def test_a_range_reads_only_its_portals_by_query_pages(
    sm: Any, tokens_table: str, portal: LocalPortal
) -> None:
    """Cost grows with the bytes read, not with the portals: 300 pairs are a few query pages."""
    names = [f"p{i:03d}.bitrix24.test" for i in range(300)]
    apps = moved_fleet(names, sm, portal)
    everything = TablePairs(TOKENS, apps=apps, client=dynamodb())
    everything.load()
    assert everything.portals() == names
    assert everything.calls == 1  # 300 pairs of ~400 bytes: one page
    ranges = split(names, 100)
    shards = [TablePairs(TOKENS, apps=apps, client=dynamodb(), portals=r) for r in ranges]
    for shard in shards:
        shard.load()
    assert [s.portals() for s in shards] == [names[:100], names[100:200], names[200:]]


def test_a_table_of_several_query_pages_is_read_to_its_last_page(
    sm: Any, tokens_table: str, portal: LocalPortal
) -> None:
    """At 10,000 portals the token table is several 1 MB pages: a run reads every one, or the
    portals past the first page have no tokens (and `*/connector/*` forgets them)."""
    names = [f"p{i}.bitrix24.test" for i in range(8)]
    apps = moved_fleet(names, sm, portal)
    assert spread_over_pages(dynamodb(), TOKENS, "PORTAL") == 8
    client = dynamodb()
    pages = query_pages(client)
    pairs = TablePairs(TOKENS, apps=apps, client=client)

    pairs.load()

    assert pairs.portals() == names
    assert all(pairs.credentials(name).access_token for name in names)
    assert pages == [3, 3, 2]


def test_a_shard_starting_at_a_longer_domain_reads_the_shorter_one_it_holds(
    sm: Any, tokens_table: str, portal: LocalPortal
) -> None:
    """`acme.bitrix24.com` is in the shard that starts at `acme.bitrix24.com.br` (keys are
    `portal/`, and "." < "/"), though its plain name, the item's sort key, sorts before."""
    names = ["a.bitrix24.com", "aa.bitrix24.com", "acme.bitrix24.com.br", "acme.bitrix24.com"]
    apps = moved_fleet(names, sm, portal)
    first, last = split(names, 2)
    shards = [TablePairs(TOKENS, apps=apps, client=dynamodb(), portals=r) for r in (first, last)]
    for shard in shards:
        shard.load()

    assert [sorted(s.portals()) for s in shards] == [sorted(names[:2]), sorted(names[2:])]


def claim_holders() -> dict[str, Any]:
    """The live and dead holders the table's refresh claim lists ({} when nobody holds it)."""
    table = boto3.resource("dynamodb", region_name=REGION).Table(TOKENS)
    item = table.get_item(Key={"pk": "CLAIM", "sk": "refresh"}).get("Item") or {}
    holders: dict[str, Any] = item.get("holders", {})
    return holders


def authorised(body: dict[str, Any]) -> bool:
    """The portal answered the call (a portal of `moved_fleet` has none of the lines `works`
    asks about)."""
    return "result" in body and "error" not in body


def counted_client(calls: list[str]) -> Any:
    """A DynamoDB client that notes every operation it calls, and the partition of the item it
    writes ("UpdateItem PORTAL")."""
    client = dynamodb()

    def note(params: dict[str, Any], model: Any, **_: Any) -> None:
        pk = params.get("Key", {}).get("pk", {}).get("S")
        calls.append(f"{model.name} {pk}" if pk and model.name != "GetItem" else model.name)

    client.meta.events.register("before-parameter-build.dynamodb.*", note)
    return client


def test_a_run_that_refreshes_n_portals_writes_n_pairs_and_its_claim_twice(
    sm: Any, tokens_table: str, portal: LocalPortal, leaks: Leaks
) -> None:
    """One write a refresh, the pair's (conditional on the version read): the exclusion between
    invocations is the run's refresh claim, taken before its first refresh and given back at
    its end, two writes however many portals the run refreshes (the bill's largest line was two
    writes a refresh)."""
    names = [f"n{i}.bitrix24.test" for i in range(4)]
    moved_fleet(names, sm, portal)
    for name in names:
        portal.expire_access_tokens(name)
    calls: list[str] = []
    source = fleet_source(sm, table_client=counted_client(calls))
    source.load()
    calls.clear()

    assert all(authorised(check(source, name)) for name in names)
    source.end_run()

    writes = [c for c in calls if c.split()[0] in ("PutItem", "UpdateItem", "DeleteItem")]
    assert writes.count("UpdateItem PORTAL") == len(names)  # one pair write each
    assert writes.count("UpdateItem CLAIM") == 2  # the claim: taken once, given back once
    assert len(writes) == len(names) + 2
    assert all(table_item(name)["version"] == 2 for name in names)
    assert claim_holders() == {}


def test_overlapping_invocations_refresh_an_expired_portal_once(
    secret: dict[str, Any], sm: Any, tokens_table: str, portal: LocalPortal, leaks: Leaks
) -> None:
    """Two invocations over the same portals find the access token expired at once: one takes
    the refresh claim and refreshes; the other is refused the claim and does not spend the
    single-use refresh token (its check of the portal is UNKNOWN for this run, with the claim
    named); nothing is lost: the next run uses the stored pair."""
    a, _ = list(secret["portals"])
    moved(sm)
    portal.expire_access_tokens(a)
    portal.inject(a, "timeout", method="oauth", delay=0.3)  # the first refresh takes a while
    sources = [fleet_source(sm), fleet_source(sm)]
    for source in sources:
        source.load()
    before = portal.refresh_count(a)
    started = threading.Barrier(2)
    answers: list[Any] = []
    refused: list[TokenStoreError] = []

    def run(source: RefreshingTokens) -> None:
        started.wait()
        try:
            answers.append(check(source, a))
        except TokenStoreError as exc:
            refused.append(exc)
        finally:
            source.end_run()

    threads = [threading.Thread(target=run, args=(s,)) for s in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    portal.clear_faults()

    assert [works(x) for x in answers] == [True]
    (error,) = refused
    assert "could not refresh its tokens: another invocation holds the refresh claim" in str(error)
    assert not error.pair_lost
    leaks.check_error(error)
    assert portal.refresh_count(a) - before == 1
    assert table_item(a)["version"] == 2
    assert claim_holders() == {}
    next_run = fleet_source(sm)
    next_run.load()
    assert works(check(next_run, a))
    assert portal.refresh_count(a) - before == 1


def test_a_crashed_holders_claim_runs_out_and_the_next_run_refreshes(
    secret: dict[str, Any], sm: Any, tokens_table: str, portal: LocalPortal, leaks: Leaks
) -> None:
    """An invocation dies holding the claim (no `end_run`): invocations beside it refresh
    nothing of its range; once its invocation is over (its end plus a margin), the next run
    refreshes."""
    a, b = list(secret["portals"])
    moved(sm)
    now = [time.time()]
    clock = lambda: now[0]  # noqa: E731
    portal.expire_access_tokens(a)
    crashed = fleet_source(sm, clock=clock)
    crashed.load()
    assert works(check(crashed, a))  # took the claim, refreshed a, then died
    portal.expire_access_tokens(b)
    beside = fleet_source(sm, clock=clock)
    beside.load()
    with pytest.raises(TokenStoreError, match="another invocation holds the refresh claim"):
        check(beside, b)
    beside.end_run()
    assert len(claim_holders()) == 1
    refreshes = portal.refresh_count(b)

    now[0] += 15 * 60 + 61  # Lambda's longest invocation, and the margin, have passed
    next_run = fleet_source(sm, clock=clock)
    next_run.load()
    assert works(check(next_run, b))
    next_run.end_run()

    assert portal.refresh_count(b) - refreshes == 1
    assert table_item(b)["version"] == 2
    assert claim_holders() == {}  # the dead holder dropped by the next run's write


def test_the_shards_of_one_plan_refresh_side_by_side(
    sm: Any, tokens_table: str, portal: LocalPortal, leaks: Leaks
) -> None:
    """Disjoint ranges do not block each other: each shard holds the claim on its own range
    at once. A run over every portal (a manual invoke beside them) overlaps both, and is
    refused until they give it back."""
    names = [f"s{i}.bitrix24.test" for i in range(4)]
    moved_fleet(names, sm, portal)
    for name in names:
        portal.expire_access_tokens(name)
    first, second = split(names, 2)
    shards = [fleet_source(sm, portals=r) for r in (first, second)]
    for shard in shards:
        shard.load()

    assert authorised(check(shards[0], names[0]))  # holds its range's claim, run not over
    assert authorised(check(shards[1], names[2]))  # not blocked by it
    assert len(claim_holders()) == 2
    everything = fleet_source(sm)
    everything.load()
    with pytest.raises(TokenStoreError, match="holds the refresh claim"):
        check(everything, names[1])
    assert authorised(check(shards[0], names[1])) and authorised(check(shards[1], names[3]))
    for shard in shards:
        shard.end_run()
    assert claim_holders() == {}
    assert all(table_item(name)["version"] == 2 for name in names)


def test_a_pair_set_while_a_refresh_is_under_way_stands_and_is_used(
    secret: dict[str, Any],
    sm: Any,
    tokens_table: str,
    portal: LocalPortal,
    leaks: Leaks,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`monitorctl tokens set` lands between a refresh's read and its write: the refresh's
    conditional write fails, the newer pair stays in the table and is used, and nothing is
    reported lost (no NEW REFRESH TOKEN NOT STORED); the next run uses the newer pair."""
    a, _ = list(secret["portals"])
    moved(sm, [a])
    portal.expire_access_tokens(a)
    newer = portal.credentials(a)  # re-authorised by a person
    leaks.watch_entry(newer)
    operator = TablePairs(TOKENS, apps=SecretPairs(SECRET, client=sm).apps, client=dynamodb())
    client = dynamodb()

    def set_by_hand_first(params: dict[str, Any], **_: Any) -> None:
        pair_write = params["Key"]["pk"]["S"] == "PORTAL" and ":next" in params["UpdateExpression"]
        if pair_write and not operator.calls:
            set_pair(operator, a, {k: newer[k] for k in ("access_token", "refresh_token")})

    client.meta.events.register("before-parameter-build.dynamodb.UpdateItem", set_by_hand_first)
    source = fleet_source(sm, table_client=client)
    source.load()
    caplog.set_level("INFO", logger="connector_monitor")

    assert works(check(source, a))
    source.end_run()

    assert source.credentials(a).access_token == newer["access_token"]
    item = table_item(a)
    assert (item["access_token"], item["refresh_token"]) == (
        newer["access_token"],
        newer["refresh_token"],
    )
    assert "NEW REFRESH TOKEN NOT STORED" not in caplog.text
    assert "a newer pair was stored while its refresh was under way" in caplog.text
    refreshes = portal.refresh_count(a)
    next_run = fleet_source(sm)
    next_run.load()
    assert works(check(next_run, a))
    assert portal.refresh_count(a) == refreshes  # the newer pair works: nothing to refresh


def test_a_refresh_that_fails_gives_its_claim_back_at_the_end_of_the_run(
    secret: dict[str, Any], sm: Any, tokens_table: str, portal: LocalPortal, leaks: Leaks
) -> None:
    a, _ = list(secret["portals"])
    moved(sm, [a])
    portal.expire_access_tokens(a)
    portal.inject(a, "http_503", method="oauth")
    source = fleet_source(sm)
    source.load()

    with pytest.raises(PortalError, match="OAuth server"):
        check(source, a)
    source.end_run()

    portal.clear_faults()
    assert table_item(a)["version"] == 1  # nothing stored
    assert claim_holders() == {}  # nothing held


@pytest.mark.parametrize(
    ("written", "update"),
    [
        ("without a version", ("REMOVE version", None)),
        ("with a version in text", ("SET version = :text", {":text": {"S": "hand-written"}})),
    ],
)
def test_a_pair_written_without_a_numeric_version_is_refreshed_and_stored(
    written: str,
    update: tuple[str, dict[str, Any] | None],
    secret: dict[str, Any],
    sm: Any,
    tokens_table: str,
    portal: LocalPortal,
    leaks: Leaks,
) -> None:
    """An item written by hand (or by an older release) without a numeric `version`: its
    refresh spends the refresh token at the OAuth server, so the write that follows must not
    fail on the missing version, or the portal is locked out until someone re-authorises."""
    a, _ = list(secret["portals"])
    moved(sm, [a])
    expression, values = update
    dynamodb().update_item(
        TableName=TOKENS,
        Key={"pk": {"S": "PORTAL"}, "sk": {"S": a}},
        UpdateExpression=expression,
        **({"ExpressionAttributeValues": values} if values else {}),
    )
    portal.expire_access_tokens(a)
    refreshes = portal.refresh_count(a)
    source = fleet_source(sm)
    source.load()

    assert works(check(source, a)), written

    assert portal.refresh_count(a) - refreshes == 1
    item = table_item(a)
    fresh = source.credentials(a)
    leaks.watch(fresh)
    assert (item["access_token"], item["refresh_token"]) == (
        fresh.access_token,
        fresh.refresh_token,
    )
    assert item["version"] == 1
    source.end_run()
    again = fleet_source(sm)  # the next run reads the stored pair and needs no refresh
    again.load()
    assert works(check(again, a))
    assert portal.refresh_count(a) - refreshes == 1


def test_invocations_taking_disjoint_claims_at_once_all_get_theirs(
    sm: Any, tokens_table: str, portal: LocalPortal, atomic_moto_items: None
) -> None:
    """Eight shard workers take their claims at the same moment: every write but one loses its
    race on the claim item's version, is read again and tried again, and each gets its own
    range; none is refused, and all give their claims back."""
    names = [f"w{i}.bitrix24.test" for i in range(8)]
    apps = moved_fleet(names, sm, portal)
    shards = [TablePairs(TOKENS, apps=apps, client=dynamodb(), portals=r) for r in split(names, 1)]
    started = threading.Barrier(len(shards))
    taken: list[str] = []
    errors: list[BaseException] = []

    def take(shard: TablePairs, name: str) -> None:
        started.wait()
        try:
            with shard.own_lease(name).hold(shard.lease_name(name), ttl=60, wait=10):
                taken.append(name)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=take, args=(s, n)) for s, n in zip(shards, names, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors and sorted(taken) == names
    assert len(claim_holders()) == len(names)
    for shard in shards:
        shard.end_run()
    assert claim_holders() == {}


def test_the_claim_is_not_given_back_while_a_refresh_is_under_way(
    sm: Any, tokens_table: str, portal: LocalPortal
) -> None:
    """A run that ends while one of its refreshes is still under way (a thread stuck past the
    deadline) leaves its claim to run out by itself: given back, another invocation could
    spend the refresh token that refresh is spending."""
    names = ["u0.bitrix24.test"]
    pairs = TablePairs(TOKENS, apps=moved_fleet(names, sm, portal), client=dynamodb())
    with pairs.own_lease(names[0]).hold(pairs.lease_name(names[0]), ttl=60, wait=1):
        pairs.end_run()
        assert len(claim_holders()) == 1
    pairs.end_run()
    assert claim_holders() == {}
