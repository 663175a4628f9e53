"""`python -m local.bitrix24_portal --port 8099 --demo`: a standalone local portal.

`--install-to URL` installs an application on the demo portal as Bitrix24 does: it posts the
ONAPPINSTALL form to URL (the application's installation path, https trusting `--ca-bundle`,
or plain http on 127.0.0.1) and prints the application's client id and secret, which the
receiving stack must know to refresh the pair it was handed."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any

from local.bitrix24_portal.protocol import DEMO_DOMAIN
from local.bitrix24_portal.server import LocalPortal


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run a local Bitrix24 portal (REST + OAuth).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--token-ttl", type=float, default=3600.0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    parser.add_argument("--demo", action="store_true", help=f"add {DEMO_DOMAIN} (lines 1, 2, 3)")
    parser.add_argument(
        "--tls", action="store_true", help="speak HTTPS (prints the CA file to trust)"
    )
    parser.add_argument(
        "--install-to",
        metavar="URL",
        help=f"install an application on {DEMO_DOMAIN} (implies --demo): POST ONAPPINSTALL to URL",
    )
    parser.add_argument(
        "--ca-bundle", metavar="PEM", help="the authority to trust for --install-to's https URL"
    )
    parser.add_argument(
        "--redirect-uri", metavar="URL", help="the application's address for /oauth/authorize/"
    )
    return parser.parse_args(argv)


def start(args: argparse.Namespace) -> tuple[LocalPortal, dict[str, Any]]:
    """The running portal, and what main() prints: the demo's secret entry, the installed
    application and how its ONAPPINSTALL went."""
    portal = LocalPortal(args.host, args.port, token_ttl=args.token_ttl, tls=args.tls)
    portal.latency = args.latency
    portal.start()
    shown: dict[str, Any] = {}
    if args.demo or args.install_to:
        portal.add_portal(
            DEMO_DOMAIN,
            connectors={"myconnector": "My Connector"},
            lines={1: "Sales", 2: "Support", 3: "VIP"},
        )
        for line in (1, 2, 3):
            portal.connect(DEMO_DOMAIN, "myconnector", line)
        shown["portals"] = {DEMO_DOMAIN: portal.credentials(DEMO_DOMAIN)}
    if args.install_to:
        client_id, client_secret = portal.add_shared_app("monitor")
        if args.redirect_uri:
            portal.set_redirect_uri(client_id, args.redirect_uri)
        try:
            delivery = portal.install_app(
                DEMO_DOMAIN, args.install_to, app=client_id, ca_bundle=args.ca_bundle
            )
        except ValueError:
            portal.stop()
            raise
        shown["app"] = {
            "client_id": client_id,
            "client_secret": client_secret,
            "authorize": portal.authorize_url(DEMO_DOMAIN, client_id),
        }
        shown["install"] = {
            "url": args.install_to,
            "status": delivery.status,
            "error": delivery.error,
        }
    return portal, shown


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        portal, shown = start(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if shown:
        print(json.dumps(shown, indent=2))
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
