"""What the transport puts on the wire, byte by byte where it is billed (data transfer out of
AWS, every portal every run), and that leaving things out loses nothing: a ClientHello without
legacy session id, ALPN or session-ticket extension, still accepted by a TLS 1.2-only host; one
connection for a portal's batches; a reset to close once every answer is read; an answer
compressed though nobody asked for it, still decoded and still bounded."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from connector_monitor.bitrix24.connector_checks import open_connector_checks
from connector_monitor.bitrix24.rest_session import RestSession
from connector_monitor.bitrix24.transport import AnswerTooLarge, HttpRequest, exchange, new_session
from connector_monitor.deadline import Deadline
from connector_monitor.domain.results import State
from connector_monitor.domain.targets import Target
from local.bitrix24_portal import LocalPortal
from local.bitrix24_portal.tls import local_authority
from tests.integration.rest_portal import CONNECTOR, OAuthTokens, one_line_tls_portal
from tests.support.wire import read_record, read_request, serving

DOMAIN = "wire.bitrix24.com"
_ALPN, _SESSION_TICKET = 0x0010, 0x0023


@pytest.fixture(scope="module")
def portal() -> Iterator[LocalPortal]:
    with one_line_tls_portal(DOMAIN) as server:
        yield server


def tokens(portal: LocalPortal) -> OAuthTokens:
    return OAuthTokens(DOMAIN, portal.credentials(DOMAIN))


# ---- the ClientHello ------------------------------------------------------------------------


def client_hello_parts(record: bytes) -> tuple[bytes, list[int], set[int]]:
    """(legacy session id, cipher suites, extension types) of a ClientHello record."""
    assert record[0] == 0x16 and record[5] == 0x01
    at = 5 + 4 + 2 + 32  # record header, handshake header, client_version, random
    session_id = record[at + 1 : at + 1 + record[at]]
    at += 1 + record[at]
    suites_length = int.from_bytes(record[at : at + 2], "big")
    suites = [
        int.from_bytes(record[i : i + 2], "big") for i in range(at + 2, at + 2 + suites_length, 2)
    ]
    at += 2 + suites_length
    at += 1 + record[at]  # compression methods
    end = at + 2 + int.from_bytes(record[at : at + 2], "big")
    at += 2
    extensions = set()
    while at < end:
        extensions.add(int.from_bytes(record[at : at + 2], "big"))
        at += 4 + int.from_bytes(record[at + 2 : at + 4], "big")
    return session_id, suites, extensions


@pytest.fixture
def first_record() -> Iterator[tuple[str, list[bytes]]]:
    def keep(connection: socket.socket) -> None:
        records.append(read_record(connection))

    records: list[bytes] = []
    with serving(keep) as (port, _):
        yield f"https://127.0.0.1:{port}/rest/", records


def test_the_client_hello_carries_no_session_id_alpn_or_ticket_and_only_forward_secret_aead(
    portal: LocalPortal, first_record: tuple[str, list[bytes]]
) -> None:
    # Each is bytes out of AWS for every portal every run, and none buys the monitor anything:
    # the session id and CCS serve only broken middleboxes, a ticket is never used (a portal is
    # a new host each run), ALPN would only say HTTP/1.1.
    endpoint, records = first_record
    source = tokens(portal)
    source.creds = replace(source.creds, client_endpoint=endpoint)
    checks = open_connector_checks(DOMAIN, source, portal.ca_file)
    checks.check([Target(DOMAIN, CONNECTOR, 1)], Deadline.after(3.0))
    checks.close()

    session_id, suites, extensions = client_hello_parts(records[0])
    assert session_id == b""
    assert _ALPN not in extensions and _SESSION_TICKET not in extensions
    tls12 = [s for s in suites if s >> 8 != 0x13 and s != 0x00FF]  # not TLS 1.3, not the SCSV
    names = {c["id"] & 0xFFFF: c["name"] for c in ssl.create_default_context().get_ciphers()}
    assert tls12
    assert all(names.get(s, "").startswith("ECDHE-") for s in tls12)
    assert all("GCM" in names[s] or "CHACHA20" in names[s] for s in tls12)


@pytest.fixture
def tls12_only_host() -> Iterator[tuple[str, list[str]]]:
    """An HTTPS host (the local authority's certificate) that speaks TLS 1.2 at most, like an
    older on-premise box, and answers one request."""
    context = local_authority().server_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2

    def answer(connection: socket.socket) -> None:
        with context.wrap_socket(connection, server_side=True) as tls:
            read_request(tls)
            version = tls.version()
            cipher = tls.cipher()
            negotiated.append(f"{version} {cipher[0] if cipher else ''}")
            tls.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"ok":true}')

    negotiated: list[str] = []
    with serving(answer) as (port, _):
        yield f"https://127.0.0.1:{port}/rest/batch", negotiated


def test_a_host_without_tls_1_3_is_still_reached_with_a_forward_secret_cipher(
    portal: LocalPortal, tls12_only_host: tuple[str, list[str]]
) -> None:
    url, negotiated = tls12_only_host
    with new_session(ca_bundle=portal.ca_file) as session:
        answer = exchange(
            session, "POST", url, deadline=Deadline.after(5), timeouts=(2, 2), max_bytes=100
        )
    assert (answer.status, answer.body) == (200, b'{"ok":true}')
    (used,) = negotiated
    assert used.startswith("TLSv1.2 ECDHE-")


# ---- the request and the connection ---------------------------------------------------------


def test_a_portals_batches_share_one_connection_closed_with_the_session(
    portal: LocalPortal, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[object] = []
    real = socket.create_connection

    def counted(*args: Any, **kwargs: Any) -> socket.socket:
        opened.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(http.client.socket, "create_connection", counted)
    session = new_session(ca_bundle=portal.ca_file)
    with RestSession(DOMAIN, tokens(portal), session=session) as rest:
        commands = {"s": f"imconnector.status?CONNECTOR={CONNECTOR}&LINE=1"}
        first = rest.batch(commands, Deadline.after(5))
        second = rest.batch(commands, Deadline.after(5))
    assert first.results.keys() == second.results.keys() == {"s"}
    assert len(opened) == 1
    assert session.idle_connections == 1  # a session handed in stays its owner's
    session.close()
    assert session.idle_connections == 0


@pytest.fixture
def keep_alive_host() -> Iterator[tuple[str, list[Any], threading.Thread]]:
    """A plain-HTTP host on this machine: keeps each request, answers it, and after the last
    records how the client closed the connection: b"" (a FIN) or the reset's error."""

    def serve(connection: socket.socket) -> None:
        for _ in range(2):
            kept.append(read_request(connection))
            body = json.dumps({"result": {"n": len(kept)}}).encode()
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
        try:
            kept.append(connection.recv(10))
        except ConnectionResetError as exc:
            kept.append(exc)

    kept: list[Any] = []
    with serving(serve) as (port, thread):
        yield f"http://127.0.0.1:{port}/rest/batch", kept, thread


def test_the_request_is_compact_json_and_the_close_is_a_reset_after_whole_answers(
    keep_alive_host: tuple[str, list[Any], threading.Thread],
) -> None:
    url, kept, host = keep_alive_host
    session = new_session()
    answers = [
        exchange(
            session,
            "POST",
            url,
            deadline=Deadline.after(5),
            timeouts=(2, 2),
            max_bytes=1000,
            json={"cmd": {"a": "b c"}, "auth": "t"},
        )
        for _ in range(2)
    ]
    session.close()
    host.join(timeout=5)  # it records the close

    assert [json.loads(a.body) for a in answers] == [{"result": {"n": 1}}, {"result": {"n": 2}}]
    first, second, close = kept
    assert first.endswith(b'\r\n\r\n{"cmd":{"a":"b c"},"auth":"t"}')  # no spaces, no "halt"
    assert second.endswith(b'{"cmd":{"a":"b c"},"auth":"t"}')
    assert isinstance(close, ConnectionResetError)  # one RST, not a FIN and its ACK


# ---- answers compressed unasked -------------------------------------------------------------


@pytest.fixture
def compressing_host(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[Any]]]:
    """A host that gzips its answer though the request asked for no encoding."""
    body: bytes = request.param

    def serve(connection: socket.socket) -> None:
        kept.append(read_request(connection))
        packed = gzip.compress(body)
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
            + f"Content-Length: {len(packed)}\r\n\r\n".encode()
            + packed
        )

    kept: list[Any] = []
    with serving(serve) as (port, _):
        yield f"http://127.0.0.1:{port}/rest/batch", kept


@pytest.mark.parametrize("compressing_host", [b'{"result":true}'], indirect=True)
def test_an_answer_compressed_unasked_is_decoded(compressing_host: tuple[str, list[Any]]) -> None:
    url, kept = compressing_host
    with new_session() as session:
        answer = exchange(
            session, "POST", url, deadline=Deadline.after(5), timeouts=(2, 2), max_bytes=1000
        )
    assert answer.body == b'{"result":true}'
    assert b"accept-encoding" not in kept[0].lower()


@pytest.mark.parametrize("compressing_host", [b"0" * (8 << 20)], indirect=True)
def test_an_answer_compressed_unasked_is_still_bounded_once_decoded(
    compressing_host: tuple[str, list[Any]],
) -> None:
    url, _ = compressing_host  # 8 MB that gzip sends as 8 KB
    with new_session() as session, pytest.raises(AnswerTooLarge, match="expands past"):
        exchange(
            session, "POST", url, deadline=Deadline.after(5), timeouts=(2, 2), max_bytes=1 << 20
        )


def test_a_check_over_the_lean_transport_still_sees_the_connector(portal: LocalPortal) -> None:
    checks = open_connector_checks(DOMAIN, tokens(portal), portal.ca_file)
    try:
        found = checks.check([Target(DOMAIN, CONNECTOR, 1)], Deadline.after(5))
    finally:
        checks.close()
    assert [r.state for r in found.results] == [State.UP]


def test_a_national_domain_and_path_go_on_the_wire_in_ascii() -> None:
    # http.client sends only ASCII: an on-premise portal may be named in Cyrillic.
    request = HttpRequest.build(
        "POST", "https://портал.рф/rest/\u0431\u0430 \u0442\u0447", params={"a": "\u0431"}
    )
    assert request.host == "xn--80awhdgm.xn--p1ai"
    assert request.target == "/rest/%D0%B1%D0%B0%20%D1%82%D1%87?a=%D0%B1"
