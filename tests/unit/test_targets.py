"""TARGETS parsing: every entry is a target or a clear configuration error, never a crash."""

from __future__ import annotations

import pytest

from connector_monitor.domain.targets import ConfigIssue, Target, TargetsVariable, parse_targets


def test_comma_separated_entries_become_targets() -> None:
    parsed = parse_targets(
        "example.bitrix24.com/myconnector/12, example.bitrix24.com/MyConnector/14"
    )
    assert parsed.targets == (
        Target("example.bitrix24.com", "myconnector", 12),
        Target("example.bitrix24.com", "myconnector", 14),
    )
    assert parsed.errors == ()


def test_json_list_is_accepted() -> None:
    parsed = parse_targets(
        '[{"portal": "a.bitrix24.com", "connector": "tg", "line": 3},'
        ' {"portal": "b.bitrix24.de", "connector": "wa", "line": "7"}]'
    )
    assert parsed.targets == (Target("a.bitrix24.com", "tg", 3), Target("b.bitrix24.de", "wa", 7))
    assert parsed.portals() == ["a.bitrix24.com", "b.bitrix24.de"]


def test_duplicates_are_checked_once() -> None:
    parsed = parse_targets("a.bitrix24.com/tg/3,a.bitrix24.com/TG/3")
    assert parsed.targets == (Target("a.bitrix24.com", "tg", 3),)


@pytest.mark.parametrize(
    ("entry", "reason_part"),
    [
        ("a.bitrix24.com/tg", "expected domain/connector/line"),
        ("a.bitrix24.com/tg/abc", "not a whole number"),
        ("a.bitrix24.com/tg/", "open line is missing"),
        ("a.bitrix24.com//3", "connector is empty"),
        ("/tg/3", "portal domain is empty"),
        ("a.bitrix24.com/tg/0", "positive"),
        ("a.bitrix24.com/tg/-4", "not a whole number"),
        ("a.bitrix24.com/t g/4", "not a connector id"),
        ("https:/a.bitrix24.com/tg", "not a portal domain"),
        ("a bitrix24/tg/4", "not a portal domain"),
    ],
)
def test_bad_entry_is_a_clear_error_and_others_still_parse(entry: str, reason_part: str) -> None:
    parsed = parse_targets(f"good.bitrix24.com/tg/1,{entry},good.bitrix24.com/tg/2")
    assert [t.line for t in parsed.targets] == [1, 2]
    assert len(parsed.errors) == 1
    error = parsed.errors[0]
    assert error.entry == entry
    assert reason_part in error.reason


@pytest.mark.parametrize(
    ("raw", "reason_part"),
    [
        ("[{", "not valid JSON"),
        ('{"portal": "a"}', "must be a list"),
        ('[{"portal": "a.bitrix24.com", "connector": "tg", "line": 1.5}]', "not a whole number"),
        ('[{"portal": "a.bitrix24.com", "connector": "tg", "line": true}]', "missing"),
        ('["a.bitrix24.com/tg/1"]', "must be an object"),
    ],
)
def test_bad_json_targets_are_errors(raw: str, reason_part: str) -> None:
    parsed = parse_targets(raw)
    assert parsed.targets == ()
    assert reason_part in parsed.errors[0].reason


def test_a_json_object_is_reported_not_crashed() -> None:
    parsed = parse_targets('[1, {"portal": "a.bitrix24.com", "connector": "tg", "line": 2}]')
    assert parsed.targets == (Target("a.bitrix24.com", "tg", 2),)
    assert parsed.errors == (ConfigIssue("TARGETS[0]", parsed.errors[0].reason),)


def test_empty_targets_are_empty() -> None:
    assert TargetsVariable("  ").load().targets == ()


def test_key_is_stable() -> None:
    assert Target("a.bitrix24.com", "tg", 3).key == "a.bitrix24.com/tg/3"


@pytest.mark.parametrize(
    ("entry", "reason_part"),
    [
        ("a.bitrix24.com/tg/+12", "not a whole number"),
        ("a.bitrix24.com/tg/1_2", "not a whole number"),
        ("a.bitrix24.com/tg/99999999999", "up to 2147483647"),
        ("x" * 300 + ".com/tg/1", "longer than 253"),
    ],
)
def test_lines_and_domains_are_strict_and_bounded(entry: str, reason_part: str) -> None:
    (error,) = parse_targets(entry).errors
    assert reason_part in error.reason
    assert len(error.reason) < 120


def test_a_huge_bad_entry_still_has_a_short_key() -> None:
    (error,) = parse_targets("x" * 5000).errors
    assert len(error.key) < 300
    assert error.key != parse_targets("x" * 4999).errors[0].key


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("", "no target is configured"),
        ("   ", "no target is configured"),
        (" , ", "no target is configured"),
        ("[]", "no target is configured"),
        ('[{"portal": "a.bitrix24.com"', "not valid JSON"),
        ('{"portal": "a.bitrix24.com"}', "must be a list"),
        ("a.bitrix24.com/tg,b/c", "none of the 2 configured entries is valid"),
    ],
)
def test_a_list_without_one_valid_target_is_unusable_as_a_whole(raw: str, says: str) -> None:
    unusable = parse_targets(raw).unusable
    assert unusable is not None
    assert unusable.entry == "TARGETS"
    assert says in unusable.reason


def test_a_list_with_one_valid_target_is_usable_and_keeps_its_bad_entries() -> None:
    parsed = parse_targets("a.bitrix24.com/tg/1,nonsense")
    assert parsed.unusable is None
    assert [e.entry for e in parsed.errors] == ["nonsense"]


@pytest.mark.parametrize("connector", ["myconnector.v2", ".hidden", "a.b.c"])
def test_a_connector_id_with_a_dot_is_refused(connector: str) -> None:
    """The core cuts an id at its first dot (imconnector/lib/connector.php::
    getConnectorRealId()): `myconnector.v2` would be checked as `myconnector`."""
    parsed = parse_targets(f"a.bitrix24.com/{connector}/1,a.bitrix24.com/ok/2")
    assert [t.connector for t in parsed.targets] == ["ok"]
    (error,) = parsed.errors
    assert "cuts an id at its first dot" in error.reason
