"""Real-shaped events from events/ and the handlers that take them, for the tests.

Both functions have an `app.py`, so a handler is imported from its file under its own module
name rather than with `import app`.
"""

from __future__ import annotations

import copy
import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from local.handlers import LambdaContext, load_handler

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"


@cache
def _read_event(name: str) -> str:
    return (EVENTS / f"{name.removesuffix('.json')}.json").read_text(encoding="utf-8")


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of events/<name>.json (change it freely)."""
    event: dict[str, Any] = json.loads(_read_event(name))
    return event


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


__all__ = ["LambdaContext", "http_event", "load_event", "load_handler"]
