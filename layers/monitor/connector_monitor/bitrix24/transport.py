"""HTTP to portals and OAuth servers, bounded in time and in size: the monitor's one way to talk
to a host it does not control, on the standard library's `http.client`.

A per-read timeout does not bound a request: a host that sends one byte every two seconds never
trips it, in the headers or in the body. So every exchange runs under the run's deadline: a
watchdog thread shuts the connection's socket down when the deadline passes, whatever phase the
exchange is in (connect, TLS, headers, body), and the blocked read fails at once.

Answers are read as a stream, counted in bytes as they arrive (before decompression) and while
they are decompressed, and refused past a cap, so a 100 MB body or a gzip bomb costs at most the
cap in memory. Redirects are never followed: a token goes only where the secret says.

What goes out is kept small, since bytes out of AWS are billed and every portal is one exchange
a run: a ClientHello without padding, legacy session id, ALPN or session-ticket extension; a
request of the request line, Host, User-Agent, Content-Type and Content-Length only (no
Accept-Encoding: answers come uncompressed, though a host that compresses unasked is still
decoded, bounded); compact JSON. A session keeps its connection open between the batches of one
portal and closes it with a reset once every answer is read (`HttpSession.close`).

Errors are `TransportError`s, or `ExchangeCutOff` (a `DeadlineExceeded`) when the deadline cut
the exchange off; no message quotes a URL, a header or a body (a URL may carry an OAuth secret
in its query string).
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import json as jsonlib
import select
import socket
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import certifi

from ..deadline import Deadline, ExchangeCutOff

CHUNK = 64 * 1024
_MIN_TIMEOUT = 0.001  # a zero timeout would make the socket non-blocking
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
# OpenSSL's SSL_OP_TLSEXT_PADDING (in the SSL_OP_ALL Python sets; the ssl module has no name for
# it): pads every ClientHello to 512 bytes for F5 load balancers of before 2013, which hung on a
# ClientHello of 256 to 511 bytes. Without it the ClientHello is ~220 bytes shorter: bytes out of
# AWS for every portal every run, the largest part of what a run sends.
_OP_TLSEXT_PADDING = 0x10
# TLS 1.2 suites for a portal without TLS 1.3 (an on-premise box): forward-secret AEAD only.
# TLS 1.3 suites are OpenSSL's own list (set_ciphers does not touch them).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
USER_AGENT = "connector-monitor/1"
_PATH_SAFE = "/%:@!$&'()*+,;=~-._"  # a path's own characters: only others are escaped


class TransportError(Exception):
    """No complete answer: the message says what kind of failure, never the URL or the body."""


class AnswerTooLarge(TransportError):
    """The answer (as sent, or once decompressed) is larger than the cap."""


class InvalidEndpoint(TransportError):
    """The URL is not one a token may be sent to (not https, except to this machine)."""


class ConnectFailed(TransportError):
    """The host could not be reached, or refused, or dropped the connection."""


class NoAnswer(TransportError):
    """The host accepted the request and sent nothing within the read timeout."""


@dataclass(frozen=True)
class HttpAnswer:
    """A complete answer: status, the few headers the monitor reads, the decoded body."""

    status: int
    body: bytes
    content_type: str = ""
    retry_after: str | None = None
    location: str | None = None


def require_safe_endpoint(url: str, what: str) -> str:
    """`url` if a token may go there: https, or plain http to this machine (local runs)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise InvalidEndpoint(f"{what} is not a valid URL") from None
    if not host:
        raise InvalidEndpoint(f"{what} is not a valid URL")
    if parts.scheme == "https" or (parts.scheme == "http" and host in _LOOPBACK):
        return url
    raise InvalidEndpoint(f"{what} must be an https URL")


@dataclass(frozen=True)
class HttpRequest:
    """What goes on the wire: the method, where, and the body with its type."""

    method: str
    scheme: str
    host: str
    port: int
    target: str  # the path and query
    body: bytes = b""
    content_type: str = ""

    @classmethod
    def build(
        cls,
        method: str,
        url: str,
        *,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> HttpRequest:
        """`json` (compact) or `data` (a form) as the body, `params` added to the query."""
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError:
            raise InvalidEndpoint("the endpoint is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not host:
            raise InvalidEndpoint("the endpoint is not a valid URL")
        try:  # an on-premise portal may have a national domain name
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidEndpoint("the endpoint is not a valid URL") from None
        query = "&".join(q for q in (parts.query, urlencode(params or {})) if q)
        target = quote(parts.path or "/", safe=_PATH_SAFE) + (f"?{query}" if query else "")
        body, content_type = b"", ""
        if json is not None:
            text = jsonlib.dumps(json, separators=(",", ":"), ensure_ascii=False)
            body, content_type = text.encode(), "application/json"
        elif data is not None:
            body, content_type = urlencode(data).encode(), "application/x-www-form-urlencoded"
        default = 443 if parts.scheme == "https" else 80
        return cls(method, parts.scheme, host, port or default, target, body, content_type)


def exchange(
    session: HttpSession,
    method: str,
    url: str,
    *,
    deadline: Deadline,
    timeouts: tuple[float, float],
    max_bytes: int,
    json: Any = None,
    data: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
) -> HttpAnswer:
    """One request and its whole answer, within `deadline` and `max_bytes`.

    `timeouts` are (connect, read) for one socket operation; the deadline bounds the whole.
    Raises TransportError, or ExchangeCutOff when the deadline passed before or during the
    exchange.
    """
    request = HttpRequest.build(method, url, json=json, data=data, params=params)
    if deadline.expired:
        raise ExchangeCutOff("the run's deadline passed before the request was sent")
    capped = (
        max(_MIN_TIMEOUT, deadline.timeout(timeouts[0])),
        max(_MIN_TIMEOUT, deadline.timeout(timeouts[1])),
    )
    return session.send(request, deadline=deadline, timeouts=capped, max_bytes=max_bytes)


def new_session(*, ca_bundle: str | None = None, user_agent: str = USER_AGENT) -> HttpSession:
    """A session for portals and OAuth servers; `ca_bundle` (a PEM file) replaces the public
    CAs the monitor trusts (the local portal's authority: never needed on AWS)."""
    return HttpSession(ca_bundle=ca_bundle, user_agent=user_agent)


class HttpSession:
    """Connections to the hosts one caller talks to, each kept open between its exchanges
    (a portal's batches go over one TLS connection) until `close`. Thread-safe: an exchange
    takes an idle connection or opens one, and puts it back once its answer is read whole."""

    def __init__(self, *, ca_bundle: str | None = None, user_agent: str = USER_AGENT) -> None:
        self.user_agent = user_agent
        self._context = tls_context(ca_bundle)
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> HttpSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def idle_connections(self) -> int:
        """Connections open and waiting for the next exchange."""
        with self._lock:
            return sum(len(connections) for connections in self._idle.values())

    def close(self) -> None:
        """Close every idle connection (each answer on it was read whole)."""
        with self._lock:
            idle = [c for connections in self._idle.values() for c in connections]
            self._idle.clear()
        for connection in idle:
            _close(connection, read_whole=True)

    def send(
        self,
        request: HttpRequest,
        *,
        deadline: Deadline,
        timeouts: tuple[float, float],
        max_bytes: int,
    ) -> HttpAnswer:
        """`request` and its whole answer within `deadline`, `timeouts` (connect, read) for one
        socket operation (see `exchange`)."""
        timeout = timeouts
        connection = self._checkout(request)
        connecting = connection.sock is None
        with _WATCHDOG.watching(deadline) as scope:
            scope.add(connection)
            try:
                if connecting:
                    connection.timeout = timeout[0]
                    connection.connect()
                    connecting = False
                # http.client lets go of the socket of an answer that ends the connection
                scope.add(connection.sock)
                connection.sock.settimeout(timeout[1])
                self._put(connection, request)
                response = connection.getresponse()
                answer = _read(response, max_bytes, scope)
            except (TransportError, ExchangeCutOff):
                _close(connection, read_whole=False)
                raise
            except Exception as exc:  # the socket's, TLS's or http.client's: told apart below
                _close(connection, read_whole=False)
                failure = _failure(exc, timeout, connecting=connecting, tripped=scope.tripped)
            else:
                self._checkin(request, connection, response)
                return answer
        raise failure

    def _put(self, connection: _Connection, request: HttpRequest) -> None:
        """The request's head (without the Accept-Encoding: identity http.client would add)
        and body, in one write."""
        connection.putrequest(request.method, request.target, skip_accept_encoding=True)
        connection.putheader("User-Agent", self.user_agent)
        if request.content_type:
            connection.putheader("Content-Type", request.content_type)
        if request.body or request.method == "POST":
            connection.putheader("Content-Length", str(len(request.body)))
        connection.end_request(request.body)

    def _checkout(self, request: HttpRequest) -> _Connection:
        """An idle connection to the request's host that is still open, else a new one."""
        key = (request.scheme, request.host, request.port)
        while True:
            with self._lock:
                idle = self._idle.get(key)
                connection = idle.pop() if idle else None
            if connection is None:
                break
            if _still_open(connection):
                return connection
            _close(connection, read_whole=False)
        if request.scheme == "https":
            return _TLSConnection(request.host, request.port, context=self._context)
        return _Connection(request.host, request.port)

    def _checkin(
        self,
        request: HttpRequest,
        connection: _Connection,
        response: http.client.HTTPResponse,
    ) -> None:
        if response.will_close:
            _close(connection, read_whole=True)
            return
        with self._lock:
            self._idle.setdefault((request.scheme, request.host, request.port), []).append(
                connection
            )


class _Connection(http.client.HTTPConnection):
    """http.client writes a request's head and its body apart: two TLS records (22 bytes of
    overhead each) and two TCP segments. `end_request` sends them in one write."""

    _held: list[bytes] | None = None

    def send(self, data: Any) -> None:
        if self._held is not None:
            self._held.append(bytes(data))
            return
        super().send(data)

    def end_request(self, body: bytes) -> None:
        self._held = []
        try:
            self.endheaders(body or None)
        finally:
            held, self._held = self._held, None
        super().send(b"".join(held))


class _TLSConnection(_Connection, http.client.HTTPSConnection):
    pass


def _still_open(connection: _Connection) -> bool:
    """False when the host closed an idle connection (or sent something unasked on it)."""
    sock = connection.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return True
        sock.settimeout(0)
        sock.recv(1)  # b"": closed; anything else: not an answer to any request of ours
    except (ssl.SSLWantReadError, BlockingIOError):
        return True  # only TLS housekeeping (a session ticket) was waiting
    except (OSError, ValueError):
        pass
    return False


_LINGER_RESET = struct.pack("ii", 1, 0)


def _close(connection: _Connection, *, read_whole: bool) -> None:
    """Close the connection; once every answer on it was read whole, with a reset (SO_LINGER
    0): one segment out instead of a FIN and the ACK of the host's FIN, and no TIME_WAIT."""
    sock = connection.sock
    if read_whole and sock is not None:
        with suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    with suppress(OSError):
        connection.close()


# ---- reading --------------------------------------------------------------------------------


def _read(response: http.client.HTTPResponse, max_bytes: int, scope: _Scope) -> HttpAnswer:
    declared = response.getheader("Content-Length") or ""
    if declared.strip().isdigit() and int(declared) > max_bytes:
        raise AnswerTooLarge(f"the answer announces {int(declared)} bytes; the cap is {max_bytes}")
    decoder = _Decoder(response.getheader("Content-Encoding") or "", max_bytes)
    received = 0
    try:
        while True:
            chunk = response.read1(CHUNK)
            if not chunk:
                break
            received += len(chunk)
            if received > max_bytes:
                raise AnswerTooLarge(f"the answer is larger than {max_bytes} bytes")
            decoder.feed(chunk)
        response.close()  # read whole: the connection may carry the next request
        if scope.tripped:  # a socket shut by the watchdog may read as a clean end
            raise ExchangeCutOff("the run's deadline passed while the answer was arriving")
    except (TransportError, ExchangeCutOff):
        raise
    except Exception as exc:  # the socket shut by the watchdog, a dropped or broken stream
        if scope.tripped:
            raise ExchangeCutOff(
                "the run's deadline passed while the answer was arriving"
            ) from None
        raise ConnectFailed(
            f"the connection broke while the answer was arriving ({type(exc).__name__})"
        ) from None
    return HttpAnswer(
        status=response.status,
        body=decoder.finish(),
        content_type=response.getheader("Content-Type") or "",
        retry_after=response.getheader("Retry-After"),
        location=response.getheader("Location"),
    )


class _Decoder:
    """Content-Encoding undone with the output capped: a gzip bomb stops at the cap."""

    def __init__(self, encoding: str, max_bytes: int) -> None:
        codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            raise TransportError("the answer uses a content encoding the monitor did not ask for")
        self._zlib: Any = None
        self._raw_deflate = False
        if codings:
            # 32 + MAX_WBITS: gzip or zlib framing, detected from the header.
            self._zlib = zlib.decompressobj(32 + zlib.MAX_WBITS)
            self._raw_deflate = codings[0] == "deflate"
        self._max = max_bytes
        self._out = bytearray()
        self._started = False

    def feed(self, data: bytes) -> None:
        if self._zlib is None:
            self._keep(data)
            return
        try:
            self._inflate(data)
        except zlib.error:
            if not (self._raw_deflate and not self._started):
                raise TransportError("the answer's compressed body is corrupt") from None
            # Some servers send "deflate" without the zlib header (raw deflate).
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            self._raw_deflate = False
            try:
                self._inflate(data)
            except zlib.error:
                raise TransportError("the answer's compressed body is corrupt") from None

    def _inflate(self, data: bytes) -> None:
        pending = data
        while pending:
            room = self._max - len(self._out)
            piece = self._zlib.decompress(pending, room + 1)
            self._started = True
            self._keep(piece)
            pending = self._zlib.unconsumed_tail
            if self._zlib.eof:
                return

    def _keep(self, piece: bytes) -> None:
        if len(self._out) + len(piece) > self._max:
            raise AnswerTooLarge(f"the answer expands past {self._max} bytes")
        self._out += piece

    def finish(self) -> bytes:
        if self._zlib is not None:
            self._keep(self._zlib.flush(self._max - len(self._out) + 1))
        return bytes(self._out)


def _failure(
    exc: Exception, timeout: tuple[float, float], *, connecting: bool, tripped: bool
) -> TransportError | ExchangeCutOff:
    """Say which failure it was, in words that never quote the URL or the body."""
    if tripped:
        return ExchangeCutOff("the run's deadline passed while the host was still answering")
    if isinstance(exc, TimeoutError):
        if connecting:
            return ConnectFailed(f"could not connect within {timeout[0]:.2f} s")
        return NoAnswer(f"no answer within {timeout[1]:.2f} s")
    if isinstance(exc, socket.gaierror):
        return ConnectFailed("the host name could not be resolved (check the domain and endpoint)")
    if isinstance(exc, ssl.SSLCertVerificationError | ssl.CertificateError):
        return ConnectFailed(
            "its TLS certificate could not be verified (not from a trusted authority?)"
        )
    if connecting and isinstance(exc, ssl.SSLError):
        return ConnectFailed("the TLS handshake failed")
    if isinstance(exc, ConnectionRefusedError):
        return ConnectFailed("the connection was refused")
    if isinstance(exc, OSError | http.client.HTTPException | ValueError):
        return ConnectFailed("the connection failed or was dropped")
    return ConnectFailed(f"the request failed ({type(exc).__name__})")


# ---- the watchdog ---------------------------------------------------------------------------


@dataclass(eq=False)
class _Scope:
    """The connection (and its socket) one exchange used, shut down if the deadline passes
    first."""

    expires_at: float
    connections: list[Any] = field(default_factory=list)
    tripped: bool = False
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, connection: Any) -> None:
        with self.lock:
            if self.tripped:
                _shut(connection)
            self.connections.append(connection)

    def trip(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.tripped = True
            for connection in self.connections:
                _shut(connection)


def _shut(watched: Any) -> None:
    """Shut a socket, or the one a connection speaks through: the plain one while the TLS
    handshake runs (http.client swaps in the TLS socket after it), then the TLS one. Before the
    socket exists, the connect is bounded by its timeout, which never outlasts the deadline."""
    sock = watched if isinstance(watched, socket.socket) else getattr(watched, "sock", None)
    if sock is not None:
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread for the process: trips each scope whose deadline passed."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Scope]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextmanager
    def watching(self, deadline: Deadline) -> Iterator[_Scope]:
        scope = _Scope(deadline.expires_at)
        with self._wake:
            heapq.heappush(self._heap, (scope.expires_at, next(self._order), scope))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="http-deadline-watchdog", daemon=True
                )
                self._thread.start()
            self._wake.notify()
        try:
            yield scope
        finally:
            with scope.lock:
                scope.closed = True

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._heap and self._heap[0][2].closed:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._wake.wait()
                    continue
                due = self._heap[0][0] - time.monotonic()
                if due > 0:
                    self._wake.wait(due)
                    continue
                _, _, scope = heapq.heappop(self._heap)
            scope.trip()


_WATCHDOG = _Watchdog()


@lru_cache(maxsize=4)
def tls_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """The process's TLS context for portals and OAuth servers, its certificate authorities
    (`ca_bundle`, or certifi's public ones) loaded once: ~150 certificates are ~15 ms of CPU.

    Certificates and host names are checked; TLS 1.2 or 1.3. Its ClientHello has no padding
    (`_OP_TLSEXT_PADDING`), an empty legacy session id and no ChangeCipherSpec (no middlebox
    compatibility: only broken middleboxes need them), no session-ticket extension (every
    portal is a new host each run: a ticket would never be used), no ALPN (HTTP/1.1 is all
    the monitor speaks) and a TLS 1.2 cipher list of `TLS12_CIPHERS`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options &= ~(_OP_TLSEXT_PADDING | ssl.OP_ENABLE_MIDDLEBOX_COMPAT)
    context.options |= ssl.OP_NO_TICKET | ssl.OP_NO_COMPRESSION
    context.set_ciphers(TLS12_CIPHERS)
    context.load_verify_locations(cafile=ca_bundle or certifi.where())
    return context
