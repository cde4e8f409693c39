"""Read a kubeconfig (client-certificate auth) into a server URL and a TLS context.

Only what berth writes is supported: one current context whose cluster carries
``certificate-authority(-data)`` and whose user carries ``client-certificate(-data)`` and
``client-key(-data)``. Relative file paths resolve against the kubeconfig's directory. Key
material is handed to :mod:`ssl` through a private temporary directory that is removed at once.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class KubeconfigError(Exception):
    """The kubeconfig is missing, malformed or lacks what mTLS needs."""


@dataclass(frozen=True, slots=True)
class Credentials:
    server: str
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    def ssl_context(self) -> ssl.SSLContext:
        return client_ssl_context(ca_pem=self.ca_pem, cert_pem=self.cert_pem, key_pem=self.key_pem)


def client_ssl_context(*, ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A TLS client context that verifies the server against ``ca_pem`` and presents the
    client certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_pem.decode())
    _load_chain(ctx, cert_pem, key_pem)
    return ctx


def server_ssl_context(*, ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A TLS server context that requires client certificates signed by ``ca_pem``."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=ca_pem.decode())
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load_chain(ctx, cert_pem, key_pem)
    return ctx


def _load_chain(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    # ssl only loads chains from files; keep them in a 0700 directory for the instant it reads.
    with tempfile.TemporaryDirectory(prefix="berth-tls-") as tmp:
        cert_path = Path(tmp) / "tls.crt"
        key_path = Path(tmp) / "tls.key"
        cert_path.write_bytes(cert_pem)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        ctx.load_cert_chain(str(cert_path), str(key_path))


def _material(entry: dict[str, Any], field: str, *, base: Path, where: str) -> bytes:
    data = entry.get(f"{field}-data")
    if data:
        return base64.b64decode(str(data))
    path = entry.get(field)
    if path:
        full = Path(str(path))
        full = full if full.is_absolute() else base / full
        try:
            return full.read_bytes()
        except OSError as exc:
            raise KubeconfigError(f"{where}: cannot read {field} {full}: {exc.strerror}") from exc
    raise KubeconfigError(f"{where}: needs {field}-data or {field}")


def _named(items: Any, name: str, *, what: str, path: Path) -> dict[str, Any]:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            body = item.get(what)
            if isinstance(body, dict):
                return body
    raise KubeconfigError(f"{path}: no {what} named {name!r}")


def load_kubeconfig(path: str | Path, *, context: str | None = None) -> Credentials:
    """Parse ``path`` and return the credentials of ``context`` (default: current-context)."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise KubeconfigError(f"{path}: cannot read kubeconfig: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise KubeconfigError(f"{path}: not a kubeconfig (expected a mapping)")
    ctx_name = context or doc.get("current-context")
    contexts = doc.get("contexts") or []
    if not ctx_name and len(contexts) == 1:
        ctx_name = contexts[0].get("name")
    if not ctx_name:
        raise KubeconfigError(f"{path}: no current-context set")
    ctx = _named(contexts, str(ctx_name), what="context", path=path)
    cluster = _named(doc.get("clusters"), str(ctx.get("cluster")), what="cluster", path=path)
    user = _named(doc.get("users"), str(ctx.get("user")), what="user", path=path)
    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f"{path}: cluster {ctx.get('cluster')!r} has no server")
    base = path.parent
    return Credentials(
        server=str(server).rstrip("/"),
        ca_pem=_material(cluster, "certificate-authority", base=base, where=f"{path}: cluster"),
        cert_pem=_material(user, "client-certificate", base=base, where=f"{path}: user"),
        key_pem=_material(user, "client-key", base=base, where=f"{path}: user"),
    )
