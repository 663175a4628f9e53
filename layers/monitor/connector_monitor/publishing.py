"""Delivering pending alerts: claim, publish, acknowledge. At least once, and never twice while
a claim holds: a run publishes only the alerts of items it has claimed, and an alert leaves the
pending set only after SNS took it.

Alerts are sent grouped (`domain.alerts.combine`): one message per portal, event and cause,
or one across the fleet. A message carries its members' alerts; each is acknowledged on its
own target once SNS took the message, and a message SNS refused leaves all of them pending, to
be grouped again and sent by the next run. A run groups only what it has claimed, so no alert
is in two runs' messages."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .domain.alerts import combine
from .domain.client_context import NO_CONTEXT, AlertContext
from .domain.transitions import TargetStatus
from .ports.alerts import Publisher, PublishError
from .ports.state_store import Claim, StateStore, StateStoreError

logger = logging.getLogger(__name__)


@dataclass
class DeliveryReport:
    published: int = 0  # alerts (not messages) that SNS took
    messages: int = 0  # messages SNS took (a grouped one carries several alerts)
    pending: int = 0  # alerts left for the next run
    failures: list[str] = field(default_factory=list)
    cleared: set[str] = field(default_factory=set)  # keys with nothing pending any more


@dataclass
class AlertDelivery:
    """One run's delivery of pending alerts: claim, publish, acknowledge."""

    repository: StateStore
    publisher: Publisher
    run_id: str
    claim_for: timedelta
    context: AlertContext = NO_CONTEXT  # how grouped messages name clients and lines

    def deliver(
        self,
        statuses: dict[str, TargetStatus],
        ours: set[str],
        claims: dict[str, Claim],
        now: datetime,
    ) -> DeliveryReport:
        """Publish every pending alert this run may publish; `ours` are keys already claimed,
        `claims` the claims other runs held when this one loaded the statuses."""
        delivery = DeliveryReport()
        mine = self._claim_leftovers(statuses, ours, claims, now)
        published = self._publish(mine, delivery)
        self._acknowledge(mine, published, delivery)
        delivery.pending = sum(len(s.pending) for s in statuses.values()) - delivery.published
        return delivery

    def _claim_leftovers(
        self,
        statuses: dict[str, TargetStatus],
        ours: set[str],
        claims: dict[str, Claim],
        now: datetime,
    ) -> dict[str, TargetStatus]:
        """Our freshly stored alerts, plus earlier runs' unpublished ones nobody is sending."""
        mine = {key: statuses[key] for key in ours}
        for key, status in statuses.items():
            if key in mine or not status.pending:
                continue
            held = claims.get(key)
            if held and held.held_against(self.run_id, now):
                continue
            claimed = self.repository.claim(status, Claim(self.run_id, now + self.claim_for), now)
            if claimed is not None:
                mine[key] = claimed
        return mine

    def _publish(
        self, mine: dict[str, TargetStatus], delivery: DeliveryReport
    ) -> dict[str, set[str]]:
        """Send the messages; the ids of the alerts SNS took, by target key."""
        owner = {alert.id: key for key, status in mine.items() for alert in status.pending}
        published: dict[str, set[str]] = {key: set() for key in mine}
        pending = [a for s in mine.values() for a in s.pending]
        for message, members in combine(pending, self.context):
            try:
                self.publisher.publish(message)
            except PublishError as exc:
                delivery.failures.append(str(exc))
                logger.error(
                    "alert not published; it stays pending", extra={"alert_id": message.id}
                )
                continue
            for alert in members:
                published[owner[alert.id]].add(alert.id)
            delivery.published += len(members)
            delivery.messages += 1
            logger.info(
                "alert published",
                extra={
                    "event": message.event.value,
                    "alert_id": message.id,
                    "cause": message.reason,
                    "alerts": len(members),
                },
            )
        return published

    def _acknowledge(
        self,
        mine: dict[str, TargetStatus],
        published: dict[str, set[str]],
        delivery: DeliveryReport,
    ) -> None:
        """Remove what was published and release our claims; one failure spares the others."""
        failed: StateStoreError | None = None
        for key, status in mine.items():
            try:
                if not self.repository.acknowledge(status, self.run_id, published[key]):
                    logger.warning("claim lost before acknowledging alerts", extra={"target": key})
                elif published[key] >= {alert.id for alert in status.pending}:
                    delivery.cleared.add(key)
            except StateStoreError as exc:
                failed = exc
        if failed is not None:
            raise failed
