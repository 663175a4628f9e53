"""What a Bitrix24 portal looks like on the wire: error table, faults, parameter parsing."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl

from local.bitrix24_portal.recorded import recorded_errors

DEMO_DOMAIN = "demo.bitrix24.local"
BATCH_LIMIT = 50
LIST_LIMIT = 200
DEFAULT_TIMEOUT_HOLD = 30.0
DEFAULT_TRICKLE_PACE = 2.0
HUGE_BODY_BYTES = 100 * 1024 * 1024
BOMB_EXPANDED_BYTES = 200 * 1024 * 1024
HUGE_CODE_CHARS = 450 * 1024
MOVED_TO = "moved.bitrix24.com"
JSON_TYPE = "application/json; charset=utf-8"


class PortalFault(StrEnum):
    """A fault `LocalPortal.inject` can serve. Accepts raw strings, case-insensitively."""

    EXPIRED_TOKEN = "expired_token"
    INVALID_TOKEN = "invalid_token"
    NO_AUTH_FOUND = "NO_AUTH_FOUND"
    AUTHORIZATION_ERROR = "AUTHORIZATION_ERROR"
    APPLICATION_NOT_FOUND = "APPLICATION_NOT_FOUND"
    ERROR_OAUTH = "ERROR_OAUTH"
    NOT_INSTALLED = "NOT_INSTALLED"
    INVALID_GRANT = "invalid_grant"
    INVALID_CLIENT = "invalid_client"
    WRONG_CLIENT = "wrong_client"
    QUERY_LIMIT_EXCEEDED = "QUERY_LIMIT_EXCEEDED"
    OPERATION_TIME_LIMIT = "OPERATION_TIME_LIMIT"
    OVERLOAD_LIMIT = "OVERLOAD_LIMIT"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
    ERROR_UNEXPECTED_ANSWER = "ERROR_UNEXPECTED_ANSWER"
    WRONG_AUTH_TYPE = "WRONG_AUTH_TYPE"
    ACCESS_DENIED = "ACCESS_DENIED"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    USER_ACCESS_ERROR = "user_access_error"
    PAYMENT_REQUIRED = "PAYMENT_REQUIRED"
    PORTAL_DELETED = "PORTAL_DELETED"
    INVALID_REQUEST = "INVALID_REQUEST"
    ERROR_CORE = "ERROR_CORE"
    CONNECTION_ERROR = "CONNECTION_ERROR"
    ERROR_METHOD_NOT_FOUND = "ERROR_METHOD_NOT_FOUND"
    ERROR_BATCH_LENGTH_EXCEEDED = "ERROR_BATCH_LENGTH_EXCEEDED"
    ERROR_BATCH_METHOD_NOT_ALLOWED = "ERROR_BATCH_METHOD_NOT_ALLOWED"
    ERROR_MANIFEST_IS_NOT_AVAILABLE = "ERROR_MANIFEST_IS_NOT_AVAILABLE"
    ERROR_ARGUMENT = "ERROR_ARGUMENT"
    # transport faults
    TIMEOUT = "timeout"
    DROP = "drop"
    HTML = "html"
    TRUNCATED = "truncated"
    NOT_JSON = "not_json"
    WRONG_SHAPE = "wrong_shape"
    HTTP_500 = "http_500"
    HTTP_502 = "http_502"
    HTTP_503 = "http_503"
    # hostile answers: what a broken or malicious host can send
    TRICKLE = "trickle"  # one byte every `delay` s (default 2), from the status line on, forever
    HUGE = "huge"  # a 100 MB body with no Content-Length, streamed until the client gives up
    GZIP_BOMB = "gzip_bomb"  # a ~200 KB gzip body that expands to 200 MB
    HUGE_ERROR_CODE = "huge_error_code"  # an error whose code is 450 KB long
    ECHO_TOKEN = "echo_token"  # every batch command fails, echoing the token JSON-escaped
    REDIRECT = "redirect"  # 302 to another host

    @classmethod
    def _missing_(cls, value: object) -> PortalFault | None:
        if isinstance(value, str):
            wanted = value.strip().lower()
            for member in cls:
                if wanted in (member.value.lower(), member.name.lower()):
                    return member
        return None

    @property
    def is_transport(self) -> bool:
        return self.value not in ERRORS

    @property
    def http_status(self) -> int:
        """The HTTP status this fault answers with (transport faults: the status line they send)."""
        if self.value in ERRORS:
            return ERRORS[self.value][0]
        return {"html": 502, "http_500": 500, "http_502": 502, "http_503": 503}.get(self.value, 200)


# code -> (HTTP status, error_description). Statuses as the core sends them (yuliai/bitrix-modules,
# the core's rest module): every failed auth check goes through OAuthException, 401
# (rest/lib/oauthexception.php), whatever the docs' table says (403 or 503 for some);
# AccessException 403; RestException 400 unless it names another status. Codes with a recorded
# answer under tests/fixtures/bitrix24/ take status and text from it (see `recorded.py`).
ERRORS: dict[str, tuple[int, str]] = {
    "expired_token": (401, "The access token provided has expired."),
    "invalid_token": (401, "The access token provided is invalid."),
    "NO_AUTH_FOUND": (401, "Wrong authorization data"),
    "AUTHORIZATION_ERROR": (401, "Authorization error"),
    "APPLICATION_NOT_FOUND": (401, "Application not found"),
    "ERROR_OAUTH": (401, "Application not installed"),
    "NOT_INSTALLED": (401, "Application not installed"),
    "CONNECTION_ERROR": (401, "Error connecting to authorization server"),
    "invalid_grant": (400, "Invalid grant: the refresh token is invalid, expired or used"),
    "invalid_client": (401, "Invalid client credentials"),
    "wrong_client": (200, "Wrong client"),
    "QUERY_LIMIT_EXCEEDED": (503, "Too many requests"),
    "OPERATION_TIME_LIMIT": (429, "Method is blocked due to operation time limit."),
    "OVERLOAD_LIMIT": (401, "REST API is blocked due to overload."),
    "INTERNAL_SERVER_ERROR": (500, "Internal server error"),
    "ERROR_UNEXPECTED_ANSWER": (500, "Server returned an unexpected response."),
    "WRONG_AUTH_TYPE": (
        403,
        "Current authorization type is denied for this method. Application context required",
    ),
    "ACCESS_DENIED": (401, "REST API is available only on commercial plans."),
    "INVALID_CREDENTIALS": (401, "Invalid request credentials"),
    "insufficient_scope": (401, "The request requires higher privileges than provided."),
    "user_access_error": (401, "The user does not have access to the application."),
    "PAYMENT_REQUIRED": (402, "Payment required"),
    "PORTAL_DELETED": (403, "Portal was deleted"),
    "INVALID_REQUEST": (400, "Https required."),
    "ERROR_CORE": (400, "Internal error"),
    "ERROR_METHOD_NOT_FOUND": (404, "Method not found!"),
    "ERROR_BATCH_LENGTH_EXCEEDED": (400, "Max batch length exceeded"),
    "ERROR_BATCH_METHOD_NOT_ALLOWED": (405, "Method is not allowed for batch usage"),
    "ERROR_MANIFEST_IS_NOT_AVAILABLE": (404, "Manifest is not available"),
    "ERROR_ARGUMENT": (400, "Argument 'CONNECTOR' is null or empty"),
}

ERRORS.update(recorded_errors())

NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


@dataclass
class Reply:
    """One answer. `stream` is sent after the head with no Content-Length (then the connection
    closes); with `pace`, every byte of the answer, head included, waits `pace` seconds."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None
    pace: float = 0.0


def endless(chunk: bytes) -> Iterator[bytes]:
    while True:
        yield chunk


def huge_body(size: int = HUGE_BODY_BYTES) -> Iterator[bytes]:
    """A JSON-looking body of `size` bytes, produced as it is sent (never held in memory)."""
    chunk = b" " * 65536
    yield b'{"result": "'
    for _ in range(size // len(chunk)):
        yield chunk
    yield b'"}'


_BOMB: bytes | None = None


def gzip_bomb() -> bytes:
    """A gzip body of about 200 KB that expands to 200 MB of JSON-looking bytes (made once)."""
    global _BOMB
    if _BOMB is None:
        squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        zeros = b" " * (1024 * 1024)
        parts = [squeeze.compress(b'{"result": "')]
        parts += [squeeze.compress(zeros) for _ in range(BOMB_EXPANDED_BYTES // len(zeros))]
        parts += [squeeze.compress(b'"}'), squeeze.flush()]
        _BOMB = b"".join(parts)
    return _BOMB


def echo_token(method: str, params: dict[str, Any], token: str) -> Reply:
    """A portal that quotes the caller's token back, JSON-escaped so the bytes differ: in every
    batch command's error_description, or in the error of a single call."""
    echoed = json_escaped(token)
    error = '{"error": "INVALID_REQUEST", "error_description": "token ' + echoed + ' refused"}'
    if method != "batch":
        return Reply(400, error.encode())
    commands = params.get("cmd") or {}
    names = list(commands) if isinstance(commands, dict) else [str(i) for i in range(len(commands))]
    errors = ", ".join(f"{json.dumps(str(name))}: {error}" for name in names)
    body = '{"result": {"result": [], "result_error": {' + errors + "}}}"
    return Reply(200, body.encode())


def json_escaped(text: str) -> str:
    """`text` written as JSON \\u escapes, character by character: still the same string once
    decoded, but not the same bytes."""
    return "".join(f"\\u{ord(c):04x}" for c in text)


class RestError(Exception):
    def __init__(
        self, code: str, description: str | None = None, status: int | None = None
    ) -> None:
        known, default = ERRORS.get(code, (400, code))
        super().__init__(code)
        self.code = code
        self.status = status or known
        self.description = description or default


def method_name(raw: str) -> str:
    name = raw.strip().strip("/").lower()
    return name.removesuffix(".json")


def json_reply(status: int, payload: Any) -> Reply:
    return Reply(status, json.dumps(payload, ensure_ascii=False).encode())


def error_reply(
    code: str, description: str | None = None, extra: dict[str, Any] | None = None
) -> Reply:
    error = RestError(code, description)
    return json_reply(
        error.status, {"error": code, "error_description": error.description, **(extra or {})}
    )


def time_block(start: float, finish: float) -> dict[str, Any]:
    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")

    duration = round(finish - start, 6)
    return {
        "start": round(start, 6),
        "finish": round(finish, 6),
        "duration": duration,
        "processing": duration,
        "date_start": iso(start),
        "date_finish": iso(finish),
    }


def parse_params(query: str, content_type: str, body: bytes) -> dict[str, Any]:
    params = bracket_parse(parse_qsl(query, keep_blank_values=True))
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return params
    if "json" in content_type.lower() or (not content_type and text[:1] in "{["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"request body is not valid JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise ValueError("request body must be a JSON object")
        params.update(data)
    else:
        params.update(bracket_parse(parse_qsl(text, keep_blank_values=True)))
    return params


def bracket_parse(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """PHP-style keys: `PARAMS[select][]=ID&PARAMS[filter][ID]=12` -> nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head, bracket, rest = key.partition("[")
        path = [head, *re.findall(r"\[([^\]]*)\]", bracket + rest)]
        node = root
        for i, part in enumerate(path):
            name = part if part != "" else str(len(node))
            if i == len(path) - 1:
                node[name] = value
            else:
                child = node.get(name)
                if not isinstance(child, dict):
                    child = node[name] = {}
                node = child
    return {k: listify(v) for k, v in root.items()}


def listify(value: Any) -> Any:
    if isinstance(value, dict):
        return php_array({k: listify(v) for k, v in value.items()})
    return value


def php_array(items: dict[str, Any]) -> Any:
    """How PHP's json_encode shows an array: empty, or keys 0..n-1, becomes a JSON list."""
    if list(items) == [str(i) for i in range(len(items))]:
        return list(items.values())
    return items


def param(params: Any, name: str, default: Any = None) -> Any:
    """Bitrix upper-cases parameter names (array_change_key_case), so match either case."""
    if not isinstance(params, dict):
        return default
    for key, value in params.items():
        if str(key).upper() == name:
            return value
    return default


def intval(value: Any) -> int:
    """PHP intval: leading digits count, anything else is 0."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    match = re.match(r"\s*([+-]?\d+)", str(value))
    return int(match.group(1)) if match else 0


def flag(value: Any) -> bool:
    """Bitrix flags: 1/0, Y/N, true/false (JSON). Any other non-empty string means yes."""
    if isinstance(value, str):
        return value.strip().upper() not in ("", "0", "N")
    return bool(value)


def php_empty(value: Any) -> bool:
    """PHP's `empty()`: what imconnector.activate reads as ACTIVE off."""
    if value is None or value is False or value in ("", "0"):
        return True
    return isinstance(value, int | float) and value == 0


def access_token(params: dict[str, Any], authorization: str) -> str | None:
    """The access token as the core finds it (rest/lib/oauth/auth.php::getAuthKey()): an
    `Authorization: Bearer` header first, then the `auth` parameter, then `access_token`. Both
    parameters are taken out of the method's parameters."""
    found = [params.pop(name, None) for name in ("auth", "access_token")]
    header = re.match(r"(?i)^Bearer\s+(\S+)", authorization or "")
    if header:
        return header.group(1)
    for value in found:
        if isinstance(value, str) and value:
            return value
    return None


def json_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        return bool(int(value))
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"not a boolean: {value!r}")


def connector_line(params: dict[str, Any]) -> tuple[str, int]:
    connector = str(param(params, "CONNECTOR") or "").strip().lower()
    if not connector:
        raise RestError("ERROR_ARGUMENT", "Argument 'CONNECTOR' is null or empty")
    return connector, intval(param(params, "LINE", 0))


def as_list(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return value
    return [] if value in (None, "") else [value]


def list_lines(lines: dict[int, str], query: Any) -> list[dict[str, str]]:
    """imopenlines.config.list.get: select/order/filter/limit/offset, IDs as strings."""
    rows = [{"ID": str(i), "LINE_NAME": name, "ACTIVE": "Y"} for i, name in lines.items()]
    conditions = param(query, "FILTER", {})
    for key, wanted in conditions.items() if isinstance(conditions, dict) else []:
        rows = [r for r in rows if _matches(r, str(key), wanted)]
    order = param(query, "ORDER", {})
    for key, direction in reversed(list(order.items()) if isinstance(order, dict) else []):
        column = str(key).upper()
        numeric = column == "ID"
        rows.sort(key=lambda r: int(r[column]) if numeric else r.get(column, ""),
                  reverse=str(direction).upper() == "DESC")  # fmt: skip
    if not order:
        rows.sort(key=lambda r: int(r["ID"]))
    offset = max(0, intval(param(query, "OFFSET", 0)))
    limit = min(LIST_LIMIT, intval(param(query, "LIMIT", LIST_LIMIT)) or LIST_LIMIT)
    rows = rows[offset : offset + limit]
    select = [str(s).upper() for s in as_list(param(query, "SELECT", []))]
    if select and "*" not in select:
        rows = [{k: v for k, v in r.items() if k in select} for r in rows]
    return rows


# The ORM filter's comparison prefixes (main/lib/orm/query/filter: `>ID`, `<=ID`, `=ID`, `ID`).
_COMPARISONS: dict[str, Callable[[int, int], bool]] = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
}


def _matches(row: dict[str, str], key: str, wanted: Any) -> bool:
    for prefix, compare in _COMPARISONS.items():
        if key.startswith(prefix):
            column = key[len(prefix) :].upper()
            return compare(intval(row.get(column, 0)), intval(wanted))
    column = key.lstrip("=").upper()
    return row.get(column) in {str(v) for v in as_list(wanted)}
