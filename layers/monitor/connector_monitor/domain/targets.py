"""Targets: which (portal, connector, open line) triples to watch, parsed from `TARGETS` or read
from the registry, and *watches*: a connector on every open line of a portal (or of every
portal the monitor holds tokens for) where it has been seen configured."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property
from typing import Protocol

from .labels import PortalLabels

_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$")
# No dot: the core cuts a connector id at its first dot (imconnector/lib/connector.php::
# getConnectorRealId()) and imconnector.register refuses one with a dot.
_CONNECTOR = re.compile(r"^[a-z0-9_-]{1,64}$")
_DIGITS = re.compile(r"^[0-9]{1,12}$")
DOMAIN_LIMIT = 253  # the longest DNS name
LINE_LIMIT = 2**31 - 1  # Bitrix24 line ids are database integers
KEY_ENTRY_LIMIT = 200
ANY = "*"  # in an entry: every line (as the line), every portal with tokens (as the portal)


@dataclass(frozen=True, order=True)
class Target:
    """One connector on one open line of one portal. Connector ids are lowercase in Bitrix24."""

    portal: str
    connector: str
    line: int

    @property
    def key(self) -> str:
        """Stable identity used as a storage key and in API paths."""
        return f"{self.portal}/{self.connector}/{self.line}"

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True, order=True)
class Watch:
    """A connector on every open line where it has been seen `CONFIGURED=true`: of one portal,
    or (portal `*`) of every portal the monitor holds tokens for. Lines are discovered at each
    inventory; a line never configured is not a target."""

    portal: str  # a domain, or ANY
    connector: str

    @property
    def key(self) -> str:
        return f"{self.portal}/{self.connector}/{ANY}"

    @property
    def every_portal(self) -> bool:
        return self.portal == ANY

    def __str__(self) -> str:
        return self.key


class ConfigProblem(StrEnum):
    """What a configuration problem is about."""

    ENTRY = "entry"  # one TARGETS entry that cannot be checked
    LIST = "list"  # TARGETS as a whole yields no target
    VALIDATION = "validation"  # a portal's targets cannot be validated


@dataclass(frozen=True)
class ConfigIssue:
    """A configuration problem the monitor follows like a target: a `TARGETS` entry that cannot
    be checked (with the parts it had, so alerts can name them), the list as a whole, or a
    portal whose targets cannot be validated."""

    entry: str
    reason: str
    portal: str = ""
    connector: str = ""
    line: str = ""
    problem: ConfigProblem = ConfigProblem.ENTRY

    @property
    def key(self) -> str:
        """Short and stable whatever the entry's length (it is a DynamoDB sort key)."""
        if self.problem is ConfigProblem.VALIDATION:  # a connector's: its discovery notice
            return f"validation:{self.portal}" + (f"/{self.connector}" if self.connector else "")
        if len(self.entry) <= KEY_ENTRY_LIMIT:
            return f"config:{self.entry}"
        digest = hashlib.sha256(self.entry.encode()).hexdigest()[:16]
        return f"config:{self.entry[:KEY_ENTRY_LIMIT]}...#{digest}"


def validation_problem(portal: str, reason: str) -> ConfigIssue:
    """A portal whose targets cannot be validated (they are still checked)."""
    return ConfigIssue(portal, reason, portal=portal, problem=ConfigProblem.VALIDATION)


Subject = Target | ConfigIssue
"""What the state machine follows: a checkable target, or a TARGETS entry that cannot be checked."""

Entry = Target | Watch
"""What a person asks the monitor to watch: one target, or a connector on every line."""


WHOLE_LIST = "TARGETS"  # the entry that stands for the whole list when none of it is usable


@dataclass(frozen=True)
class TargetList:
    targets: tuple[Target, ...]
    errors: tuple[ConfigIssue, ...]
    watches: tuple[Watch, ...] = ()
    labels: Mapping[str, PortalLabels] = field(default_factory=dict)  # the registry's, by portal

    @property
    def unusable(self) -> ConfigIssue | None:
        """Why the list as a whole cannot be used, when it yields no valid entry at all.

        An empty or unreadable list is an operator's slip, not a decision to stop watching:
        the run checks nothing and forgets nothing (open incidents stay open).
        """
        if self.targets or self.watches:
            return None
        if not self.errors:
            return whole_list("no target is configured (TARGETS and the registry are empty)")
        if len(self.errors) == 1 and self.errors[0].problem is ConfigProblem.LIST:
            return self.errors[0]
        first = self.errors[0]
        return whole_list(
            f"none of the {len(self.errors)} configured entries is valid "
            f"(the first, '{first.entry[:80]}': {first.reason})"
        )

    def portals(self, with_tokens: Iterable[str] = ()) -> list[str]:
        """The portals to check: those named, and `with_tokens` when a watch covers them all."""
        named = {t.portal for t in self.targets}
        named.update(w.portal for w in self.watches if not w.every_portal)
        if any(w.every_portal for w in self.watches):
            named.update(with_tokens)
        return sorted(named)

    def for_portal(self, portal: str) -> list[Target]:
        """The portal's targets in their natural order (by connector, then line number),
        whatever order TARGETS or the registry listed them in."""
        return list(self._by_portal.get(portal, ()))

    @cached_property
    def _by_portal(self) -> dict[str, tuple[Target, ...]]:
        found: dict[str, list[Target]] = {}
        for target in sorted(self.targets):
            found.setdefault(target.portal, []).append(target)
        return {portal: tuple(targets) for portal, targets in found.items()}

    def watched_on(self, portal: str) -> list[str]:
        """The connectors watched on every line of `portal`."""
        return sorted({w.connector for w in self.watches if w.portal in (portal, ANY)})

    def merged(self, other: TargetList) -> TargetList:
        """Both lists' entries, each once, and both lists' labels."""
        merged = _collect(
            [*self.targets, *self.watches, *other.targets, *other.watches],
            [
                *self.errors,
                *other.errors,
            ],
        )
        return replace(merged, labels={**self.labels, **other.labels})


def parse_targets(raw: str) -> TargetList:
    """Parse `TARGETS`: comma-separated `domain/CONNECTOR/LINE` (LINE `*`: every line where the
    connector is configured; domain and LINE `*`: that on every portal with tokens), or a JSON
    list of objects with the same three parts.

    Never raises for a bad entry: every entry is either a `Target` or a `ConfigIssue`, so one
    typo cannot stop the other targets from being checked. Duplicates are checked once.
    """
    text = raw.strip()
    if not text:
        return TargetList((), ())
    if text.startswith(("[", "{")):
        return _collect(_from_json(text))
    return _collect(_from_csv(text))


def check_entry(
    portal: object, connector: object, line: object, entry: str
) -> Target | Watch | ConfigIssue:
    """Validate one entry's parts, where `*` may stand for every line (and then for every
    portal with tokens): a target, a watch, or why it is neither."""
    portal_s = str(portal if portal is not None else "").strip()
    line_s = str(line if line is not None else "").strip()
    if line_s == ANY:
        checked = check_target("example.com" if portal_s == ANY else portal, connector, 1, entry)
        if isinstance(checked, ConfigIssue):
            return replace(checked, portal=portal_s.lower(), line=ANY)
        return Watch(ANY if portal_s == ANY else checked.portal, checked.connector)
    if portal_s == ANY:
        connector_s = str(connector if connector is not None else "").strip().lower()
        return ConfigIssue(
            entry,
            "'*' as the portal needs '*' as the line: write */connector/* to watch a connector "
            "on every line of every portal with tokens",
            ANY,
            connector_s,
            line_s,
        )
    return check_target(portal, connector, line, entry)


def check_target(
    portal: object, connector: object, line: object, entry: str
) -> Target | ConfigIssue:
    """Validate one target's parts; the one place the rules for a target live."""
    portal_s = str(portal if portal is not None else "").strip().lower().rstrip(".")
    connector_s = str(connector if connector is not None else "").strip().lower()
    line_s = str(line if line is not None else "").strip()

    def error(reason: str) -> ConfigIssue:
        return ConfigIssue(entry, reason, portal_s, connector_s, line_s)

    if not portal_s:
        return error("the portal domain is empty")
    if len(portal_s) > DOMAIN_LIMIT:
        return error(f"the portal domain is longer than {DOMAIN_LIMIT} characters")
    if "://" in portal_s or "/" in portal_s or not _DOMAIN.match(portal_s):
        return error(f"'{portal_s}' is not a portal domain (write it as example.bitrix24.com)")
    if not connector_s:
        return error("the connector is empty")
    if "." in connector_s:
        return error(
            f"'{connector_s[:64]}' is not a connector id: Bitrix24 cuts an id at its first dot, "
            "so it would check another connector"
        )
    if not _CONNECTOR.match(connector_s):
        return error(f"'{connector_s[:64]}' is not a connector id (letters, digits, _ -)")
    if isinstance(line, bool) or not line_s:
        return error("the open line is missing (write domain/connector/LINE)")
    if isinstance(line, float) and not line.is_integer():
        return error(f"the open line '{line_s[:20]}' is not a whole number")
    if not isinstance(line, int | float) and not _DIGITS.match(line_s):
        return error(f"the open line '{line_s[:20]}' is not a whole number")
    line_i = int(line) if isinstance(line, int | float) else int(line_s)
    if not 0 < line_i <= LINE_LIMIT:
        return error(f"the open line must be a positive id up to {LINE_LIMIT}")
    return Target(portal_s, connector_s, line_i)


def parse_entry(text: str) -> Target | Watch | ConfigIssue:
    """One entry written as `domain/connector/line`, where `*` may stand for the line (and
    then the domain): what the registry's CLI and API accept."""
    entry = text.strip()
    parts = entry.split("/")
    if len(parts) != 3:
        portal, connector = [*parts, "", ""][:2]
        return ConfigIssue(entry, "expected domain/connector/line", portal, connector)
    return check_entry(parts[0], parts[1], parts[2], entry)


def whole_list(reason: str) -> ConfigIssue:
    return ConfigIssue(WHOLE_LIST, reason, problem=ConfigProblem.LIST)


def is_connector_id(text: str) -> bool:
    """Whether `text` is written as a connector id may be (lowercase)."""
    return bool(_CONNECTOR.match(text))


def _from_csv(text: str) -> Iterable[Target | Watch | ConfigIssue]:
    for entry in (part.strip() for part in text.split(",")):
        if entry:
            yield parse_entry(entry)


def _from_json(text: str) -> Iterable[Target | Watch | ConfigIssue]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        yield whole_list(f"TARGETS is not valid JSON: {exc.msg} at position {exc.pos}")
        return
    if not isinstance(items, list):
        yield whole_list("TARGETS JSON must be a list of {portal, connector, line}")
        return
    for index, item in enumerate(items):
        entry = f"TARGETS[{index}]"
        if not isinstance(item, dict):
            yield ConfigIssue(entry, "each entry must be an object with portal, connector, line")
            continue
        yield check_entry(item.get("portal"), item.get("connector"), item.get("line"), entry)


def _collect(
    items: Iterable[Target | Watch | ConfigIssue], errors: Iterable[ConfigIssue] = ()
) -> TargetList:
    targets: dict[Target, None] = {}
    watches: dict[Watch, None] = {}
    problems: dict[str, ConfigIssue] = {e.key: e for e in errors}
    for item in items:
        if isinstance(item, Target):
            targets.setdefault(item, None)
        elif isinstance(item, Watch):
            watches.setdefault(item, None)
        else:
            problems.setdefault(item.key, item)
    return TargetList(tuple(targets), tuple(problems.values()), tuple(watches))


def entry_list(entries: Iterable[Target | Watch | ConfigIssue]) -> TargetList:
    """Entries read one by one (the registry's), each once."""
    return _collect(entries)


class TargetSource(Protocol):
    """Where the checker gets its targets: `TARGETS`, the registry, or both."""

    def load(self) -> TargetList: ...


@dataclass(frozen=True)
class TargetsVariable:
    """Targets written in the `TARGETS` environment variable (its value is passed in)."""

    value: str

    def load(self) -> TargetList:
        return parse_targets(self.value)
