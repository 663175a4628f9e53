"""Silences and acknowledgements: `GET` and `POST /silences`, `DELETE /silences/{id}`, and
`POST /acknowledgements/{portal}/{connector}/{line}`. Always IAM-authorised (template.yaml, the
stack's SilenceEditorPolicy), so the caller is the signer's ARN."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from ..domain.targets import Target
from .context import services
from .errors import BadTarget
from .openapi import INTERNAL_DOC, UNAVAILABLE_DOC, answer_doc
from .registry_routes import SIGV4_ONLY, ConnectorPart, PortalPart, caller
from .registry_service import entry_of
from .views import AcknowledgementView, SilenceRequest, SilencesView, SilenceView

router = APIGatewayHttpRouter()

ABOUT = (
    "Always IAM-authorised (SigV4, with the stack's SilenceEditorPolicy), whatever "
    "ApiAuthorization says. While a silence is active the alerts of the targets it matches are "
    "held: state and history go on, nothing is published. When it ends (or is removed) a "
    "target still down is announced once; one that recovered meanwhile announces nothing."
)
SilenceId = Annotated[str, Path(description="A silence's id (as listed)")]
LineNumber = Annotated[str, Path(pattern=r"^[0-9]{1,12}$", description="Open line id")]


@router.get(
    "/silences",
    summary="Every silence (ended ones are kept a week)",
    description=ABOUT,
    operation_id="listSilences",
    security=SIGV4_ONLY,
    tags=["silences"],
    responses={
        200: answer_doc("The silences", SilencesView),
        503: UNAVAILABLE_DOC,
        500: INTERNAL_DOC,
    },
)
def list_silences() -> SilencesView:
    given = services(router)
    return given.silences().list(given.now())


@router.post(
    "/silences",
    summary="Add a silence",
    description=ABOUT,
    operation_id="addSilence",
    security=SIGV4_ONLY,
    tags=["silences"],
    responses={
        201: answer_doc("The silence, active from now", SilenceView),
        400: answer_doc("BAD_REQUEST: what the silence matches, its end or its reason"),
        415: answer_doc("UNSUPPORTED_MEDIA_TYPE: the body is not application/json"),
        503: UNAVAILABLE_DOC,
        500: INTERNAL_DOC,
    },
)
def add_silence(request: Annotated[SilenceRequest, Body()]) -> Response[dict[str, Any]]:
    given = services(router)
    by = caller()
    added = given.silences().add(request, by=by, at=given.now())
    given.logger.info("silence added", extra={"silence": added.id, "by": by})
    return Response(
        status_code=HTTPStatus.CREATED,
        content_type=content_types.APPLICATION_JSON,
        body=added.model_dump(mode="json"),
    )


@router.delete(
    "/silences/<silence_id>",
    summary="Remove a silence (it ends now)",
    description=ABOUT,
    operation_id="removeSilence",
    security=SIGV4_ONLY,
    tags=["silences"],
    responses={
        200: answer_doc("The silence removed", SilenceView),
        404: answer_doc("NOT_FOUND: no such silence"),
        503: UNAVAILABLE_DOC,
        500: INTERNAL_DOC,
    },
)
def remove_silence(silence_id: SilenceId) -> SilenceView:
    given = services(router)
    removed = given.silences().remove(silence_id, given.now())
    given.logger.info("silence removed", extra={"silence": silence_id, "by": caller()})
    return removed


@router.post(
    "/acknowledgements/<portal>/<connector>/<line>",
    summary="Acknowledge a target's open outage: its reminders stop",
    description=(
        "Always IAM-authorised (SigV4, with the stack's SilenceEditorPolicy). The outage open "
        "now is marked acknowledged: no more reminders for it; its recovery is still announced, "
        "and a later outage is not acknowledged."
    ),
    operation_id="acknowledgeOutage",
    security=SIGV4_ONLY,
    tags=["silences"],
    responses={
        200: answer_doc("Acknowledged", AcknowledgementView),
        400: answer_doc("BAD_TARGET: the path does not name a target"),
        404: answer_doc("NOT_FOUND: the target has no open outage"),
        503: UNAVAILABLE_DOC,
        500: INTERNAL_DOC,
    },
)
def acknowledge_outage(
    portal: PortalPart, connector: ConnectorPart, line: LineNumber
) -> AcknowledgementView:
    target = entry_of(portal, connector, line)
    if not isinstance(target, Target):  # the line is digits: only a `*` portal gets here
        raise BadTarget("acknowledge one target: portal/connector/line")
    given = services(router)
    by = caller()
    acknowledged = given.silences().acknowledge(target, by=by, at=given.now())
    given.logger.info("outage acknowledged", extra={"target": target.key, "by": by})
    return acknowledged
