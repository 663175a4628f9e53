"""The fleet benchmark's two servers, each in a process of its own so that none of their work
is counted in the checker's CPU time or memory (`bench/fleet.py` starts them):

    python -m bench.services moto
    python -m bench.services portal --portals N --lines L --latency S --credentials FILE

Each prints one JSON line when it is ready (`{"port": ...}`) and then answers commands, one JSON
line each, read from its standard input; it stops when its standard input closes.

moto: moto's server (`ThreadedMotoServer`) on 127.0.0.1, with `bench/moto_speedups.py`'s two
shortcuts in force (its TransactWriteItems backup and its response serialiser are moto's own
costs, not DynamoDB's). Commands: none.

portal: the local Bitrix24 portal (`local/bitrix24_portal`) hosting N portals of L open lines
each, the connector configured on every line, every request answered after `--latency`
seconds. As on Bitrix24 itself, one application (one client id and secret) is installed on
every portal and the OAuth server finds the portal a refresh is for by its refresh token: a
fleet's secret holds the application once (`apps`), its token table one pair per portal. The
credentials file gets `{"app": {...}, "portals": {domain: entry}}`. Commands:
`{"cmd": "count"}` -> `{"rest": R, "oauth": O}` (REST requests and token refreshes served so
far); `{"cmd": "expire", "domains": [...]}` -> `{"expired": n}` (those portals' access tokens
answer expired_token from now on); `{"cmd": "credentials", "domains": [...]}` -> `{"portals":
{domain: entry}}` (a new token pair for each).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CONNECTOR = "myconnector"
APP_NAME = "monitor"


def domains(portals: int) -> list[str]:
    """The fleet's portal domains, in the order the sweep takes its first N from."""
    return [f"p{i:04d}.fleet.local" for i in range(portals)]


def _reply(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def serve_moto() -> int:
    from moto.server import ThreadedMotoServer

    from tests.support.moto_speedups import quicker_moto

    werkzeug = logging.getLogger("werkzeug")  # one line per request otherwise
    werkzeug.setLevel(logging.ERROR)
    werkzeug.propagate = False
    with quicker_moto():
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        _reply({"port": int(server.get_host_and_port()[1])})
        for _ in sys.stdin:  # no commands: wait for the parent to close stdin
            pass
        server.stop()
    return 0


def serve_portal(portals: int, lines: int, latency: float, credentials: Path) -> int:
    from local.bitrix24_portal import LocalPortal

    portal = LocalPortal()
    portal.latency = latency
    numbers = {n: f"Line {n}" for n in range(1, lines + 1)}
    with portal:
        # one application on every portal; the OAuth server tells them apart by refresh token
        client_id, client_secret = portal.add_shared_app(APP_NAME)
        for domain in domains(portals):
            portal.add_portal(
                domain, connectors={CONNECTOR: "My connector"}, lines=numbers, app=client_id
            )
            for line in numbers:
                portal.connect(domain, CONNECTOR, line)
        document = {
            "app": {
                "name": APP_NAME,
                "client_id": client_id,
                "client_secret": client_secret,
                "oauth_endpoint": portal.oauth_endpoint,
            },
            "portals": {d: portal.credentials(d) for d in domains(portals)},
        }
        credentials.write_text(json.dumps(document))
        credentials.chmod(0o600)
        _reply({"port": portal.port})
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A server of the fleet benchmark.")
    parser.add_argument("kind", choices=("moto", "portal"))
    parser.add_argument("--portals", type=int, default=1)
    parser.add_argument("--lines", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--credentials", type=Path)
    args = parser.parse_args(argv)
    if args.kind == "moto":
        return serve_moto()
    if args.credentials is None:
        parser.error("portal needs --credentials FILE")
    return serve_portal(args.portals, args.lines, args.latency, args.credentials)


if __name__ == "__main__":
    sys.exit(main())
