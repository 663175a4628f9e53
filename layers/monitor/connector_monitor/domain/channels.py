"""Alerts forwarded to a chat or a webhook: what the forwarder (`functions/forwarder/`) posts for
one SNS notification, and which notifications an SNS filter policy lets through.

Pure: the notification comes in as SNS hands it to a Lambda (`Records[].Sns`), the payload goes
out as a JSON-ready dict; posting it is the forwarder's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .text import MESSAGE_LIMIT, clip

TELEGRAM_LIMIT = 4096  # characters in one Telegram message (Bot API sendMessage `text`)
SLACK_LIMIT = 3000  # characters in one Slack section block's text
ATTRIBUTE_LIMIT = 300  # one attribute value, as forwarded
ATTRIBUTES_KEPT = 10  # SNS carries at most 10 message attributes


class Channel(StrEnum):
    SLACK = "slack"  # an incoming webhook URL
    TELEGRAM = "telegram"  # https://api.telegram.org/bot<token>/sendMessage and a chat id
    WEBHOOK = "webhook"  # any URL taking a JSON POST


class NoticeError(ValueError):
    """An SNS record that is not an alert notification."""


@dataclass(frozen=True)
class Notice:
    """One alert as SNS delivered it: the contract's subject, message and attributes."""

    subject: str
    message: str
    attributes: Mapping[str, str]

    @classmethod
    def from_sns(cls, record: Mapping[str, Any]) -> Notice:
        """The alert in one `Records[]` entry of an SNS-to-Lambda event; bounded whatever the
        record holds (it is whoever published to the topic)."""
        sns = record.get("Sns") if isinstance(record, Mapping) else None
        if not isinstance(sns, Mapping) or not isinstance(sns.get("Message"), str):
            raise NoticeError("not an SNS notification record")
        raw = sns.get("MessageAttributes")
        attributes: dict[str, str] = {}
        if isinstance(raw, Mapping):
            for name, value in list(raw.items())[:ATTRIBUTES_KEPT]:
                if isinstance(value, Mapping) and isinstance(value.get("Value"), str):
                    attributes[str(name)[:64]] = clip(value["Value"], ATTRIBUTE_LIMIT)
        subject = sns.get("Subject")
        return cls(
            subject=clip(subject if isinstance(subject, str) else "", 100),
            message=clip(sns["Message"], MESSAGE_LIMIT),
            attributes=attributes,
        )


def payload(channel: Channel, notice: Notice, *, chat_id: str = "") -> dict[str, Any]:
    """The JSON body to POST for `notice` on `channel`."""
    if channel is Channel.SLACK:
        # Incoming webhooks take `text` (the notification's fallback) and blocks
        # (https://api.slack.com/messaging/webhooks); mrkdwn code blocks keep the layout.
        body = clip(notice.message, SLACK_LIMIT - 8)
        return {
            "text": notice.subject,
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": notice.subject[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": f"```{body}```"}},
            ],
        }
    if channel is Channel.TELEGRAM:
        # Bot API sendMessage: plain text (no parse_mode, so nothing in it is markup).
        text = clip(f"{notice.subject}\n\n{notice.message}", TELEGRAM_LIMIT)
        return {"chat_id": chat_id, "text": text, "disable_web_page_preview": True}
    return {"subject": notice.subject, "message": notice.message, **notice.attributes}


def policy_matches(policy: Mapping[str, Any], attributes: Mapping[str, str]) -> bool:
    """Whether SNS would deliver a message with these attributes to a subscription with this
    filter policy (message-attribute scope): every key must match one of its conditions, a
    string, `{"prefix": ...}` or `{"anything-but": [...]}`; `$or` takes any of its policies."""
    for key, conditions in policy.items():
        if key == "$or":
            if not any(policy_matches(p, attributes) for p in conditions):
                return False
            continue
        value = attributes.get(key)
        if value is None or not any(_condition_holds(c, value) for c in conditions):
            return False
    return True


def _condition_holds(condition: object, value: str) -> bool:
    if isinstance(condition, str):
        return condition == value
    if isinstance(condition, Mapping):
        if "prefix" in condition:
            return value.startswith(str(condition["prefix"]))
        if "anything-but" in condition:
            excluded = condition["anything-but"]
            return value not in (excluded if isinstance(excluded, list) else [excluded])
    return False
