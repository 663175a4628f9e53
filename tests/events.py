"""Real-shaped events from events/ and the handlers that take them, for the tests.

Both functions have an `app.py`, so a handler is imported from its file under its own module
name rather than with `import app`.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import uuid
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"


@cache
def _read_event(name: str) -> str:
    return (EVENTS / f"{name.removesuffix('.json')}.json").read_text(encoding="utf-8")


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of events/<name>.json (change it freely)."""
    event: dict[str, Any] = json.loads(_read_event(name))
    return event


def load_handler(name: str) -> ModuleType:
    """Import functions/<name>/app.py afresh as `<name>_app` (its caches start empty)."""
    spec = importlib.util.spec_from_file_location(
        f"{name}_app", ROOT / "functions" / name / "app.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def http_event(
    base: str,
    path: str | None = None,
    query: dict[str, str] | None = None,
    method: str = "GET",
) -> dict[str, Any]:
    """An HTTP API (payload 2.0) event from events/<base>.json with another path, query or
    method, changed everywhere API Gateway would put them."""
    event = copy.deepcopy(load_event(base))
    http = event["requestContext"]["http"]
    if path is not None:
        event["rawPath"] = http["path"] = path
    if query is not None:
        event["rawQueryString"] = urlencode(query)
        if query:
            event["queryStringParameters"] = dict(query)
        else:
            event.pop("queryStringParameters", None)
    http["method"] = method
    route = event["routeKey"].split(" ", 1)[1]
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {route}"
    event["requestContext"]["requestId"] = uuid.uuid4().hex[:16]
    return event


@dataclass
class LambdaContext:
    """What the Lambda runtime hands a handler, as far as Powertools reads it."""

    function_name: str = "snapshot-api"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:eu-central-1:123456789012:function:snapshot-api"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    remaining_ms: int = 10_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms
