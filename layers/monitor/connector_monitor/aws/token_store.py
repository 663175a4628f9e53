"""The token store: portals' OAuth credentials in one Secrets Manager secret, refreshed in place.

The secret is `{"portals": {domain: {client_id, client_secret, access_token, refresh_token,
client_endpoint?, oauth_endpoint?, expires_at?, ...}}, ...}` (DESIGN.md, contract).

Refresh tokens are single-use, so a refreshed pair is written back at once and refreshes are
serialised: a `threading.Lock` inside one invocation (portals are checked in parallel threads
and all write the same secret), and a DynamoDB lease `secret:<secret_id>` across overlapping
invocations. The lease is per secret, not per portal, because a write-back replaces the whole
document: two invocations refreshing different portals must not overwrite each other.

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
from typing import Any

import boto3
import requests
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..bitrix24.credentials import PortalCredentials
from ..bitrix24.errors import CredentialsError, ErrorKind, PortalError, TokenSourceUnavailable
from ..bitrix24.oauth import refresh_tokens
from ..bitrix24.transport import guard, new_session
from ..deadline import Deadline
from ..domain.results import Cause
from .lease import Lease, LeaseUnavailable

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


class _DropSecretPayloads(logging.Filter):
    """botocore's DEBUG lines print request and response bodies, i.e. the whole secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a malformed record is not ours to judge
            return True
        return "SecretString" not in text and "SecretBinary" not in text


def _install_botocore_redaction() -> None:
    for name in ("botocore.endpoint", "botocore.parsers", "botocore.httpsession"):
        target = logging.getLogger(name)
        if not any(isinstance(f, _DropSecretPayloads) for f in target.filters):
            target.addFilter(_DropSecretPayloads())


_install_botocore_redaction()


CLIENT_CONFIG = Config(
    retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=3, read_timeout=10
)
OAUTH_TIMEOUT = (3.05, 10.0)  # connect, read: seconds for a call to the portal's OAuth server
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
# Each portal refreshes at most once in this many seconds. An access token lives an hour, so a
# portal that works never needs more; 55 minutes keep a portal that refuses fresh tokens to
# about 26 secret versions a day, near the 24 of a working one.
REFRESH_INTERVAL = 55 * 60
# A refresh cut short by a timeout may still have spent the refresh token at the OAuth server,
# so none starts with less time than this left in the run.
MIN_REFRESH_SECONDS = 3.0


class TokenStoreError(TokenSourceUnavailable):
    """The secret is unreachable, corrupt or could not be written. Names the secret, not content."""

    cause = Cause.MONITOR_ERROR


class TokenWriteBackError(TokenStoreError):
    """A refreshed pair could not be stored: the old refresh token is spent, a person must act."""


class SecretsTokenStore:
    """Implements `bitrix24.credentials.TokenSource` over one Secrets Manager secret."""

    def __init__(
        self,
        secret_id: str,
        *,
        client: Any | None = None,
        lease: Lease | None = None,
        session: requests.Session | None = None,
        oauth_timeout: tuple[float, float] = OAUTH_TIMEOUT,
        reread_attempts: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        lease_ttl: float = 60.0,
        lease_wait: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secret_id = secret_id
        self._client = (
            client if client is not None else boto3.client("secretsmanager", config=CLIENT_CONFIG)
        )
        self._lease = lease
        self._session = guard(session) if session is not None else new_session()
        self._oauth_timeout = oauth_timeout
        self._reread_attempts = max(0, reread_attempts)
        self._sleep = sleep
        self._lease_ttl = lease_ttl
        self._lease_wait = lease_wait
        self._clock = clock
        self._document: dict[str, Any] | None = None
        # Two locks: a short one around the document so readers never wait for an OAuth call,
        # and one that serialises refreshes (they all rewrite the same secret).
        self._doc_lock = threading.Lock()
        self._refresh_lock = threading.Lock()

    # -- reading ---------------------------------------------------------------------------

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

    def portals(self) -> list[str]:
        """The portal domains the secret holds an entry for, sorted."""
        return sorted(self._current()["portals"])

    def credentials(self, portal: str) -> PortalCredentials:
        """One portal's credentials; CredentialsError if its entry is missing or partial."""
        return self._entry(self._current(), portal)

    # -- refreshing ------------------------------------------------------------------------

    def refresh(
        self, portal: str, stale: PortalCredentials, deadline: Deadline | None = None
    ) -> PortalCredentials:
        """Credentials newer than `stale`: rotated by another thread or run, or refreshed now.

        Call only after the portal answered expired_token to `stale.access_token`. Waiting for
        the lease and the OAuth request both end by `deadline`; with too little time left no
        refresh starts, since a refresh cut short may still spend the refresh token.
        """
        deadline = deadline or Deadline.after(self._lease_wait + sum(self._oauth_timeout))
        with self._refresh_lock:
            known = self.credentials(portal)
            if known.access_token != stale.access_token:
                return known  # another thread of this invocation already refreshed it
            if self._lease is None:
                return self._refresh_locked(portal, stale, deadline)
            try:
                with self._lease.hold(
                    f"secret:{self.secret_id}",
                    ttl=self._lease_ttl,
                    wait=min(self._lease_wait, deadline.remaining()),
                ):
                    return self._refresh_locked(portal, stale, deadline)
            except LeaseUnavailable as exc:
                return self._without_lease(portal, stale, exc)

    def _refresh_locked(
        self, portal: str, stale: PortalCredentials, deadline: Deadline
    ) -> PortalCredentials:
        document = self._publish(self._read())
        current = self._entry(document, portal)
        if current.access_token != stale.access_token:
            logger.info("portal %s: tokens already rotated by another run; using them", portal)
            return current
        self._within_budget(current)
        if deadline.remaining() < MIN_REFRESH_SECONDS:
            raise PortalError(
                ErrorKind.PORTAL_FAILING,
                portal,
                description="too little time left in this run to refresh the access token "
                "safely; the next run refreshes it",
            )
        try:
            fresh = refresh_tokens(
                current,
                session=self._session,
                deadline=deadline,
                timeouts=self._oauth_timeout,
                now=self._clock,
            )
        except PortalError as exc:
            if (exc.code or "").lower() != "invalid_grant":
                raise
            return self._after_invalid_grant(portal, current, exc, deadline)
        self._write_back(document, fresh)
        logger.info("portal %s: access token refreshed and the new pair stored", portal)
        return fresh

    def _within_budget(self, current: PortalCredentials) -> None:
        """At most one refresh per portal per `REFRESH_INTERVAL`: a portal that refuses even a
        fresh token would otherwise make every run refresh and store a new secret version
        (288 a day at 5 minutes), and use up the version budget of every portal sharing the
        secret. A pair refreshed in the future (a clock that was wrong) does not count."""
        if current.refreshed_at is None:
            return
        age = self._clock() - current.refreshed_at
        if 0 <= age < REFRESH_INTERVAL:
            raise PortalError(
                ErrorKind.AUTH_LOST,
                current.portal,
                description=(
                    f"the portal rejects fresh tokens: it refused a pair refreshed "
                    f"{int(age // 60)} min ago. The monitor refreshes each portal at most once "
                    f"every {REFRESH_INTERVAL // 60} min, so that one portal cannot use up the "
                    "secret's versions; if the portal keeps refusing, re-authorise the application"
                ),
            )

    def _after_invalid_grant(
        self, portal: str, used: PortalCredentials, error: PortalError, deadline: Deadline
    ) -> PortalCredentials:
        """The refresh token was refused: maybe another run rotated it and is writing it back."""
        for attempt in range(1, self._reread_attempts + 1):
            if deadline.remaining() < 0.2 * attempt:
                break
            self._sleep(0.2 * attempt)
            current = self._entry(self._publish(self._read()), portal)
            if current.refresh_token != used.refresh_token:
                logger.info("portal %s: refresh token was rotated by another run; using it", portal)
                return current
        raise PortalError(
            ErrorKind.AUTH_LOST,
            portal,
            code=error.code,
            description=(
                "the OAuth server refused the stored refresh token and no newer one appeared in "
                f"secret {self.secret_id}: re-authorise the application and store the new tokens"
            ),
            http_status=error.http_status,
        )

    def _without_lease(
        self, portal: str, stale: PortalCredentials, error: LeaseUnavailable
    ) -> PortalCredentials:
        """No lease within the wait: use tokens rotated meanwhile, else give up for this run."""
        current = self._entry(self._publish(self._read()), portal)
        if current.access_token != stale.access_token:
            return current
        raise TokenStoreError(
            f"portal {portal}: could not refresh tokens of secret {self.secret_id}: {error}; "
            "the next run tries again"
        )

    def _write_back(self, document: dict[str, Any], fresh: PortalCredentials) -> None:
        """Replace only what a refresh renews in this portal's entry of the freshly read
        document (tokens, expiry, endpoint, member_id); store it."""
        entry = dict(document["portals"][fresh.portal])
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
        document = {**document, "portals": {**document["portals"], fresh.portal: entry}}
        # The in-memory copy holds the new pair even if storing fails: it is the only valid one.
        self._publish(document)
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        request_token = str(uuid.uuid4())  # makes retries of the same write idempotent
        why = ""
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                self._client.put_secret_value(
                    SecretId=self.secret_id, SecretString=text, ClientRequestToken=request_token
                )
                return
            except (ClientError, BotoCoreError) as exc:
                why = _describe(exc)
            if attempt < _WRITE_ATTEMPTS:
                self._sleep(0.3 * attempt)
        logger.error(
            "portal %s: NEW REFRESH TOKEN NOT STORED in secret %s (%s). The old refresh token is "
            "spent; the new one lives only in this invocation's memory. Re-authorise the "
            "application on the portal and store the new tokens.",
            fresh.portal,
            self.secret_id,
            why,
        )
        raise TokenWriteBackError(
            f"portal {fresh.portal}: the refreshed tokens could not be stored in secret "
            f"{self.secret_id} ({why}); the monitor will be locked out of this portal: "
            "re-authorise the application and store the new tokens"
        )

    # -- the document ----------------------------------------------------------------------

    def _current(self) -> dict[str, Any]:
        with self._doc_lock:
            if self._document is not None:
                return self._document
        return self._publish(self._read())

    def _publish(self, document: dict[str, Any]) -> dict[str, Any]:
        """Make `document` the one readers see. Published documents are never mutated."""
        with self._doc_lock:
            self._document = document
        return document

    def _entry(self, document: dict[str, Any], portal: str) -> PortalCredentials:
        entry = document["portals"].get(portal)
        if entry is None:
            raise CredentialsError(f"secret {self.secret_id} has no entry for portal {portal}")
        return PortalCredentials.from_secret_entry(portal, entry)

    def _read(self) -> dict[str, Any]:
        try:
            answer = self._client.get_secret_value(SecretId=self.secret_id)
        except (ClientError, BotoCoreError) as exc:
            raise TokenStoreError(f"secret {self.secret_id}: {_describe(exc)}") from None
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
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            # The position only: the decoder's own text is safe, its .doc is the secret.
            raise TokenStoreError(
                f"secret {self.secret_id} is not valid JSON (line {exc.lineno}, column {exc.colno})"
            ) from None
        if not isinstance(document, dict):
            raise TokenStoreError(f"secret {self.secret_id} is not a JSON object")
        if not isinstance(document.get("portals"), dict):
            raise TokenStoreError(
                f'secret {self.secret_id} has no "portals" object '
                '(expected {"portals": {"<domain>": {...credentials...}}})'
            )
        return document


def _describe(exc: ClientError | BotoCoreError) -> str:
    """What went wrong with a Secrets Manager call, from the error code: never the secret."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", "") or "unknown error")
        return f"{code}: the secret {_WHY.get(code, 'could not be used')}"
    return f"could not reach Secrets Manager ({type(exc).__name__})"
