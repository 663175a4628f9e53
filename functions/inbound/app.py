"""Inbound: what Bitrix24 portals post to the monitor as its application.

API Gateway HTTP API (payload 2.0), public by necessity (Bitrix24 cannot sign a request; the
path carries a segment only the stack knows) -> this handler -> `connector_monitor.installing`:
    POST /app/{key}/install   ONAPPINSTALL: verified with the authorisation server, then stored
    POST /app/{key}/events    ONAPPUNINSTALL, ONAPPUPDATE, ONIMCONNECTORLINEDELETE
    GET  /app/{key}/authorized  the portal's redirect with a code after
                                `monitorctl portals authorize DOMAIN` (re-authorisation)
Answers are JSON; none quotes the body or a token.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from connector_monitor.composition import Inbound
    from connector_monitor.installing import InboundAnswer

LIBRARY_LOGGER = "connector_monitor"
BODY_LIMIT = 16 * 1024  # as the parser's: refused before it is decoded

logger = Logger()
tracer = Tracer(patch_modules=("botocore",))  # the authorisation server: http.client, unpatched
logging.getLogger(LIBRARY_LOGGER)
copy_config_to_registered_loggers(source_logger=logger, include={LIBRARY_LOGGER})


@cache
def inbound() -> Inbound:
    from connector_monitor.composition import Inbound
    from connector_monitor.settings import InboundSettings, load_settings

    return Inbound(load_settings(InboundSettings, os.environ))


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from connector_monitor.installing import InboundAnswer

    route = str(event.get("rawPath", "")).rstrip("/").rsplit("/", 1)[-1]
    method = str(event.get("requestContext", {}).get("http", {}).get("method", ""))
    if (method, route) == ("GET", "authorized"):
        query = event.get("queryStringParameters") or {}
        return reply(inbound().service.authorized({str(k): str(v) for k, v in query.items()}))
    if method != "POST" or route not in ("install", "events"):
        return reply(InboundAnswer(404, {"error": "NOT_FOUND", "message": "no such route"}))
    body = request_body(event)
    if body is None:
        return reply(InboundAnswer(413, {"error": "BAD_FORM", "message": "the body is too large"}))
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    content_type = headers.get("content-type", "")
    service = inbound().service
    if route == "install":
        return reply(service.install(body, content_type))
    return reply(service.event(body, content_type))


def request_body(event: dict[str, Any]) -> bytes | None:
    """The body's bytes, or None past the limit (counted before base64 is decoded)."""
    raw = event.get("body") or ""
    if not isinstance(raw, str) or len(raw) > BODY_LIMIT * 4 // 3 + 4:
        return None
    if event.get("isBase64Encoded"):
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            return b"\xff"  # not a form: the parser refuses it
    else:
        data = raw.encode("utf-8", "surrogateescape")
    return data if len(data) <= BODY_LIMIT else None


def reply(answer: InboundAnswer) -> dict[str, Any]:
    return {
        "statusCode": answer.status,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
        "body": json.dumps(answer.body),
    }
