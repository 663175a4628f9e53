"""Write the Snapshot API's OpenAPI document to openapi.json, generated from its routes.

    python -m local.openapi            # (re)write openapi.json
    python -m local.openapi --check    # exit 1 when openapi.json differs from the code

tests/integration/test_openapi.py fails while the committed file and the code disagree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "openapi.json"


def generate() -> str:
    """The document as the API's routes (`connector_monitor.api`) describe it now."""
    from connector_monitor.api.openapi import openapi_document
    from connector_monitor.api.resolver import app

    return openapi_document(app)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.openapi", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        current = DOCUMENT.read_text(encoding="utf-8") if DOCUMENT.exists() else ""
        if current != text:
            print(f"{DOCUMENT.name} is out of date: run python -m local.openapi", file=sys.stderr)
            return 1
        print(f"{DOCUMENT.name} is up to date")
        return 0
    DOCUMENT.write_text(text, encoding="utf-8")
    print(f"wrote {DOCUMENT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
