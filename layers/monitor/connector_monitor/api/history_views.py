"""The history routes' JSON contract (`GET /history/...`): pydantic models, also the source of
openapi.json. No logic here; `history_service` fills them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .views import Timestamp


class UptimeView(BaseModel):
    model_config = ConfigDict(frozen=True)

    window: Literal["24h", "7d", "30d"]
    percent: float | None = Field(
        description="Up time over the time the monitor could see (up + down), in %, rounded "
        "to 3 decimals; null when it saw nothing of the window"
    )
    up_seconds: int = Field(ge=0)
    down_seconds: int = Field(ge=0, description="Time in DOWN incidents, blind time excluded")
    blind_seconds: int = Field(
        ge=0,
        description="Time the monitor could not see (check.failed .. check.recovered): "
        "counted apart, neither up nor down",
    )
    blind_percent: float = Field(ge=0, le=100, description="Blind share of the window, in %")


class IncidentView(BaseModel):
    model_config = ConfigDict(frozen=True)

    portal: str
    connector: str
    line: int
    kind: Literal["DOWN", "BLIND"] = Field(
        description="DOWN: the connector did not work (connector.down .. connector.recovered). "
        "BLIND: the monitor could not see (check.failed .. check.recovered)"
    )
    cause: str = Field(
        description="connector_down for DOWN; for BLIND why the monitor could not see "
        "(auth_lost, access_denied, rate_limited, portal_failing, ...)"
    )
    start: Timestamp = Field(description="The first bad answer")
    end: Timestamp | None = Field(description="The recovery; null while open")
    duration_seconds: int = Field(ge=0, description="Until the end, or until now while open")
    open: bool
    no_longer_monitored: bool = Field(
        description="Closed because the target left the configuration while it was open"
    )


class DayView(BaseModel):
    model_config = ConfigDict(frozen=True)

    date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="The UTC day")
    mark: Literal["up", "down", "blind"] = Field(
        description="down: some downtime; blind: no downtime, some time unseen; up: neither"
    )
    percent: float | None = Field(description="That day's uptime % (as in UptimeView)")


class TargetHistoryView(BaseModel):
    model_config = ConfigDict(frozen=True)

    portal: str
    connector: str
    line: int
    state: Literal["UP", "DOWN", "UNKNOWN"] | None = Field(
        description="The latest state; null when the target is no longer watched"
    )
    uptime: list[UptimeView] = Field(description="Over the last 24 h, 7 d and 30 d")
    days: list[DayView] = Field(description="The last 30 UTC days, oldest first")
    incidents: list[IncidentView] = Field(description="The last 30 days', newest first")


class PortalHistoryView(BaseModel):
    model_config = ConfigDict(frozen=True)

    generated_at: Timestamp
    portal: str
    uptime: list[UptimeView] = Field(
        description="Over all its watched targets together (target-time added up)"
    )
    days: list[DayView] = Field(description="The worst mark of its targets, per day")
    targets: list[TargetHistoryView] = Field(description="In key order")
    incidents: list[IncidentView] = Field(description="Every target's, newest first")
    truncated: bool = Field(
        description="True when the portal has more targets than one answer reads (the first "
        "ones in key order are answered)"
    )
