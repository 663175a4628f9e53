"""HTTP to portals and OAuth servers, bounded in time and in size: the monitor's one way to talk
to a host it does not control.

A per-read timeout does not bound a request: a host that sends one byte every two seconds never
trips it, in the headers or in the body. So every exchange runs under the run's deadline: a
watchdog thread shuts the connection's socket down when the deadline passes, whatever phase the
exchange is in (connect, TLS, headers, body), and the blocked read fails at once.

Answers are read as a stream, counted in bytes as they arrive (before decompression) and while
they are decompressed, and refused past a cap, so a 100 MB body or a gzip bomb costs at most the
cap in memory. Redirects are never followed: a token goes only where the secret says.

Errors are `TransportError`s, or `ExchangeCutOff` (a `DeadlineExceeded`) when the deadline cut
the exchange off; no message quotes a URL, a header or a body (a URL may carry an OAuth secret
in its query string).
"""

from __future__ import annotations

import heapq
import itertools
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.ssl_ import create_urllib3_context

from ..deadline import Deadline, ExchangeCutOff

CHUNK = 64 * 1024
_MIN_TIMEOUT = 0.001  # requests refuses a zero timeout
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
# OpenSSL's SSL_OP_TLSEXT_PADDING (in the SSL_OP_ALL Python sets; the ssl module has no name for
# it): pads every ClientHello to 512 bytes for F5 load balancers of before 2013, which hung on a
# ClientHello of 256 to 511 bytes. Without it the monitor's is 296 bytes: 221 fewer bytes out of
# AWS for every portal every run, the largest part of what a run sends.
_OP_TLSEXT_PADDING = 0x10
# Only what zlib decodes with a bounded output; a host that answers br or zstd anyway is refused.
ACCEPT_ENCODING = "gzip, deflate"


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


def exchange(
    session: requests.Session,
    method: str,
    url: str,
    *,
    deadline: Deadline,
    timeouts: tuple[float, float],
    max_bytes: int,
    **request: Any,
) -> HttpAnswer:
    """One request and its whole answer, within `deadline` and `max_bytes`.

    `timeouts` are (connect, read) for one socket operation; the deadline bounds the whole.
    `request` is passed to `session.request` (json=, params=, data=). Raises TransportError, or
    ExchangeCutOff when the deadline passed before or during the exchange.
    """
    guard(session)
    if deadline.expired:
        raise ExchangeCutOff("the run's deadline passed before the request was sent")
    timeout = (
        max(_MIN_TIMEOUT, deadline.timeout(timeouts[0])),
        max(_MIN_TIMEOUT, deadline.timeout(timeouts[1])),
    )
    headers = {**request.pop("headers", {}), "Accept-Encoding": ACCEPT_ENCODING}
    with _WATCHDOG.watching(deadline) as scope:
        try:
            response = session.request(
                method,
                url,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
                stream=True,
                **request,
            )
        except requests.exceptions.RequestException as exc:
            failure = _failure(exc, timeout, scope.tripped)
        else:
            try:
                return _read(response, max_bytes, scope)
            finally:
                response.close()
    raise failure


def guard(session: requests.Session, ca_bundle: str | None = None) -> requests.Session:
    """Make `session` send through watched connections over the process's TLS context for
    `ca_bundle` (idempotent); returns it.

    Only requests' stock adapters are replaced: an adapter someone mounted on purpose (a test's
    canned transport) is theirs to bound.
    """
    for prefix in ("https://", "http://"):
        if type(session.adapters.get(prefix)) is HTTPAdapter:
            session.mount(prefix, _WatchedAdapter(tls_context(ca_bundle)))
    return session


def new_session(
    *, ca_bundle: str | None = None, user_agent: str = "connector-monitor/1"
) -> requests.Session:
    """A session for portals and OAuth servers; `ca_bundle` (a PEM file) replaces the public
    CAs the monitor trusts (the local portal's authority: never needed on AWS)."""
    session = requests.Session()
    session.headers.update({"Accept": "application/json", "User-Agent": user_agent})
    # HTTP/1.1 keeps connections open without it: 24 bytes a request that say nothing.
    session.headers.pop("Connection", None)
    # Not the environment's proxies and .netrc: requests would look them up for every request
    # (a quarter of a fleet run's CPU), and a portal's credentials are in the body, never there.
    session.trust_env = False
    return guard(session, ca_bundle)


# ---- reading --------------------------------------------------------------------------------


def _read(response: requests.Response, max_bytes: int, scope: _Scope) -> HttpAnswer:
    headers = response.headers
    declared = headers.get("Content-Length", "")
    if declared.strip().isdigit() and int(declared) > max_bytes:
        raise AnswerTooLarge(f"the answer announces {int(declared)} bytes; the cap is {max_bytes}")
    decoder = _Decoder(headers.get("Content-Encoding", ""), max_bytes)
    received = 0
    try:
        while True:
            chunk = response.raw.read(CHUNK, decode_content=False)
            if not chunk:
                break
            received += len(chunk)
            if received > max_bytes:
                raise AnswerTooLarge(f"the answer is larger than {max_bytes} bytes")
            decoder.feed(chunk)
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
        status=response.status_code,
        body=decoder.finish(),
        content_type=headers.get("Content-Type", ""),
        retry_after=headers.get("Retry-After"),
        location=headers.get("Location"),
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
    exc: requests.exceptions.RequestException, timeout: tuple[float, float], tripped: bool
) -> TransportError | ExchangeCutOff:
    """Say which failure it was, in words that never quote the URL or the body."""
    if tripped:
        return ExchangeCutOff("the run's deadline passed while the host was still answering")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return ConnectFailed(f"could not connect within {timeout[0]:.2f} s")
    if isinstance(exc, requests.exceptions.Timeout):
        return NoAnswer(f"no answer within {timeout[1]:.2f} s")
    if isinstance(
        exc,
        requests.exceptions.InvalidURL
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema,
    ):
        return InvalidEndpoint("the endpoint is not a valid URL")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return ConnectFailed(_connection_problem(exc))
    return ConnectFailed(f"the request failed ({type(exc).__name__})")


def _connection_problem(exc: requests.exceptions.ConnectionError) -> str:
    reason = getattr(exc.args[0] if exc.args else None, "reason", None)
    name = type(reason).__name__
    if name == "NameResolutionError":
        return "the host name could not be resolved (check the domain and endpoint)"
    if isinstance(exc, requests.exceptions.SSLError):
        # OpenSSL's words, not the server's: but only the verdict is kept.
        if "CERTIFICATE_VERIFY_FAILED" in str(reason):
            return "its TLS certificate could not be verified (not from a trusted authority?)"
        return "the TLS handshake failed"
    if isinstance(getattr(reason, "__context__", None), ConnectionRefusedError) or (
        "refused" in str(reason).lower() and name == "NewConnectionError"
    ):
        return "the connection was refused"
    return "the connection failed or was dropped"


# ---- the watchdog ---------------------------------------------------------------------------


@dataclass(eq=False)
class _Scope:
    """The connections one exchange used, shut down together if the deadline passes first."""

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


def _shut(connection: Any) -> None:
    """Shut the socket a connection speaks through: once connected its own (over TLS, the TLS
    socket, which took the plain one's descriptor over), the plain one while connecting. A TLS
    handshake is bounded by its socket timeout, which never outlasts the deadline."""
    sock = getattr(connection, "sock", None) or getattr(connection, "watched_socket", None)
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
        self._local = threading.local()

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
        self._local.scope = scope
        try:
            yield scope
        finally:
            self._local.scope = None
            with scope.lock:
                scope.closed = True

    def current(self) -> _Scope | None:
        return getattr(self._local, "scope", None)

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


class _WatchedConnection(HTTPConnection):
    """Remembers its plain socket, so the watchdog can shut it even mid-TLS-handshake."""

    watched_socket: socket.socket | None = None

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self.watched_socket = sock
        return sock


class _WatchedHTTPSConnection(HTTPSConnection):
    watched_socket: socket.socket | None = None

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self.watched_socket = sock
        return sock


def _enlist(connection: Any) -> None:
    scope = _WATCHDOG.current()
    if scope is not None:
        scope.add(connection)


class _WatchedPool(HTTPConnectionPool):
    ConnectionCls = _WatchedConnection

    def _make_request(self, conn: Any, *args: Any, **kwargs: Any) -> Any:
        _enlist(conn)  # before connecting: a reused connection is enlisted here too
        return super()._make_request(conn, *args, **kwargs)


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection

    def _make_request(self, conn: Any, *args: Any, **kwargs: Any) -> Any:
        _enlist(conn)
        return super()._make_request(conn, *args, **kwargs)


_POOLS: Mapping[str, type[HTTPConnectionPool]] = {"http": _WatchedPool, "https": _WatchedHTTPSPool}


@lru_cache(maxsize=4)
def tls_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """The process's TLS context for portals and OAuth servers, its certificate authorities
    loaded once: `ca_bundle`, or the public CAs requests ships (certifi). Given a bundle's path,
    urllib3 would load its ~150 certificates into the context again for every new connection
    (~15 ms of CPU each); every portal is a new connection every run. Its ClientHello is not
    padded (`_OP_TLSEXT_PADDING`)."""
    context = create_urllib3_context()
    context.options &= ~_OP_TLSEXT_PADDING
    context.load_verify_locations(cafile=ca_bundle or DEFAULT_CA_BUNDLE_PATH)
    return context


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter with pools whose connections the watchdog can shut, verifying
    certificates with one shared TLS context."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context  # before super().__init__, which builds the pool manager
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, ssl_context=self._context, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """Verify with the shared context's authorities: requests would hand every pool the
        bundle's path, which urllib3 loads anew for each connection."""
        if verify is True and url.lower().startswith("https"):
            conn.cert_reqs = "CERT_REQUIRED"
            conn.ca_certs = None
            conn.ca_cert_dir = None
            return
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_POOLS)
        return manager
