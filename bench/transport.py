"""One portal exchange over TLS, as every portal costs every run: a new session, one batch of
five statuses, the session closed. The monitor's transport (http.client) against the one it
replaced (requests/urllib3, the same TLS context, request and body as before), measured in the
same process against the same local portal: bytes and TCP segments sent (TCP_INFO at each
socket's close, as bench/fleet_child.py counts them) and the calling thread's CPU."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.ssl_ import create_urllib3_context

from bench.fleet_child import Sockets
from bench.lambdas import CONNECTOR
from connector_monitor.bitrix24.transport import _OP_TLSEXT_PADDING, exchange, new_session
from connector_monitor.deadline import Deadline
from local.bitrix24_portal import LocalPortal

BATCH = {f"s{n}": f"imconnector.status?CONNECTOR={CONNECTOR}&LINE={n}" for n in range(1, 6)}


@dataclass(frozen=True)
class Exchange:
    """Per exchange: bytes of TCP payload sent, segments sent, CPU seconds of the caller."""

    bytes_out: float
    segments: float
    cpu: float


class _OldAdapter(HTTPAdapter):
    """requests' adapter over one shared TLS context, as the old transport mounted it."""

    def __init__(self, ca_file: str) -> None:
        self._context = create_urllib3_context()
        self._context.options &= ~_OP_TLSEXT_PADDING
        self._context.load_verify_locations(cafile=ca_file)
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, ssl_context=self._context, **kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        conn.cert_reqs, conn.ca_certs, conn.ca_cert_dir = "CERT_REQUIRED", None, None


def _requests_exchange(url: str, token: str, adapter: _OldAdapter) -> None:
    with requests.Session() as session:
        session.trust_env = False
        session.headers.update({"Accept": "application/json", "User-Agent": "connector-monitor/1"})
        session.headers.pop("Connection", None)
        session.mount("https://", adapter)
        response = session.post(
            url,
            json={"halt": 0, "cmd": BATCH, "auth": token},
            headers={"Accept-Encoding": "gzip, deflate"},
            timeout=(3.05, 10.0),
            allow_redirects=False,
            stream=True,
        )
        if response.status_code != 200 or not response.raw.read(65536):
            raise RuntimeError("the local portal did not answer the batch")
        response.close()
        adapter.close()  # the session's pool: every portal is a new connection every run


def _http_client_exchange(url: str, token: str, ca_file: str) -> None:
    with new_session(ca_bundle=ca_file) as session:
        answer = exchange(
            session,
            "POST",
            url,
            deadline=Deadline.after(10),
            timeouts=(3.05, 10.0),
            max_bytes=1 << 20,
            json={"cmd": BATCH, "auth": token},
        )
        if answer.status != 200 or not answer.body:
            raise RuntimeError("the local portal did not answer the batch")


def _measure(sockets: Sockets, one: Callable[[], None], count: int, closing: int) -> Exchange:
    """`closing`: the segments a connection's close sends after TCP_INFO was read (uncounted)."""
    one()  # warm: imports, the TLS context
    sockets.take()
    cpu = time.thread_time()
    for _ in range(count):
        one()
    spent = time.thread_time() - cpu
    sent = sockets.take()
    segments = sent.get("segments", 0) + sent.get("connections", 0) * closing
    return Exchange(sent.get("bytes", 0) / count, segments / count, spent / count)


def compare(portal: LocalPortal, domain: str, count: int = 50) -> tuple[Exchange, Exchange]:
    """(the transport, the requests baseline), `count` exchanges each, to a TLS `portal`."""
    creds = portal.credentials(domain)
    url, token, ca_file = creds["client_endpoint"] + "batch", creds["access_token"], portal.ca_file
    sockets = Sockets(portal.port)
    adapter = _OldAdapter(ca_file)
    # closed by a reset (one segment), or by a FIN and the ACK of the host's FIN (two)
    new = _measure(sockets, lambda: _http_client_exchange(url, token, ca_file), count, 1)
    old = _measure(sockets, lambda: _requests_exchange(url, token, adapter), count, 2)
    return new, old


def render(new: Exchange, old: Exchange, count: int) -> list[str]:
    def row(name: str, e: Exchange) -> str:
        return f"  {name:<22} {e.bytes_out:>8,.0f} B {e.segments:>6.1f} {e.cpu * 1000:>8.2f} ms"

    return [
        f"One portal exchange over TLS (new session, one batch, closed; {count} each, "
        "TCP payload and segments sent, caller's CPU):",
        row("http.client (monitor)", new),
        row("requests (before)", old),
        f"  ratio new/old:         {new.bytes_out / old.bytes_out:>8.2f}   "
        f"{new.segments / old.segments:>6.2f} {new.cpu / old.cpu:>8.2f}",
    ]
