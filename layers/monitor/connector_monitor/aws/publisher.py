"""The alert publisher: one SNS message per alert, with the contract's filterable attributes."""

from __future__ import annotations

from typing import Any

from ..domain.alerts import Alert
from ..ports.alerts import PublishError
from . import clients

__all__ = ["AlertPublisher", "PublishError"]


class AlertPublisher:
    """Implements `publishing.Publisher` over one SNS topic."""

    def __init__(self, topic_arn: str, *, client: Any | None = None) -> None:
        self.topic_arn = topic_arn
        self._client = client or clients.client("sns")
        self.calls = 0

    def publish(self, alert: Alert) -> str:
        """Send one alert; returns SNS's message id."""
        self.calls += 1
        try:
            answer = self._client.publish(
                TopicArn=self.topic_arn,
                Subject=alert.subject,
                Message=alert.message,
                MessageAttributes={
                    name: {"DataType": "String", "StringValue": value}
                    for name, value in alert.attributes.items()
                },
            )
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            raise PublishError(f"SNS publish of {alert.event.value} failed: {code}") from None
        return str(answer.get("MessageId", ""))
