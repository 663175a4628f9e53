"""Forwarding alerts from the SNS topic to a chat or a webhook (the optional forwarder function,
`functions/forwarder/`): each notification becomes one POST; a refusal fails the invocation, so
Lambda's own retries of an SNS delivery (and its on-failure destination) keep it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .domain.channels import Channel, Notice, payload


class ForwardError(Exception):
    """A notification the channel did not take. Never quotes the channel's URL (a Slack
    webhook's or a Telegram bot's URL is its credential)."""


class Poster(Protocol):
    def __call__(self, url: str, body: dict[str, Any]) -> int:
        """POST `body` as JSON; the HTTP status. Raises ForwardError when nothing answered."""
        ...


@dataclass(frozen=True)
class Destination:
    channel: Channel
    url: str = field(repr=False)
    chat_id: str = ""  # Telegram only


def forward(event: Mapping[str, Any], destination: Destination, post: Poster) -> int:
    """Post every notification of an SNS-to-Lambda event; how many were posted."""
    records = event.get("Records")
    if not isinstance(records, list):
        raise ForwardError("not an SNS event: no Records")
    sent = 0
    for record in records:
        notice = Notice.from_sns(record)
        body = payload(destination.channel, notice, chat_id=destination.chat_id)
        status = post(destination.url, body)
        if not 200 <= status < 300:
            raise ForwardError(
                f"{destination.channel.value} answered HTTP {status} for "
                f"'{notice.subject}': the invocation fails so that Lambda retries it"
            )
        sent += 1
    return sent
