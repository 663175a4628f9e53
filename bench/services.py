"""The fleet benchmarks' processes: moto's server and the local portal (N portals x L lines,
`myconnector` on every line, one application on all), each in a process of its own so none of
their work counts in a function's; `Child`, the JSON-line pipe to every process of the bench.

    python -m bench.services moto | portal PORTALS LINES LATENCY
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONNECTOR = "myconnector"
APP_NAME = "monitor"
READY_TIMEOUT = 120.0  # seconds for a process to come up
RUN_TIMEOUT = 600.0  # seconds for one command to answer


def domains(portals: int) -> list[str]:
    """The fleet's portal domains, in the order the sweep takes its first N from."""
    return [f"p{i:04d}.fleet.local" for i in range(portals)]


def base_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This environment without anything that could send a child to AWS, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return {**env, **extra}


class Child:
    """A process of this benchmark that answers one JSON line per command."""

    def __init__(self, command: list[str], env: Mapping[str, str], name: str) -> None:
        self.name = name
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=dict(env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.stderr, text=True,
        )  # fmt: skip

    def read(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.stderr.seek(0)
            why = self.stderr.read().decode("utf-8", "replace")[-3000:]
            raise RuntimeError(f"{self.name} did not answer within {timeout:g} s:\n{why}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, command: Mapping[str, Any], timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self.read(timeout)

    def close(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.stderr.close()


@dataclass
class Services:
    """moto's server and the local portal, each in its own process."""

    portal: Child
    moto_port: int
    portal_port: int
    app: dict[str, str]  # the application installed on every portal (client id, secret, ...)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    def client(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            service, endpoint_url=self.endpoint, region_name="eu-central-1",
            aws_access_key_id="bench", aws_secret_access_key="bench",
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )  # fmt: skip

    def counts(self) -> tuple[int, int]:
        answer = self.portal.ask({"cmd": "count"}, timeout=60)
        return int(answer["rest"]), int(answer["oauth"])

    def expire(self, portals: Sequence[str]) -> None:
        self.portal.ask({"cmd": "expire", "domains": list(portals)}, timeout=60)

    def fresh_pairs(self, portals: Sequence[str]) -> dict[str, dict[str, str]]:
        """A new token pair for each portal (refresh tokens are single-use: earlier
        measurements may have refreshed the pairs handed out before)."""
        answer = self.portal.ask({"cmd": "credentials", "domains": list(portals)}, timeout=120)
        pairs: dict[str, dict[str, str]] = answer["portals"]
        return pairs


@contextmanager
def services(portals: int, lines: int, latency: float) -> Iterator[Services]:
    env, own = base_environment({}), [sys.executable, "-m", "bench.services"]
    with ExitStack() as stack:
        moto = Child([*own, "moto"], env, "moto")
        stack.callback(moto.close)
        portal = Child([*own, "portal", str(portals), str(lines), str(latency)], env, "portal")
        stack.callback(portal.close)
        moto_port = int(moto.read(READY_TIMEOUT)["port"])
        ready = portal.read(READY_TIMEOUT)
        yield Services(portal, moto_port, int(ready["port"]), ready["app"])


def _reply(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def serve_moto() -> int:
    from local.aws import MotoStack
    from tests.support.moto_speedups import quicker_moto

    with quicker_moto(), MotoStack() as moto:
        _reply({"port": moto.port})
        for _ in sys.stdin:  # no commands: wait for the parent to close stdin
            pass
    return 0


def add_portals(portal: Any, fleet: Mapping[str, Mapping[int, str]], **options: Any) -> None:
    """Each portal of `fleet` with its open lines, CONNECTOR configured on every one."""
    for domain, lines in fleet.items():
        portal.add_portal(domain, connectors={CONNECTOR: "My connector"}, lines=lines, **options)
        for line in lines:
            portal.connect(domain, CONNECTOR, line)


def serve_portal(portals: int, lines: int, latency: float) -> int:
    from local.bitrix24_portal import LocalPortal

    portal = LocalPortal()
    portal.latency = latency
    numbers = {n: f"Line {n}" for n in range(1, lines + 1)}
    with portal:
        client_id, client_secret = portal.add_shared_app(APP_NAME)
        add_portals(portal, dict.fromkeys(domains(portals), numbers), app=client_id)
        app = {"client_id": client_id, "client_secret": client_secret}
        _reply({"port": portal.port, "app": {**app, "oauth_endpoint": portal.oauth_endpoint}})
        for line in sys.stdin:
            command = json.loads(line)
            if command["cmd"] == "count":
                _reply({"rest": portal.request_count(), "oauth": portal.refresh_count()})
            elif command["cmd"] == "credentials":
                _reply({"portals": {d: portal.credentials(d) for d in command["domains"]}})
            elif command["cmd"] == "expire":
                for domain in command["domains"]:
                    portal.expire_access_tokens(domain)
                _reply({"expired": len(command["domains"])})
            else:
                _reply({"error": f"unknown command {command['cmd']!r}"})
    return 0


def main(argv: Sequence[str]) -> int:
    if argv[1] == "moto":
        return serve_moto()
    return serve_portal(int(argv[2]), int(argv[3]), float(argv[4]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
