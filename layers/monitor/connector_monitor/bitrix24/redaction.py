"""Keeping credentials out of text: the one place secrets are cut out of what a portal, an OAuth
server or a URL says, before it can reach a result, a log line, an alert or DynamoDB."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

REDACTED = "[redacted]"
_SECRET_PARAMS = re.compile(r"(client_secret|refresh_token|access_token|auth|code)=[^&\s\"']*")


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each non-empty secret replaced by `[redacted]`."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_json(value: object, secrets: tuple[str, ...]) -> object:
    """A decoded JSON value with every string (keys too) redacted. Scrubbing the decoded value,
    not the bytes, also catches a secret the sender escaped (`\\/`, `\\u0061`)."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {redact(str(k), secrets): redact_json(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(item, secrets) for item in value]
    return value


def redact_answer(body: bytes, value: object, secrets: tuple[str, ...]) -> object:
    """`value` (decoded from the JSON `body`) with every string redacted (`redact_json`); the
    walk is skipped when it cannot change anything: without a backslash in `body` every decoded
    string is a piece of its bytes, so a secret the bytes do not hold is in no string. (Most
    answers are such, and the walk was a tenth of a portal's CPU.)"""
    if b"\\" not in body and not any(s.encode() in body for s in secrets if s):
        return value
    return redact_json(value, secrets)


def redact_url_secrets(text: str) -> str:
    """`text` with the values of secret-bearing query parameters replaced by `[redacted]`."""
    return _SECRET_PARAMS.sub(rf"\1={REDACTED}", text)


class _RedactQuerySecrets(logging.Filter):
    """urllib3 logs `GET /oauth/token/?...&client_secret=...` at DEBUG: strip the values."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url_secrets(a) if isinstance(a, str) and "=" in a else a for a in record.args
            )
        elif isinstance(record.msg, str) and "=" in record.msg:
            record.msg = redact_url_secrets(record.msg)
        return True


def install_urllib3_redaction() -> None:
    target = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _RedactQuerySecrets) for f in target.filters):
        target.addFilter(_RedactQuerySecrets())
