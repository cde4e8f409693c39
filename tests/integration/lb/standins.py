"""Stand-in API servers on loopback for the load balancer tests.

Each answers a line ``GET\\n`` with its own name (plain TCP), or serves ``/readyz`` over TLS
with client-certificate authentication (200 or 503, switchable). ``pause`` stops accepting new
connections but leaves open ones silent, like a host whose power was cut: no RST arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class StandIn:
    name: str
    port: int = 0
    tls: ssl.SSLContext | None = None
    ready: bool = True
    server: asyncio.Server | None = None
    conns: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> None:
        self.server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, ssl=self.tls, reuse_address=True
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def pause(self) -> None:
        """Stop listening; open connections stay open but silent (no FIN, no RST)."""
        assert self.server is not None
        self.server.close()
        self.server = None

    async def kill(self) -> None:
        """Stop listening and reset every open connection (a crashed process)."""
        if self.server is not None:
            await self.pause()
        for writer in list(self.conns):
            writer.transport.abort()
        await asyncio.sleep(0)  # let the handlers see the reset and finish

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conns.add(writer)
        try:
            while line := await reader.readline():
                if line.startswith(b"GET /readyz"):
                    while (await reader.readline()) not in (b"\r\n", b""):
                        pass
                    status = "200 OK" if self.ready else "503 Service Unavailable"
                    writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\nok".encode())
                    await writer.drain()
                    break
                writer.write(f"{self.name}\n".encode())
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            self.conns.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def ask(port: int, *, tls: ssl.SSLContext | None = None, within: float = 2.0) -> str:
    """Open a connection to ``port``, ask once, return the answer ('' when closed)."""
    async with asyncio.timeout(within):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
        try:
            writer.write(b"GET\n")
            await writer.drain()
            return (await reader.readline()).decode().strip()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca))
        context.load_cert_chain(self.server_cert, self.server_key)
        context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(self.client_cert, self.client_key)
        return context


def make_pki(root: Path) -> Pki:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lb-test-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(name: str, usage: x509.ObjectIdentifier, *, ip: bool) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if ip:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        return (
            cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )

    paths = Pki(*(root / n for n in ("ca.crt", "s.crt", "s.key", "c.crt", "c.key")))
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server = leaf("apiserver", ExtendedKeyUsageOID.SERVER_AUTH, ip=True)
    client = leaf("system:node:n1", ExtendedKeyUsageOID.CLIENT_AUTH, ip=False)
    paths.server_cert.write_bytes(server[0])
    paths.server_key.write_bytes(server[1])
    paths.client_cert.write_bytes(client[0])
    paths.client_key.write_bytes(client[1])
    return paths
