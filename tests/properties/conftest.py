"""Shared pieces of the property and concurrency tests.

- the Hypothesis profile every property test builds its settings on (no deadline: moto and real
  HTTP make timings noisy on a 2-core CI box; example counts are set per test);
- `ChaosPortal`: a tiny HTTP server on 127.0.0.1 that answers each request with whatever reply
  the test queued (any status, any bytes, odd headers, even bytes that are not HTTP at all). The
  local Bitrix24 portal only knows well-formed faults, so it cannot serve arbitrary bodies;
- the end-to-end fixtures (`portal`, `stack`, `checker`), re-exported so the concurrency tests run
  the checker exactly as tests/e2e wires it.
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import HealthCheck, settings

from tests.e2e.conftest import checker, portal, stack

__all__ = ["ChaosPortal", "Reply", "checker", "examples", "portal", "stack"]

settings.register_profile(
    "properties",
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PROPERTIES = settings.get_profile("properties")
# Example counts are sized for the whole folder to run in well under a minute on 2 cores;
# PROPERTIES_SCALE=10 (say, nightly) multiplies every test's count.
SCALE = float(os.environ.get("PROPERTIES_SCALE", "1"))


def examples(count: int) -> int:
    return max(1, round(count * SCALE))


# Echo faults: replaced by the access token a REST request carried in its body, and by the
# refresh token an OAuth request carried in its query string.
AUTH_PLACEHOLDER = b"{{AUTH}}"
REFRESH_PLACEHOLDER = b"{{REFRESH}}"


@dataclass(frozen=True)
class Reply:
    """One answer of the chaos portal. `raw` bytes go to the socket with no HTTP framing."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    raw: bool = False


@dataclass
class ChaosPortal:
    """Answers request n with reply n of the queue; the last reply repeats once it is reached."""

    url: str
    replies: deque[Reply] = field(default_factory=deque)
    served: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def play(self, replies: list[Reply]) -> None:
        with self.lock:
            self.replies = deque(replies or [Reply()])
            self.served = 0

    def next_reply(self) -> Reply:
        with self.lock:
            self.served += 1
            return self.replies.popleft() if len(self.replies) > 1 else self.replies[0]

    def endpoint(self, domain: str) -> str:
        return f"{self.url}/{domain}/rest/"


class _ChaosHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: a garbage reply cannot poison
    # the next example through a kept-alive socket

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = self.rfile.read(length) if length > 0 else b""
        chaos: ChaosPortal = self.server.chaos  # type: ignore[attr-defined]
        reply = chaos.next_reply()
        body = reply.body.replace(AUTH_PLACEHOLDER, _auth_of(request).encode())
        refresh = parse_qs(urlsplit(self.path).query).get("refresh_token", [""])[0]
        body = body.replace(REFRESH_PLACEHOLDER, refresh.encode())
        with suppress(OSError):
            if reply.raw:
                self.wfile.write(body)
                return
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in reply.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        """Silent."""


def _auth_of(request: bytes) -> str:
    try:
        body = json.loads(request)
    except ValueError:
        return ""
    return str(body.get("auth", "")) if isinstance(body, dict) else ""


@pytest.fixture(scope="module")
def chaos_portal() -> Iterator[ChaosPortal]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChaosHandler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    chaos = ChaosPortal(f"http://{host!s}:{port}")
    server.chaos = chaos  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield chaos
    server.shutdown()
    server.server_close()
    thread.join(timeout=2)
