"""Reading the portal's answers: the REST envelope, batch sections, flags and discovery lists.

Pure functions, no I/O. The portal's answers vary between versions and SDKs (flags as booleans,
"Y"/"N" or 1/0; empty sections as `[]`; line ids as strings), so every reader accepts each
documented variant and turns anything else into a clear error instead of a guess.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from ..domain.inventory import LineInfo
from ..domain.portal_errors import ErrorKind, PortalError, classify
from ..domain.results import Cause, CheckResult
from ..domain.targets import Target, is_connector_id
from ..domain.text import NAME_LIMIT, clip
from .redaction import redact_answer

STATUS_METHOD = "imconnector.status"
CONNECTORS_METHOD = "imconnector.list"
LINES_METHOD = "imopenlines.config.list.get"
LINES_PAGE = 200  # the most imopenlines.config.list.get returns at once
BATCH_LIMIT = 50  # the most commands one batch request may carry
# Objects and arrays one answer may hold: a batch of 50 statuses with timings and a page of 200
# lines hold under 1,000; 50,000 bound the decoded answer to a few MB whatever the bytes say.
CONTAINER_LIMIT = 50_000
CONNECTORS_KEPT = 500  # connector ids kept from imconnector.list (more would be absurd)
MOVED_SHOWN = 120  # characters of a redirect's target quoted

_TRUE = frozenset({"y", "1", "true"})
_FALSE = frozenset({"n", "0", "false"})
_FLAGS = ("STATUS", "CONFIGURED", "ERROR")


class AnswerError(ValueError):
    """Part of an answer has a shape no documented variant explains. The message is safe to show."""


@dataclass(frozen=True)
class BatchAnswer:
    """One batch request's answer: results by command name, and the commands that failed."""

    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, PortalError] = field(default_factory=dict)


# --- requests ---------------------------------------------------------------------------------


def status_command(target: Target) -> str:
    """The batch command asking one target's status. LINE is always sent (0 would be wrong)."""
    return f"{STATUS_METHOD}?{urlencode({'CONNECTOR': target.connector, 'LINE': target.line})}"


def lines_params(after: int = 0) -> dict[str, Any]:
    """Parameters of `imopenlines.config.list.get` for one page of open lines: those with an ID
    above `after`, by ID. A page starts after the last ID seen, not at an offset: a line deleted
    between two pages would shift every offset and one line would be skipped. The method hands
    PARAMS to the ORM as they are (core imopenlines/lib/config.php::getList():
    `Model\\ConfigTable::getList($params)`), whose filter takes `>ID`."""
    params: dict[str, Any] = {
        "select": ["ID", "LINE_NAME", "ACTIVE"],
        "order": {"ID": "ASC"},
        "limit": LINES_PAGE,
    }
    if after:
        params["filter"] = {">ID": after}
    return {"PARAMS": params}


def batch_command(method: str, params: Mapping[str, Any] | None = None) -> str:
    """A batch command string: the method and its parameters as a PHP-style query."""
    query = php_query(params or {})
    return f"{method}?{query}" if query else method


def php_query(params: Mapping[str, Any]) -> str:
    """Encode nested parameters the way PHP reads them: `PARAMS[select][0]=ID&...`.

    Booleans become 1/0: the portal reads any non-empty string, "False" included, as yes.
    """
    pairs: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(f"{prefix}[{key}]" if prefix else str(key), item)
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                walk(f"{prefix}[{index}]", item)
        elif isinstance(value, bool):
            pairs.append((prefix, "1" if value else "0"))
        elif value is not None:
            pairs.append((prefix, str(value)))

    walk("", params)
    return urlencode(pairs)


# --- the REST envelope ------------------------------------------------------------------------


def read_envelope(
    portal: str,
    http_status: int,
    body: bytes,
    *,
    content_type: str = "",
    retry_after_header: str | None = None,
    now: float | None = None,
    secrets: Iterable[str] = (),
    location: str | None = None,
    endpoint: str = "",
) -> dict[str, Any]:
    """The JSON object of a successful REST answer, or a `PortalError` saying what went wrong.

    A redirect (`location`) away from the portal's REST `endpoint` means the portal moved: it is
    never followed (a token goes only where the secret or the OAuth server says).

    `now` (epoch seconds) turns `time.operating_reset_at` into a wait; `secrets` are cut out of
    every string of the decoded answer, so a token echoed anywhere in it (an error, a batch
    command's error, JSON-escaped or not) never reaches a result, a log or an alert. An answer
    with more than `CONTAINER_LIMIT` objects and arrays is refused before it is decoded: its
    Python objects could weigh tens of times its bytes.
    """
    secrets = tuple(s for s in secrets if s)
    if 300 <= http_status < 400:
        raise _redirect(portal, http_status, location, endpoint)
    failing = ErrorKind.PORTAL_FAILING if http_status >= 500 else ErrorKind.BAD_ANSWER
    if body.count(b"{") + body.count(b"[") > CONTAINER_LIMIT:
        raise PortalError(
            ErrorKind.BAD_ANSWER,
            portal,
            description=f"the answer holds more than {CONTAINER_LIMIT} JSON objects and arrays",
            http_status=http_status,
        )
    try:
        payload = redact_answer(body, json.loads(body), secrets)
    except ValueError:  # includes invalid UTF-8
        what = _describe_body(body, content_type)
        raise PortalError(
            failing, portal, description=f"the portal answered {what}", http_status=http_status
        ) from None
    except RecursionError:
        raise PortalError(
            failing, portal, description="the answer nests too deeply", http_status=http_status
        ) from None
    if not isinstance(payload, dict):
        raise PortalError(
            failing,
            portal,
            description=f"the answer is a JSON {_json_type(payload)}, not an object",
            http_status=http_status,
        )
    if "error" in payload:
        raise _envelope_error(portal, http_status, payload, retry_after_header, now)
    if http_status >= 400:
        raise PortalError(
            classify(None, http_status),
            portal,
            description="an error status without an error code",
            http_status=http_status,
        )
    if "result" not in payload:
        raise PortalError(
            ErrorKind.BAD_ANSWER,
            portal,
            description="the answer has neither result nor error",
            http_status=http_status,
        )
    return payload


def _redirect(portal: str, status: int, location: str | None, endpoint: str) -> PortalError:
    """A redirect: the portal moved (bitrix24/b24restdocs settings/how-to-call-rest-api/
    change-domen.md: an old address answers 302 to the new one), or the endpoint is wrong."""
    target = urljoin(endpoint, location) if location else ""
    parts = urlsplit(target) if target else None
    if parts is not None and parts.hostname and not target.startswith(endpoint):
        moved = f"{parts.scheme}://{parts.netloc}"[:MOVED_SHOWN]
        return PortalError(
            ErrorKind.PORTAL_MOVED,
            portal,
            description=f"the portal moved: it redirects to {moved}",
            http_status=status,
        )
    return PortalError(
        ErrorKind.BAD_REQUEST,
        portal,
        description="the portal answered with a redirect; check client_endpoint in the secret",
        http_status=status,
    )


def _envelope_error(
    portal: str,
    http_status: int,
    payload: Mapping[str, Any],
    retry_after_header: str | None,
    now: float | None,
) -> PortalError:
    raw = payload.get("error")
    code = str(raw) if isinstance(raw, str | int) and str(raw) else None
    description = payload.get("error_description")
    text = str(description) if description is not None else ""
    kind = classify(code, http_status)
    retry_after = None
    if kind is ErrorKind.RATE_LIMITED:
        retry_after = _reset_wait(payload.get("time"), now)
        if retry_after is None:
            retry_after = _seconds(retry_after_header)
    return PortalError(
        kind,
        portal,
        code=code,
        description=text,
        http_status=http_status,
        retry_after=retry_after,
    )


def _reset_wait(timing: object, now: float | None) -> float | None:
    """Seconds until `time.operating_reset_at`, when the portal said and we know the time."""
    if not isinstance(timing, Mapping) or now is None:
        return None
    reset = timing.get("operating_reset_at")
    if isinstance(reset, bool) or not isinstance(reset, int | float | str):
        return None
    try:
        wait = float(reset) - now
    except (ValueError, OverflowError):
        return None
    return max(0.0, wait) if math.isfinite(wait) else None


def _seconds(header: str | None) -> float | None:
    """A `Retry-After` header given in seconds; the HTTP-date form is ignored."""
    if not header:
        return None
    try:
        return max(0.0, float(header.strip()))
    except ValueError:
        return None


def _describe_body(body: bytes, content_type: str) -> str:
    head = body.lstrip()[:64].lower()
    if not head:
        return "with an empty body instead of JSON"
    if "html" in content_type.lower() or head.startswith((b"<!doctype", b"<html", b"<")):
        return "with an HTML page instead of JSON"
    if head.startswith((b"{", b"[")):
        return "with truncated or invalid JSON"
    return "with a body that is not JSON"


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "number" if isinstance(value, int | float) else type(value).__name__


# --- batch ------------------------------------------------------------------------------------


def read_batch(portal: str, result: object, *, http_status: int | None = None) -> BatchAnswer:
    """The `result` of a batch answer: `result.result` and `result.result_error` by name.

    Empty sections arrive as `[]`. A failed command's error has no HTTP status of its own, so it
    is classified by its code alone; `http_status` (the batch's) is only reported.
    """
    if isinstance(result, list) and not result:
        return BatchAnswer()
    if not isinstance(result, Mapping):
        raise AnswerError(
            f"the batch answer's result is a JSON {_json_type(result)}, not an object"
        )
    if "result" not in result and "result_error" not in result:
        raise AnswerError("the batch answer has neither result nor result_error")
    results = _section(result.get("result"), "result")
    errors = {
        name: command_error(portal, entry, http_status=http_status)
        for name, entry in _section(result.get("result_error"), "result_error").items()
    }
    for name in errors:
        results.pop(name, None)
    return BatchAnswer(results, errors)


def command_error(portal: str, entry: object, *, http_status: int | None = None) -> PortalError:
    """One entry of `result_error`: `{error, error_description}` (a bare code is accepted too)."""
    if isinstance(entry, str) and entry:
        return PortalError(classify(entry, None), portal, code=entry, http_status=http_status)
    if isinstance(entry, Mapping) and isinstance(entry.get("error"), str | int):
        code = str(entry["error"])
        description = entry.get("error_description")
        return PortalError(
            classify(code, None),
            portal,
            code=code,
            description=str(description) if description is not None else None,
            http_status=http_status,
        )
    return PortalError(
        ErrorKind.BAD_ANSWER,
        portal,
        description="the portal reported an unreadable error",
        http_status=http_status,
    )


def _section(value: object, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(key): item for key, item in value.items()}
    if isinstance(value, list):
        # `[]` is an empty section; a non-empty list only appears for numbered commands.
        return {str(index): item for index, item in enumerate(value)}
    raise AnswerError(f"the batch section {name} is a JSON {_json_type(value)}, not an object")


# --- imconnector.status -----------------------------------------------------------------------


def parse_flag(value: object) -> bool | None:
    """A flag as any portal version sends it: true/false, "Y"/"N", 1/0, "1"/"0", "true"/"false".

    Anything else (missing, null, 2, "maybe") is None: unreadable, never guessed.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return {1: True, 0: False}.get(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def read_status(target: Target, result: object, *, checked_at: datetime) -> CheckResult:
    """One `imconnector.status` answer as a result. STATUS decides UP or DOWN."""

    def bad(detail: str) -> CheckResult:
        return CheckResult.unknown(
            target, Cause.BAD_ANSWER, f"imconnector.status: {detail}", checked_at=checked_at
        )

    if not isinstance(result, Mapping):
        return bad(f"the answer is a JSON {_json_type(result)}, not an object")
    fields = {str(key).upper(): value for key, value in result.items()}
    mismatch = _mismatch(target, fields)
    if mismatch:
        return bad(mismatch)
    flags: dict[str, bool] = {}
    for name in _FLAGS:
        if name not in fields:
            return bad(f"the answer lacks {name}")
        flag = parse_flag(fields[name])
        if flag is None:
            return bad(f"{name} is unreadable ({_shorten(fields[name])})")
        flags[name] = flag
    return CheckResult.from_flags(
        target,
        configured=flags["CONFIGURED"],
        error=flags["ERROR"],
        status=flags["STATUS"],
        checked_at=checked_at,
    )


def _mismatch(target: Target, fields: Mapping[str, Any]) -> str | None:
    """An answer about another line or connector than the one asked (checked only when present)."""
    line = _as_int(fields.get("LINE"))
    if line is not None and line != target.line:
        return f"the portal answered for line {line} instead of {target.line}"
    connector = fields.get("CONNECTOR")
    if isinstance(connector, str) and connector and connector.lower() != target.connector.lower():
        return f"the portal answered for connector '{connector[:40]}'"
    return None


def _shorten(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


# --- discovery --------------------------------------------------------------------------------


def read_connectors(result: object) -> frozenset[str]:
    """`imconnector.list`: `{id: name}` with lowercase ids, or `[]` when there are none.

    Only ids a target could name are kept (a longer or odd one can never match), at most
    `CONNECTORS_KEPT` of them: the monitor stores this list.
    """
    ids: list[str] = []
    if isinstance(result, Mapping):
        ids = [str(key) for key in result]
    elif isinstance(result, list):
        for item in result:
            if isinstance(item, str) and item:
                ids.append(item)
            elif isinstance(item, Mapping) and isinstance(item.get("ID", item.get("id")), str):
                ids.append(str(item.get("ID", item.get("id"))))
            else:
                raise AnswerError("imconnector.list answered an entry without a connector id")
    else:
        raise AnswerError(f"imconnector.list answered a JSON {_json_type(result)}, not a list")
    valid = sorted({i.lower() for i in ids if is_connector_id(i.lower())})
    return frozenset(valid[:CONNECTORS_KEPT])


def read_lines(result: object) -> dict[int, LineInfo]:
    """`imopenlines.config.list.get`: `[{"ID": "15", "LINE_NAME": "VIP", "ACTIVE": "Y"}]`.

    An entry without a readable ID fails the whole list: a guessed list would report real lines
    as missing. An unreadable ACTIVE counts as active, for the same reason.
    """
    entries: Iterable[object]
    if isinstance(result, list):
        entries = result
    elif isinstance(result, Mapping):
        entries = result.values()
    else:
        raise AnswerError(
            f"imopenlines.config.list.get answered a JSON {_json_type(result)}, not a list"
        )
    lines: dict[int, LineInfo] = {}
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise AnswerError("imopenlines.config.list.get answered an entry that is not an object")
        line_id = _as_int(entry.get("ID"))
        if line_id is None:
            raise AnswerError("imopenlines.config.list.get answered a line without a readable ID")
        name = entry.get("LINE_NAME")
        active = parse_flag(entry.get("ACTIVE"))
        lines[line_id] = LineInfo(
            name=clip(str(name).strip(), NAME_LIMIT) if name is not None else "",
            active=True if active is None else active,
        )
    return lines


_INTEGER = re.compile(r"-?[0-9]{1,18}")


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value.strip())
    return None
