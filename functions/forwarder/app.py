"""The alert forwarder: subscribed to the monitor's alert topic (with a filter policy, if any),
it posts each alert to Slack, Telegram or a generic webhook. Optional: deployed on its own with
`functions/forwarder/template.yaml` (README, "Channels").

Environment: CHANNEL (slack | telegram | webhook) and CHANNEL_SECRET_ARN, a secret holding
`{"url": "...", "chat_id": "..."}` (chat_id for Telegram only). The URL is a credential (a Slack
webhook's, a Telegram bot's): read from the secret, never logged.
"""

from __future__ import annotations

import os
from typing import Any

import requests
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext

from connector_monitor.domain.channels import Channel
from connector_monitor.forwarding import Destination, ForwardError, forward

logger = Logger(service="bitrix24-alert-forwarder")
TIMEOUT = (3.05, 10)  # connect, read: a chat API that hangs must not hold the function


def destination() -> Destination:
    secret = parameters.get_secret(os.environ["CHANNEL_SECRET_ARN"], transform="json", max_age=300)
    if not isinstance(secret, dict) or not isinstance(secret.get("url"), str):
        raise ForwardError("the channel's secret must be a JSON object with a url")
    return Destination(
        Channel(os.environ["CHANNEL"]), secret["url"], str(secret.get("chat_id", ""))
    )


def post(url: str, body: dict[str, Any]) -> int:
    try:
        answer = requests.post(url, json=body, timeout=TIMEOUT, allow_redirects=False)
    except requests.RequestException as exc:  # its text quotes the URL: never passed on
        raise ForwardError(f"the channel could not be reached ({type(exc).__name__})") from None
    return answer.status_code


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    sent = forward(event, destination(), post)
    logger.info("alerts forwarded", extra={"count": sent, "channel": os.environ["CHANNEL"]})
    return {"forwarded": sent}
