"""LocalPortal: the multi-portal REST + OAuth server and its control API (see the package doc)."""

from __future__ import annotations

import itertools
import json
import re
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from local.bitrix24_portal.protocol import (
    BATCH_LIMIT,
    DEFAULT_TIMEOUT_HOLD,
    DEFAULT_TRICKLE_PACE,
    HUGE_CODE_CHARS,
    MOVED_TO,
    NGINX_502,
    PortalFault,
    Reply,
    RestError,
    bracket_parse,
    connector_line,
    echo_token,
    endless,
    error_reply,
    flag,
    gzip_bomb,
    huge_body,
    intval,
    json_bool,
    json_reply,
    list_lines,
    method_name,
    param,
    parse_params,
    php_array,
    time_block,
)
from local.bitrix24_portal.state import Access, Fault, PortalState, RecordedRequest


class LocalPortal:
    """Multi-portal Bitrix24 REST + OAuth server (thread-safe; see the package doc)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token_ttl: float = 3600.0) -> None:
        self.host = host
        self.port = port
        self.token_ttl = token_ttl
        self.latency = 0.0
        self.rate_limit: tuple[int, float] | None = None
        # OPERATION_TIME_LIMIT answers carry time.operating_reset_at = now + this
        self.operating_reset_in = 600.0
        self._lock = threading.Lock()
        self._portals: dict[str, PortalState] = {}
        self._requests: list[RecordedRequest] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # lifecycle -----------------------------------------------------------------------------

    def start(self) -> LocalPortal:
        if self._server is not None:
            return self
        self._stopping = threading.Event()
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes held requests (latency, "timeout"): they drop the socket
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def __enter__(self) -> LocalPortal:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("LocalPortal is not running: call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def oauth_endpoint(self) -> str:
        return f"{self.url}/oauth/token/"

    def client_endpoint(self, domain: str) -> str:
        return f"{self.url}/{domain}/rest/"

    # portal set-up ---------------------------------------------------------------------------

    def add_portal(
        self,
        domain: str,
        connectors: dict[str, str] | None = None,
        lines: dict[int, str] | None = None,
    ) -> None:
        if not domain or "/" in domain:
            raise ValueError(f"bad portal domain {domain!r}")
        with self._lock:
            if domain in self._portals:
                raise ValueError(f"portal {domain!r} already exists")
            self._portals[domain] = PortalState(
                domain=domain,
                client_id=f"local.{secrets.token_hex(7)}.{secrets.token_hex(4)}",
                client_secret=secrets.token_urlsafe(36),
                member_id=secrets.token_hex(16),
                connectors={k.lower(): v for k, v in (connectors or {}).items()},
                lines={int(k): v for k, v in (lines or {}).items()},
            )

    def credentials(self, domain: str) -> dict[str, str]:
        """A secret entry (DESIGN.md format) with a freshly issued token pair."""
        with self._lock:
            state = self._get(domain)
            access, refresh = self._issue(state)
            return {
                "client_id": state.client_id,
                "client_secret": state.client_secret,
                "access_token": access,
                "refresh_token": refresh,
                "client_endpoint": self.client_endpoint(domain),
                "oauth_endpoint": self.oauth_endpoint,
            }

    def connect(self, domain: str, connector: str, line: int) -> None:
        self.set_status(domain, connector, line, configured=True, error=False)

    def disconnect(self, domain: str, connector: str, line: int) -> None:
        with self._lock:
            state = self._get(domain)
            key = (connector.lower(), int(line))
            state.flags[key] = (False, state.flags.get(key, (False, False))[1])

    def set_status(
        self, domain: str, connector: str, line: int, *, configured: bool, error: bool
    ) -> None:
        with self._lock:
            self._get(domain).flags[(connector.lower(), int(line))] = (configured, error)

    def expire_access_tokens(self, domain: str) -> None:
        with self._lock:
            for access in self._get(domain).access.values():
                access.expired = True

    def revoke(self, domain: str) -> None:
        with self._lock:
            state = self._get(domain)
            state.access.clear()
            state.refresh.clear()

    # faults --------------------------------------------------------------------------------

    def inject(
        self,
        domain: str,
        fault: PortalFault | str,
        *,
        count: int | None = None,
        method: str | None = None,
        delay: float = 0.0,
    ) -> None:
        kind = PortalFault(fault)
        if count is not None and count < 1:
            raise ValueError("count must be at least 1 (None = until cleared)")
        if kind is PortalFault.TIMEOUT and delay <= 0:
            delay = DEFAULT_TIMEOUT_HOLD
        if kind is PortalFault.GZIP_BOMB:
            gzip_bomb()  # made now (about a second), not while a client waits for it
        if kind is PortalFault.TRICKLE and delay <= 0:
            delay = DEFAULT_TRICKLE_PACE
        entry = Fault(kind, count, method_name(method) if method else None, max(0.0, delay))
        with self._lock:
            self._get(domain).faults.append(entry)

    def fail_command(
        self, domain: str, connector: str, line: int, error_code: PortalFault | str
    ) -> None:
        """imconnector.status for this pair fails with `error_code` (in a batch: result_error)."""
        with self._lock:
            self._get(domain).failed[(connector.lower(), int(line))] = str(error_code)

    def answer_only(self, domain: str, lines: set[int] | None) -> None:
        with self._lock:
            state = self._get(domain)
            state.answer_only = None if lines is None else frozenset(int(x) for x in lines)

    def clear_faults(self, domain: str | None = None) -> None:
        """Drop injected faults, failed commands and answer_only (one portal or all)."""
        with self._lock:
            states = [self._get(domain)] if domain is not None else self._portals.values()
            for state in states:
                state.faults.clear()
                state.failed.clear()
                state.answer_only = None

    # observation ---------------------------------------------------------------------------

    def requests(self, domain: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self._requests if domain is None or r.domain == domain]

    def request_count(self, domain: str | None = None, method: str | None = None) -> int:
        wanted = method_name(method) if method else None
        return sum(1 for r in self.requests(domain) if wanted is None or r.method == wanted)

    def refresh_count(self, domain: str | None = None) -> int:
        with self._lock:
            states = [self._get(domain)] if domain is not None else self._portals.values()
            return sum(state.refreshes for state in states)

    def issued_secrets(self, domain: str | None = None) -> set[str]:
        """Every token this server ever issued, and the client secrets (for leak searches)."""
        with self._lock:
            states = [self._get(domain)] if domain is not None else self._portals.values()
            return {s for state in states for s in (*state.issued, state.client_secret)}

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def state(self) -> dict[str, Any]:
        """What GET /_control/state shows: everything but tokens and secrets."""
        with self._lock:
            return {
                "url": self.url if self._server else None,
                "latency": self.latency,
                "rate_limit": self.rate_limit,
                "portals": {d: self._describe(s) for d, s in self._portals.items()},
            }

    # internals: state ----------------------------------------------------------------------

    def _get(self, domain: str) -> PortalState:
        try:
            return self._portals[domain]
        except KeyError:
            raise KeyError(f"unknown portal {domain!r}") from None

    def _issue(self, state: PortalState) -> tuple[str, str]:
        access, refresh = secrets.token_hex(35), secrets.token_hex(35)
        state.issued |= {access, refresh}
        state.access[access] = Access(issued_at=time.time(), refresh=refresh)
        state.refresh[refresh] = access
        return access, refresh

    def _describe(self, state: PortalState) -> dict[str, Any]:
        return {
            "client_endpoint": self.client_endpoint(state.domain) if self._server else None,
            "connectors": state.connectors,
            "lines": {str(k): v for k, v in sorted(state.lines.items())},
            "status": [
                {"connector": c, "line": ln, "configured": cf, "error": er, "status": cf and not er}
                for (c, ln), (cf, er) in sorted(state.flags.items())
            ],
            "faults": [
                {"fault": f.fault.value, "remaining": f.remaining, "method": f.method}
                for f in state.faults
            ],
            "failed_commands": [
                {"connector": c, "line": ln, "error": code}
                for (c, ln), code in sorted(state.failed.items())
            ],
            "answer_only": None if state.answer_only is None else sorted(state.answer_only),
            "requests": sum(1 for r in self._requests if r.domain == state.domain),
            "refreshes": state.refreshes,
        }

    def _hold(self, seconds: float) -> bool:
        """Wait without blocking stop(); False when the server is stopping."""
        if seconds > 0:
            return not self._stopping.wait(seconds)
        return not self._stopping.is_set()

    # internals: HTTP -----------------------------------------------------------------------

    def _handle(self, verb: str, target: str, content_type: str, body: bytes) -> Reply | None:
        parts = urlsplit(target)
        path = unquote(parts.path)
        if path.startswith("/_control/"):
            return self._control(verb, path, body)
        if not self._hold(self.latency):
            return None
        try:
            params = parse_params(parts.query, content_type, body)
        except ValueError as exc:
            return error_reply("INVALID_REQUEST", str(exc))
        if path.rstrip("/") == "/oauth/token":
            return self._oauth(params)
        match = re.fullmatch(r"/([^/]+)/rest/([^/]+?)(?:\.json)?/?", path)
        if match is None:
            return json_reply(404, {"error": "NOT_FOUND", "error_description": "Unknown path"})
        return self._rest(match.group(1), method_name(match.group(2)), path, params)

    def _rest(self, domain: str, method: str, path: str, params: dict[str, Any]) -> Reply | None:
        token = params.pop("auth", None)
        now = time.time()
        with self._lock:
            state = self._portals.get(domain)
            if state is None:
                return json_reply(404, {"error": "NOT_FOUND", "error_description": "No portal"})
            self._requests.append(RecordedRequest(domain, method, path, params, now))
            fault = state.take_fault(method)
            limit = self.rate_limit
            if fault is None and limit and not state.bucket.admit(limit[0], limit[1], now):
                return error_reply("QUERY_LIMIT_EXCEEDED")

        def answer() -> Reply:
            return self._rest_answer(state, method, params, token, now)

        if fault is None:
            return answer()
        if fault.fault is PortalFault.ECHO_TOKEN:
            return echo_token(method, params, str(token or ""))
        if fault.fault is PortalFault.REDIRECT:
            return Reply(302, b"", headers={"Location": f"https://{MOVED_TO}/rest/{method}"})
        return self._serve_fault(fault, answer, now)

    def _rest_answer(
        self, state: PortalState, method: str, params: dict[str, Any], token: Any, start: float
    ) -> Reply:
        try:
            with self._lock:
                self._check_auth(state, token)
                if method == "batch":
                    result = self._batch(state, params)
                else:
                    result = self._call(state, method, params)
        except RestError as exc:
            return error_reply(exc.code, exc.description)
        return json_reply(200, {"result": result, "time": time_block(start, time.time())})

    def _check_auth(self, state: PortalState, token: Any) -> None:
        if not token:
            raise RestError("NO_AUTH_FOUND")
        access = state.access.get(str(token))
        if access is None:
            raise RestError("invalid_token")
        if access.expired or time.time() - access.issued_at >= self.token_ttl:
            raise RestError("expired_token")

    def _serve_fault(self, fault: Fault, answer: Callable[[], Reply], start: float) -> Reply | None:
        if fault.fault is not PortalFault.TRICKLE and not self._hold(fault.delay):
            return None
        kind = fault.fault
        if kind is PortalFault.TIMEOUT:
            return answer()
        if kind is PortalFault.DROP:
            return None
        if kind is PortalFault.HTML:
            return Reply(502, NGINX_502.encode(), "text/html")
        if kind is PortalFault.TRUNCATED:
            full = answer().body
            return Reply(200, full[: max(1, len(full) // 2)])
        if kind is PortalFault.NOT_JSON:
            return Reply(200, b"Service is temporarily unavailable, try later", "text/plain")
        if kind is PortalFault.WRONG_SHAPE:
            return json_reply(200, {"result": "unexpected", "time": time_block(start, start)})
        if kind is PortalFault.HTTP_500:
            return Reply(500, b"", "text/plain")
        if kind is PortalFault.TRICKLE:
            return Reply(200, b"", stream=endless(b" "), pace=fault.delay)
        if kind is PortalFault.HUGE:
            return Reply(200, b"", stream=huge_body())
        if kind is PortalFault.GZIP_BOMB:
            return Reply(200, gzip_bomb(), headers={"Content-Encoding": "gzip"})
        if kind is PortalFault.HUGE_ERROR_CODE:
            return json_reply(400, {"error": "E" * HUGE_CODE_CHARS, "error_description": "?"})
        if kind is PortalFault.REDIRECT:
            return Reply(302, b"", headers={"Location": f"https://{MOVED_TO}/oauth/token/"})
        if kind in (PortalFault.HTTP_502, PortalFault.HTTP_503):
            return Reply(kind.http_status, f"{kind.http_status} error".encode(), "text/plain")
        extra: dict[str, Any] = {}
        if kind is PortalFault.OPERATION_TIME_LIMIT:
            block = time_block(start, time.time())
            block["operating"] = 480.0
            block["operating_reset_at"] = int(start + self.operating_reset_in)
            extra["time"] = block
        return error_reply(kind.value, None, extra)

    # internals: REST methods ---------------------------------------------------------------

    def _call(self, state: PortalState, method: str, params: dict[str, Any]) -> Any:
        if method == "imconnector.status":
            return self._status(state, params)
        if method == "imconnector.list":
            return dict(state.connectors) or []
        if method == "imconnector.activate":
            connector, line = connector_line(params)
            active = flag(param(params, "ACTIVE", 1))
            flags = state.flags.get((connector, line), (False, False))
            state.flags[(connector, line)] = (True, False) if active else (False, flags[1])
            return True
        if method == "imopenlines.config.list.get":
            return list_lines(state.lines, param(params, "PARAMS", {}))
        if method == "server.time":
            return datetime.now(UTC).isoformat(timespec="seconds")
        if method == "batch":
            raise RestError("ERROR_BATCH_METHOD_NOT_ALLOWED")
        raise RestError("ERROR_METHOD_NOT_FOUND")

    def _status(self, state: PortalState, params: dict[str, Any]) -> dict[str, Any]:
        connector, line = connector_line(params)
        code = state.failed.get((connector, line))
        if code is not None:
            raise RestError(code)
        configured, error = state.flags.get((connector, line), (False, False))
        return {
            "LINE": line,
            "CONNECTOR": connector,
            "ERROR": error,
            "CONFIGURED": configured,
            "STATUS": configured and not error,
        }

    def _batch(self, state: PortalState, params: dict[str, Any]) -> dict[str, Any]:
        commands = params.get("cmd") or {}
        if isinstance(commands, list):
            commands = {str(i): c for i, c in enumerate(commands)}
        if not isinstance(commands, dict):
            raise RestError("ERROR_ARGUMENT", "Argument 'cmd' must be an array")
        if len(commands) > BATCH_LIMIT:
            raise RestError("ERROR_BATCH_LENGTH_EXCEEDED")
        halt = flag(params.get("halt", 0))
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        times: dict[str, Any] = {}
        for name, command in commands.items():
            head, _, query = str(command).partition("?")
            method = method_name(head)
            sub = bracket_parse(parse_qsl(query, keep_blank_values=True))
            sub.pop("auth", None)
            if (
                state.answer_only is not None
                and method == "imconnector.status"
                and intval(param(sub, "LINE", 0)) not in state.answer_only
            ):
                continue
            started = time.time()
            try:
                results[str(name)] = self._call(state, method, sub)
            except RestError as exc:
                errors[str(name)] = {"error": exc.code, "error_description": exc.description}
            times[str(name)] = time_block(started, time.time())
            if halt and errors:
                break
        return {
            "result": php_array(results),
            "result_error": php_array(errors),
            "result_total": [],
            "result_next": [],
            "result_time": php_array(times),
        }

    # internals: OAuth ----------------------------------------------------------------------

    def _oauth(self, params: dict[str, Any]) -> Reply | None:
        with self._lock:
            state = self._by_client(str(params.get("client_id", "")))
            fault = state.take_fault("oauth") if state is not None else None

        def answer() -> Reply:
            return self._oauth_answer(params)

        return answer() if fault is None else self._serve_fault(fault, answer, time.time())

    def _by_client(self, client_id: str) -> PortalState | None:
        return next((s for s in self._portals.values() if s.client_id == client_id), None)

    def _oauth_answer(self, params: dict[str, Any]) -> Reply:
        if params.get("grant_type") != "refresh_token":
            return json_reply(
                400, {"error": "invalid_request", "error_description": "grant_type not supported"}
            )
        with self._lock:
            state = self._by_client(str(params.get("client_id", "")))
            if state is None or not secrets.compare_digest(
                str(params.get("client_secret", "")), state.client_secret
            ):
                return error_reply("invalid_client")
            old_access = state.refresh.pop(str(params.get("refresh_token", "")), None)
            if old_access is None:
                return error_reply("invalid_grant")
            if old_access in state.access:
                state.access[old_access].expired = True
            access, refresh = self._issue(state)
            state.refreshes += 1
            now = time.time()
            return json_reply(
                200,
                {
                    "access_token": access,
                    "expires": int(now + self.token_ttl),
                    "expires_in": int(self.token_ttl),
                    "scope": "imconnector,imopenlines",
                    "domain": f"{self.host}:{self.port}",
                    "server_endpoint": f"{self.url}/rest/",
                    "status": "L",
                    "client_endpoint": self.client_endpoint(state.domain),
                    "member_id": state.member_id,
                    "user_id": 1,
                    "refresh_token": refresh,
                },
            )

    # internals: control API ----------------------------------------------------------------

    def _control(self, verb: str, path: str, body: bytes) -> Reply:
        parts = path.strip("/").split("/")
        if parts == ["_control", "state"]:
            return json_reply(200, self.state())
        if verb != "POST" or len(parts) != 3:
            return json_reply(404, {"error": "NOT_FOUND", "message": "unknown control path"})
        domain, action = parts[1], parts[2]
        with self._lock:
            known = domain in self._portals
        if not known:
            return json_reply(404, {"error": "NOT_FOUND", "message": f"no portal {domain}"})
        try:
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise ValueError("body must be a JSON object")
            return self._control_action(domain, action, data)
        except (ValueError, TypeError, KeyError) as exc:
            return json_reply(400, {"error": "BAD_REQUEST", "message": str(exc)})

    def _control_action(self, domain: str, action: str, data: dict[str, Any]) -> Reply:
        if action == "status":
            configured, error = json_bool(data["configured"]), json_bool(data.get("error", False))
            self.set_status(domain, str(data["connector"]), int(data["line"]),
                            configured=configured, error=error)  # fmt: skip
        elif action == "fault":
            self.inject(domain, str(data["fault"]), count=data.get("count"),
                        method=data.get("method"), delay=float(data.get("delay", 0.0)))  # fmt: skip
        elif action == "clear":
            self.clear_faults(domain)
        elif action == "expire":
            self.expire_access_tokens(domain)
        elif action == "revoke":
            self.revoke(domain)
        elif action == "credentials":
            return json_reply(200, self.credentials(domain))
        else:
            return json_reply(404, {"error": "NOT_FOUND", "message": f"no action {action}"})
        with self._lock:
            described = self._describe(self._portals[domain])
        return json_reply(200, {"ok": True, "portal": described})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for held requests

    def __init__(self, address: tuple[str, int], portal: LocalPortal) -> None:
        self.portal = portal
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (as the monitor does on a hostile answer) is no error; anything
        else is printed as usual."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Unblock handler threads parked on keep-alive connections."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60
    # Without it every keep-alive answer waits ~40 ms for the client's delayed ACK on loopback,
    # which looks like portal latency and slows every test.
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return "nginx"

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines carry tokens in query strings."""

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        portal = cast(_Server, self.server).portal
        reply = portal._handle(self.command, self.path, self.headers.get("Content-Type", ""), body)
        if reply is None:
            self._drop()
            return
        try:
            if reply.pace > 0:
                self._trickle(portal, reply)
            elif reply.stream is not None:
                self._stream(reply)
            else:
                self._head(reply, {"Content-Length": str(len(reply.body))})
                self.wfile.write(reply.body)
        except OSError:
            self.close_connection = True

    def _head(self, reply: Reply, extra: dict[str, str]) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        for name, value in {**reply.headers, **extra}.items():
            self.send_header(name, value)
        self.end_headers()

    def _stream(self, reply: Reply) -> None:
        """The head, then the stream until it ends or the client hangs up; no Content-Length,
        so the end of the body is the end of the connection."""
        assert reply.stream is not None
        self.close_connection = True
        self._head(reply, {"Connection": "close"})
        for chunk in reply.stream:
            self.wfile.write(chunk)

    def _trickle(self, portal: LocalPortal, reply: Reply) -> None:
        """Every byte of the answer, from the status line on, `pace` seconds apart, forever
        (until the client hangs up or the server stops)."""
        self.close_connection = True
        head = (
            f"HTTP/1.1 {reply.status} OK\r\nContent-Type: {reply.content_type}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        stream = itertools.chain(head, itertools.chain.from_iterable(reply.stream or ()))
        for byte in stream:
            if not portal._hold(reply.pace):
                break
            self.wfile.write(bytes([byte]))
            self.wfile.flush()

    def _drop(self) -> None:
        self.close_connection = True
        with suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
