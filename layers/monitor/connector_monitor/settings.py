"""Settings of the functions, validated once at the handler's entry from the environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .domain.transitions import Thresholds

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
Model = TypeVar("Model", bound=BaseModel)


class SettingsError(Exception):
    """A missing or malformed environment variable: one clear message at start-up."""


class CheckerSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    targets: str = Field(alias="TARGETS", default="")
    secret_id: str = Field(alias="SECRET_ID", min_length=1)
    table_name: str = Field(alias="TABLE_NAME", min_length=1)
    tokens_table: str = Field(alias="TOKENS_TABLE", default="")  # a fleet's pairs; "": none
    topic_arn: str = Field(alias="TOPIC_ARN", min_length=1)
    failure_threshold: int = Field(alias="FAILURE_THRESHOLD", default=2, ge=1, le=100)
    recovery_threshold: int = Field(alias="RECOVERY_THRESHOLD", default=1, ge=1, le=100)
    renotify_minutes: int = Field(alias="RENOTIFY_MINUTES", default=0, ge=0)
    history_days: int = Field(alias="HISTORY_DAYS", default=30, ge=1, le=3650)
    validate_every_minutes: int = Field(alias="VALIDATE_EVERY_MINUTES", default=240, ge=1)
    # Discovery probes a portal may be asked per run (1,000: 20 requests of the bucket's 50).
    discovery_probes: int = Field(alias="DISCOVERY_PROBES_PER_RUN", default=1000, ge=1, le=10_000)
    max_parallel_portals: int = Field(alias="MAX_PARALLEL_PORTALS", default=32, ge=1, le=64)
    schedule_expression: str = Field(alias="SCHEDULE_EXPRESSION", default="rate(5 minutes)")
    # Fan-out: with a work queue, a run of more portals than SHARD_PORTALS is split into shards.
    work_queue_url: str = Field(alias="WORK_QUEUE_URL", default="")
    shard_portals: int = Field(alias="SHARD_PORTALS", default=2000, ge=10, le=100_000)
    # A PEM file of the authorities portals' certificates are checked against, instead of the
    # public CAs: for the local portal and tests only, never set on AWS.
    portal_ca_bundle: str = Field(alias="PORTAL_CA_BUNDLE", default="")

    @field_validator("portal_ca_bundle")
    @classmethod
    def _readable_bundle(cls, path: str) -> str:
        if path and not Path(path).is_file():
            raise ValueError(f"no CA bundle at {path}")
        return path

    @property
    def interval(self) -> timedelta:
        """The schedule's interval (5 minutes for a cron expression: the stale limit's guess)."""
        return schedule_interval(self.schedule_expression) or timedelta(minutes=5)

    @property
    def thresholds(self) -> Thresholds:
        renotify = timedelta(minutes=self.renotify_minutes) if self.renotify_minutes else None
        return Thresholds(self.failure_threshold, self.recovery_threshold, renotify)

    @property
    def history(self) -> timedelta:
        return timedelta(days=self.history_days)

    @property
    def validate_every(self) -> timedelta:
        return timedelta(minutes=self.validate_every_minutes)


class SnapshotSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    table_name: str = Field(alias="TABLE_NAME", min_length=1)
    schedule_expression: str = Field(alias="SCHEDULE_EXPRESSION", default="rate(5 minutes)")
    stale_after_seconds: int = Field(alias="STALE_AFTER_SECONDS", default=0, ge=0)

    @property
    def stale_after(self) -> timedelta:
        """Twice the schedule interval unless set explicitly (needed for cron schedules)."""
        if self.stale_after_seconds:
            return timedelta(seconds=self.stale_after_seconds)
        interval = schedule_interval(self.schedule_expression)
        return 2 * (interval or timedelta(minutes=5))


def schedule_interval(expression: str) -> timedelta | None:
    """The interval of a `rate(...)` schedule; None for cron expressions."""
    match = _RATE.match(expression.strip())
    if not match:
        return None
    amount, unit = int(match.group(1)), match.group(2).rstrip("s")
    return timedelta(seconds=amount * _UNIT_SECONDS[unit])


def load_settings(model: type[Model], environ: Mapping[str, str]) -> Model:
    try:
        return model.model_validate(dict(environ))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from None


# The authorisation servers of both regions (bitrix24/b24restdocs settings/oauth/index.md).
AUTH_SERVERS = "https://oauth.bitrix.info/rest/,https://oauth.bitrix24.tech/rest/"


class InboundSettings(BaseModel):
    """The inbound function's: where installs are kept and notices go, whom it trusts."""

    model_config = ConfigDict(frozen=True)

    secret_id: str = Field(alias="SECRET_ID", min_length=1)
    tokens_table: str = Field(alias="TOKENS_TABLE", min_length=1)
    topic_arn: str = Field(alias="TOPIC_ARN", min_length=1)
    operations_topic_arn: str = Field(alias="OPERATIONS_TOPIC_ARN", min_length=1)
    # The handler's base URL as the stack prints it (…/app/<unguessable segment>): the events
    # are bound to <this>/events.
    inbound_url: str = Field(alias="INBOUND_URL", min_length=1)
    auth_servers: str = Field(alias="AUTH_SERVERS", default=AUTH_SERVERS)
    # As the checker's: the local portal's authority, for tests and local runs only.
    portal_ca_bundle: str = Field(alias="PORTAL_CA_BUNDLE", default="")

    @property
    def trusted_servers(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.auth_servers.split(",") if s.strip())

    @property
    def events_url(self) -> str:
        return self.inbound_url.rstrip("/") + "/events"
