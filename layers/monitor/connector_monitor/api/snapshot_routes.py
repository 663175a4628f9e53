"""The snapshot's routes: `GET /snapshot`, `GET /snapshot/{portal}/{connector}/{line}` and
`GET /health`, their parameters and their documented answers."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from .context import services
from .openapi import INTERNAL_DOC, UNAVAILABLE_DOC, answer_doc
from .paging import MAX_LIMIT
from .parameters import CursorParameter
from .snapshot_service import parse_query, parse_target
from .views import HealthView, SnapshotView, TargetView

router = APIGatewayHttpRouter()


@router.get(
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
    cursor: CursorParameter = None,
) -> SnapshotView:
    query = parse_query(state=state, portal=portal, limit=limit, cursor=cursor)
    given = services(router)
    return given.snapshot().snapshot(query, given.now())


@router.get(
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
    return services(router).snapshot().target(parse_target(portal, connector, line))


@router.get(
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
    given = services(router)
    return given.snapshot().health(given.now())
