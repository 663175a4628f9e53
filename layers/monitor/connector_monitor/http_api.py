"""The Snapshot API over HTTP: its routes, their parameters, and the one place errors become
answers, on Powertools' resolver.

The handler (functions/snapshot_api/app.py) imports this module on its first request, not at
its cold start: Powertools' event handler and pydantic, which validate the parameters and
describe them in openapi.json, are most of the API's import time (`make coldstart`). What the
routes call comes from the handler as `Services`, for each request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from aws_lambda_powertools.shared.json_encoder import Encoder

from .ports.state_store import StateStoreError
from .snapshot import MAX_LIMIT, SnapshotError, SnapshotService, parse_query, parse_target
from .views import (
    ErrorCode,
    ErrorView,
    HealthView,
    RegistryEntryView,
    RegistryView,
    SnapshotView,
    TargetView,
)

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from pydantic import BaseModel

    from .registry_service import RegistryService

OPENAPI_TITLE = "Bitrix24 connector monitor API"
API_VERSION = "1.0.0"

# Unicode as is (not \uXXXX): the body is escaped once more inside the Lambda response.
app = APIGatewayHttpResolver(
    enable_validation=True,
    serializer=partial(json.dumps, separators=(",", ":"), ensure_ascii=False, cls=Encoder),
)
snapshot_routes = APIGatewayHttpRouter()
health_routes = APIGatewayHttpRouter()
registry_routes = APIGatewayHttpRouter()

ERROR_STATUS: dict[ErrorCode, HTTPStatus] = {
    ErrorCode.BAD_FILTER: HTTPStatus.BAD_REQUEST,
    ErrorCode.BAD_CURSOR: HTTPStatus.BAD_REQUEST,
    ErrorCode.BAD_TARGET: HTTPStatus.BAD_REQUEST,
    ErrorCode.BAD_REQUEST: HTTPStatus.BAD_REQUEST,
    ErrorCode.NOT_FOUND: HTTPStatus.NOT_FOUND,
    ErrorCode.METHOD_NOT_ALLOWED: HTTPStatus.METHOD_NOT_ALLOWED,
    ErrorCode.STALE: HTTPStatus.SERVICE_UNAVAILABLE,
    ErrorCode.RUN_FAILED: HTTPStatus.SERVICE_UNAVAILABLE,
    ErrorCode.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
    ErrorCode.INTERNAL: HTTPStatus.INTERNAL_SERVER_ERROR,
}


@dataclass(frozen=True)
class Services:
    """What the routes call: the handler's lazily built services, its clock and its logger."""

    snapshot: Callable[[], SnapshotService]
    registry: Callable[[], RegistryService]
    now: Callable[[], datetime]
    logger: Logger


def services() -> Services:
    """The current request's (`answer` puts them in the resolver's context)."""
    found: Services = app.context["services"]
    return found


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
    app.append_context(services=given)
    return app.resolve(event, context)


def answer_doc(description: str, model: type[BaseModel] = ErrorView) -> OpenAPIResponse:
    return {"description": description, "content": {"application/json": {"model": model}}}


UNAVAILABLE_DOC = answer_doc("UNAVAILABLE: the state store could not be read; retry later")
INTERNAL_DOC = answer_doc("INTERNAL: an unexpected error (details only in the function's log)")


# ---- routes --------------------------------------------------------------------------------------
@snapshot_routes.get(
    "/snapshot",
    summary="The latest state of every watched target",
    description="Targets in key order, up to `limit` per page; follow `next_cursor` for more.",
    operation_id="getSnapshot",
    tags=["snapshot"],
    responses={
        200: answer_doc("The snapshot", SnapshotView),
        400: answer_doc("BAD_FILTER (state, portal or limit) or BAD_CURSOR"),
        503: UNAVAILABLE_DOC,
        500: INTERNAL_DOC,
    },
)
def get_snapshot(
    state: Annotated[
        str | None, Query(description="Only targets in this state: UP, DOWN or UNKNOWN (any case)")
    ] = None,
    portal: Annotated[
        str | None, Query(description="Only targets of this portal domain", max_length=300)
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="Targets per page at most")
    ] = MAX_LIMIT,
    cursor: Annotated[
        str | None, Query(description="`next_cursor` of the previous page", max_length=2000)
    ] = None,
) -> SnapshotView:
    query = parse_query(state=state, portal=portal, limit=limit, cursor=cursor)
    return services().snapshot().snapshot(query, services().now())


@snapshot_routes.get(
    "/snapshot/<portal>/<connector>/<line>",
    summary="The latest state of one target",
    operation_id="getTarget",
    tags=["snapshot"],
    responses={
        200: answer_doc("The target", TargetView),
        400: answer_doc("BAD_TARGET: the path does not name a target"),
        404: answer_doc("NOT_FOUND: the target is not watched (or not checked yet)"),
        503: UNAVAILABLE_DOC,
        500: INTERNAL_DOC,
    },
)
def get_target(
    portal: Annotated[str, Path(description="Portal domain", examples=["example.bitrix24.com"])],
    connector: Annotated[str, Path(description="Connector id (any case)")],
    line: Annotated[
        str,
        Path(
            pattern=r"^[0-9]{1,12}$",
            description="Open line id: a positive whole number in digits (not 12.0, not 1_2)",
            examples=["12"],
        ),
    ],
) -> TargetView:
    return services().snapshot().target(parse_target(portal, connector, line))


@health_routes.get(
    "/health",
    summary="Is the monitor itself running?",
    description="200 while check runs keep finishing in time, 503 otherwise: point an uptime "
    "check here to watch the watcher. Reads the last run's record only.",
    operation_id="getHealth",
    tags=["health"],
    responses={
        200: answer_doc("Runs finish in time", HealthView),
        503: answer_doc(
            "STALE: no run yet or the last run is too old; RUN_FAILED: the last run could "
            "check nothing (TARGETS unusable); or UNAVAILABLE"
        ),
        500: INTERNAL_DOC,
    },
)
def get_health() -> HealthView:
    return services().snapshot().health(services().now())


ENTRY_PATH = "/registry/<portal>/<connector>/<line>"
SIGV4_ONLY: list[dict[str, list[str]]] = [{"sigv4": []}]
ENTRY_DESCRIPTION = (
    "Always IAM-authorised (SigV4, with the stack's RegistryEditorPolicy), whatever "
    "ApiAuthorization says. `line` * watches the connector on every line where it has been seen "
    "configured; `portal` * (with line *) does so on every portal the monitor has tokens for."
)
PortalPart = Annotated[
    str, Path(description="Portal domain, or *", max_length=300, examples=["example.bitrix24.com"])
]
ConnectorPart = Annotated[str, Path(description="Connector id (any case)", max_length=100)]
LinePart = Annotated[
    str, Path(pattern=r"^(\*|[0-9]{1,12})$", description="Open line id in digits, or *")
]


@registry_routes.get(
    "/registry",
    summary="The target registry's entries",
    description="Entries in key order, up to `limit` per page; follow `next_cursor` for more.",
    operation_id="listRegistry",
    security=SIGV4_ONLY,
    tags=["registry"],
    responses={
        200: answer_doc("A page of entries", RegistryView),
        400: answer_doc("BAD_FILTER (limit) or BAD_CURSOR"),
        503: UNAVAILABLE_DOC,
        500: INTERNAL_DOC,
    },
)
def list_registry(
    limit: Annotated[int, Query(ge=1, le=1000, description="Entries per page at most")] = 1000,
    cursor: Annotated[
        str | None, Query(description="`next_cursor` of the previous page", max_length=2000)
    ] = None,
) -> RegistryView:
    return services().registry().page(limit=limit, cursor=cursor)


@registry_routes.put(
    ENTRY_PATH,
    summary="Add an entry to the target registry",
    description=ENTRY_DESCRIPTION + " Adding an entry twice is harmless (200 the second time).",
    operation_id="addRegistryEntry",
    security=SIGV4_ONLY,
    tags=["registry"],
    responses={
        200: answer_doc("The entry was there already", RegistryEntryView),
        201: answer_doc("The entry was added; the next run checks it", RegistryEntryView),
        400: answer_doc("BAD_TARGET: the path does not name an entry"),
        503: UNAVAILABLE_DOC,
        500: INTERNAL_DOC,
    },
)
def add_registry_entry(
    portal: PortalPart, connector: ConnectorPart, line: LinePart
) -> Response[dict[str, Any]]:
    from .registry_service import entry_of, view_of

    entry = entry_of(portal, connector, line)
    now, by = services().now(), caller()
    added = services().registry().add(entry, by=by, at=now)
    services().logger.info(
        "registry entry added" if added else "registry entry already there",
        extra={"entry": entry.key, "by": by},
    )
    return Response(
        status_code=HTTPStatus.CREATED if added else HTTPStatus.OK,
        content_type=content_types.APPLICATION_JSON,
        body=view_of(entry, by=by, at=now).model_dump(mode="json"),
    )


@registry_routes.delete(
    ENTRY_PATH,
    summary="Remove an entry from the target registry",
    description=ENTRY_DESCRIPTION + " The next run closes its targets' open incidents.",
    operation_id="removeRegistryEntry",
    security=SIGV4_ONLY,
    tags=["registry"],
    responses={
        204: {"description": "Removed"},
        400: answer_doc("BAD_TARGET: the path does not name an entry"),
        404: answer_doc("NOT_FOUND: the registry holds no such entry"),
        503: UNAVAILABLE_DOC,
        500: INTERNAL_DOC,
    },
)
def remove_registry_entry(
    portal: PortalPart, connector: ConnectorPart, line: LinePart
) -> Response[str]:
    from .registry_service import entry_of

    entry = entry_of(portal, connector, line)
    services().registry().remove(entry)
    services().logger.info("registry entry removed", extra={"entry": entry.key, "by": caller()})
    return Response(status_code=HTTPStatus.NO_CONTENT, content_type=None, body="")


def caller() -> str:
    """Who signed the request (the registry routes are always IAM-authorised)."""
    iam = app.current_event.request_context.authorizer.iam
    return (iam.user_arn if iam is not None else None) or "unknown caller"


app.include_router(snapshot_routes)
app.include_router(health_routes)
app.include_router(registry_routes)


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


@app.exception_handler(SnapshotError)
def on_snapshot_error(exc: SnapshotError) -> Response[dict[str, Any]]:
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
    services().logger.error("state store unavailable", extra={"reason": str(exc)})
    return error_response(ErrorCode.UNAVAILABLE, "the state store could not be read; retry later")


@app.exception_handler(Exception)
def on_unexpected(exc: Exception) -> Response[dict[str, Any]]:
    services().logger.exception("unexpected error")
    return error_response(ErrorCode.INTERNAL, "internal error")


def allowed_methods(path: str) -> list[str]:
    """Methods some route serves on `path` (empty: no such path)."""
    # Powertools has no public list of routes; these two lists are what its own router walks.
    routes = app._static_routes + app._dynamic_routes
    return sorted({route.method for route in routes if route.rule.match(path)})


def malformed(event: Any) -> str | None:
    """Why `event` is not the HTTP API payload 2.0 request this function is wired to, or None.

    API Gateway sends only that shape; anything else (a console test, a v1 event, a hand-made
    invoke) gets a 400 instead of an exception deep inside the resolver.
    """
    if not isinstance(event, dict):
        return "the event is not a JSON object"
    http = (
        event.get("requestContext", {}).get("http")
        if isinstance(event.get("requestContext"), dict)
        else None
    )
    if not isinstance(http, dict) or not isinstance(http.get("method"), str):
        return "the event has no requestContext.http.method (HTTP API payload 2.0 expected)"
    if not isinstance(event.get("rawPath"), str):
        return "the event has no rawPath"
    for field in ("queryStringParameters", "pathParameters", "headers"):
        values = event.get(field)
        if values is not None and not (
            isinstance(values, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in values.items())
        ):
            return f"{field} must map names to strings"
    return None


def openapi_document() -> str:
    """The API's OpenAPI document, as committed in openapi.json (`python -m local.openapi`)."""
    # Powertools' OpenAPI models take longer to import than the rest of the function: only the
    # document needs them, never a request.
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, HTTPBearer

    generated = app.get_openapi_json_schema(
        title=OPENAPI_TITLE,
        version=API_VERSION,
        description=(
            "Latest state of the Bitrix24 Open Lines connectors the monitor watches. Every "
            "route is authorised: by default with AWS IAM (requests signed with SigV4 for the "
            "service `execute-api`, by a user or role holding the stack's SnapshotReaderPolicy); "
            "with a JWT bearer token instead when the stack is deployed with "
            'ApiAuthorization=JWT. Errors are JSON {"error": CODE, "message": TEXT}. No '
            "response ever contains a token or a client secret."
        ),
        security_schemes={
            "sigv4": APIKey.model_validate(
                {
                    "in": APIKeyIn.header,
                    "name": "Authorization",
                    "description": "AWS Signature Version 4 (service execute-api); the default",
                    "openapi_extensions": {"x-amazon-apigateway-authtype": "awsSigv4"},
                }
            ),
            "jwt": HTTPBearer(
                bearerFormat="JWT",
                description="A JWT from the configured issuer (ApiAuthorization=JWT)",
            ),
        },
        security=[{"sigv4": []}, {"jwt": []}],
    )
    document = json.loads(generated)
    # Powertools documents its own 422 shapes for invalid requests and responses; here an invalid
    # request is a 400 and an invalid response a 500, both in the contract's shape.
    for operations in document["paths"].values():
        for operation in operations.values():
            operation["responses"].pop("422", None)
            operation["responses"].get("204", {}).pop("content", None)  # no body
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        document["components"]["schemas"].pop(name, None)
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
