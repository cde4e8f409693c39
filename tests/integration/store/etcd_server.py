"""Start a real single-member etcd on 127.0.0.1 (random ports, temp data dir) for tests and
benchmarks, optionally with client mTLS."""

from __future__ import annotations

import ctypes
import datetime
import ipaddress
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.harness.ports import free_port

STARTUP_TIMEOUT = 20.0


def etcd_binary() -> str:
    """The etcd server binary: ``$BERTH_ETCD``, else ``/usr/bin/etcd``, else ``etcd`` on PATH."""
    for candidate in (os.environ.get("BERTH_ETCD"), "/usr/bin/etcd", shutil.which("etcd")):
        if candidate and Path(candidate).is_file():
            return candidate
    raise RuntimeError(
        "etcd not found: install the Debian package etcd-server (apt-get install -y "
        "etcd-server) or point BERTH_ETCD at an etcd binary"
    )


@dataclass(frozen=True)
class TLSFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.load_cert_chain(str(self.client_cert), str(self.client_key))
        return ctx


def make_tls(directory: Path) -> TLSFiles:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def write(name: str, cert: x509.Certificate, private: ec.EllipticCurvePrivateKey) -> None:
        (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path = directory / f"{name}.key"
        path.write_bytes(pem)
        path.chmod(0o600)

    def builder(
        cn: str, issuer: x509.Name, public: ec.EllipticCurvePublicKey
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(issuer)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    ca_key = key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "berth test etcd CA")])
    ca = (
        builder("berth test etcd CA", ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    write("ca", ca, ca_key)
    # etcd's JSON gateway dials etcd's own gRPC port presenting the *server* certificate, so
    # with --client-cert-auth the server certificate needs clientAuth as well.
    for name, usages in (
        ("server", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
        ("client", [ExtendedKeyUsageOID.CLIENT_AUTH]),
    ):
        leaf_key = key()
        leaf = (
            builder(f"berth test etcd {name}", ca_name, leaf_key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        write(name, leaf, leaf_key)
    return TLSFiles(
        ca=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )


_PRCTL = ctypes.CDLL(None, use_errno=True).prctl  # looked up before any fork
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, so a killed pytest run never
    leaves an etcd behind."""
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class EtcdProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_etcd(workdir: Path, *, tls: TLSFiles | None = None) -> EtcdProcess:
    """Start etcd under ``workdir`` and wait until it serves clients. Retried with fresh
    ports if etcd exits at once (another process took a port between probe and bind)."""
    for attempt in range(3):
        try:
            return _start_etcd(workdir / f"try{attempt}", tls)
        except _EtcdExited:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class _EtcdExited(RuntimeError):
    pass


def _start_etcd(workdir: Path, tls: TLSFiles | None) -> EtcdProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    client_port, peer_port = free_port(), free_port()
    scheme = "https" if tls else "http"
    url = f"{scheme}://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    argv = [
        etcd_binary(),
        "--name=test",
        f"--data-dir={workdir / 'data'}",
        f"--listen-client-urls={url}",
        f"--advertise-client-urls={url}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=test={peer}",
        "--logger=zap",
        "--log-level=warn",
    ]
    if tls:
        argv += [
            f"--cert-file={tls.server_cert}",
            f"--key-file={tls.server_key}",
            f"--trusted-ca-file={tls.ca}",
            "--client-cert-auth",
        ]
    log = workdir / "etcd.log"
    with log.open("wb") as out:
        # preexec_fn only makes one prctl syscall (resolved before the fork), which is safe
        # even if other threads exist.
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
    server = EtcdProcess(url, process, log)
    context = tls.client_context() if tls else None
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise _EtcdExited(f"etcd exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1, context=context) as resp:
                if b'"true"' in resp.read():
                    return server
        except OSError:
            pass
        time.sleep(0.1)  # startup takes about a second; nothing to wait on but the port
    server.stop()
    raise RuntimeError(f"etcd did not become healthy in {STARTUP_TIMEOUT}s: {log}")


def start_etcd_cluster(workdir: Path, *, tls: TLSFiles, members: int = 3) -> list[EtcdProcess]:
    """A ``members``-member etcd cluster on 127.0.0.1 (client mTLS, plain peer traffic);
    returns once every member serves clients."""
    workdir.mkdir(parents=True, exist_ok=True)
    names = [f"m{i}" for i in range(members)]
    clients = [f"https://127.0.0.1:{free_port()}" for _ in names]
    peers = [f"http://127.0.0.1:{free_port()}" for _ in names]
    initial = ",".join(f"{name}={peer}" for name, peer in zip(names, peers, strict=True))
    started: list[EtcdProcess] = []
    for name, url, peer in zip(names, clients, peers, strict=True):
        log = workdir / f"{name}.log"
        argv = [
            etcd_binary(), f"--name={name}", f"--data-dir={workdir / name}",
            f"--listen-client-urls={url}", f"--advertise-client-urls={url}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={initial}", "--initial-cluster-state=new",
            "--logger=zap", "--log-level=warn",
            f"--cert-file={tls.server_cert}", f"--key-file={tls.server_key}",
            f"--trusted-ca-file={tls.ca}", "--client-cert-auth",
        ]  # fmt: skip
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )  # fmt: skip
        started.append(EtcdProcess(url, process, log))
    context = tls.client_context()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    waiting = list(started)
    while waiting and time.monotonic() < deadline:
        member = waiting[0]
        try:
            with urllib.request.urlopen(f"{member.url}/health", timeout=1, context=context) as r:
                if b'"true"' in r.read():
                    waiting.pop(0)
                    continue
        except OSError:
            pass
        time.sleep(0.1)  # the members elect a leader in about a second
    if waiting:
        for member in started:
            member.stop()
        raise RuntimeError(f"etcd cluster not healthy in {STARTUP_TIMEOUT}s: {workdir}")
    return started
