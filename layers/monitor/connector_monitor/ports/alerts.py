"""The alert channel port: where a decided alert is published."""

from __future__ import annotations

from typing import Protocol

from ..domain.alerts import Alert


class PublishError(Exception):
    """The alert was not taken; it stays pending for the next run."""


class Publisher(Protocol):
    def publish(self, alert: Alert) -> str:
        """Send one alert; the channel's message id. Raises PublishError."""
        ...
