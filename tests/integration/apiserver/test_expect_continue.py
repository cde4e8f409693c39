"""``Expect: 100-continue``: the server says ``100 Continue`` before the client sends the
body (as an aiohttp application's default expect handler did), and refuses any other
expectation with 417; the request then goes through the API as usual."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator

import pytest

from tests.harness.apiserver import ServerHandle

TIMEOUT = 60.0


@pytest.fixture
def tls(server: ServerHandle) -> Iterator[ssl.SSLSocket]:
    ctx = ssl.create_default_context(cafile=str(server.pki.ca_cert))
    cert, key = server.client_cert("admin", ["system:masters"])
    ctx.load_cert_chain(str(cert), str(key))
    raw = socket.create_connection(("127.0.0.1", server.server.port), timeout=TIMEOUT)
    conn = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    try:
        yield conn
    finally:
        conn.close()


def _read_head(conn: ssl.SSLSocket) -> bytes:
    """Bytes up to and including the first blank line (one response's head)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def _read_response(conn: ssl.SSLSocket) -> tuple[bytes, bytes]:
    head = _read_head(conn)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = b""
    while len(body) < length:
        chunk = conn.recv(length - len(body))
        if not chunk:
            break
        body += chunk
    return head, body


def _head(path: str, body: bytes, expect: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nExpect: {expect}\r\n\r\n"
    ).encode()


def test_100_continue_comes_before_the_body_is_sent(tls: ssl.SSLSocket) -> None:
    body = json.dumps({"metadata": {"name": "expecting"}, "data": {"k": "v"}}).encode()
    tls.sendall(_head("/api/v1/namespaces/default/configmaps", body, "100-continue"))
    assert _read_head(tls).startswith(b"HTTP/1.1 100 Continue\r\n")
    tls.sendall(body)
    head, answer = _read_response(tls)
    assert head.startswith(b"HTTP/1.1 201 "), head
    assert json.loads(answer)["metadata"]["name"] == "expecting"


def test_another_expectation_is_417(tls: ssl.SSLSocket) -> None:
    body = b"{}"
    tls.sendall(_head("/api/v1/namespaces/default/configmaps", body, "something-else"))
    head, _ = _read_response(tls)
    assert head.startswith(b"HTTP/1.1 417 "), head
