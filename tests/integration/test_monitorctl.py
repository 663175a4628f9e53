"""monitorctl against moto: the registry's entries and the token stores, as an operator runs it,
with the names read from the stack's outputs or given by hand."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from connector_monitor.aws.registry import Registry
from connector_monitor.domain.labels import PortalLabels
from local.bitrix24_portal import LocalPortal
from local.template import table_definition
from monitorctl.cli import main
from tests.conftest import MOTO_REGION

REGION = MOTO_REGION  # the moto_account fixture's
TABLE, TOKENS, SECRET = "monitor", "monitor-tokens", "monitor/tokens"
A, B = "a.bitrix24.com", "b.bitrix24.com"


@pytest.fixture
def aws(moto_account: None) -> None:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(TableName=TABLE, **table_definition())
    dynamodb.create_table(TableName=TOKENS, **table_definition("TokenTable"))


@pytest.fixture
def secret(aws: None) -> Iterator[dict[str, Any]]:
    with LocalPortal() as portal:
        for domain in (A, B):
            portal.add_portal(domain, connectors={"c": "C"}, lines={1: "L"})
        document = {"portals": {d: portal.credentials(d) for d in (A, B)}}
        boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name=SECRET, SecretString=json.dumps(document)
        )
        yield document


def ctl(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["--table", TABLE, "--tokens-table", TOKENS, "--secret", SECRET, *args], out)
    return code, out.getvalue()


def test_entries_are_added_listed_and_removed(aws: None) -> None:
    code, added = ctl("targets", "add", f"{A}/c/1", f"{A}/C/*", "*/c/*", "--by", "ops")
    assert code == 0
    assert added.splitlines() == [f"added: {A}/c/1", f"added: {A}/c/*", "added: */c/*"]

    code, again = ctl("targets", "add", f"{A}/c/1")
    assert (code, again.strip()) == (0, f"already there: {A}/c/1")

    code, listing = ctl("targets", "list")
    lines = listing.splitlines()
    assert [line.split("\t")[0] for line in lines[:-1]] == ["*/c/*", f"{A}/c/*", f"{A}/c/1"]
    assert all("by ops" in line for line in lines[:-1])
    assert lines[-1] == "3 entries"

    code, removed = ctl("targets", "remove", f"{A}/c/1", f"{B}/c/9")
    assert code == 1  # one of them was not there: said, and the other one still removed
    assert removed.splitlines() == [f"removed: {A}/c/1", f"not in the registry: {B}/c/9"]


def test_a_portal_s_labels_are_set_listed_read_by_the_checker_and_removed(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    ctl("targets", "add", f"{A}/c/1", f"{B}/c/2", "--by", "ops")
    code, said = ctl(
        "targets", "label", A, "--client", "Acme", "--owner", "jane", "--runbook",
        "https://wiki.example.com/acme", "--by", "ops",
    )  # fmt: skip
    assert (code, said.strip()) == (
        0,
        f"labels of {A}: client: Acme, owner: jane, runbook: https://wiki.example.com/acme",
    )

    listing = ctl("targets", "list")[1].splitlines()
    assert "2 entries" in listing  # the labels are not an entry
    assert (
        listing[-1]
        == f"labels of {A}: client: Acme, owner: jane, runbook: https://wiki.example.com/acme"
    )
    loaded = Registry(TABLE, client=boto3.client("dynamodb", region_name=REGION)).load()
    assert loaded.errors == ()  # nor a broken one
    assert loaded.labels == {
        A: PortalLabels(client="Acme", owner="jane", runbook="https://wiki.example.com/acme")
    }

    assert ctl("targets", "label", A, "--runbook", "http://plain.example.com")[0] == 2
    assert "https://" in capsys.readouterr().err
    assert ctl("targets", "label", A)[1].strip() == f"labels of {A}: none (removed)"
    assert Registry(TABLE, client=boto3.client("dynamodb", region_name=REGION)).load().labels == {}


def test_one_bad_entry_adds_none_of_them(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = ctl("targets", "add", f"{A}/c/1", "https://x.bitrix24.com/c/1")

    assert code == 2
    assert "expected domain/connector/line" in capsys.readouterr().err
    assert ctl("targets", "list")[1].strip() == "0 entries"


def test_the_names_come_from_the_stacks_outputs(aws: None) -> None:
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {
            "TableName": {"Value": TABLE},
            "TokenTableName": {"Value": TOKENS},
            "SecretArn": {"Value": SECRET},
        },
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName="monitor", TemplateBody=json.dumps(template)
    )
    out = io.StringIO()

    assert main(["--stack", "monitor", "targets", "add", f"{A}/c/1"], out) == 0
    assert main(["--stack", "monitor", "targets", "list"], out) == 0
    assert out.getvalue().splitlines()[-1] == "1 entries"


def test_a_missing_name_or_stack_is_a_clear_error(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["targets", "list"], io.StringIO()) == 2
    assert "pass --stack NAME or --table" in capsys.readouterr().err
    assert main(["--stack", "nope", "targets", "list"], io.StringIO()) == 2
    assert "stack nope could not be read" in capsys.readouterr().err


def test_tokens_move_to_the_table_and_nothing_secret_is_printed(
    secret: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, moved = ctl("tokens", "move", "--portal", A, "--portal", "c.bitrix24.com")
    assert code == 1  # c is not in the secret: said
    assert moved.splitlines() == [f"moved: {A}", "not in the secret: c.bitrix24.com"]

    code, listing = ctl("tokens", "list")
    assert code == 0
    assert listing.splitlines() == [
        f"{A}\ttable",
        f"{B}\tsecret",
        "1 in the secret, 1 in the token table",
    ]
    printed = moved + listing + capsys.readouterr().err
    for entry in secret["portals"].values():
        for field in ("access_token", "refresh_token", "client_secret"):
            assert entry[field] not in printed


def test_a_re_authorised_fleet_portal_is_set_from_stdin_or_a_file_and_never_deleted_by_a_move(
    secret: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    """The alert says to re-authorise; the operator stores the new pair in the secret first (as
    the old text said): `tokens move` keeps it and points at `tokens set`, which replaces the
    table's pair (read from stdin, or a file), so the move then removes the secret's copy."""
    assert ctl("tokens", "move", "--portal", A)[0] == 0
    tokens = boto3.resource("dynamodb", region_name=REGION).Table(TOKENS)
    before = tokens.get_item(Key={"pk": "PORTAL", "sk": A})["Item"]
    new = {**secret["portals"][A], "access_token": "new-access-1", "refresh_token": "new-rt-1"}
    sm = boto3.client("secretsmanager", region_name=REGION)
    document = json.loads(sm.get_secret_value(SecretId=SECRET)["SecretString"])
    document["portals"][A] = new
    sm.put_secret_value(SecretId=SECRET, SecretString=json.dumps(document))

    code, kept = ctl("tokens", "move", "--portal", A)
    assert code == 1
    assert f"its pair differs from the token table's: {A}" in kept
    assert f"monitorctl tokens set {A}" in kept
    stored = json.loads(sm.get_secret_value(SecretId=SECRET)["SecretString"])
    assert stored["portals"][A]["refresh_token"] == "new-rt-1"  # not deleted

    pair = json.dumps({"access_token": "new-access-1", "refresh_token": "new-rt-1"})
    monkeypatch.setattr("sys.stdin", io.StringIO(pair))
    code, said = ctl("tokens", "set", A)
    assert (code, said.strip()) == (0, f"set: {A} (its pair in the token table replaced)")
    item = tokens.get_item(Key={"pk": "PORTAL", "sk": A})["Item"]
    assert (item["refresh_token"], item["version"]) == ("new-rt-1", before["version"] + 1)

    code, moved = ctl("tokens", "move", "--portal", A)
    assert code == 0 and "the same pair; the secret's entry removed" in moved
    stored = json.loads(sm.get_secret_value(SecretId=SECRET)["SecretString"])
    assert A not in stored["portals"]

    again = tmp_path / "pair.json"
    again.write_text(json.dumps({"access_token": "new-access-2", "refresh_token": "new-rt-2"}))
    assert ctl("tokens", "set", A, "--file", str(again))[0] == 0
    assert tokens.get_item(Key={"pk": "PORTAL", "sk": A})["Item"]["refresh_token"] == "new-rt-2"

    monkeypatch.setattr("sys.stdin", io.StringIO(pair))
    assert ctl("tokens", "set", B)[0] == 1  # B's pair is in the secret, not in the table
    errors = capsys.readouterr().err
    assert f"token table {TOKENS} has no pair for {B}" in errors
    monkeypatch.setattr("sys.stdin", io.StringIO("new-rt-3"))  # not JSON: said, not echoed
    assert ctl("tokens", "set", A)[0] == 2
    errors += capsys.readouterr().err
    assert "not valid JSON" in errors
    for value in ("new-access-1", "new-rt-1", "new-rt-2", "new-rt-3"):
        assert value not in kept + said + moved + errors
