"""The ports of the inbound function: the authorisation server that vouches for an install,
the store of installations (the token table), and the portal's event bindings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..domain.app_events import AppEventName, AppInfo, CodeGrant, Installation
from ..tokens.credentials import AppCredentials


class AuthServerUnreachable(Exception):
    """The authorisation server gave no usable answer (down, timed out, 5xx, garbage): the
    install cannot be verified, so nothing is trusted. The message names no token or URL."""


class InstallStoreError(Exception):
    """The token store refused or failed a write or a read (the message names no token)."""


class BindFailed(Exception):
    """The portal did not take an event binding (the message names no token)."""


class AuthServer(Protocol):
    def app_info(self, server: str, access_token: str) -> AppInfo:
        """`app.info` on the authorisation server `server` with the token received. Raises
        NotGenuine (the server refused the token) or AuthServerUnreachable."""
        ...

    def exchange_code(self, token_url: str, app: AppCredentials, code: str) -> CodeGrant:
        """Trade an authorization code (it lives 30 s) for a pair. Raises NotGenuine (the
        server refused the code) or AuthServerUnreachable."""
        ...


@dataclass(frozen=True)
class KnownInstall:
    """What the store knows of a member_id: its portal, the digest of its application token,
    where its REST interface is and its access token as last stored (to bind events again)."""

    portal: str
    token_hash: str
    client_endpoint: str
    access_token: str = field(repr=False)


class InstallStore(Protocol):
    def store_install(self, installation: Installation) -> bool:
        """Keep a verified install's pair unless the stored one is newer (then False, nothing
        written). A member_id known under another domain is a moved portal: its old pair goes.
        Raises InstallStoreError."""
        ...

    def known(self, member_id: str) -> KnownInstall | None:
        """The installation of `member_id`, read consistently. Raises InstallStoreError."""
        ...

    def note_line_deleted(self, member_id: str, portal: str, line: int, at: int) -> None:
        """Mark `line` deleted at `at` (epoch seconds) on the portal's item, the newest marks
        kept (`domain.inventory.DELETIONS_KEPT`), the pair untouched; nothing when the item is
        no longer `member_id`'s. Raises InstallStoreError."""
        ...

    def forget(self, member_id: str, portal: str) -> None:
        """Delete the portal's pair and what is known of `member_id`. Raises InstallStoreError."""
        ...


class EventBinder(Protocol):
    def bind(
        self, installation: Installation, handler: str, events: tuple[AppEventName, ...]
    ) -> None:
        """Bind each event to `handler` on the portal ("already bound" is success). Raises
        BindFailed."""
        ...
