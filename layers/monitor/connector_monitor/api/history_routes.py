"""History and the status page: `GET /history/{portal}`, `GET /history/{portal}/{connector}/
{line}` (incidents and uptime, JSON) and `GET /` (the status page, HTML). Authorised as the
snapshot's routes are."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from .context import services
from .history_views import PortalHistoryView, TargetHistoryView
from .openapi import INTERNAL_DOC, UNAVAILABLE_DOC, answer_doc
from .snapshot_service import parse_query, parse_target
from .status_page import HEADERS, PAGE_LIMIT

router = APIGatewayHttpRouter()

PortalPath = Annotated[
    str, Path(description="Portal domain", examples=["example.bitrix24.com"], max_length=300)
]


@router.get(
    "/history/<portal>",
    summary="A portal's incidents and uptime",
    description="Uptime over 24 h, 7 d and 30 d of all its targets together and of each, 30 "
    "daily marks, and its incidents of the last 30 days. Time the monitor could not see is "
    "counted apart (blind), never as downtime. One history query per target.",
    operation_id="getPortalHistory",
    tags=["history"],
    responses={
        200: answer_doc("The portal's history", PortalHistoryView),
        400: answer_doc("BAD_TARGET: not a portal domain"),
        404: answer_doc("NOT_FOUND: no target of this portal is watched"),
        503: UNAVAILABLE_DOC,
        500: INTERNAL_DOC,
    },
)
def get_portal_history(portal: PortalPath) -> PortalHistoryView:
    given = services(router)
    return given.history().portal(parse_target(portal, "connector", 1).portal, given.now())


@router.get(
    "/history/<portal>/<connector>/<line>",
    summary="One target's incidents and uptime",
    operation_id="getTargetHistory",
    tags=["history"],
    responses={
        200: answer_doc("The target's history", TargetHistoryView),
        400: answer_doc("BAD_TARGET: the path does not name a target"),
        404: answer_doc("NOT_FOUND: the target is not watched and has no history"),
        503: UNAVAILABLE_DOC,
        500: INTERNAL_DOC,
    },
)
def get_target_history(
    portal: PortalPath,
    connector: Annotated[str, Path(description="Connector id (any case)")],
    line: Annotated[
        str, Path(pattern=r"^[0-9]{1,12}$", description="Open line id", examples=["12"])
    ],
) -> TargetHistoryView:
    given = services(router)
    return given.history().target(parse_target(portal, connector, line), given.now())


@router.get(
    "/",
    summary="The status page (HTML)",
    description="Every portal with its targets' states, 30-day uptime bars and open "
    f"incidents (up to {PAGE_LIMIT} targets), filtered by portal and state; `?portal=` is one "
    "client's page, with its closed incidents too. No script; a strict Content-Security-Policy.",
    operation_id="getStatusPage",
    tags=["status page"],
    responses={
        200: {"description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}},
        400: answer_doc("BAD_FILTER: state or portal"),
        503: UNAVAILABLE_DOC,
        500: INTERNAL_DOC,
    },
)
def get_status_page(
    state: Annotated[
        str | None, Query(description="Only targets in this state: UP, DOWN or UNKNOWN")
    ] = None,
    portal: Annotated[
        str | None, Query(description="Only this portal: its own page", max_length=300)
    ] = None,
) -> Response[str]:
    # An empty form field is no filter.
    query = parse_query(state=state or None, portal=portal or None, limit=PAGE_LIMIT)
    given = services(router)
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=given.status_page().page(query, given.now()),
        headers=HEADERS,
    )
