"""One Lambda function's process, started by `bench/lambdas.py` with the function's environment:
it times `import app` (INIT) and the first call's wiring before it imports anything else, then
invokes the handler (`lambda_handler` unless named) when told to and does nothing else, so its
peak RSS, CPU and wall time are the handler's own; its stdout and stderr go to LOG_FILE.

    python -m bench.fleet_child checker|snapshot_api LOG_FILE PORTAL_PORT EVENT_FILE [HANDLER]
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

RSS_EVERY = 0.005  # seconds between two samples of the resident set
PAGE = os.sysconf("SC_PAGE_SIZE")


# struct tcp_info (linux/tcp.h): tcpi_bytes_acked (u64) and tcpi_segs_out (u32)
TCP_INFO_SIZE = 232
TCPI_BYTES_ACKED = slice(120, 128)
TCPI_SEGS_OUT = slice(136, 140)


class Sockets(Counter[str]):
    """What this process sends to one port (the portal's, i.e. the internet's on Lambda): TCP
    connections, and at each connection's close the kernel's count of the payload bytes the
    other end acknowledged and of the segments sent (`TCP_INFO`), so a TLS handshake and its
    records count as they go on the wire, whatever library wrote them."""

    def __init__(self, port: int) -> None:
        import socket

        super().__init__()
        lock, plain = threading.Lock(), socket.socket
        connect, close = plain.connect, plain.close

        def to_port(sock: Any, peer: Any = None) -> bool:
            with contextlib.suppress(OSError, IndexError, TypeError):
                return bool((peer or sock.getpeername())[1] == port)
            return False

        def counted_connect(sock: Any, address: Any) -> Any:
            if to_port(sock, address if isinstance(address, tuple) else None):
                with lock:
                    self.update(connections=1)
            return connect(sock, address)

        def counted_close(sock: Any) -> Any:
            if sock.fileno() >= 0 and to_port(sock):
                with contextlib.suppress(OSError):
                    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_SIZE)
                    acked = int.from_bytes(info[TCPI_BYTES_ACKED], "little")
                    segments = int.from_bytes(info[TCPI_SEGS_OUT], "little")
                    with lock:
                        self.update(bytes=acked, segments=segments)
            return close(sock)

        plain.connect = counted_connect  # type: ignore[method-assign]
        plain.close = counted_close  # type: ignore[method-assign]

    def take(self) -> dict[str, int]:
        taken = dict(self)
        self.clear()
        return taken


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def high_water() -> int:
    """This process's peak RSS (VmHWM), not `ru_maxrss`: Linux keeps that across exec, so a
    child would report its parent's RSS at the fork when that was larger."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


def main(argv: list[str]) -> int:
    function, log_file, portal_port, event_file = argv[1], argv[2], int(argv[3]), argv[4]
    handler_name = argv[5] if len(argv) > 5 else "lambda_handler"
    replies = io.TextIOWrapper(os.fdopen(os.dup(1), "wb", buffering=0), write_through=True)
    log_fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)

    def reply(payload: dict[str, Any]) -> None:
        replies.write(json.dumps(payload) + "\n")

    # INIT: the handler module's import, nothing imported before it but the standard library.
    wall, cpu = time.perf_counter(), time.process_time()
    from local.handlers import LambdaContext, load_handler

    app = load_handler(function)
    handler = getattr(app, handler_name)
    init = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
    import boto3

    from bench.metering import Meter

    meter = Meter()
    boto3.setup_default_session()
    meter.attach_session(boto3.DEFAULT_SESSION)
    # The first call's wiring: what a cold container builds once in its first invocation.
    wall, cpu = time.perf_counter(), time.process_time()
    first_call(function, app)
    wiring = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
    sockets = Sockets(portal_port)
    peak = [0]  # the highest RSS since the run began, sampled every RSS_EVERY seconds

    def watch() -> None:
        while not time.sleep(RSS_EVERY):
            peak[0] = max(peak[0], rss())

    threading.Thread(target=watch, name="rss", daemon=True).start()
    event = json.loads(Path(event_file).read_text())
    timeout_ms = int(os.environ.get("BENCH_TIMEOUT_MS", "120000"))
    memory = int(os.environ.get("BENCH_MEMORY_MB", "256"))
    reply({"ready": True, "init": init, "wiring": wiring})
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "quit":
            reply({"ru_maxrss": high_water()})
            return 0
        meter.reset()
        sockets.take()
        sys.stdout.flush()
        sys.stderr.flush()
        logged = os.path.getsize(log_file)
        peak[0] = rss()
        context = LambdaContext(
            function_name=function, remaining_ms=timeout_ms, memory_limit_in_mb=memory
        )
        wall, cpu = time.perf_counter(), time.process_time()
        error = None
        try:
            answer = handler(command.get("event", event), context)
        except Exception:
            answer, error = None, traceback.format_exc()
        # The meter's own work (item sizes of every item read) is not the handler's: taken out.
        seconds = time.perf_counter() - wall
        cpu_seconds = time.process_time() - cpu - meter.cpu_seconds
        sys.stdout.flush()
        sys.stderr.flush()
        with open(log_file, "rb") as logs:
            logs.seek(logged)
            printed = logs.read()
        reply(
            {
                "wall": seconds,
                "cpu": cpu_seconds,
                "peak_rss": max(peak[0], rss()),
                "answer": answer if isinstance(answer, dict) else None,
                "error": error,
                "calls": dict(meter.calls),
                "tables": dict(meter.tables),
                "table_units": dict(meter.table_units),
                "sent": sockets.take(),
                "log": printed.decode("utf-8", "replace"),
            }
        )
    return 0


def first_call(function: str, app: Any) -> None:
    """What the handler builds once per container before its first network call."""
    # The handler's wiring may change under the benchmark: what fails here is built in the
    # first run instead (and counted there).
    with contextlib.suppress(Exception):
        if function == "checker":
            from datetime import timedelta

            import connector_monitor.deadline
            import connector_monitor.domain.targets  # noqa: F401

            app.root().registry  # noqa: B018 - built on first use: the first call builds it
            app.root().cycle(timedelta(seconds=120))
        else:
            app.service()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
