"""The target registry's routes: `GET /registry`, `PUT` and `DELETE` on
`/registry/{portal}/{connector}/{line}`, and `PUT` on `/registry/labels/{portal}` (a portal's
client labels). Always IAM-authorised (template.yaml), so the caller is the signer's ARN."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from .context import services
from .openapi import INTERNAL_DOC, UNAVAILABLE_DOC, answer_doc
from .paging import MAX_LIMIT
from .parameters import CursorParameter
from .registry_service import entry_of, view_of
from .views import LabelsView, PortalLabelsView, RegistryEntryView, RegistryView

router = APIGatewayHttpRouter()

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


@router.get(
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
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="Entries per page at most")
    ] = MAX_LIMIT,
    cursor: CursorParameter = None,
) -> RegistryView:
    return services(router).registry().page(limit=limit, cursor=cursor)


@router.put(
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
    entry = entry_of(portal, connector, line)
    given = services(router)
    now, by = given.now(), caller()
    added = given.registry().add(entry, by=by, at=now)
    given.logger.info(
        "registry entry added" if added else "registry entry already there",
        extra={"entry": entry.key, "by": by},
    )
    return Response(
        status_code=HTTPStatus.CREATED if added else HTTPStatus.OK,
        content_type=content_types.APPLICATION_JSON,
        body=view_of(entry, by=by, at=now).model_dump(mode="json"),
    )


@router.delete(
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
    entry = entry_of(portal, connector, line)
    given = services(router)
    given.registry().remove(entry)
    given.logger.info("registry entry removed", extra={"entry": entry.key, "by": caller()})
    return Response(status_code=HTTPStatus.NO_CONTENT, content_type=None, body="")


@router.put(
    "/registry/labels/<portal>",
    summary="Set a portal's client labels",
    description="Replaces the portal's labels (client, owner, tier, runbook: an https:// URL); "
    "an empty object removes them. Alerts and the snapshot's targets show them from the next "
    "run. Always IAM-authorised (SigV4, with the stack's RegistryEditorPolicy).",
    operation_id="setPortalLabels",
    security=SIGV4_ONLY,
    tags=["registry"],
    responses={
        200: answer_doc("The labels as stored", PortalLabelsView),
        400: answer_doc("BAD_TARGET: not a portal domain, or a label that is not valid"),
        415: answer_doc("UNSUPPORTED_MEDIA_TYPE: the body is not application/json"),
        503: UNAVAILABLE_DOC,
        500: INTERNAL_DOC,
    },
)
def set_portal_labels(
    portal: Annotated[str, Path(description="Portal domain", max_length=300)],
    labels: Annotated[LabelsView, Body(description="The labels; fields left out are unset")],
) -> PortalLabelsView:
    given = services(router)
    by = caller()
    fields = labels.model_dump(exclude_none=True)
    stored = given.registry().set_labels(portal, fields, by=by, at=given.now())
    given.logger.info("portal labels set", extra={"portal": stored.portal, "by": by})
    return stored


def caller() -> str:
    """Who signed the request."""
    iam = router.current_event.request_context.authorizer.iam
    return (iam.user_arn if iam is not None else None) or "unknown caller"
