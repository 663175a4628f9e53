"""One Lambda function's process (`bench/lambdas.py` starts it with the function's
environment): it imports the real handler, invokes it when told to and does nothing else, so
its peak RSS, CPU time and wall time are the handler's own.

    python -m bench.fleet_child FUNCTION LOG_FILE PORTAL_PORT EVENT_FILE [HANDLER]

FUNCTION is `checker` or `snapshot_api`, HANDLER `lambda_handler` unless given (the fan-out's
worker: `shard_handler`). Its standard output and error (the handler's JSON log lines) go to
LOG_FILE; one JSON line answers each command read from standard input: `{"cmd": "run"}` (with
`"event"`: that event instead of EVENT_FILE's; with `"profile": FILE`: cProfile's statistics of
the run) and `{"cmd": "quit"}`. Before anything else is imported it times `import app` (INIT),
then the first call's wiring, and only then counts: AWS calls through boto3's default session
(`bench/metering.py`), bytes and connections sent to the portal's port, RSS every 5 ms.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import sys
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

RSS_EVERY = 0.005  # seconds between two samples of the resident set
PAGE = os.sysconf("SC_PAGE_SIZE")


class Sockets:
    """Bytes and connections this process sends to one port (the portal's, i.e. the internet's
    on Lambda), counted at `socket.socket` so every HTTP client is seen."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def install(self) -> None:
        import socket

        sockets = self
        original_sendall, original_send = socket.socket.sendall, socket.socket.send
        original_connect = socket.socket.connect

        def ours(sock: Any) -> bool:
            try:
                return bool(sock.getpeername()[1] == sockets.port)
            except (OSError, IndexError, TypeError):
                return False

        def sendall(sock: Any, data: Any, *args: Any) -> Any:
            if ours(sock):
                sockets.add(bytes=len(data), writes=1)
            return original_sendall(sock, data, *args)

        def send(sock: Any, data: Any, *args: Any) -> Any:
            sent = original_send(sock, data, *args)
            if ours(sock):
                sockets.add(bytes=sent, writes=1)
            return sent

        def connect(sock: Any, address: Any) -> Any:
            if isinstance(address, tuple) and len(address) >= 2 and address[1] == sockets.port:
                sockets.add(connections=1)
            return original_connect(sock, address)

        socket.socket.sendall = sendall  # type: ignore[method-assign]
        socket.socket.send = send  # type: ignore[method-assign]
        socket.socket.connect = connect  # type: ignore[method-assign]

    def add(self, **amounts: int) -> None:
        with self.lock:
            self.counts.update(amounts)

    def take(self) -> dict[str, int]:
        with self.lock:
            taken, self.counts = dict(self.counts), Counter()
        return taken


class ResidentSet:
    """The highest RSS seen since `reset()`, sampled by a thread of its own."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="rss", daemon=True)
        self._thread.start()

    @staticmethod
    def now() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * PAGE

    def reset(self) -> None:
        self.peak = self.now()

    def _watch(self) -> None:
        while not self._stop.wait(RSS_EVERY):
            self.peak = max(self.peak, self.now())


def high_water() -> int:
    """This process's peak RSS in bytes (VmHWM: its own address space's). Not `ru_maxrss`:
    Linux keeps that across exec, so a child reports its parent's RSS at the fork when that
    was larger (the benchmark's parent grows to hundreds of MB on a large fleet)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


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
    sockets.install()
    rss = ResidentSet()
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
        rss.reset()
        context = LambdaContext(
            function_name=function, remaining_ms=timeout_ms, memory_limit_in_mb=memory
        )
        invoked = command.get("event", event)
        profile, profiles = None, []
        if command.get("profile"):
            profile, profiles = profile_threads()
        wall, cpu, main = time.perf_counter(), time.process_time(), time.thread_time()
        error = None
        try:
            if profile is not None:
                answer = profile.runcall(handler, invoked, context)
            else:
                answer = handler(invoked, context)
        except Exception:
            answer, error = None, traceback.format_exc()
        # The meter's own work (item sizes of every item read) is not the handler's: taken out.
        seconds = time.perf_counter() - wall
        cpu_seconds = time.process_time() - cpu - meter.cpu_seconds
        main_cpu = time.thread_time() - main - meter.cpu_seconds
        if profile is not None:
            import pstats

            threading.Thread.run = THREAD_RUN  # type: ignore[method-assign]
            stats = pstats.Stats(profile)
            for each in profiles:
                stats.add(each)
            stats.dump_stats(command["profile"])
        peak = max(rss.peak, rss.now())
        sys.stdout.flush()
        sys.stderr.flush()
        with open(log_file, "rb") as logs:
            logs.seek(logged)
            printed = logs.read()
        reply(
            {
                "wall": seconds,
                "cpu": cpu_seconds,
                "cpu_main": main_cpu,  # of it, the handler's own thread (the rest: its pools)
                "peak_rss": peak,
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


THREAD_RUN = threading.Thread.run


def profile_threads() -> tuple[Any, list[Any]]:
    """A profiler for this thread and one for every thread started from now on (the checker
    checks portals in threads of a pool it starts each run); their statistics are merged."""
    import cProfile

    profiles: list[Any] = []

    def run(thread: threading.Thread) -> None:
        profile = cProfile.Profile(time.thread_time)  # this thread's CPU, not wall time
        profiles.append(profile)
        profile.enable()
        try:
            THREAD_RUN(thread)
        finally:
            profile.disable()

    threading.Thread.run = run  # type: ignore[method-assign]
    return cProfile.Profile(time.thread_time), profiles


def first_call(function: str, app: Any) -> None:
    """What the handler builds once per container before its first network call."""
    # The handler's wiring may change under the benchmark: what fails here is built in the
    # first run instead (and counted there).
    with contextlib.suppress(Exception):
        if function == "checker":
            from datetime import timedelta

            import connector_monitor.deadline
            import connector_monitor.domain.targets  # noqa: F401

            app.registry()
            app.build_cycle(app.settings(), timedelta(seconds=120))
        else:
            app.service()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
