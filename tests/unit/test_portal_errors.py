"""Every Bitrix24 error code of REST-NOTES.md maps to what the monitor does about it."""

from __future__ import annotations

import pytest

from connector_monitor.domain.portal_errors import ErrorKind, PortalError, classify
from connector_monitor.domain.results import Cause

# (HTTP status as documented or as an SDK variant reports it, code, kind)
DOCUMENTED = [
    (500, "INTERNAL_SERVER_ERROR", ErrorKind.PORTAL_FAILING),
    (500, "ERROR_UNEXPECTED_ANSWER", ErrorKind.PORTAL_FAILING),
    (503, "QUERY_LIMIT_EXCEEDED", ErrorKind.RATE_LIMITED),
    (429, "OPERATION_TIME_LIMIT", ErrorKind.RATE_LIMITED),
    (503, "OVERLOAD_LIMIT", ErrorKind.PORTAL_UNAVAILABLE),
    (401, "expired_token", ErrorKind.TOKEN_EXPIRED),
    (401, "invalid_token", ErrorKind.TOKEN_EXPIRED),  # refreshed once, like expired_token
    (401, "NO_AUTH_FOUND", ErrorKind.AUTH_LOST),
    (401, "AUTHORIZATION_ERROR", ErrorKind.AUTH_LOST),
    (401, "APPLICATION_NOT_FOUND", ErrorKind.AUTH_LOST),
    (401, "ERROR_OAUTH", ErrorKind.AUTH_LOST),
    (401, "NOT_INSTALLED", ErrorKind.AUTH_LOST),
    (400, "invalid_grant", ErrorKind.AUTH_LOST),
    (400, "invalid_client", ErrorKind.AUTH_LOST),
    (401, "invalid_client", ErrorKind.AUTH_LOST),
    (200, "wrong_client", ErrorKind.AUTH_LOST),
    (403, "ACCESS_DENIED", ErrorKind.ACCESS_DENIED),
    (400, "ACCESS_DENIED", ErrorKind.ACCESS_DENIED),
    (403, "INVALID_CREDENTIALS", ErrorKind.ACCESS_DENIED),
    (401, "INVALID_CREDENTIALS", ErrorKind.ACCESS_DENIED),
    (403, "insufficient_scope", ErrorKind.ACCESS_DENIED),
    (401, "insufficient_scope", ErrorKind.ACCESS_DENIED),
    (403, "user_access_error", ErrorKind.ACCESS_DENIED),
    (403, "WRONG_AUTH_TYPE", ErrorKind.ACCESS_DENIED),
    (400, "ERROR_CORE", ErrorKind.PORTAL_FAILING),  # core rest/lib/restexception.php
    (500, "ERROR_CORE", ErrorKind.PORTAL_FAILING),  # ... for an SQL error
    (401, "CONNECTION_ERROR", ErrorKind.PORTAL_FAILING),  # core rest/lib/oauth/auth.php
    (402, "PAYMENT_REQUIRED", ErrorKind.ACCESS_DENIED),
    (401, "PAYMENT_REQUIRED", ErrorKind.ACCESS_DENIED),
    (400, "INVALID_REQUEST", ErrorKind.BAD_REQUEST),
    (400, "ERROR_BATCH_LENGTH_EXCEEDED", ErrorKind.BAD_REQUEST),
    (405, "ERROR_BATCH_METHOD_NOT_ALLOWED", ErrorKind.BAD_REQUEST),
    (404, "ERROR_MANIFEST_IS_NOT_AVAILABLE", ErrorKind.BAD_REQUEST),
    (400, "ERROR_ARGUMENT", ErrorKind.BAD_REQUEST),
    (400, "CONNECTOR", ErrorKind.BAD_REQUEST),
    (500, "PORTAL_DELETED", ErrorKind.PORTAL_UNAVAILABLE),  # the docs' reading
    (403, "PORTAL_DELETED", ErrorKind.PORTAL_UNAVAILABLE),  # core rest/classes/general/rest.php
    (410, "PORTAL_DELETED", ErrorKind.PORTAL_UNAVAILABLE),
]


@pytest.mark.parametrize(("http_status", "code", "kind"), DOCUMENTED)
def test_documented_code_maps_to_its_kind(http_status: int, code: str, kind: ErrorKind) -> None:
    assert classify(code, http_status) is kind


@pytest.mark.parametrize(("http_status", "code", "kind"), DOCUMENTED)
def test_code_decides_without_a_status(http_status: int, code: str, kind: ErrorKind) -> None:
    # Inside a batch, a failed command has a code but no HTTP status of its own.
    assert classify(code, None) is kind


@pytest.mark.parametrize(("http_status", "code", "kind"), DOCUMENTED)
def test_codes_match_in_any_case(http_status: int, code: str, kind: ErrorKind) -> None:
    assert classify(code.swapcase(), http_status) is kind


@pytest.mark.parametrize(
    ("http_status", "kind"),
    [
        (401, ErrorKind.AUTH_LOST),
        (402, ErrorKind.ACCESS_DENIED),
        (403, ErrorKind.ACCESS_DENIED),
        (404, ErrorKind.BAD_REQUEST),
        (500, ErrorKind.PORTAL_FAILING),
        (502, ErrorKind.PORTAL_FAILING),
        (503, ErrorKind.PORTAL_FAILING),
        (200, ErrorKind.BAD_ANSWER),
        (None, ErrorKind.BAD_ANSWER),
    ],
)
def test_without_a_code_the_status_decides(http_status: int | None, kind: ErrorKind) -> None:
    assert classify(None, http_status) is kind


def test_unknown_code_on_a_limit_status_backs_off() -> None:
    assert classify("SOME_NEW_LIMIT", 429) is ErrorKind.RATE_LIMITED
    assert classify("SOME_NEW_LIMIT", 503) is ErrorKind.RATE_LIMITED


@pytest.mark.parametrize(
    ("kind", "cause"),
    [
        (ErrorKind.TOKEN_EXPIRED, Cause.AUTH_LOST),
        (ErrorKind.AUTH_LOST, Cause.AUTH_LOST),
        (ErrorKind.ACCESS_DENIED, Cause.ACCESS_DENIED),
        (ErrorKind.RATE_LIMITED, Cause.RATE_LIMITED),
        (ErrorKind.PORTAL_FAILING, Cause.PORTAL_FAILING),
        (ErrorKind.PORTAL_UNAVAILABLE, Cause.PORTAL_FAILING),
        (ErrorKind.BAD_ANSWER, Cause.BAD_ANSWER),
        (ErrorKind.BAD_REQUEST, Cause.BAD_REQUEST),
    ],
)
def test_every_kind_leaves_a_target_unknown_with_a_cause(kind: ErrorKind, cause: Cause) -> None:
    assert kind.cause is cause


def test_only_rate_limits_and_failing_portals_are_retried() -> None:
    assert {k for k in ErrorKind if k.retryable} == {
        ErrorKind.RATE_LIMITED,
        ErrorKind.PORTAL_FAILING,
    }


def test_error_detail_names_portal_code_status_and_advice() -> None:
    err = PortalError(
        ErrorKind.ACCESS_DENIED,
        "a.bitrix24.com",
        code="WRONG_AUTH_TYPE",
        description="Application context required",
        http_status=403,
    )
    assert err.detail == (
        "a.bitrix24.com: access_denied (WRONG_AUTH_TYPE: Application context required; HTTP 403)"
        " - check the application's scope, plan, payment and user access"
    )
    assert str(err) == err.summary


def test_error_description_is_cut_to_one_readable_line() -> None:
    err = PortalError(ErrorKind.BAD_ANSWER, "a.bitrix24.com", description="x" * 5000)
    assert len(err.description) == 300
