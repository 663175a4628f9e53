"""The API's OpenAPI document (openapi.json, `python -m local.openapi`), generated from the
resolver's routes, and the answers the routes document.

Powertools' OpenAPI models take longer to import than the rest of the function: only the
document needs them, never a request, so they are imported when the document is made.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from .views import ErrorView

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
    from pydantic import BaseModel

OPENAPI_TITLE = "Bitrix24 connector monitor API"
API_VERSION = "1.0.0"
API_DESCRIPTION = (
    "Latest state of the Bitrix24 Open Lines connectors the monitor watches. Every "
    "route is authorised: by default with AWS IAM (requests signed with SigV4 for the "
    "service `execute-api`, by a user or role holding the stack's SnapshotReaderPolicy); "
    "with a JWT bearer token instead when the stack is deployed with "
    'ApiAuthorization=JWT. Errors are JSON {"error": CODE, "message": TEXT}. No '
    "response ever contains a token or a client secret."
)
# Powertools documents its own shapes for invalid requests (422) and responses; here an invalid
# request is a 400 and an invalid response a 500, both in the contract's shape.
POWERTOOLS_ERROR_SCHEMAS = ("HTTPValidationError", "ValidationError", "ResponseValidationError")


def answer_doc(description: str, model: type[BaseModel] = ErrorView) -> OpenAPIResponse:
    """A documented JSON answer (by default an error) for a route's `responses`."""
    return {"description": description, "content": {"application/json": {"model": model}}}


UNAVAILABLE_DOC = answer_doc("UNAVAILABLE: the state store could not be read; retry later")
INTERNAL_DOC = answer_doc("INTERNAL: an unexpected error (details only in the function's log)")


def openapi_document(resolver: APIGatewayHttpResolver) -> str:
    """The document of `resolver`'s routes, as committed in openapi.json."""
    generated = resolver.get_openapi_json_schema(
        title=OPENAPI_TITLE,
        version=API_VERSION,
        description=API_DESCRIPTION,
        security_schemes=security_schemes(),
        security=[{"sigv4": []}, {"jwt": []}],
    )
    document: dict[str, Any] = json.loads(generated)
    for operations in document["paths"].values():
        for operation in operations.values():
            keep_the_contracts_answers(operation["responses"])
    for name in POWERTOOLS_ERROR_SCHEMAS:
        document["components"]["schemas"].pop(name, None)
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def keep_the_contracts_answers(responses: dict[str, Any]) -> None:
    """Drop Powertools' 422 and the body Powertools gives every documented answer, 204 too."""
    responses.pop("422", None)
    responses.get("204", {}).pop("content", None)


def security_schemes() -> dict[str, Any]:
    """SigV4 (API Gateway's IAM authorisation, the default) and a JWT bearer token."""
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, HTTPBearer

    return {
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
    }
