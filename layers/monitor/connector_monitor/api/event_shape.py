"""Is an event the HTTP API (payload 2.0) request the Snapshot API function is wired to?"""

from __future__ import annotations

from typing import Any

PARAMETER_MAPS = ("queryStringParameters", "pathParameters", "headers")


def malformed(event: Any) -> str | None:
    """Why `event` is not an HTTP API payload 2.0 request, or None.

    API Gateway sends only that shape; anything else (a console test, a v1 event, a hand-made
    invoke) gets a 400 instead of an exception deep inside the resolver.
    """
    if not isinstance(event, dict):
        return "the event is not a JSON object"
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, dict) else None
    if not isinstance(http, dict) or not isinstance(http.get("method"), str):
        return "the event has no requestContext.http.method (HTTP API payload 2.0 expected)"
    if not isinstance(event.get("rawPath"), str):
        return "the event has no rawPath"
    for field in PARAMETER_MAPS:
        values = event.get(field)
        if values is not None and not is_string_map(values):
            return f"{field} must map names to strings"
    return None


def is_string_map(values: object) -> bool:
    return isinstance(values, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in values.items()
    )
