"""The composition root: the one place that builds the checker's object graph.

From the settings and one `Tuning` value it builds the adapters (state repository, registry,
alert publisher, lease, work queue, pair stores, the Bitrix24 client and OAuth call), hands them
to the services (token source, cycle, planner, shard worker) and runs what an invocation asks
for. The handlers, the local run, the bench and the fault matrix all build through here; only
`Tuning` differs between them and Lambda.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property, partial
from typing import Any

from .aws import clients
from .aws.lease import Lease
from .aws.publisher import AlertPublisher
from .aws.registry import Registry
from .aws.repository import StateRepository
from .aws.secret_pairs import SecretPairs
from .aws.silences import SilenceTable
from .aws.token_table import TablePairs
from .aws.work_queue import ShardQueue
from .bitrix24.app_server import BoundedAppServer
from .bitrix24.connector_checks import open_connector_checks
from .bitrix24.oauth import OAUTH_TIMEOUT, oauth_refresh
from .bitrix24.transport import HttpSession
from .cycle import CheckCycle, CycleSettings, RunSummary
from .deadline import Deadline
from .domain.causes import Deployment
from .domain.shards import KeyRange
from .domain.targets import TargetList, TargetsVariable
from .fanout import Planner, ScheduledRun, ShardWorker, run_scheduled
from .installing import Installing, InstallRules
from .ports.installs import InstallStoreError
from .ports.portal import ClientFactory
from .ports.work_queue import ShardOrder
from .settings import CheckerSettings, InboundSettings
from .tokens.credentials import AppCredentials
from .tokens.errors import TokenStoreError
from .tokens.ports import PairStore, RefreshLease
from .tokens.reading import LoadedOnce, TableThenSecret
from .tokens.refresh import RefreshingTokens, RefreshPolicy

logger = logging.getLogger(__name__)

# A claim on pending alerts outlives the invocation that took it by this much, so no other run
# publishes them while this one still may.
CLAIM_MARGIN = timedelta(seconds=30)


@dataclass(frozen=True)
class Tuning:
    """What a caller outside Lambda changes about the wiring; the defaults are what Lambda runs.
    Tests, the local run and the bench hand in moto's clients, a portal client with shorter
    timeouts, a session that counts bytes, shorter pauses."""

    aws: Callable[[str], Any] = clients.client  # a client of an AWS service, by its name
    lease_aws: Callable[[], Any] = clients.lease_client  # the lease's fail-fast DynamoDB client
    portal_client: ClientFactory | None = None  # None: the real checks (open_connector_checks)
    http: HttpSession | None = None  # the OAuth calls' session (None: a guarded new one)
    oauth_timeout: tuple[float, float] = OAUTH_TIMEOUT
    refresh: RefreshPolicy = field(default_factory=RefreshPolicy)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time


class Checker:
    """The checker, assembled: adapters built once per container, a token source and a cycle
    per invocation."""

    def __init__(self, settings: CheckerSettings, tuning: Tuning | None = None) -> None:
        self.settings = settings
        self.tuning = tuning or Tuning()

    # -- adapters, once per container ---------------------------------------------------------

    @cached_property
    def repository(self) -> StateRepository:
        return StateRepository(self.settings.table_name, client=self.tuning.aws("dynamodb"))

    @cached_property
    def registry(self) -> Registry:
        return Registry(self.settings.table_name, client=self.tuning.aws("dynamodb"))

    @cached_property
    def silences(self) -> SilenceTable:
        return SilenceTable(self.settings.table_name, client=self.tuning.aws("dynamodb"))

    @cached_property
    def publisher(self) -> AlertPublisher:
        return AlertPublisher(self.settings.topic_arn, client=self.tuning.aws("sns"))

    @cached_property
    def lease(self) -> Lease:
        return Lease(self.settings.table_name, client=self.tuning.lease_aws())

    @cached_property
    def work_queue(self) -> ShardQueue | None:
        url = self.settings.work_queue_url
        return ShardQueue(url, client=self.tuning.aws("sqs")) if url else None

    @property
    def ca_bundle(self) -> str | None:
        """The authorities portals are checked against (None: the public CAs)."""
        return self.settings.portal_ca_bundle or None

    # -- per invocation -------------------------------------------------------------------------

    def targets(self, portals: KeyRange | None = None) -> TargetList:
        """TARGETS and the registry's entries, each once; bad entries logged. A shard (its
        `portals`) reads only its range of the registry."""
        registered = self.registry.load(portals)
        targets = TargetsVariable(self.settings.targets).load().merged(registered)
        for error in targets.errors:
            logger.error("bad target entry", extra={"entry": error.entry, "reason": error.reason})
        return targets

    def pair_store(
        self, portals: KeyRange | None = None, ends_by: float | None = None
    ) -> PairStore:
        """Where the pairs are: the secret, and with a token table the table before it (a
        shard reads and refreshes only its `portals` of the table, under a refresh claim that
        runs out by itself after `ends_by`, the invocation's end). New each invocation: read
        once a run."""
        tuning = self.tuning
        secret = SecretPairs(
            self.settings.secret_id, client=tuning.aws("secretsmanager"), sleep=tuning.sleep
        )
        if not self.settings.tokens_table:
            return secret
        table = TablePairs(
            self.settings.tokens_table,
            apps=secret.apps,
            client=tuning.aws("dynamodb"),
            portals=portals,
            ends_by=ends_by,
            clock=tuning.clock,
            sleep=tuning.sleep,
        )
        return TableThenSecret(table, secret)

    def token_source(
        self,
        portals: KeyRange | None = None,
        lease: RefreshLease | None = None,
        ends_by: float | None = None,
    ) -> RefreshingTokens:
        """The pairs with the refresh policy over them, refreshes of the secret's serialised by
        `lease` (the cycle's is the stack's; None: only within this invocation), of the token
        table's by its refresh claim (until `ends_by` at the latest)."""
        tuning = self.tuning
        return RefreshingTokens(
            self.pair_store(portals, ends_by),
            oauth_refresh(
                tuning.http,
                ca_bundle=self.ca_bundle,
                timeouts=tuning.oauth_timeout,
                now=tuning.clock,
            ),
            lease=lease,
            policy=tuning.refresh,
            sleep=tuning.sleep,
            clock=tuning.clock,
        )

    def cycle(self, invocation: timedelta, portals: KeyRange | None = None) -> CheckCycle:
        """A cycle for one invocation of at most `invocation`: alert claims last past its end."""
        config = self.settings
        return CheckCycle(
            repository=self.repository,
            tokens=LoadedOnce(
                self.token_source(
                    portals, self.lease, self.tuning.clock() + invocation.total_seconds()
                )
            ),
            publisher=self.publisher,
            client_factory=self.tuning.portal_client
            or partial(open_connector_checks, ca_bundle=self.ca_bundle),
            silences=self.silences,
            settings=CycleSettings(
                thresholds=config.thresholds,
                history=config.history,
                validate_every=config.validate_every,
                max_parallel_portals=config.max_parallel_portals,
                claim_for=invocation + CLAIM_MARGIN,
                probe_budget=config.discovery_probes,
                # Advice names where to fix a target: the Targets parameter when it lists any
                deployment=Deployment.TARGETS if config.targets.strip() else Deployment.REGISTRY,
            ),
        )

    def planner(self, cycle: CheckCycle) -> Planner | None:
        """The planner of a fanned-out run (None without a work queue)."""
        queue = self.work_queue
        if queue is None:
            return None
        config = self.settings
        return Planner(cycle, self.repository, queue, config.shard_portals)

    def worker(self, cycle: CheckCycle) -> ShardWorker:
        return ShardWorker(cycle, self.repository)

    def scheduled_run(self, deadline: Deadline, invocation: timedelta, run_id: str) -> ScheduledRun:
        """The schedule's invocation: the whole run here, or its plan handed to shard workers."""
        cycle = self.cycle(invocation)
        return run_scheduled(
            cycle,
            self.targets(),
            deadline,
            run_id,
            shard_portals=self.settings.shard_portals,
            planner=self.planner(cycle),
        )

    def shard_run(
        self, order: ShardOrder, deadline: Deadline, invocation: timedelta, deliveries: int = 1
    ) -> RunSummary | None:
        """A shard worker's invocation: its range of portals checked (None: an order dropped;
        `ShardLost`: a failed order to fail again, for the dead-letter queue)."""
        worker = self.worker(self.cycle(invocation, order.portals))
        return worker.check(
            order, self.targets(order.portals), deadline, invocation, deliveries=deliveries
        )


class Inbound:
    """The inbound function assembled (the install and events routes): the token table, the
    secret's applications, the authorisation server and the two SNS topics."""

    def __init__(self, settings: InboundSettings, tuning: Tuning | None = None) -> None:
        self.settings = settings
        self.tuning = tuning or Tuning()

    @cached_property
    def service(self) -> Installing:
        tuning, config = self.tuning, self.settings
        secret = SecretPairs(
            config.secret_id, client=tuning.aws("secretsmanager"), sleep=tuning.sleep
        )
        table = TablePairs(config.tokens_table, apps=secret.apps, client=tuning.aws("dynamodb"))
        server = BoundedAppServer(tuning.http, ca_bundle=config.portal_ca_bundle or None)

        def apps() -> dict[str, AppCredentials]:
            try:
                return secret.apps()
            except TokenStoreError as exc:
                raise InstallStoreError(str(exc)) from None

        return Installing(
            InstallRules(apps, config.trusted_servers, config.events_url),
            store=table,
            auth_server=server,
            binder=server,
            alerts=AlertPublisher(config.topic_arn, client=tuning.aws("sns")),
            operations=AlertPublisher(config.operations_topic_arn, client=tuning.aws("sns")),
            clock=tuning.clock,
        )
