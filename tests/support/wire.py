"""Servers on this machine that keep what a client puts on the wire: the ClientHello record, a
request's head and body (tests of the transport's bytes: tests/integration/test_tls.py,
test_transport_wire.py)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress


@contextmanager
def serving(handle: Callable[[socket.socket], None]) -> Iterator[tuple[int, threading.Thread]]:
    """A server on this machine that hands its first connection to `handle`: its port and
    thread."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with suppress(OSError):
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(5)
                handle(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], thread
    finally:
        listener.close()
        thread.join(timeout=5)


def read_record(connection: socket.socket) -> bytes:
    """The first TLS record the client sends (its ClientHello), whole."""
    data = b""
    while len(data) < 5 or len(data) < 5 + int.from_bytes(data[3:5], "big"):
        chunk = connection.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def read_request(connection: socket.socket) -> bytes:
    """One HTTP request, head and body (by its Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        body += connection.recv(4096)
    return head + b"\r\n\r\n" + body
