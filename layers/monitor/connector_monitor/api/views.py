"""The API's contract: the JSON bodies it answers, as pydantic models that are also the source
of openapi.json (`python -m local.openapi`). No logic here; the services fill them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..domain.text import DETAIL_LIMIT, NAME_LIMIT
from .errors import ErrorCode

SILENCE_MINUTES_LIMIT = 90 * 24 * 60  # a silence lasts 90 days at most

Timestamp = Annotated[
    str,
    Field(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$",
        description="UTC, to the second: YYYY-MM-DDTHH:MM:SSZ",
        examples=["2026-11-24T12:00:01Z"],
    ),
]


class Summary(BaseModel):
    model_config = ConfigDict(frozen=True)

    total: int = Field(ge=0)
    up: int = Field(ge=0)
    down: int = Field(ge=0)
    unknown: int = Field(ge=0)


class LabelsView(BaseModel):
    """A portal's client labels, as set in the registry (every field optional)."""

    client: str | None = Field(default=None, max_length=80, description="The client's name")
    owner: str | None = Field(default=None, max_length=80, description="Who looks after it")
    tier: str | None = Field(default=None, max_length=80, description="e.g. gold, standard")
    runbook: str | None = Field(
        default=None, max_length=500, description="An https:// URL of the client's runbook"
    )


class TargetView(BaseModel):
    """One target's latest state."""

    model_config = ConfigDict(frozen=True)

    portal: str = Field(description="The portal's domain", examples=["example.bitrix24.com"])
    connector: str = Field(description="The connector id (lowercase)", examples=["myconnector"])
    line: int = Field(gt=0, description="The open line id", examples=[12])
    state: Literal["UP", "DOWN", "UNKNOWN"] = Field(
        description="UP: STATUS true. DOWN: the portal answered and STATUS is not true. "
        "UNKNOWN: the monitor could not get an answer (detail says why)."
    )
    status: bool | None = Field(description="STATUS as the portal answered it; null if UNKNOWN")
    configured: bool | None = Field(description="CONFIGURED as answered; null if UNKNOWN")
    error: bool | None = Field(description="ERROR as answered; null if UNKNOWN")
    since: Timestamp = Field(description="When the state last changed")
    checked_at: Timestamp = Field(description="When the target was last checked")
    detail: str | None = Field(
        max_length=DETAIL_LIMIT,
        description=f"Why the target is DOWN or UNKNOWN (at most {DETAIL_LIMIT} characters, a cut "
        "marked with an ellipsis); null when UP",
    )
    line_name: str | None = Field(
        default=None,
        max_length=NAME_LIMIT,
        description="The open line's name as the portal lists it (imopenlines.config.list.get "
        "LINE_NAME); null before the monitor has read the portal's inventory or when unnamed",
        examples=["Support"],
    )
    labels: LabelsView | None = Field(
        default=None,
        description="The portal's client labels, set in the registry (PUT "
        "/registry/labels/{portal} or `monitorctl targets label`); null when none",
    )


class SnapshotView(BaseModel):
    model_config = ConfigDict(frozen=True)

    generated_at: Timestamp = Field(description="When this answer was made")
    last_run_at: Timestamp | None = Field(
        description="When the last check run finished; null before the first run"
    )
    stale: bool = Field(
        description="True when there was no run yet or the last run is older than the "
        "staleness limit (twice the schedule interval unless set)"
    )
    summary: Summary = Field(
        description="Counts over the whole selection (the filters, every page), not only this "
        "page: counted from the answer when it holds the whole selection, else read from the "
        "stored statuses (the selection's items, on every page of a paged answer)."
    )
    targets: list[TargetView] = Field(description="In key order (portal/connector/line)")
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last page. A page may "
        "hold fewer than `limit` targets while next_cursor is not null."
    )


class HealthView(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: Literal["ok", "degraded", "blind"] = Field(
        description="ok: runs finish in time and the monitor sees most targets; degraded: it "
        "cannot see (UNKNOWN) half of them or more; blind: it sees none. 200 in each case: "
        "the monitor runs (503 is STALE or RUN_FAILED)."
    )
    last_run_at: Timestamp
    stale: Literal[False]
    targets: Summary = Field(description="Counts of the last run, over the whole fleet")
    unknown_share: float = Field(
        ge=0,
        le=1,
        description="The share of the last run's targets the monitor could not see (UNKNOWN)",
    )


class RegistryEntryView(BaseModel):
    """One entry of the target registry."""

    model_config = ConfigDict(frozen=True)

    key: str = Field(
        description="portal/connector/line; line * is every line where the connector has been "
        "seen configured, and portal * (with line *) is every portal the monitor has tokens for",
        examples=["example.bitrix24.com/myconnector/12", "*/myconnector/*"],
    )
    portal: str = Field(description="A portal domain, or *")
    connector: str = Field(description="The connector id (lowercase)")
    line: str = Field(description="An open line id in digits, or *")
    added_at: Timestamp | None = Field(description="When it was added")
    added_by: str | None = Field(description="Who added it: the caller's IAM ARN, or the CLI user")
    problem: str | None = Field(
        default=None,
        description="Why a stored entry is not usable (an item written by hand); null if usable",
    )


class PortalLabelsView(BaseModel):
    """A portal's labels as stored."""

    portal: str = Field(description="The portal's domain")
    labels: LabelsView


class RegistryView(BaseModel):
    model_config = ConfigDict(frozen=True)

    entries: list[RegistryEntryView] = Field(description="In key order")
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null last")


class SilenceRequest(BaseModel):
    """A new silence: what it matches (at least a portal, a connector or a cause), until when
    (`until`, or `minutes` from now) and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    portal: str | None = Field(default=None, max_length=253, examples=["client.bitrix24.com"])
    connector: str | None = Field(default=None, max_length=100, examples=["myconnector"])
    line: int | None = Field(
        default=None, gt=0, description="An open line (with portal and connector)"
    )
    cause: str | None = Field(
        default=None,
        max_length=40,
        description="Why the monitor cannot see (the history's cause): auth_lost, "
        "access_denied, rate_limited, portal_failing, configuration, ...",
    )
    until: Timestamp | None = Field(default=None, description="When the silence ends")
    minutes: int | None = Field(
        default=None, gt=0, le=SILENCE_MINUTES_LIMIT, description="Or: how long from now"
    )
    why: str = Field(min_length=1, max_length=500, examples=["planned upgrade of the bridge"])


class SilenceView(BaseModel):
    """A silence: while active, the alerts of the targets it matches are held (recorded, not
    published); when it ends a target still down is announced once."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Pass to DELETE /silences/{id}")
    portal: str | None = Field(description="The portal matched; null: any")
    connector: str | None = Field(description="The connector matched; null: any")
    line: int | None = Field(description="The open line matched; null: any")
    cause: str | None = Field(description="The cause matched; null: any")
    created_at: Timestamp
    until: Timestamp
    active: bool = Field(description="Holding alerts now (ended silences are listed a week)")
    by: str = Field(description="Who made it: the caller's IAM ARN, or the CLI user")
    why: str


class SilencesView(BaseModel):
    model_config = ConfigDict(frozen=True)

    silences: list[SilenceView] = Field(description="Oldest first")


class AcknowledgementView(BaseModel):
    model_config = ConfigDict(frozen=True)

    target: str = Field(description="portal/connector/line")
    incident_since: Timestamp = Field(description="When the acknowledged outage began")
    acknowledged_by: str
    acknowledged_at: Timestamp


class ErrorView(BaseModel):
    """Every error answer: a stable code for scripts and a sentence for people."""

    model_config = ConfigDict(frozen=True)

    error: ErrorCode = Field(
        description="400: BAD_FILTER, BAD_CURSOR, BAD_TARGET, BAD_REQUEST; 404: NOT_FOUND; "
        "405: METHOD_NOT_ALLOWED; 415: UNSUPPORTED_MEDIA_TYPE (a body that is not JSON); "
        "500: INTERNAL; 503: STALE or RUN_FAILED (GET /health), UNAVAILABLE"
    )
    message: str
