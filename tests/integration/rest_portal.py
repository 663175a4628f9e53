"""What the REST session's and the connector checks' tests share: token sources, a recorder of
waits, and fresh portals on the local portal over real HTTP."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests

from connector_monitor.bitrix24.connector_checks import ConnectorChecks
from connector_monitor.bitrix24.rest_session import RestSession, RetryPolicy
from connector_monitor.deadline import Deadline
from connector_monitor.domain.portal_errors import PortalError, classify
from connector_monitor.domain.results import Cause, State
from connector_monitor.domain.targets import Target
from connector_monitor.ports.portal import PortalCheck
from connector_monitor.tokens.credentials import PortalCredentials
from local.bitrix24_portal import LocalPortal

CONNECTOR = "myconnector"
FAST = RetryPolicy(failing_retries=2, rate_limit_retries=4, base_delay=0.01, max_delay=0.05)
_names = itertools.count()


class OAuthTokens:
    """A tiny token source: the pair in memory, refreshed at the portal's OAuth endpoint.

    The refresh is a form POST so that no secret rides in a URL that urllib3 might log.
    """

    def __init__(self, portal: str, entry: dict[str, str]) -> None:
        self.creds = PortalCredentials.from_secret_entry(portal, entry)
        self.seen: set[str] = {
            entry["access_token"],
            entry["refresh_token"],
            entry["client_secret"],
        }
        self.refreshes = 0

    def credentials(self, portal: str) -> PortalCredentials:
        return self.creds

    def refresh(
        self, portal: str, stale: PortalCredentials, deadline: Deadline | None = None
    ) -> PortalCredentials:
        if stale.access_token != self.creds.access_token:
            return self.creds  # already rotated
        reply = requests.post(
            self.creds.oauth_endpoint,
            data={
                "grant_type": "refresh_token",
                "client_id": self.creds.client_id,
                "client_secret": self.creds.client_secret,
                "refresh_token": self.creds.refresh_token,
            },
            timeout=5,
        )
        body = reply.json()
        if "error" in body:
            code = str(body["error"])
            raise PortalError(classify(code, reply.status_code), portal, code=code)
        self.refreshes += 1
        self.seen |= {body["access_token"], body["refresh_token"]}
        self.creds = self.creds.with_tokens(
            body["access_token"], body["refresh_token"], body["expires"]
        )
        return self.creds


class BrokenTokens:
    """A token source that fails the way a store can: a corrupt entry or an unexpected error."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def credentials(self, portal: str) -> PortalCredentials:
        raise self.exc

    def refresh(
        self, portal: str, stale: PortalCredentials, deadline: Deadline | None = None
    ) -> PortalCredentials:
        raise self.exc


class Sleeps:
    """Records the waits instead of sleeping, so backoff can be asserted exactly."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@contextmanager
def one_line_tls_portal(domain: str) -> Iterator[LocalPortal]:
    """A local portal over HTTPS hosting `domain`, with CONNECTOR connected on line 1."""
    with LocalPortal(tls=True) as server:
        server.add_portal(domain, connectors={CONNECTOR: "Mine"}, lines={1: "Support"})
        server.connect(domain, CONNECTOR, 1)
        yield server


def new_portal(portal: LocalPortal, lines: int = 3, connected: set[int] | None = None) -> str:
    """A fresh portal with `lines` open lines; the connector works on `connected` (all if None)."""
    domain = f"p{next(_names)}.bitrix24.test"
    portal.add_portal(
        domain,
        connectors={CONNECTOR: "My connector", "telegrambot": "Telegram"},
        lines={n: f"Line {n}" for n in range(1, lines + 1)},
    )
    for line in connected if connected is not None else range(1, lines + 1):
        portal.connect(domain, CONNECTOR, line)
    return domain


def targets_of(domain: str, count: int) -> list[Target]:
    return [Target(domain, CONNECTOR, n) for n in range(1, count + 1)]


def session_for(
    portal: LocalPortal, domain: str, tokens: Any = None, **kwargs: Any
) -> tuple[RestSession, OAuthTokens]:
    source = tokens or OAuthTokens(domain, portal.credentials(domain))
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("sleep", Sleeps())
    return RestSession(domain, source, **kwargs), source


def checks_for(
    portal: LocalPortal, domain: str, tokens: Any = None, **kwargs: Any
) -> tuple[ConnectorChecks, OAuthTokens]:
    session, source = session_for(portal, domain, tokens, **kwargs)
    return ConnectorChecks(session), source


def states(check: PortalCheck) -> list[State]:
    return [r.state for r in check.results]


def causes(check: PortalCheck) -> set[Cause | None]:
    return {r.cause for r in check.results}
