"""One contract, two pair stores: the secret of a small deployment (`aws/secret_pairs.py`) and the
fleet's token table (`aws/token_table.py`), both on moto. The refresh policy
(`tokens/refresh.py`) relies on exactly this of any `PairStore`; a store that drifts fails here."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from connector_monitor.aws.secret_pairs import SecretPairs
from connector_monitor.aws.token_table import TablePairs
from connector_monitor.tokens.credentials import AppCredentials, PortalCredentials
from connector_monitor.tokens.errors import LeaseUnavailable, TokenStoreError, UnusableCredentials
from connector_monitor.tokens.ports import PairStore
from local.template import table_definition

REGION = "eu-central-1"
A, B = "a.bitrix24.com", "b.bitrix24.com"
APP = AppCredentials("monitor", "local.app", "app-secret", "https://oauth.example/oauth/token/")


def entry(portal: str, n: int = 1) -> dict[str, Any]:
    return {
        "client_id": APP.client_id,
        "client_secret": APP.client_secret,
        "oauth_endpoint": APP.oauth_endpoint,
        "access_token": f"access-{portal}-{n}",
        "refresh_token": f"refresh-{portal}-{n}",
        "client_endpoint": f"https://{portal}/rest/",
        "expires_at": 1_800_000_000 + n,
    }


@dataclass
class World:
    """A store over two portals, a way to open another invocation's store on the same data,
    and a way to make the next write of the store's client fail."""

    store: PairStore
    reopen: Callable[[], PairStore]
    refuse_writes: Callable[[], None]


def refusing(client: Any, operation: str) -> Callable[[], None]:
    """Arm `client` so that its next `operation` call is refused by AWS (AccessDenied)."""

    def arm() -> None:
        def refuse(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
            error = {"Code": "AccessDeniedException", "Message": "denied"}
            answer = AWSResponse("https://aws.invalid", 400, {}, None)
            return answer, {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}

        client.meta.events.register(f"before-call.*.{operation}", refuse)

    return arm


@pytest.fixture(params=["secret", "table"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name=REGION)
        if request.param == "secret":
            document = {"portals": {A: entry(A), B: entry(B)}}
            sm.create_secret(Name="tokens", SecretString=json.dumps(document))

            def secret() -> PairStore:
                return SecretPairs("tokens", client=sm, sleep=lambda _s: None)

            yield World(secret(), secret, refusing(sm, "PutSecretValue"))
            return
        ddb = boto3.client("dynamodb", region_name=REGION)
        ddb.create_table(TableName="pairs", **table_definition("TokenTable"))

        def table() -> PairStore:
            return TablePairs("pairs", apps=lambda: {APP.name: APP}, client=ddb)

        seeding = TablePairs("pairs", apps=lambda: {APP.name: APP}, client=ddb)
        for portal in (A, B):
            seeding.put_new(
                portal, APP.name, PortalCredentials.from_secret_entry(portal, entry(portal))
            )
        yield World(table(), table, refusing(ddb, "UpdateItem"))


def test_a_loaded_store_knows_its_portals_and_their_pairs(world: World) -> None:
    world.store.load()
    assert world.store.portals() == [A, B]
    assert world.store.holds(A)
    assert not world.store.holds("c.bitrix24.com")
    creds = world.store.credentials(A)
    assert (creds.access_token, creds.refresh_token) == (
        "access-a.bitrix24.com-1",
        entry(A)["refresh_token"],
    )
    assert (creds.client_id, creds.client_endpoint) == (APP.client_id, f"https://{A}/rest/")


def test_a_portal_no_line_delete_event_named_has_no_deleted_lines(world: World) -> None:
    """Both stores answer; only the token table ever holds marks (the inbound function writes
    them: tests/integration/test_install_store.py), so a portal in the secret has none."""
    world.store.load()
    assert world.store.deleted_lines(A) == {}
    assert world.store.deleted_lines("c.bitrix24.com") == {}


def test_a_portal_without_a_pair_is_unusable_credentials_naming_it(world: World) -> None:
    world.store.load()
    with pytest.raises(UnusableCredentials, match=r"c\.bitrix24\.com"):
        world.store.credentials("c.bitrix24.com")


def test_a_stored_pair_is_read_back_at_once_and_by_the_next_invocation(world: World) -> None:
    world.store.load()
    fresh = world.store.credentials(A).with_tokens("access-new", "refresh-new", 1_900_000_000)
    world.store.store(fresh)

    assert world.store.credentials(A).refresh_token == "refresh-new"
    assert world.store.reread(A).refresh_token == "refresh-new"
    later = world.reopen()
    later.load()
    assert (later.credentials(A).access_token, later.credentials(A).expires_at) == (
        "access-new",
        1_900_000_000,
    )
    assert later.credentials(B).refresh_token == entry(B)["refresh_token"]  # untouched


def test_reread_sees_what_another_invocation_stored(world: World) -> None:
    world.store.load()
    other = world.reopen()
    other.load()
    other.store(other.credentials(B).with_tokens("access-other", "refresh-other", None))
    assert world.store.reread(B).refresh_token == "refresh-other"


def test_a_refused_write_is_a_lost_pair_and_the_new_pair_stays_readable(world: World) -> None:
    world.store.load()
    fresh = world.store.credentials(A).with_tokens("access-new", "refresh-new", None)
    world.refuse_writes()
    with pytest.raises(TokenStoreError) as refused:
        world.store.store(fresh)
    assert refused.value.pair_lost
    assert "refresh-new" not in str(refused.value)
    # The only valid pair lives in memory now: this invocation keeps using it.
    assert world.store.credentials(A).refresh_token == "refresh-new"


def test_a_lease_name_is_stable_and_names_what_one_write_replaces(world: World) -> None:
    world.store.load()
    assert world.store.lease_name(A) == world.reopen().lease_name(A)
    one_write_replaces_both = isinstance(world.store, SecretPairs)
    assert (world.store.lease_name(A) == world.store.lease_name(B)) is one_write_replaces_both


def test_a_run_that_held_its_lease_gives_it_back_and_another_invocation_can_take_it(
    world: World,
) -> None:
    """What a store holds for refreshing across a run (the token table's refresh claim) is
    given back by `end_run`: the next invocation's refresh is not refused. A store whose lease
    is the shared one (the secret's) holds nothing past a refresh."""
    world.store.load()
    lease = world.store.own_lease(A)
    if lease is None:
        world.store.end_run()  # nothing held: harmless
        assert world.reopen().own_lease(A) is None
        return
    with lease.hold(world.store.lease_name(A), ttl=30, wait=0):
        pass
    other = world.reopen()
    other.load()
    other_lease = other.own_lease(A)
    assert other_lease is not None
    # the first invocation's run is not over
    with pytest.raises(LeaseUnavailable), other_lease.hold(other.lease_name(A), ttl=30, wait=0):
        pass
    world.store.end_run()
    with other_lease.hold(other.lease_name(A), ttl=30, wait=0):
        pass
    other.end_run()
