"""Installs kept in the fleet's token table (moto, the table made from template.yaml): the pair
and what came with it, never the application token; a replayed or older install never rolls a
newer pair back; a moved portal keeps one item; an install while a refresh is under way wins,
and the refresh's write fails its condition instead of overwriting it (and keeps the installed
pair)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from connector_monitor.aws.token_table import MEMBER_PK, PORTAL_PK, TablePairs
from connector_monitor.domain.app_events import Installation, token_digest
from connector_monitor.domain.inventory import DELETIONS_KEPT
from connector_monitor.tokens.credentials import AppCredentials
from connector_monitor.tokens.errors import PairSuperseded, TokenStoreError, UnusableCredentials
from local.template import table_definition
from tests.app_forms import APPLICATION_TOKEN, MEMBER_ID

REGION = "us-east-1"
TOKENS = "tokens"
PORTAL = "example.bitrix24.com"
APP = AppCredentials("monitor", "app.65f0a1b2c3d4e5.12345678", "app-secret")


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch, atomic_moto_items: None) -> Iterator[TablePairs]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(TableName=TOKENS, **table_definition("TokenTable"))
        yield TablePairs(TOKENS, apps=lambda: {"monitor": APP}, client=client)


def installed(ts: int = 2000, **changes: Any) -> Installation:
    base = Installation(
        portal=PORTAL,
        member_id=MEMBER_ID,
        app="monitor",
        access_token=f"access-{ts}",
        refresh_token=f"refresh-{ts}",
        client_endpoint=f"https://{PORTAL}/rest/",
        server_endpoint="https://oauth.bitrix.info/rest/",
        installed_at=ts,
        expires_at=ts + 3600,
        token_hash=token_digest(APPLICATION_TOKEN),
        app_status="L",
        scope=("imopenlines",),
    )
    return replace(base, **changes)


def items() -> dict[tuple[str, str], dict[str, Any]]:
    client = boto3.client("dynamodb", region_name=REGION)
    found = client.scan(TableName=TOKENS)["Items"]
    return {(i["pk"]["S"], i["sk"]["S"]): i for i in found}


def test_an_install_stores_the_pair_the_member_and_a_digest_never_the_token(
    table: TablePairs,
) -> None:
    assert table.store_install(installed())
    stored = items()
    item = stored[(PORTAL_PK, PORTAL)]
    assert item["access_token"]["S"] == "access-2000"
    assert item["member_id"]["S"] == MEMBER_ID
    assert item["installed_at"]["N"] == "2000" and item["app_status"]["S"] == "L"
    assert item["token_hash"]["S"] == token_digest(APPLICATION_TOKEN)
    assert stored[(MEMBER_PK, MEMBER_ID)]["portal"]["S"] == PORTAL
    assert APPLICATION_TOKEN not in json.dumps(list(stored.values()))
    # The checker reads it as any fleet pair.
    table.load()
    assert table.credentials(PORTAL).access_token == "access-2000"
    assert table.credentials(PORTAL).client_id == APP.client_id
    known = table.known(MEMBER_ID)
    assert known is not None and known.portal == PORTAL


def test_a_replayed_or_older_install_never_rolls_a_newer_pair_back(table: TablePairs) -> None:
    assert table.store_install(installed(2000))
    assert not table.store_install(installed(2000))  # the same install again
    assert not table.store_install(installed(1000))  # an older one, late
    assert items()[(PORTAL_PK, PORTAL)]["access_token"]["S"] == "access-2000"
    assert table.store_install(installed(3000))  # a genuine reinstall
    assert items()[(PORTAL_PK, PORTAL)]["access_token"]["S"] == "access-3000"


def test_a_pair_refreshed_after_the_install_is_not_rolled_back_by_its_replay(
    table: TablePairs,
) -> None:
    assert table.store_install(installed(2000))
    table.load()
    fresh = table.credentials(PORTAL).with_tokens("refreshed-a", "refreshed-r", 2000 + 7200)
    table.store(fresh)
    assert not table.store_install(installed(2500, expires_at=2500 + 3600))
    assert items()[(PORTAL_PK, PORTAL)]["access_token"]["S"] == "refreshed-a"


def test_an_install_while_a_refresh_holds_the_claim_wins_and_the_refresh_cannot_overwrite(
    table: TablePairs,
) -> None:
    assert table.store_install(installed(2000))
    refresher = TablePairs(TOKENS, apps=lambda: {"monitor": APP}, client=table._client)
    refresher.load()
    with refresher.own_lease(PORTAL).hold("tokens", ttl=30, wait=0):
        stale = refresher.reread(PORTAL)
        assert table.store_install(installed(3000))  # the claim does not stop an install
        with pytest.raises(PairSuperseded):  # the refresh's write finds the newer pair ...
            refresher.store(stale.with_tokens("late-a", "late-r", 9999))
        # ... which stands, and is the one the refreshing run goes on with
        assert refresher.credentials(PORTAL).access_token == "access-3000"
    refresher.end_run()
    item = items()[(PORTAL_PK, PORTAL)]
    assert item["access_token"]["S"] == "access-3000"
    assert item["refresh_token"]["S"] == "refresh-3000"


def test_a_refresh_whose_pair_changed_only_in_version_is_still_a_lost_pair(
    table: TablePairs,
) -> None:
    """Only a different pair supersedes a refreshed one: a write refused for anything else
    (here the version moved, the pair did not) is the loud lost pair it always was."""
    assert table.store_install(installed(2000))
    table.load()
    stale = table.reread(PORTAL)
    boto3.client("dynamodb", region_name=REGION).update_item(
        TableName=TOKENS,
        Key={"pk": {"S": PORTAL_PK}, "sk": {"S": PORTAL}},
        UpdateExpression="SET version = version + :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    with pytest.raises(TokenStoreError) as lost:
        table.store(stale.with_tokens("late-a", "late-r", 9999))
    assert lost.value.pair_lost
    assert table.credentials(PORTAL).access_token == "late-a"  # the only live pair, in memory


def test_a_refresh_of_a_portal_uninstalled_meanwhile_stores_nothing_and_loses_nothing(
    table: TablePairs,
) -> None:
    """The portal's pair is forgotten (the application uninstalled) between a refresh's read and
    its write: nothing is written back (no item comes back to life) and nothing is reported as
    a lost pair a person must store again."""
    assert table.store_install(installed(2000))
    table.load()
    stale = table.reread(PORTAL)
    table.forget(MEMBER_ID, PORTAL)
    with pytest.raises(UnusableCredentials, match="uninstalled"):
        table.store(stale.with_tokens("late-a", "late-r", 9999))
    assert items() == {}


def test_the_same_member_under_another_domain_is_a_moved_portal(table: TablePairs) -> None:
    assert table.store_install(installed(2000))
    assert table.store_install(installed(3000, portal="renamed.bitrix24.com"))
    stored = items()
    assert (PORTAL_PK, PORTAL) not in stored
    assert stored[(PORTAL_PK, "renamed.bitrix24.com")]["access_token"]["S"] == "access-3000"
    assert stored[(MEMBER_PK, MEMBER_ID)]["portal"]["S"] == "renamed.bitrix24.com"


def test_forgetting_deletes_the_pair_and_the_member(table: TablePairs) -> None:
    assert table.store_install(installed(2000))
    table.forget(MEMBER_ID, PORTAL)
    assert items() == {}
    assert table.known(MEMBER_ID) is None
    table.forget(MEMBER_ID, PORTAL)  # twice is harmless


# -- line-delete marks (ONIMCONNECTORLINEDELETE) -------------------------------------------


def test_a_deleted_line_is_marked_beside_the_pair_and_read_by_the_checker(
    table: TablePairs,
) -> None:
    assert table.store_install(installed(2000))
    before = items()[(PORTAL_PK, PORTAL)]

    table.note_line_deleted(MEMBER_ID, PORTAL, 107, 5000)
    table.note_line_deleted(MEMBER_ID, PORTAL, 108, 5001)

    item = items()[(PORTAL_PK, PORTAL)]
    assert {k: v for k, v in item.items() if k != "deleted_lines"} == before  # pair, version
    table.load()
    assert table.deleted_lines(PORTAL) == {
        107: datetime.fromtimestamp(5000, UTC),
        108: datetime.fromtimestamp(5001, UTC),
    }


def test_only_the_newest_marks_are_kept(table: TablePairs) -> None:
    assert table.store_install(installed(2000))

    for line in range(1, DELETIONS_KEPT + 3):
        table.note_line_deleted(MEMBER_ID, PORTAL, line, 5000 + line)

    table.load()
    assert sorted(table.deleted_lines(PORTAL)) == list(range(3, DELETIONS_KEPT + 3))
    assert len(items()[(PORTAL_PK, PORTAL)]["deleted_lines"]["M"]) == DELETIONS_KEPT


def test_a_reinstall_keeps_the_marks_and_a_refresh_still_writes_its_pair(
    table: TablePairs,
) -> None:
    assert table.store_install(installed(2000))
    table.load()
    table.note_line_deleted(MEMBER_ID, PORTAL, 107, 5000)

    table.store(table.credentials(PORTAL).with_tokens("refreshed-a", "refreshed-r", 9000))
    assert table.store_install(installed(9500, expires_at=9500 + 7200))

    item = items()[(PORTAL_PK, PORTAL)]
    assert item["access_token"]["S"] == "access-9500"
    assert item["deleted_lines"]["M"] == {"107": {"N": "5000"}}


def test_no_mark_for_a_portal_gone_or_another_members(table: TablePairs) -> None:
    table.note_line_deleted(MEMBER_ID, PORTAL, 107, 5000)  # never installed
    assert items() == {}
    assert table.store_install(installed(2000))

    table.note_line_deleted("f" * 32, PORTAL, 107, 5000)

    assert "deleted_lines" not in items()[(PORTAL_PK, PORTAL)]


def test_marks_written_by_hand_that_are_not_a_line_and_a_time_are_skipped(
    table: TablePairs,
) -> None:
    assert table.store_install(installed(2000))
    boto3.client("dynamodb", region_name=REGION).update_item(
        TableName=TOKENS,
        Key={"pk": {"S": PORTAL_PK}, "sk": {"S": PORTAL}},
        UpdateExpression="SET deleted_lines = :m",
        ExpressionAttributeValues={
            ":m": {"M": {"12": {"N": "5000"}, "x": {"N": "1"}, "13": {"S": "soon"}}}
        },
    )

    table.load()

    assert table.deleted_lines(PORTAL) == {12: datetime.fromtimestamp(5000, UTC)}
