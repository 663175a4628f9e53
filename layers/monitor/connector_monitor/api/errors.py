"""The API's errors: a stable code for each kind of answer that is not a success, and the
exceptions the services raise (the resolver maps each code to its HTTP status)."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    BAD_FILTER = "BAD_FILTER"  # a query parameter (state, portal, limit) is not valid
    BAD_CURSOR = "BAD_CURSOR"  # the cursor is not one this API handed out for this selection
    BAD_TARGET = "BAD_TARGET"  # the path does not name a target (portal, connector, line)
    BAD_REQUEST = "BAD_REQUEST"  # any other malformed request
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"  # a body that is not application/json
    NOT_FOUND = "NOT_FOUND"  # no such route, or no such target
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    STALE = "STALE"  # /health: no run yet, or the last run is too old
    RUN_FAILED = "RUN_FAILED"  # /health: the last run could check nothing (TARGETS unusable)
    UNAVAILABLE = "UNAVAILABLE"  # the state store could not be read; retry later
    INTERNAL = "INTERNAL"


class ApiError(Exception):
    """A request the API cannot answer with what was asked for; `code` says why."""

    code = ErrorCode.BAD_REQUEST

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadFilter(ApiError):
    code = ErrorCode.BAD_FILTER


class BadCursor(ApiError):
    code = ErrorCode.BAD_CURSOR


class BadTarget(ApiError):
    code = ErrorCode.BAD_TARGET


class NotFound(ApiError):
    code = ErrorCode.NOT_FOUND


class Stale(ApiError):
    code = ErrorCode.STALE


class RunFailed(ApiError):
    code = ErrorCode.RUN_FAILED
