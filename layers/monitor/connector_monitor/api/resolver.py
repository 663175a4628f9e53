"""The API's resolver: Powertools' HTTP API resolver joining the routers, and the one place
errors become answers.

The handler (functions/snapshot_api/app.py) imports this module on its first request, not at
its cold start: Powertools' event handler and pydantic, which validate the parameters and
describe them in openapi.json, are most of the API's import time (`make coldstart`). What the
routes call comes from the handler as `Services`, for each request.
"""

from __future__ import annotations

import base64
import json
import re
from functools import cache, partial
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestValidationError,
)
from aws_lambda_powertools.shared.json_encoder import Encoder

from ..ports.state_store import StateStoreError
from . import history_routes, registry_routes, silence_routes, snapshot_routes
from .context import SERVICES, Services, services
from .errors import ApiError, ErrorCode
from .event_shape import malformed
from .openapi import openapi_document
from .views import ErrorView

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

# Unicode as is (not \uXXXX): the body is escaped once more inside the Lambda response.
app = APIGatewayHttpResolver(
    enable_validation=True,
    serializer=partial(json.dumps, separators=(",", ":"), ensure_ascii=False, cls=Encoder),
)
app.include_router(snapshot_routes.router)
app.include_router(registry_routes.router)
app.include_router(silence_routes.router)
app.include_router(history_routes.router)

ERROR_STATUS: dict[ErrorCode, HTTPStatus] = {
    ErrorCode.BAD_FILTER: HTTPStatus.BAD_REQUEST,
    ErrorCode.BAD_CURSOR: HTTPStatus.BAD_REQUEST,
    ErrorCode.BAD_TARGET: HTTPStatus.BAD_REQUEST,
    ErrorCode.BAD_REQUEST: HTTPStatus.BAD_REQUEST,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
    ErrorCode.NOT_FOUND: HTTPStatus.NOT_FOUND,
    ErrorCode.METHOD_NOT_ALLOWED: HTTPStatus.METHOD_NOT_ALLOWED,
    ErrorCode.STALE: HTTPStatus.SERVICE_UNAVAILABLE,
    ErrorCode.RUN_FAILED: HTTPStatus.SERVICE_UNAVAILABLE,
    ErrorCode.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
    ErrorCode.INTERNAL: HTTPStatus.INTERNAL_SERVER_ERROR,
}


def answer(event: Any, context: LambdaContext, given: Services) -> dict[str, Any]:
    """The HTTP API's answer to one event: a 400 for an event that is not an HTTP API request."""
    problem = malformed(event)
    if problem is not None:
        given.logger.warning("not an HTTP API (payload 2.0) request", extra={"problem": problem})
        return {
            "statusCode": HTTPStatus.BAD_REQUEST,
            "headers": {"Content-Type": content_types.APPLICATION_JSON},
            "body": json.dumps({"error": ErrorCode.BAD_REQUEST, "message": problem}),
        }
    refused = body_problem(event)
    if refused is not None:
        code, message = refused
        return {
            "statusCode": ERROR_STATUS[code],
            "headers": {"Content-Type": content_types.APPLICATION_JSON},
            "body": json.dumps({"error": code, "message": message}),
        }
    app.append_context(**{SERVICES: given})
    return app.resolve(event, context)


def body_problem(event: dict[str, Any]) -> tuple[ErrorCode, str] | None:
    """Why a request's body cannot be read, if it cannot: every body a route takes is a JSON
    object, and Powertools would otherwise fail on a form without its boundary or on bytes that
    are not UTF-8 before any route runs (a 500)."""
    body = event.get("body")
    if not body:
        return None
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    kind = headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if kind != "application/json":
        return ErrorCode.UNSUPPORTED_MEDIA_TYPE, "send the body as application/json"
    try:
        raw = base64.b64decode(body) if event.get("isBase64Encoded") else str(body).encode()
        json.loads(raw.decode("utf-8"))
    except (ValueError, TypeError):
        return ErrorCode.BAD_REQUEST, "the body is not valid JSON"
    return None


# ---- errors: the one place they become HTTP answers ----------------------------------------------
def error_response(
    code: ErrorCode, message: str, headers: dict[str, str] | None = None
) -> Response[dict[str, Any]]:
    return Response(
        status_code=ERROR_STATUS[code],
        content_type=content_types.APPLICATION_JSON,
        body=ErrorView(error=code, message=message).model_dump(mode="json"),
        headers=headers,
    )


@app.exception_handler(ApiError)
def on_api_error(exc: ApiError) -> Response[dict[str, Any]]:
    return error_response(exc.code, exc.message)


@app.exception_handler(RequestValidationError)
def on_invalid_request(exc: RequestValidationError) -> Response[dict[str, Any]]:
    """A parameter of the wrong type or range (Powertools would answer 422 in its own shape)."""
    first = exc.errors()[0]
    loc = [str(part) for part in first.get("loc", ())]
    where, name = (loc[0], loc[-1]) if len(loc) > 1 else ("request", "?")
    code = ErrorCode.BAD_REQUEST
    if where == "path":
        code = ErrorCode.BAD_TARGET
    elif where == "query":
        code = ErrorCode.BAD_CURSOR if name == "cursor" else ErrorCode.BAD_FILTER
    return error_response(code, f"{where} parameter '{name}': {first.get('msg', 'invalid')}")


@app.not_found
def on_no_route(exc: NotFoundError) -> Response[dict[str, Any]]:
    method = app.current_event.http_method.upper()[:10]
    path = app.current_event.path[:200]
    allowed = allowed_methods(path)
    if allowed:
        return error_response(
            ErrorCode.METHOD_NOT_ALLOWED,
            f"{method} is not allowed on {path}; use {', '.join(allowed)}",
            headers={"Allow": ", ".join(allowed)},
        )
    return error_response(ErrorCode.NOT_FOUND, f"no route {method} {path}")


@app.exception_handler(StateStoreError)
def on_store_error(exc: StateStoreError) -> Response[dict[str, Any]]:
    services(app).logger.error("state store unavailable", extra={"reason": str(exc)})
    return error_response(ErrorCode.UNAVAILABLE, "the state store could not be read; retry later")


@app.exception_handler(Exception)
def on_unexpected(exc: Exception) -> Response[dict[str, Any]]:
    services(app).logger.exception("unexpected error")
    return error_response(ErrorCode.INTERNAL, "internal error")


HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
# What a `<parameter>` of a Powertools route matches (its safe and unsafe URI characters and
# word characters): a path the routes would not match is a 404, not a 405.
PATH_PARAMETER = r"[-._~()'!*:@,;=+&$%<> \[\]{}|^\w]+"


def allowed_methods(path: str) -> list[str]:
    """Methods some route serves on `path` (empty: no such path)."""
    return sorted({method for pattern, method in served_routes() if pattern.fullmatch(path)})


@cache
def served_routes() -> list[tuple[re.Pattern[str], str]]:
    """Every route as (path pattern, method), read from the resolver's own OpenAPI schema:
    Powertools has no public list of routes, and every route is documented (a test says so).
    Built once a container, on its first unknown route."""
    paths: dict[str, dict[str, Any]] = json.loads(openapi_document(app))["paths"]
    routes: list[tuple[re.Pattern[str], str]] = []
    for path, operations in paths.items():
        pattern = re.compile(re.sub(r"\\\{[^/]+?\\\}", lambda _: PATH_PARAMETER, re.escape(path)))
        routes += [(pattern, m.upper()) for m in operations if m in HTTP_METHODS]
    return routes
