"""The node runtime's registry transport against a real HTTPS server on loopback whose
certificate a private CA signed: trusted only with that registry's CA bundle."""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.runtime.errors import RegistryError
from berth.runtime.registry import UrllibTransport
from tests.harness.apiserver import TestPKI


class _V2(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"{}"
        self.send_response(200)
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(``127.0.0.1:PORT``, the PEM of the CA that signed its certificate)."""
    pki = TestPKI(tmp_path / "pki")
    cert, key = pki.issue("registry", common_name="registry", server=True, ips=["127.0.0.1"])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _V2)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", pki.ca_cert.read_text()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_registry_signed_by_a_private_ca_is_trusted_with_its_bundle(
    registry: tuple[str, str],
) -> None:
    host, ca = registry
    transport = UrllibTransport(timeout=5, ca_bundles={host: ca})
    reply = transport.get(f"https://{host}/v2/", {})
    assert reply.status == 200
    assert reply.header("docker-distribution-api-version") == "registry/2.0"
    assert reply.read_all(100) == b"{}"


def test_without_its_bundle_the_certificate_is_refused(registry: tuple[str, str]) -> None:
    host, ca = registry
    elsewhere = {"other.example:443": ca}
    for transport in (UrllibTransport(timeout=5), UrllibTransport(timeout=5, ca_bundles=elsewhere)):
        with pytest.raises(RegistryError, match="CERTIFICATE_VERIFY_FAILED"):
            transport.get(f"https://{host}/v2/", {})


def test_a_bundle_that_is_not_pem_is_a_clear_error() -> None:
    with pytest.raises(RegistryError, match="registry CA bundle is not valid PEM"):
        UrllibTransport(ca_bundles={"r.example": "not a certificate"})
