"""The checker's token source as tests build it: through the composition root, as the handler
does, with the clients and pauses a test hands in."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from connector_monitor.aws import clients
from connector_monitor.bitrix24.oauth import OAUTH_TIMEOUT
from connector_monitor.bitrix24.transport import HttpSession
from connector_monitor.composition import Checker, Tuning
from connector_monitor.domain.shards import KeyRange
from connector_monitor.settings import CheckerSettings
from connector_monitor.tokens.ports import RefreshLease
from connector_monitor.tokens.refresh import RefreshingTokens, RefreshPolicy


def token_source(
    secret_id: str,
    *,
    tokens_table: str = "",
    portals: KeyRange | None = None,
    client: Any | None = None,
    table_client: Any | None = None,
    lease: RefreshLease | None = None,
    session: HttpSession | None = None,
    oauth_timeout: tuple[float, float] = OAUTH_TIMEOUT,
    policy: RefreshPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> RefreshingTokens:
    """One invocation's token source over `secret_id` (and `tokens_table`), refreshes
    serialised by `lease` (None: within this invocation only)."""
    given = {"secretsmanager": client, "dynamodb": table_client}
    settings = CheckerSettings.model_validate(
        {
            "SECRET_ID": secret_id,
            "TOKENS_TABLE": tokens_table,
            "TABLE_NAME": "unused-by-the-token-source",
            "TOPIC_ARN": "unused-by-the-token-source",
        }
    )
    tuning = Tuning(
        aws=lambda service: given.get(service) or clients.client(service),
        http=session,
        oauth_timeout=oauth_timeout,
        refresh=policy or RefreshPolicy(),
        sleep=sleep,
        clock=clock,
    )
    return Checker(settings, tuning).token_source(portals, lease)
