"""Start a real API server for tests: generated PKI, free port, kubeconfigs for any identity.

Use from any area's integration tests::

    from tests.harness.apiserver import running_server

    with running_server(tmp_path) as srv:          # in-process, memory store, own thread
        kubeconfig = srv.kubeconfig("admin", groups=["system:masters"])
        node_cfg = srv.kubeconfig("system:node:n1", groups=["system:nodes"])
        ...                                        # kubectl --kubeconfig, kubernetes client
        srv.call(srv.server.registry.get(...))    # run a coroutine on the server's loop

``start_process`` runs ``python -m berth.apiserver`` as a child process instead (for the
SQLite store and kill -9 durability tests). The PKI here is a stand-in for
``provisioner.pki`` (which ``berth`` may not import): a CA, a server certificate for
127.0.0.1/localhost, and client certificates with CN = user and O = groups.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import ipaddress
import os
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from berth.apiserver.app import ApiServer
from berth.apiserver.config import DEFAULT_EVENT_TTL, ServerConfig
from berth.apiserver.podsecurity import SECURE_POD_SECURITY, PodSecurityConfig
from berth.store.config import DatastoreConfig

T = TypeVar("T")


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@dataclass
class TestPKI:
    """A throwaway CA and the certificates signed by it, written under ``directory``."""

    __test__ = False  # not a pytest test class

    directory: Path
    ca_cert: Path = field(init=False)
    ca_key_obj: ec.EllipticCurvePrivateKey = field(init=False)
    ca_obj: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca_key_obj = _key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "berth-test-ca")])
        now = dt.datetime.now(dt.UTC)
        self.ca_obj = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.ca_key_obj.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.ca_key_obj, hashes.SHA256())
        )
        self.ca_cert = self.directory / "ca.crt"
        self.ca_cert.write_bytes(self.ca_obj.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        stem: str,
        *,
        common_name: str,
        organizations: Sequence[str] = (),
        server: bool = False,
        ips: Sequence[str] = (),
        dns: Sequence[str] = (),
    ) -> tuple[Path, Path]:
        """Sign a leaf certificate; returns (cert path, key path)."""
        key = _key()
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.ca_obj.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                    if server
                    else [ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.ca_key_obj, hashes.SHA256())
        cert_path = self.directory / f"{stem}.crt"
        key_path = self.directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_private(key_path, _pem_key(key))
        return cert_path, key_path

    def server_cert(self) -> tuple[Path, Path]:
        return self.issue(
            "apiserver",
            common_name="kube-apiserver",
            server=True,
            ips=["127.0.0.1"],
            dns=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
        )


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(
    path: Path,
    *,
    server_url: str,
    ca_cert: Path,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    token: str | None = None,
    user: str = "user",
) -> Path:
    """A kubeconfig with embedded certificate data (one cluster, one user, one context)."""
    creds: dict[str, Any] = {}
    if client_cert is not None and client_key is not None:
        creds["client-certificate-data"] = _b64(client_cert)
        creds["client-key-data"] = _b64(client_key)
    if token is not None:
        creds["token"] = token
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "berth",
                "cluster": {"server": server_url, "certificate-authority-data": _b64(ca_cert)},
            }
        ],
        "users": [{"name": user, "user": creds}],
        "contexts": [
            {
                "name": f"{user}@berth",
                "context": {"cluster": "berth", "user": user, "namespace": "default"},
            }
        ],
        "current-context": f"{user}@berth",
        "preferences": {},
    }
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


def _slug(user: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in user)


@dataclass
class ServerFiles:
    """PKI and config files for one test server."""

    directory: Path
    pki: TestPKI
    config: ServerConfig
    url: str = ""

    def kubeconfig(self, user: str = "admin", groups: Sequence[str] = ("system:masters",)) -> Path:
        """A kubeconfig authenticating as ``user`` in ``groups`` via a client certificate."""
        path = self.directory / f"kubeconfig-{_slug(user)}-{_slug(','.join(groups))}"
        if path.exists():
            return path
        cert, key = self.pki.issue(
            f"client-{_slug(user)}-{len(groups)}", common_name=user, organizations=groups
        )
        return write_kubeconfig(
            path,
            server_url=self.url,
            ca_cert=self.pki.ca_cert,
            client_cert=cert,
            client_key=key,
            user=_slug(user),
        )

    def client_cert(self, user: str, groups: Sequence[str] = ()) -> tuple[Path, Path]:
        return self.pki.issue(
            f"tls-{_slug(user)}-{len(groups)}", common_name=user, organizations=groups
        )


def _datastore(kind: str | DatastoreConfig, sqlite_path: Path | None) -> DatastoreConfig:
    if isinstance(kind, DatastoreConfig):
        return kind
    section: dict[str, Any] = {"type": kind}
    if sqlite_path is not None:
        section["path"] = str(sqlite_path)
    return DatastoreConfig.from_mapping(section)


def datastore_section(config: DatastoreConfig) -> dict[str, Any]:
    """The config file's ``datastore`` mapping for ``config``."""
    section: dict[str, Any] = {"type": config.type}
    if config.path is not None:
        section["path"] = str(config.path)
    if config.endpoints:
        section["endpoints"] = list(config.endpoints)
    if config.tls is not None:
        section["caFile"] = str(config.tls.ca_file)
        if config.tls.cert_file is not None and config.tls.key_file is not None:
            section["certFile"] = str(config.tls.cert_file)
            section["keyFile"] = str(config.tls.key_file)
    return section


def prepare(
    directory: Path,
    *,
    datastore: str | DatastoreConfig = "memory",
    sqlite_path: Path | None = None,
    port: int = 0,
    encryption_key: bytes | None = None,
    token_auth_file: Path | None = None,
    pod_security: PodSecurityConfig = SECURE_POD_SECURITY,
) -> ServerFiles:
    """Generate PKI and a :class:`ServerConfig` for a server on 127.0.0.1."""
    pki = TestPKI(directory / "pki")
    cert, key = pki.server_cert()
    agent_cert, agent_key = pki.issue(
        "apiserver-agent-client",
        common_name="kube-apiserver-kubelet-client",
        organizations=["system:masters"],
    )
    key_file = None
    if encryption_key is not None:
        key_file = directory / "secrets.key"
        _write_private(key_file, base64.b64encode(encryption_key))
    sa_key = directory / "sa.key"
    sa_pub = directory / "sa.pub"
    signing = _key()
    _write_private(sa_key, _pem_key(signing))
    sa_pub.write_bytes(
        signing.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    config = ServerConfig(
        tls_cert_file=cert,
        tls_key_file=key,
        client_ca_file=pki.ca_cert,
        bind_address="127.0.0.1",
        port=port,
        advertise_address="127.0.0.1",
        datastore=_datastore(datastore, sqlite_path),
        encryption_key_file=key_file,
        token_auth_file=token_auth_file,
        agent_client_cert_file=agent_cert,
        agent_client_key_file=agent_key,
        service_account_signing_key_file=sa_key,
        service_account_key_files=(sa_pub,),
        pod_security=pod_security,
    )
    return ServerFiles(directory, pki, config)


class ServerHandle(ServerFiles):
    """A server running on its own event loop in a background thread."""

    server: ApiServer
    loop: asyncio.AbstractEventLoop

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run ``coro`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@contextlib.contextmanager
def running_server(
    directory: Path,
    *,
    datastore: str | DatastoreConfig = "memory",
    sqlite_path: Path | None = None,
    encryption_key: bytes | None = None,
    token_auth_file: Path | None = None,
    bookmark_interval: float | None = None,
    pod_security: PodSecurityConfig = SECURE_POD_SECURITY,
    event_ttl: int | None = None,
) -> Iterator[ServerHandle]:
    """Run an :class:`ApiServer` in a thread on a free port; stop it on exit.

    Pod Security Admission runs with production's default (baseline enforced, restricted
    warned, kube-system exempt) unless ``pod_security`` says otherwise."""
    files = prepare(
        directory,
        datastore=datastore,
        sqlite_path=sqlite_path,
        encryption_key=encryption_key,
        token_auth_file=token_auth_file,
        pod_security=pod_security,
    )
    config = files.config
    if bookmark_interval is not None:
        config = dataclasses.replace(config, watch_bookmark_interval=bookmark_interval)
    if event_ttl is not None:
        config = dataclasses.replace(config, event_ttl=event_ttl)
    handle = ServerHandle(files.directory, files.pki, config)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            handle.server = ApiServer(config)
            loop.run_until_complete(handle.server.start())
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    thread = threading.Thread(target=run, name="berth-apiserver", daemon=True)
    thread.start()
    ready.wait(60)
    if failure:
        raise failure[0]
    handle.loop = loop
    handle.url = f"https://127.0.0.1:{handle.server.port}"
    try:
        yield handle
    finally:
        asyncio.run_coroutine_threadsafe(handle.server.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


@dataclass
class ServerProcess:
    files: ServerFiles
    process: subprocess.Popen[str]
    config_path: Path

    @property
    def url(self) -> str:
        return self.files.url

    def kubeconfig(self, user: str = "admin", groups: Sequence[str] = ("system:masters",)) -> Path:
        return self.files.kubeconfig(user, groups)


def write_config_file(files: ServerFiles, path: Path, *, port: int) -> Path:
    c = files.config
    doc: dict[str, Any] = {
        "bindAddress": c.bind_address,
        "port": port,
        "advertiseAddress": c.advertise_address,
        "tls": {
            "certFile": str(c.tls_cert_file),
            "keyFile": str(c.tls_key_file),
            "clientCAFile": str(c.client_ca_file),
        },
        "datastore": datastore_section(c.datastore),
        "serviceCIDR": c.service_cidr,
        "nodePortRange": f"{c.node_port_range[0]}-{c.node_port_range[1]}",
        "podSecurity": c.pod_security.to_mapping(),
    }
    if c.encryption_key_file:
        doc["secretsEncryptionKeyFile"] = str(c.encryption_key_file)
    if c.service_account_signing_key_file is not None:
        doc["serviceAccountSigningKeyFile"] = str(c.service_account_signing_key_file)
    if c.service_account_key_files:
        doc["serviceAccountKeyFile"] = [str(p) for p in c.service_account_key_files]
    doc["serviceAccountIssuer"] = c.service_account_issuer
    if c.event_ttl != DEFAULT_EVENT_TTL:
        doc["eventTTL"] = c.event_ttl
    if c.agent_client_cert_file and c.agent_client_key_file:
        doc["agentClient"] = {
            "certFile": str(c.agent_client_cert_file),
            "keyFile": str(c.agent_client_key_file),
        }
    path.write_text(yaml.safe_dump(doc))
    return path


def start_process(
    files: ServerFiles,
    *,
    port: int = 0,
    timeout: float = 60,
    memory_limit: int | None = None,
    source: Path | None = None,
) -> ServerProcess:
    """Run ``python -m berth.apiserver --config`` for ``files``; waits until it listens.

    ``memory_limit`` (bytes) caps the process's data segment (``RLIMIT_DATA``: heap and
    private anonymous memory) with ``prlimit``, so that a request making the server
    allocate without bound fails there instead of exhausting the machine.
    ``source``: a directory holding another ``berth`` package (e.g. an older release unpacked
    by a benchmark) to run instead of this one."""
    config_path = write_config_file(files, files.directory / "apiserver.yaml", port=port)
    limit = ["prlimit", f"--data={memory_limit}", "--"] if memory_limit is not None else []
    env = None
    if source is not None:
        env = {**os.environ, "PYTHONPATH": str(source)}
    proc = subprocess.Popen(
        [*limit, sys.executable, "-m", "berth.apiserver", "--config", str(config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        # ``-m`` puts the working directory first on sys.path: run from ``source`` so that
        # its berth, not the checkout's, is imported.
        cwd=source,
    )
    assert proc.stdout is not None
    line = ""
    result: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        result.append(proc.stdout.readline())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    line = result[0] if result else ""
    if not line.startswith("listening on"):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"API server did not start (exit code {proc.poll()}): {line!r}")
    actual_port = int(line.strip().rsplit(":", 1)[1])
    files.url = f"https://127.0.0.1:{actual_port}"
    return ServerProcess(files, proc, config_path)
