"""botocore's DEBUG lines print whole request and response bodies: a secret's value, a token
table's items. They are dropped, whoever turned DEBUG on; every other line passes."""

from __future__ import annotations

import logging

# What only a body holding credentials contains: a secret's value, a token item's attributes.
_MARKERS = ("SecretString", "SecretBinary", "access_token", "refresh_token", "client_secret")


class _DropCredentialPayloads(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a malformed record is not ours to judge
            return True
        return not any(marker in text for marker in _MARKERS)


def install_botocore_redaction() -> None:
    for name in (
        "botocore.endpoint",
        "botocore.parsers",
        "botocore.httpsession",
        "boto3.resources.action",  # a resource's parsed response, for callers that use one
    ):
        target = logging.getLogger(name)
        if not any(isinstance(f, _DropCredentialPayloads) for f in target.filters):
            target.addFilter(_DropCredentialPayloads())
