"""The local run (`make run`): the checker on a timer and the snapshot API, against moto and the
local Bitrix24 portal on 127.0.0.1, or a real portal with `--secret-file`. README's "Run it
locally" says what it does and how to use it; `--help` lists the options.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from aws_lambda_powertools.metrics.provider import cold_start

from connector_monitor.aws.repository import StateRepository
from connector_monitor.domain.timestamps import stamp
from local.api_server import ApiServer
from local.aws import (
    REGION,
    MotoStack,
    Resources,
    SecretFile,
    SecretFileError,
    apply_environment,
)
from local.bitrix24_portal import DEMO_DOMAIN, LocalPortal
from local.console import Console, rows_from_statuses
from local.handlers import LambdaContext, load_handler
from local.template import environment_of

ROOT = Path(__file__).resolve().parent.parent
RUN_FILE = ROOT / ".local-run.json"  # how monitorctl --local reaches this run

DEMO_CONNECTOR = "myconnector"
DEMO_LINES = {1: "Sales", 2: "Support", 3: "VIP"}
OUTAGE_LINE = 2
OUTAGE_STARTS_AFTER_RUN = 1
OUTAGE_RUNS = 4  # failed checks: runs 2..5; the down alert on run 3, the recovery on run 6
DEFAULT_PORTAL_PORT = 8099
DEFAULT_API_PORT = 8098
MONITOR_APP = "monitor"  # the application's name in the secret's "apps"
# The inbound API's unguessable path part (on AWS: the stack id's random part).
INBOUND_KEY = "9f4c2e7a-3b1d-4e8f-a6c5-0d2b7e1f9a34"
INBOUND_ROUTES = ("POST /app/{key}/install", "POST /app/{key}/events", "GET /app/{key}/authorized")
FAILURE_THRESHOLD = 2
RECOVERY_THRESHOLD = 1
LAMBDA_TIMEOUT_MS = 120_000  # the template's Timeout: 120
ABORTED = 130  # the shell's code for "ended by Ctrl-C"


class StartupError(Exception):
    """Something the user can fix (a busy port, a bad secret file, no targets): one line."""


# ---------------------------------------------------------------------------- options
@dataclass(frozen=True)
class Options:
    interval: float = 10.0
    runs: int | None = None
    demo_outage: bool = False
    port_portal: int | None = None
    port_api: int | None = None
    secret_file: Path | None = None
    targets: str | None = None
    log_level: str = "WARNING"
    run_file: Path = RUN_FILE


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m local.run",
        description="Run the Bitrix24 connector monitor locally (moto + a local portal).",
    )
    add = parser.add_argument
    add("--interval", type=_positive_float, default=10.0, help="seconds between runs (10)")
    add("--runs", type=_positive_int, default=None, help="stop after N runs (default: Ctrl-C)")
    add(
        "--demo-outage",
        action="store_true",
        help=f"line {OUTAGE_LINE} fails after run {OUTAGE_STARTS_AFTER_RUN} and recovers "
        f"{OUTAGE_RUNS} runs later",
    )
    add(
        "--port-portal",
        type=_port,
        default=None,
        help=f"local portal port ({DEFAULT_PORTAL_PORT} if free; 0 = any)",
    )
    add(
        "--port-api",
        type=_port,
        default=None,
        help=f"snapshot API port ({DEFAULT_API_PORT} if free; 0 = any)",
    )
    add(
        "--secret-file",
        type=Path,
        default=None,
        help="a real portal's secret (JSON); refreshed tokens are written back to it",
    )
    add(
        "--targets",
        default=None,
        help="domain/connector/line,... (default: TARGETS with --secret-file, else the demo "
        "portal's three lines)",
    )
    add(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="level of the handler's JSON logs (WARNING)",
    )
    add(
        "--run-file",
        type=Path,
        default=RUN_FILE,
        help="where to write how `monitorctl --local` reaches this run (removed when it stops; "
        f"default {RUN_FILE.name} at the repository's root)",
    )
    args = parser.parse_args(argv)
    if args.demo_outage and args.secret_file:
        parser.error("--demo-outage needs the local portal; it cannot be used with --secret-file")
    return Options(
        interval=args.interval,
        runs=args.runs,
        demo_outage=args.demo_outage,
        port_portal=args.port_portal,
        port_api=args.port_api,
        secret_file=args.secret_file,
        targets=args.targets,
        log_level=args.log_level,
        run_file=args.run_file,
    )


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be 0..65535")
    return value


# ---------------------------------------------------------------------------- Lambda stand-ins


def scheduled_event() -> dict[str, Any]:
    """The shape EventBridge Scheduler sends (template.yaml's schedule Input)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "time": stamp(datetime.now(UTC)),
        "resources": [f"arn:aws:scheduler:{REGION}:123456789012:schedule/default/local-run"],
        "detail": {"attempt": "1"},
    }


def function_environment(
    *,
    targets: str,
    secret_id: str,
    table: str,
    tokens_table: str,
    topic_arn: str,
    interval: float,
    log_level: str,
) -> dict[str, str]:
    """Both functions' variables (one process runs both) as template.yaml sets them, with the
    local run's parameters and resources, and what differs here."""
    minutes = max(1, math.ceil(interval / 60))
    parameters = {
        "Targets": targets,
        "FailureThreshold": str(FAILURE_THRESHOLD),
        "RecoveryThreshold": str(RECOVERY_THRESHOLD),
        # Only read by the snapshot API (staleness); the local schedule is --interval.
        "ScheduleExpression": f"rate({minutes} minute{'s' if minutes > 1 else ''})",
    }
    resources = {
        "Table": table,
        "TokenTable": tokens_table,
        "Topic": topic_arn,
        "PortalSecret": secret_id,
    }
    local = {
        "STALE_AFTER_SECONDS": str(max(1, math.ceil(2 * interval))),
        # Powertools 3.37 honours this when it flushes the handler's metrics (the ColdStart
        # metric aside: see LocalRun.start), so no EMF blobs on the console.
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": log_level,
        "LOG_LEVEL": log_level,
    }
    snapshot = environment_of("SnapshotApiFunction", resources=resources, parameters=parameters)
    checker = environment_of("CheckerFunction", resources=resources, parameters=parameters)
    return {**snapshot, **checker, **local}


# ---------------------------------------------------------------------------- signals
class Stopper:
    """SIGINT/SIGTERM: the first asks to stop (after the current run), a second during a run or
    the start-up aborts it (KeyboardInterrupt). Handlers never print through the Console (its
    lock may be held by the interrupted code): they write to stderr's descriptor directly."""

    def __init__(self) -> None:
        self._requested = threading.Event()
        self.busy = True  # start-up counts as busy

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    @property
    def requested(self) -> bool:
        return self._requested.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if a stop was asked for meanwhile."""
        return self._requested.wait(max(0.0, seconds))

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._requested.is_set() and self.busy:
            raise KeyboardInterrupt
        first = not self._requested.is_set()
        self._requested.set()
        if first and self.busy:
            _raw_stderr(
                "\nstopping after the current step (Ctrl-C again to abort it; an interrupted "
                "token refresh can lose the new refresh token)\n"
            )


def _raw_stderr(text: str) -> None:
    with suppress(OSError, ValueError):
        os.write(sys.stderr.fileno(), text.encode())


# ---------------------------------------------------------------------------- start-up
def _port_or_any(preferred: int | None, default: int) -> int:
    """An explicit port as given; the default one if it is free, else 0 (any free port)."""
    if preferred is not None:
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers bind: connections in TIME_WAIT from a previous run do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", default))
        except OSError:
            return 0
    return default


def start_portal(port: int | None) -> LocalPortal:
    # HTTPS, as portals speak: the checker trusts the local authority through PORTAL_CA_BUNDLE.
    portal = LocalPortal("127.0.0.1", _port_or_any(port, DEFAULT_PORTAL_PORT), tls=True)
    try:
        portal.start()
    except OSError as exc:
        raise StartupError(f"the local portal cannot listen on port {port}: {exc}") from None
    portal.add_portal(DEMO_DOMAIN, connectors={DEMO_CONNECTOR: "My Connector"}, lines=DEMO_LINES)
    for line in DEMO_LINES:
        portal.connect(DEMO_DOMAIN, DEMO_CONNECTOR, line)
    return portal


def start_api(port: int | None) -> ApiServer:
    """functions/snapshot_api/app.py served over HTTP on 127.0.0.1, as API Gateway would."""
    handler = load_handler("snapshot_api").lambda_handler
    try:
        server = ApiServer(handler, host="127.0.0.1", port=_port_or_any(port, DEFAULT_API_PORT))
    except OSError as exc:  # the port is bound when the server is made
        raise StartupError(f"the snapshot API cannot listen on port {port}: {exc}") from None
    return server.start()


@dataclass(frozen=True)
class Installed:
    """The demo portal's install through the inbound function, as the local run reports it."""

    portal: str
    stored: bool
    bound: int
    handlers: dict[str, str]

    def lines(self) -> list[str]:
        pair = "pair stored" if self.stored else "pair NOT stored"
        return [
            f"installed on {self.portal}: {pair}, {self.bound} events bound",
            "  (the portal posted ONAPPINSTALL to the install handler, which verified the token "
            "with app.info on the portal's OAuth server, stored the pair in the token table and "
            "bound the application's events)",
            *(f"  {name:<16} {url}" for name, url in self.handlers.items()),
        ]


def start_inbound(portal: LocalPortal, resources: Resources) -> ApiServer:
    """functions/inbound/app.py served as its API: the local OAuth server stands for
    oauth.bitrix.info (AUTH_SERVERS), its authority for the public ones (PORTAL_CA_BUNDLE)."""
    handler = load_handler("inbound").lambda_handler
    try:
        server = ApiServer(handler, host="127.0.0.1", port=0, routes=INBOUND_ROUTES)
    except OSError as exc:
        raise StartupError(f"the inbound API cannot listen: {exc}") from None
    # Only what the other functions' environment lacks: their log level stays the run's.
    inbound = environment_of(
        "InboundFunction",
        resources={
            "TokenTable": resources.tokens_table,
            "Topic": resources.topic_arn,
            "OperationsTopic": resources.operations_topic_arn,
            "PortalSecret": resources.secret_id,
        },
        extra={
            "INBOUND_URL": f"{server.url}/app/{INBOUND_KEY}",
            "AUTH_SERVERS": portal.server_endpoint,
        },
    )
    os.environ.update({k: v for k, v in inbound.items() if k not in os.environ})
    return server.start()


def install_demo(portal: LocalPortal, inbound: ApiServer, client_id: str) -> Installed:
    """The demo portal installs the monitor's application as Bitrix24 does: it posts
    ONAPPINSTALL to the install handler, which verifies it and stores the pair."""
    base = f"{inbound.url}/app/{INBOUND_KEY}"
    handlers = {
        "Install": f"{base}/install",
        "Events": f"{base}/events",
        "Re-authorisation": f"{base}/authorized",
    }
    delivery = portal.install_app(DEMO_DOMAIN, handlers["Install"], app=client_id)
    if delivery.status != 200:
        raise StartupError(
            f"the demo portal's install was refused ({delivery.status or delivery.error}): "
            f"{delivery.body[:200]}"
        )
    answer = json.loads(delivery.answer)
    bound = [b for b in portal.bindings(DEMO_DOMAIN, client_id) if b.handler == handlers["Events"]]
    return Installed(DEMO_DOMAIN, bool(answer.get("stored")), len(bound), handlers)


def demo_targets() -> str:
    return ",".join(f"{DEMO_DOMAIN}/{DEMO_CONNECTOR}/{line}" for line in DEMO_LINES)


def control_commands(portal_url: str, ca_file: str) -> list[str]:
    curl = f"curl --cacert {ca_file}"
    base = f"{portal_url}/_control/{DEMO_DOMAIN}"

    def status(error: bool) -> str:
        body = json.dumps(
            {"connector": DEMO_CONNECTOR, "line": OUTAGE_LINE, "configured": True, "error": error},
            separators=(",", ":"),
        )
        return f"{curl} -X POST {base}/status -d '{body}'"

    return [
        f"Make line {OUTAGE_LINE} fail (connector.down after {FAILURE_THRESHOLD} failed checks):",
        f"  {status(True)}",
        "Repair it (connector.recovered on the next run):",
        f"  {status(False)}",
        "More: the portal stops answering (UNKNOWN, then check.failed), tokens expire (refreshed "
        "and stored), the app is revoked, faults cleared, the portal's state:",
        f'  {curl} -X POST {base}/fault -d \'{{"fault":"http_502"}}\'',
        f"  {curl} -X POST {base}/expire",
        f"  {curl} -X POST {base}/revoke",
        f"  {curl} -X POST {base}/clear",
        f"  {curl} {portal_url}/_control/state",
    ]


# ---------------------------------------------------------------------------- the loop
@dataclass
class LocalRun:
    options: Options
    console: Console
    stopper: Stopper
    stack: MotoStack = field(default_factory=MotoStack)
    portal: LocalPortal | None = None
    api: ApiServer | None = None
    inbound: ApiServer | None = None
    installed: Installed | None = None
    secret_file: SecretFile | None = None
    checker: ModuleType | None = None
    failed_runs: int = 0
    _unsynced: dict[str, Any] | None = None

    def start(self, cleanup: ExitStack) -> None:
        options = self.options
        if options.secret_file is not None:
            self.secret_file = SecretFile(options.secret_file)
            try:
                secret = self.secret_file.load()
            except SecretFileError as exc:
                raise StartupError(str(exc)) from None
            targets = options.targets or os.environ.get("TARGETS", "")
            if not targets.strip():
                raise StartupError(
                    "--secret-file needs the targets to watch: --targets "
                    "domain/connector/line,... or the TARGETS environment variable"
                )
        else:
            self.portal = start_portal(options.port_portal)
            cleanup.callback(self.portal.stop)
            # The monitor's own application (README: install the monitor on client portals);
            # the demo connector belongs to the portal's first app (its backend). The secret
            # holds the application; the pair comes from the install, into the token table.
            client_id, client_secret = self.portal.add_shared_app(MONITOR_APP)
            app = {
                "client_id": client_id,
                "client_secret": client_secret,
                "oauth_endpoint": self.portal.oauth_endpoint,
            }
            secret = {"apps": {MONITOR_APP: app}, "portals": {}}
            targets = options.targets or demo_targets()
        self.stack.start()
        cleanup.callback(self.stack.stop)
        resources = self.stack.create(secret)
        write_run_file(options.run_file, self.stack)
        cleanup.callback(remove_run_file, options.run_file, self.stack.endpoint)
        if self.secret_file is not None:
            cleanup.callback(self.final_sync)
        apply_environment(self.stack.environment(), os.environ)
        os.environ.update(
            function_environment(
                targets=targets,
                secret_id=resources.secret_id,
                table=resources.table,
                tokens_table=resources.tokens_table,
                topic_arn=resources.topic_arn,
                interval=options.interval,
                log_level=options.log_level,
            )
        )
        if self.portal is not None:
            os.environ["PORTAL_CA_BUNDLE"] = self.portal.ca_file  # never needed on AWS
            self.inbound = start_inbound(self.portal, resources)
            cleanup.callback(self.inbound.stop)
            self.installed = install_demo(
                self.portal, self.inbound, secret["apps"][MONITOR_APP]["client_id"]
            )
        self.checker = load_handler("checker")  # after the environment: it reads it at import
        # Powertools 3.37 prints the ColdStart metric through single_metric(), which ignores
        # POWERTOOLS_METRICS_DISABLED: count this start as warm so the console stays clean.
        cold_start.is_cold_start = False
        self.api = start_api(options.port_api)
        cleanup.callback(self.api.stop)
        self.banner(targets)

    def banner(self, targets: str) -> None:
        options, resources = self.options, self.stack.resources
        lines = [
            "Bitrix24 connector monitor - local run (Ctrl-C stops)",
            f"  AWS (moto)       {self.stack.endpoint}  table {resources.table}, "
            "token table, alert and operations topics, secret, alert inbox queue",
        ]
        if self.portal is not None:
            lines.append(
                f"  Bitrix24 portal  {self.portal.url}  {DEMO_DOMAIN}: connector "
                f"{DEMO_CONNECTOR} on lines {', '.join(map(str, DEMO_LINES))}"
            )
        else:
            lines.append(
                f"  Bitrix24 portals real, from {options.secret_file} (refreshed tokens are "
                "written back to that file)"
            )
        if self.api is not None:
            lines.append(f"  Snapshot API     {self.api.url}  ->  curl {self.api.url}/snapshot")
            lines.append(f"  Status page      {self.api.url}/  (open it in a browser)")
        lines += [
            f"  Targets          {targets}",
            f"  Every {options.interval:g} s; FAILURE_THRESHOLD={FAILURE_THRESHOLD}, "
            f"RECOVERY_THRESHOLD={RECOVERY_THRESHOLD}"
            + (f"; stops after {options.runs} runs" if options.runs else ""),
        ]
        lines.append(f"  monitorctl       {monitorctl_command(options.run_file)} silence list")
        self.console.print(*lines, "")
        if self.installed is not None:
            self.console.print(*self.installed.lines(), "")
        if self.portal is not None:
            self.console.print(*control_commands(self.portal.url, self.portal.ca_file), "")
        if options.demo_outage:
            self.console.note(
                f"--demo-outage: line {OUTAGE_LINE} fails after run {OUTAGE_STARTS_AFTER_RUN} "
                f"and is repaired after run {OUTAGE_STARTS_AFTER_RUN + OUTAGE_RUNS}: "
                f"connector.down on run {OUTAGE_STARTS_AFTER_RUN + FAILURE_THRESHOLD}, "
                f"connector.recovered on run {OUTAGE_STARTS_AFTER_RUN + OUTAGE_RUNS + 1}"
            )

    def loop(self) -> None:
        number = 0
        next_start = time.monotonic()
        while not self.stopper.requested:
            number += 1
            next_start += self.options.interval
            self.stopper.busy = True
            try:
                self.run_once(number)
                self.after_run(number)
            finally:
                self.stopper.busy = False
            if self.options.runs is not None and number >= self.options.runs:
                return
            if self.stopper.wait(next_start - time.monotonic()):
                return
            next_start = max(next_start, time.monotonic())

    def run_once(self, number: int) -> None:
        assert self.checker is not None
        self.console.print("")
        started = time.monotonic()
        summary: dict[str, Any] = {}
        try:
            summary = self.invoke(self.checker)
        except Exception as exc:  # one failed run must not end the local run
            self.failed_runs += 1
            self.console.error(f"run {number} failed: {type(exc).__name__}: {exc}")
        finally:
            # Disabled metrics are never flushed, and Powertools prints a full metric set
            # even when disabled once one metric has 100 values: keep the set empty.
            self.checker.metrics.clear_metrics()
        seconds = time.monotonic() - started
        for alert in self.stack.alerts():
            self.console.alert(alert)
        repository = StateRepository(
            self.stack.resources.table, client=self.stack.client("dynamodb")
        )
        self.console.table(rows_from_statuses(repository.load().statuses.values()))
        if summary:
            self.console.summary(number, summary, seconds)

    @staticmethod
    def invoke(checker: ModuleType) -> dict[str, Any]:
        """Call the handler in a worker thread, so a second Ctrl-C can abandon a run at once.

        In the main thread a KeyboardInterrupt raised inside the check cycle would wait for its
        portal threads to finish (tens of seconds against a portal that does not answer).
        """
        outcome: dict[str, Any] = {}

        def call() -> None:
            try:
                outcome["summary"] = checker.lambda_handler(
                    scheduled_event(), LambdaContext(remaining_ms=LAMBDA_TIMEOUT_MS)
                )
            except BaseException as exc:
                outcome["error"] = exc

        worker = threading.Thread(target=call, name="checker-run", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.1)  # short waits: the signal handler runs between them
        if "error" in outcome:
            raise outcome["error"]
        summary: dict[str, Any] = outcome["summary"]
        return summary

    def after_run(self, number: int) -> None:
        self.sync_secret_file()
        if not self.options.demo_outage or self.portal is None:
            return
        if number == OUTAGE_STARTS_AFTER_RUN:
            self.portal.set_status(
                DEMO_DOMAIN, DEMO_CONNECTOR, OUTAGE_LINE, configured=True, error=True
            )
            self.console.note(f"demo outage: line {OUTAGE_LINE} marked ERROR on the portal")
        elif number == OUTAGE_STARTS_AFTER_RUN + OUTAGE_RUNS:
            self.portal.connect(DEMO_DOMAIN, DEMO_CONNECTOR, OUTAGE_LINE)
            self.console.note(f"demo outage over: line {OUTAGE_LINE} connected again")

    def sync_secret_file(self) -> None:
        if self.secret_file is None:
            return
        document = self.stack.read_secret()
        try:
            changed = self.secret_file.sync(document)
        except OSError as exc:
            self._unsynced = document
            self.console.error(
                f"REFRESHED TOKENS NOT WRITTEN to {self.secret_file.path}: {exc.strerror or exc}. "
                "The new refresh token is only in this process: fix the file's permissions "
                "(the next run tries again); on exit it is saved to a new file in your home."
            )
            return
        self._unsynced = None
        if changed:
            self.console.note(f"refreshed tokens written back to {self.secret_file.path}")

    def final_sync(self) -> None:
        """On the way out, before moto stops: the file must hold the last valid pair."""
        if self.secret_file is None:
            return
        try:
            self.sync_secret_file()
        except Exception as exc:  # moto unreachable: fall back to what the last run saw
            self.console.error(f"could not read the secret back from moto: {type(exc).__name__}")
        if self._unsynced is None:
            return
        try:
            rescued = self.secret_file.rescue(self._unsynced)
        except OSError as exc:
            self.console.error(
                f"COULD NOT SAVE THE REFRESHED TOKENS ANYWHERE ({exc.strerror or exc}): "
                "re-authorise the application on the portal and store the new tokens"
            )
            return
        self.console.error(f"the refreshed tokens were saved to {rescued} (mode 0600)")


def write_run_file(path: Path, stack: MotoStack) -> None:
    """What `monitorctl --local` needs: the moto endpoint, the region and the resources' names
    (no credential: moto takes any, and monitorctl uses made-up ones for a local run)."""
    resources = stack.resources
    document = {
        "endpoint_url": stack.endpoint,
        "region": stack.region,
        "table": resources.table,
        "tokens_table": resources.tokens_table,
        "secret": resources.secret_id,
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def remove_run_file(path: Path, endpoint: str) -> None:
    """Remove the file if it is still this run's (another run may have started since)."""
    with suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")).get("endpoint_url") == endpoint:
            path.unlink()


def monitorctl_command(run_file: Path) -> str:
    """The command that reaches this run's tables and secret."""
    where = "--local" if run_file == RUN_FILE else f"--local {run_file}"
    python = ROOT / ".venv" / "bin" / "python"
    return f"{python.relative_to(ROOT) if python.exists() else 'python'} -m monitorctl {where}"


def main(argv: Sequence[str] | None = None, *, console: Console | None = None) -> int:
    options = parse_options(argv)
    # Powertools warns on every run that ends before the handler recorded its metrics.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    console = console or Console()
    stopper = Stopper()
    stopper.install()
    run = LocalRun(options, console, stopper)
    try:
        with ExitStack() as cleanup:
            try:
                run.start(cleanup)
            except StartupError as exc:
                console.error(f"cannot start: {exc}")
                return 2
            stopper.busy = False
            if not stopper.requested:
                run.loop()
            stopper.busy = False
            console.note("stopping")
    except KeyboardInterrupt:
        console.error("aborted")
        return ABORTED
    console.note("stopped")
    # A scripted run (--runs) reports failed runs; an interactive one ends with Ctrl-C.
    return 1 if run.failed_runs and options.runs is not None else 0


def _exit(code: int) -> None:
    if code != ABORTED:
        sys.exit(code)
    # An aborted run may leave the check cycle's portal threads waiting for an answer, and the
    # interpreter would join them before exiting: everything is stopped and saved by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit(main())
