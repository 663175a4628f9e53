"""The token store of a small deployment: portals' credentials in one Secrets Manager secret.

The secret is `{"portals": {domain: {client_id, client_secret, access_token, refresh_token,
client_endpoint?, oauth_endpoint?, expires_at?, refreshed_at?, member_id?, ...}}, ...}` (the
contract in docs/ARCHITECTURE.md). `SecretPairs` reads it once a run and writes a refreshed pair
back into it at once; when to refresh is `tokens/refresh.py`'s. A write-back replaces the whole
document, so every refresh of the secret's portals holds one lease, `secret:<the secret's ARN>`:
two invocations refreshing different portals must not overwrite each other. The lease is named
after the ARN Secrets Manager answers with, never after what the caller called the secret (its
name, a partial or a full ARN), so `monitorctl --secret NAME` and the checker (which knows the
ARN) take the same lease.

Read and written with plain boto3 rather than Powertools Parameters: every read must be fresh
(no cache to gain), the write-back must never create a missing secret (Powertools' `set` does),
and botocore's error codes are needed to say clearly what is wrong.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..tokens.credentials import (
    AppCredentials,
    PortalCredentials,
    apps_of,
    parse_document,
    portal_key,
    spellings,
)
from ..tokens.errors import CredentialsDocumentError, TokenStoreError, UnusableCredentials
from ..tokens.ports import RefreshLease
from . import clients
from .botocore_redaction import install_botocore_redaction

logger = logging.getLogger(__name__)

_WHY: dict[str, str] = {
    "ResourceNotFoundException": "does not exist (check the secret name or ARN and the region)",
    "AccessDeniedException": "is not readable or writable by this function (check its IAM policy)",
    "DecryptionFailure": "cannot be decrypted (check kms:Decrypt on the secret's KMS key)",
    "EncryptionFailure": "cannot be encrypted (check kms:GenerateDataKey on its KMS key)",
    "InvalidRequestException": "is not usable right now (scheduled for deletion?)",
    "ThrottlingException": "is being throttled by Secrets Manager",
    "Throttling": "is being throttled by Secrets Manager",
    "TooManyRequestsException": "is being throttled by Secrets Manager",
    "LimitExceededException": "has reached a Secrets Manager quota (versions or rate)",
}
_WRITE_ATTEMPTS = 3


install_botocore_redaction()


# Every refresh writes a new version of the secret, and each portal refreshes about hourly.
# Secrets Manager keeps every version younger than 24 hours and allows about 100, so one secret
# has room for the refreshes of this many portals (24 writes a day each).
PORTALS_PER_SECRET = 4
OVER_WRITE_BUDGET = (
    "secret %s holds %d portals, but one secret has room for the hourly token refreshes of at "
    "most %d portals: Secrets Manager allows about 100 versions a day, and a refreshed pair it "
    "refuses to store locks the monitor out of that portal. Spread the portals over several "
    "stacks, %d or fewer each."
)


class SecretPairs:
    """`tokens.ports.PairStore` over one Secrets Manager secret (the whole document at once)."""

    def __init__(
        self,
        secret_id: str,
        *,
        client: Any | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.secret_id = secret_id
        self._client = client if client is not None else clients.client("secretsmanager")
        self._sleep = sleep
        self._document: dict[str, Any] | None = None
        self._arn: str | None = None  # the secret's ARN, as Secrets Manager answered it
        self._lock = threading.Lock()  # readers never wait for a write; documents never mutate

    def load(self) -> None:
        """Read the secret (once per invocation). Raises TokenStoreError if it is unusable."""
        portals = len(self._publish(self._read())["portals"])
        if portals > PORTALS_PER_SECRET:
            logger.warning(
                OVER_WRITE_BUDGET,
                self.secret_id,
                portals,
                PORTALS_PER_SECRET,
                PORTALS_PER_SECRET,
            )

    def credentials(self, portal: str) -> PortalCredentials:
        """One portal's credentials; UnusableCredentials if its entry is missing or partial."""
        return self._entry(self._current(), portal)

    def deleted_lines(self, portal: str) -> dict[int, datetime]:
        """The secret keeps no line-delete marks (the inbound function writes only the token
        table): a deleted line of a portal here leaves by two inventories."""
        return {}

    def holds(self, portal: str) -> bool:
        return portal_key(portal) in spellings(self._current()["portals"])

    def portals(self) -> list[str]:
        return sorted(spellings(self._current()["portals"]))

    def apps(self) -> dict[str, AppCredentials]:
        """The applications whose portals' pairs live in the fleet's token table."""
        return apps_of(self._current())

    def reread(self, portal: str) -> PortalCredentials:
        return self._entry(self._publish(self._read()), portal)

    def lease_name(self, portal: str) -> str:
        """`secret:<ARN>`, whatever `secret_id` was (a name, a partial or a full ARN): one lease
        for one secret. Reads the secret once if it has not been read yet."""
        if self._arn is None:
            self._publish(self._read())
        return f"secret:{self._arn or self.secret_id}"

    def own_lease(self, portal: str) -> RefreshLease | None:
        return None  # the shared lease, named after the secret: one write replaces it whole

    def end_run(self) -> None:
        """Nothing held past a refresh: the shared lease is given back after each."""

    def store(self, fresh: PortalCredentials) -> None:
        """Replace only what a refresh renews in this portal's entry of the document last read
        (under the lease, just before the refresh): tokens, expiry, endpoint, member_id."""
        document = self._current()
        written = spellings(document["portals"])[portal_key(fresh.portal)]  # its key as written
        entry = dict(document["portals"][written])
        entry["access_token"] = fresh.access_token
        entry["refresh_token"] = fresh.refresh_token
        if fresh.expires_at is not None:
            entry["expires_at"] = fresh.expires_at
        if fresh.refreshed_at is not None:
            entry["refreshed_at"] = fresh.refreshed_at
        # The OAuth server's word on where the portal is and which Bitrix24 it is: a portal
        # that changed its address is followed from the next read on.
        entry["client_endpoint"] = fresh.client_endpoint
        if fresh.member_id is not None:
            entry["member_id"] = fresh.member_id
        document = {**document, "portals": {**document["portals"], written: entry}}
        # The in-memory copy holds the new pair even if storing fails: it is the only valid one.
        self._publish(document)
        why = self._write(document)
        if why is None:
            return
        raise TokenStoreError(
            f"portal {fresh.portal}: the refreshed tokens could not be stored in secret "
            f"{self.secret_id} ({why}); the monitor will be locked out of this portal: "
            "re-authorise the application and store the new tokens",
            pair_lost=True,
        )

    def document(self) -> dict[str, Any]:
        """The whole document as stored now (for moving portals out of it)."""
        return self._publish(self._read())

    def replace(self, document: dict[str, Any]) -> None:
        """Store a whole new document (hold the lease `lease_name` while changing it)."""
        parse_document(json.dumps(document), f"the new value of secret {self.secret_id}")
        why = self._write(document)
        if why is not None:
            raise TokenStoreError(f"secret {self.secret_id} could not be written ({why})")
        self._publish(document)

    def _write(self, document: dict[str, Any]) -> str | None:
        """Put `document` as the secret's new version, retried; None, or why it failed."""
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        request_token = str(uuid.uuid4())  # makes retries of the same write idempotent
        why = ""
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                self._client.put_secret_value(
                    SecretId=self.secret_id, SecretString=text, ClientRequestToken=request_token
                )
                return None
            except (ClientError, BotoCoreError) as exc:
                why = _describe(exc)
            if attempt < _WRITE_ATTEMPTS:
                self._sleep(0.3 * attempt)
        return why

    # -- the document ----------------------------------------------------------------------

    def _current(self) -> dict[str, Any]:
        with self._lock:
            if self._document is not None:
                return self._document
        return self._publish(self._read())

    def _publish(self, document: dict[str, Any]) -> dict[str, Any]:
        """Make `document` the one readers see. Published documents are never mutated."""
        with self._lock:
            self._document = document
        return document

    def _entry(self, document: dict[str, Any], portal: str) -> PortalCredentials:
        key = portal_key(portal)
        written = spellings(document["portals"]).get(key)
        if written is None:
            raise UnusableCredentials(f"secret {self.secret_id} has no entry for portal {portal}")
        return PortalCredentials.from_secret_entry(key, document["portals"][written])

    def _read(self) -> dict[str, Any]:
        try:
            answer = self._client.get_secret_value(SecretId=self.secret_id)
        except (ClientError, BotoCoreError) as exc:
            raise TokenStoreError(f"secret {self.secret_id}: {_describe(exc)}") from None
        arn = answer.get("ARN")
        if isinstance(arn, str) and arn:
            self._arn = arn
        text = answer.get("SecretString")
        if text is None and answer.get("SecretBinary") is not None:
            try:
                text = bytes(answer["SecretBinary"]).decode("utf-8")
            except UnicodeDecodeError:
                raise TokenStoreError(
                    f"secret {self.secret_id} is binary and not UTF-8 text"
                ) from None
        if not isinstance(text, str):
            raise TokenStoreError(f"secret {self.secret_id} holds no value")
        try:
            return parse_document(text, f"secret {self.secret_id}")
        except CredentialsDocumentError as exc:
            raise TokenStoreError(str(exc)) from None


def _describe(exc: ClientError | BotoCoreError) -> str:
    """What went wrong with a Secrets Manager call, from the error code: never the secret."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", "") or "unknown error")
        return f"{code}: the secret {_WHY.get(code, 'could not be used')}"
    return f"could not reach Secrets Manager ({type(exc).__name__})"
