"""Answers recorded from Bitrix24's own sources (tests/fixtures/bitrix24/*.json), which both the
local portal and the client's contract tests read, so the double cannot drift from what the
client is tested against.

Each file is `{"source": where the shape comes from, "http_status": N, "body": the answer}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "bitrix24"


@dataclass(frozen=True)
class Recorded:
    name: str
    source: str
    http_status: int
    body: Any


@cache
def recorded(name: str) -> Recorded:
    """The recorded answer `name` (the file name without `.json`)."""
    data = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return Recorded(name, str(data["source"]), int(data["http_status"]), data["body"])


def all_recorded() -> list[Recorded]:
    return [recorded(path.stem) for path in sorted(FIXTURES.glob("*.json"))]


def recorded_errors() -> dict[str, tuple[int, str]]:
    """Error code -> (HTTP status, error_description) of every recorded REST error answer."""
    found: dict[str, tuple[int, str]] = {}
    for answer in all_recorded():
        if answer.name.startswith("error.") and isinstance(answer.body, dict):
            found[str(answer.body["error"])] = (
                answer.http_status,
                str(answer.body["error_description"]),
            )
    return found


def time_fields() -> tuple[str, ...]:
    """The keys of a successful answer's `time` block, operating ones included."""
    return tuple(recorded("imconnector.status").body["time"])


def oauth_fields() -> tuple[str, ...]:
    """The keys of the OAuth server's answer to a refresh."""
    return tuple(sorted(recorded("oauth.refresh").body))
