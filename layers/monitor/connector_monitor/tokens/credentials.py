"""A portal's OAuth credentials as the stores hold them, the applications they name, and the
credentials document (the secret's contract)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import CredentialsDocumentError, UnusableCredentials

DEFAULT_OAUTH_ENDPOINT = "https://oauth.bitrix.info/oauth/token/"
_REQUIRED = ("client_id", "client_secret", "access_token", "refresh_token")
_KNOWN = (
    *_REQUIRED,
    "client_endpoint",
    "oauth_endpoint",
    "expires_at",
    "refreshed_at",
    "member_id",
)


def portal_key(domain: str) -> str:
    """A portal's one spelling, wherever a domain enters (secret keys, token-table keys, like
    `Targets` and the registry): `Shop.Bitrix24.com.` and `shop.bitrix24.com` are one portal."""
    return domain.strip().lower().rstrip(".")


def spellings(portals: Mapping[str, Any]) -> dict[str, str]:
    """Each portal's key (`portal_key`) → the key as written in `portals`; of two spellings of
    one portal, the first in sorted order."""
    found: dict[str, str] = {}
    for written in sorted(portals):
        found.setdefault(portal_key(written), written)
    return found


@dataclass(frozen=True)
class PortalCredentials:
    """One portal's entry of the secret. Token fields never show in a repr."""

    portal: str
    client_id: str
    client_secret: str = field(repr=False)
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    client_endpoint: str
    oauth_endpoint: str = DEFAULT_OAUTH_ENDPOINT
    expires_at: int | None = None
    refreshed_at: int | None = None  # when the monitor last refreshed this pair (epoch s)
    member_id: str | None = None  # the portal's identity, which survives a change of address
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_secret_entry(cls, portal: str, entry: object) -> PortalCredentials:
        """Read one entry of `{"portals": {domain: entry}}`; a clear error names what is missing."""
        if not isinstance(entry, Mapping):
            raise UnusableCredentials(f"secret entry for {portal} is not a JSON object")
        missing = [k for k in _REQUIRED if not isinstance(entry.get(k), str) or not entry.get(k)]
        if missing:
            raise UnusableCredentials(f"secret entry for {portal} lacks {', '.join(missing)}")
        endpoint = entry.get("client_endpoint") or f"https://{portal}/rest/"
        oauth = entry.get("oauth_endpoint") or DEFAULT_OAUTH_ENDPOINT
        if not isinstance(endpoint, str) or not isinstance(oauth, str):
            raise UnusableCredentials(f"secret entry for {portal} has a non-string endpoint")
        expires = entry.get("expires_at")
        refreshed = entry.get("refreshed_at")
        member = entry.get("member_id")
        return cls(
            portal=portal,
            client_id=entry["client_id"],
            client_secret=entry["client_secret"],
            access_token=entry["access_token"],
            refresh_token=entry["refresh_token"],
            client_endpoint=_with_slash(endpoint),
            oauth_endpoint=oauth,
            expires_at=_epoch(expires),
            refreshed_at=_epoch(refreshed),
            member_id=member if isinstance(member, str) and member else None,
            extra={k: v for k, v in entry.items() if k not in _KNOWN},
        )

    def with_tokens(
        self,
        access_token: str,
        refresh_token: str,
        expires_at: int | None,
        refreshed_at: int | None = None,
        *,
        client_endpoint: str | None = None,
        member_id: str | None = None,
    ) -> PortalCredentials:
        """These credentials after a refresh; the OAuth server's answer also says where the
        portal's REST interface is now and which Bitrix24 it is."""
        return replace(
            self,
            access_token=access_token,
            refresh_token=refresh_token,
            expires_at=expires_at,
            refreshed_at=refreshed_at,
            client_endpoint=_with_slash(client_endpoint)
            if client_endpoint
            else self.client_endpoint,
            member_id=member_id or self.member_id,
        )


def _with_slash(endpoint: str) -> str:
    return endpoint if endpoint.endswith("/") else endpoint + "/"


def _epoch(value: object) -> int | None:
    """Epoch seconds as stored, or None for anything else (bool, text, inf, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class AppCredentials:
    """An application installed on many portals: its client id and secret are the same on every
    one, so a fleet keeps them once, in the secret's `apps`, and only each portal's pair in the
    fleet's token table."""

    name: str
    client_id: str
    client_secret: str = field(repr=False)
    oauth_endpoint: str = DEFAULT_OAUTH_ENDPOINT

    def entry(self) -> dict[str, str]:
        """The fields a portal's entry takes from its application."""
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "oauth_endpoint": self.oauth_endpoint,
        }


def apps_of(document: Mapping[str, Any]) -> dict[str, AppCredentials]:
    """The credentials document's applications: `{"apps": {name: {client_id, client_secret,
    oauth_endpoint?}}}`. One without its id or secret is left out (portals naming it then lack
    them, and say so)."""
    found: dict[str, AppCredentials] = {}
    apps = document.get("apps")
    for name, app in apps.items() if isinstance(apps, Mapping) else ():
        if not isinstance(app, Mapping):
            continue
        client_id, secret = app.get("client_id"), app.get("client_secret")
        if isinstance(client_id, str) and client_id and isinstance(secret, str) and secret:
            oauth = app.get("oauth_endpoint")
            found[str(name)] = AppCredentials(
                str(name),
                client_id,
                secret,
                oauth if isinstance(oauth, str) and oauth else DEFAULT_OAUTH_ENDPOINT,
            )
    return found


def parse_document(text: str, where: str) -> dict[str, Any]:
    """The credentials document (`{"portals": {domain: entry}}`, the secret's contract) from
    its text; `where` names it in errors (a secret, a file). Entries are checked when read."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        # The position only: the decoder's own text is safe, its .doc is the secret.
        raise CredentialsDocumentError(
            f"{where} is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise CredentialsDocumentError(f"{where} nests too deeply") from None
    if not isinstance(document, dict):
        raise CredentialsDocumentError(f"{where} is not a JSON object")
    if not isinstance(document.get("portals"), dict):
        raise CredentialsDocumentError(
            f'{where} has no "portals" object '
            '(expected {"portals": {"<domain>": {...credentials...}}})'
        )
    if "apps" in document and not isinstance(document["apps"], dict):
        raise CredentialsDocumentError(f'{where} has an "apps" that is not an object')
    return document
