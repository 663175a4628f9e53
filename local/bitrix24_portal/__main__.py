"""`python -m local.bitrix24_portal --port 8099 --demo`: a standalone local portal."""

from __future__ import annotations

import argparse
import json
import sys
import threading

from local.bitrix24_portal.protocol import DEMO_DOMAIN
from local.bitrix24_portal.server import LocalPortal


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a local Bitrix24 portal (REST + OAuth).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--token-ttl", type=float, default=3600.0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    parser.add_argument("--demo", action="store_true", help=f"add {DEMO_DOMAIN} (lines 1, 2, 3)")
    parser.add_argument(
        "--tls", action="store_true", help="speak HTTPS (prints the CA file to trust)"
    )
    args = parser.parse_args(argv)
    portal = LocalPortal(args.host, args.port, token_ttl=args.token_ttl, tls=args.tls)
    portal.latency = args.latency
    portal.start()
    if args.demo:
        portal.add_portal(
            DEMO_DOMAIN,
            connectors={"myconnector": "My Connector"},
            lines={1: "Sales", 2: "Support", 3: "VIP"},
        )
        for line in (1, 2, 3):
            portal.connect(DEMO_DOMAIN, "myconnector", line)
        print(json.dumps({"portals": {DEMO_DOMAIN: portal.credentials(DEMO_DOMAIN)}}, indent=2))
    print(f"local Bitrix24 portal on {portal.url} (Ctrl-C to stop)", file=sys.stderr)
    if args.tls:
        print(f"its certificate authority: {portal.ca_file} (PORTAL_CA_BUNDLE)", file=sys.stderr)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        portal.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
