"""Portals speak HTTPS with certificate checks (the local portal with `tls=True`, its certificate
from a local authority the monitor is told to trust): what a user of a real portal gets, and the
one TLS context a process builds, whose authorities are loaded once."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import replace

import pytest

from connector_monitor.bitrix24.connector_checks import ConnectorChecks, open_connector_checks
from connector_monitor.bitrix24.oauth import oauth_refresh
from connector_monitor.bitrix24.rest_session import RestSession
from connector_monitor.bitrix24.transport import exchange, new_session, tls_context
from connector_monitor.deadline import Deadline
from connector_monitor.domain.portal_errors import PortalError
from connector_monitor.domain.results import Cause, State
from connector_monitor.domain.targets import Target
from connector_monitor.ports.portal import PortalCheck
from local.bitrix24_portal import LocalPortal
from tests.integration.rest_portal import CONNECTOR, OAuthTokens, one_line_tls_portal
from tests.support.wire import read_record, read_request, serving

DOMAIN = "tls.bitrix24.com"


@pytest.fixture(scope="module")
def portal() -> Iterator[LocalPortal]:
    with one_line_tls_portal(DOMAIN) as server:
        yield server


def tokens(portal: LocalPortal) -> OAuthTokens:
    return OAuthTokens(DOMAIN, portal.credentials(DOMAIN))


def checked(checks: ConnectorChecks, within: float = 10.0) -> PortalCheck:
    try:
        return checks.check([Target(DOMAIN, CONNECTOR, 1)], Deadline.after(within))
    finally:
        checks.close()


def test_the_local_portal_speaks_https_at_its_loopback_address(portal: LocalPortal) -> None:
    assert portal.url.startswith("https://127.0.0.1:")
    assert portal.credentials(DOMAIN)["client_endpoint"].startswith("https://")


def test_a_portal_whose_certificate_is_not_trusted_is_unknown_and_says_so(
    portal: LocalPortal,
) -> None:
    # Given the public authorities only (as on AWS), and the local portal's own certificate
    check = checked(open_connector_checks(DOMAIN, tokens(portal)))

    # Then the line is UNKNOWN (never DOWN), and the detail says why
    (result,) = check.results
    assert (result.state, result.cause) == (State.UNKNOWN, Cause.PORTAL_FAILING)
    assert "TLS certificate could not be verified" in (result.detail or "")


def test_a_portal_is_checked_over_https_with_its_authority_trusted(portal: LocalPortal) -> None:
    check = checked(open_connector_checks(DOMAIN, tokens(portal), portal.ca_file))
    assert [r.state for r in check.results] == [State.UP]


def test_an_oauth_refresh_over_https_trusts_only_the_authority_it_is_given(
    portal: LocalPortal,
) -> None:
    stale = tokens(portal).creds
    with pytest.raises(PortalError, match="TLS certificate could not be verified"):
        oauth_refresh()(stale, Deadline.after(10))  # the public authorities only

    fresh = oauth_refresh(ca_bundle=portal.ca_file)(stale, Deadline.after(10))

    assert fresh.refresh_token != stale.refresh_token
    assert fresh.client_endpoint.startswith("https://127.0.0.1:")


def test_the_authorities_are_loaded_once_however_many_connections(
    portal: LocalPortal, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a count of every load of certificates into any TLS context of this process
    loads: list[object] = []
    real = ssl.SSLContext.load_verify_locations

    def counted(context: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        loads.append(args or kwargs)
        real(context, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    tls_context.cache_clear()

    # When ten portals' sessions each open their own connection
    for _ in range(10):
        session = RestSession(DOMAIN, tokens(portal), ca_bundle=portal.ca_file)
        assert [r.state for r in checked(ConnectorChecks(session)).results] == [State.UP]

    # Then the authority was loaded into a context once, not once a connection
    assert len(loads) == 1
    tls_context.cache_clear()


def test_a_portal_trickling_its_answer_over_https_is_cut_at_the_deadline(
    portal: LocalPortal,
) -> None:
    # A TLS socket takes over the plain socket's descriptor: the deadline's watchdog must shut
    # the TLS one, or a portal sending a byte every 2 s holds the run for good.
    portal.inject(DOMAIN, "trickle", delay=2.0)
    started = time.monotonic()
    try:
        check = checked(open_connector_checks(DOMAIN, tokens(portal), portal.ca_file), within=2.0)
    finally:
        portal.clear_faults(DOMAIN)
    (result,) = check.results
    assert (result.state, result.cause) == (State.UNKNOWN, Cause.DEADLINE)
    assert time.monotonic() - started < 4.0


@pytest.fixture
def trickling_handshake() -> Iterator[str]:
    """A server that accepts and starts a TLS handshake record of 16 KB, sending a byte every
    half second: no socket read ever waits long enough to time out."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        with suppress(OSError):
            connection, _ = listener.accept()
            with connection:
                for byte in b"\x16\x03\x03\x40\x00" + b"\x02" * 60:
                    if stop.wait(0.5):
                        return
                    connection.sendall(bytes([byte]))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}/rest/"
    stop.set()
    listener.close()
    thread.join(timeout=5)


def test_a_tls_handshake_trickled_by_the_server_is_cut_at_the_deadline(
    portal: LocalPortal, trickling_handshake: str
) -> None:
    source = tokens(portal)
    source.creds = replace(source.creds, client_endpoint=trickling_handshake)
    started = time.monotonic()
    check = checked(open_connector_checks(DOMAIN, source, portal.ca_file), within=2.0)
    (result,) = check.results
    assert (result.state, result.cause) == (State.UNKNOWN, Cause.DEADLINE)
    assert time.monotonic() - started < 4.0


@pytest.fixture
def first_record() -> Iterator[tuple[str, list[bytes]]]:
    """A server that keeps the first TLS record a client sends it (the ClientHello) and hangs up."""
    records: list[bytes] = []
    with serving(lambda connection: records.append(read_record(connection))) as (port, _):
        yield f"https://127.0.0.1:{port}/rest/", records


def test_the_client_hello_is_not_padded_to_512_bytes(
    portal: LocalPortal, first_record: tuple[str, list[bytes]]
) -> None:
    # Every byte a run sends to a portal is billed as data transfer out, and the TLS handshake
    # is most of them: OpenSSL's padding workaround (for F5 load balancers of before 2013) would
    # add ~220 bytes to every portal's every run.
    endpoint, records = first_record
    source = tokens(portal)
    source.creds = replace(source.creds, client_endpoint=endpoint)
    checked(open_connector_checks(DOMAIN, source, portal.ca_file), within=3.0)

    (hello,) = records
    assert hello[0] == 0x16 and hello[5] == 0x01  # a handshake record holding a ClientHello
    assert len(hello) < 400  # 517 with the padding


@pytest.fixture
def request_head() -> Iterator[tuple[str, list[bytes]]]:
    """A plain-HTTP server on this machine that keeps the head of the request it gets and
    answers with an empty JSON object."""
    heads: list[bytes] = []

    def keep(connection: socket.socket) -> None:
        heads.append(read_request(connection).split(b"\r\n\r\n")[0])
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        )

    with serving(keep) as (port, _):
        yield f"http://127.0.0.1:{port}/rest/batch", heads


def test_a_request_carries_no_header_that_says_nothing(
    request_head: tuple[str, list[bytes]],
) -> None:
    # Billed as data transfer out with every portal's every run: HTTP/1.1 keeps a connection
    # open without "Connection: keep-alive"; answers come uncompressed without Accept-Encoding
    # (inbound bytes are free, inflating them is not), and JSON is what the portal sends anyway.
    url, heads = request_head
    answer = exchange(
        new_session(),
        "POST",
        url,
        deadline=Deadline.after(5),
        timeouts=(2, 2),
        max_bytes=1000,
        json={"cmd": {}},
    )
    assert answer.status == 200
    (head,) = heads
    names = {line.split(b":")[0].lower() for line in head.split(b"\r\n")[1:]}
    assert names == {b"host", b"user-agent", b"content-type", b"content-length"}
