"""Make the cluster PKI in the state directory match the spec: create what is missing, verify
what exists, re-issue what is wrong, and say per file what was done and why.

The CAs are kept unless they are missing, unusable or expired (an expired CA is replaced, which
re-issues every leaf: the offline way back for a cluster that was switched off for too long).
Leaves are re-issued when :func:`provisioner.pki.verify.assess` finds a reason, or all of them
with ``renew_leaves``; a changed lifetime in the spec applies from a certificate's next issue.
``dry_run`` copies the state into a scratch directory first and works there, so the real state
is never touched and the result can be inspected.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509

from provisioner.errors import StateError
from provisioner.kubeconfig import kubeconfig_plan, render_kubeconfig
from provisioner.pki import x509 as crypto
from provisioner.pki.certlist import CertId, CertRequest, expand
from provisioner.pki.files import PkiFiles
from provisioner.pki.verify import assess
from provisioner.spec.model import ClusterSpec
from provisioner.state import ENV_PASSPHRASE, ClusterState

ActionKind = Literal["created", "kept", "reissued", "updated"]
ENCRYPTION_KEY_BYTES = 32


@dataclass(frozen=True)
class PkiAction:
    """What :func:`ensure` did to one item (certificate, key pair, secret or kubeconfig)."""

    name: str
    description: str
    action: ActionKind
    reason: str = ""


@dataclass
class PkiReport:
    """The outcome of :func:`ensure`: one action per item, warnings, and leftover files."""

    state_root: Path
    dry_run: bool
    actions: list[PkiAction] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)

    @property
    def changed(self) -> list[PkiAction]:
        return [a for a in self.actions if a.action != "kept"]

    def action(self, name: str) -> PkiAction:
        """The action recorded for ``name`` (``KeyError`` if none)."""
        for item in self.actions:
            if item.name == name:
                return item
        raise KeyError(name)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def ensure(
    spec: ClusterSpec,
    state: ClusterState,
    *,
    now: dt.datetime | None = None,
    renew_leaves: bool = False,
    dry_run: bool = False,
    scratch_dir: Path | None = None,
) -> PkiReport:
    """Bring ``state``'s PKI, service-account keys, encryption key and kubeconfigs in line with
    ``spec``. The caller holds ``state.lock()``.

    ``dry_run`` works on a copy in ``scratch_dir`` (a new temporary directory by default); the
    report's ``state_root`` says where. ``now`` is for tests (fake time).
    """
    if dry_run:
        state = _scratch_copy(state, scratch_dir)
    report = PkiReport(state_root=state.root, dry_run=dry_run)
    _Ensurer(spec, state, now or _utcnow(), report).run(renew_leaves=renew_leaves)
    return report


def _scratch_copy(state: ClusterState, scratch_dir: Path | None) -> ClusterState:
    base = scratch_dir or Path(tempfile.mkdtemp(prefix="berth-dry-run-"))
    target = base / state.root.name
    if state.root.exists():
        shutil.copytree(
            state.root, target, ignore=shutil.ignore_patterns("lock"), dirs_exist_ok=True
        )
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    return ClusterState(target)


class _Ensurer:
    def __init__(
        self, spec: ClusterSpec, state: ClusterState, now: dt.datetime, report: PkiReport
    ) -> None:
        self.spec = spec
        self.state = state
        self.files = PkiFiles(state)
        self.now = now
        self.report = report
        self.passphrase = state.passphrase()
        self.issued: dict[CertId, tuple[x509.Certificate, crypto.PrivateKey]] = {}

    def run(self, *, renew_leaves: bool) -> None:
        if self.passphrase is None:
            self.report.warnings.append(
                f"{ENV_PASSPHRASE} is not set: CA private keys in {self.state.pki_dir} are "
                "stored unencrypted (protected by file permissions only)"
            )
        requests = expand(self.spec)
        for request in requests:
            self._ensure_cert(request, renew=renew_leaves and not request.is_ca)
        self._ensure_service_account_keys()
        if self.spec.spec.secrets_encryption:
            self._ensure_encryption_key()
        self._ensure_kubeconfigs()
        self._find_orphans({r.id for r in requests})

    # -- certificates ---------------------------------------------------------------------------

    def _load(self, request: CertRequest) -> tuple[x509.Certificate, crypto.PrivateKey] | str:
        """The pair on disk, or why it cannot be used."""
        cert_path, key_path = self.files.cert(request.id), self.files.key(request.id)
        if not cert_path.exists() and not key_path.exists():
            return "missing"
        try:
            cert = crypto.load_cert(cert_path.read_bytes())
        except (OSError, ValueError):
            return f"{cert_path.name} is missing or unreadable"
        try:
            data = key_path.read_bytes()
        except OSError:
            return f"{key_path.name} is missing or unreadable"
        if crypto.is_encrypted_pem(data) and self.passphrase is None:
            raise StateError(
                f"{key_path} is encrypted and {ENV_PASSPHRASE} is not set",
                hint=f"export {ENV_PASSPHRASE} with the passphrase used when it was created",
            )
        try:
            key = crypto.load_key(data, self.passphrase)
        except (ValueError, TypeError):
            if crypto.is_encrypted_pem(data):
                raise StateError(
                    f"cannot decrypt {key_path}: wrong {ENV_PASSPHRASE}?",
                    hint="use the passphrase the cluster state was created with",
                ) from None
            return f"{key_path.name} is not a readable ECDSA key"
        return cert, key

    def _ensure_cert(self, request: CertRequest, *, renew: bool) -> None:
        loaded = self._load(request)
        ca = self.issued.get(request.ca) if request.ca else None
        if isinstance(loaded, str):
            action: ActionKind = "created" if loaded == "missing" else "reissued"
            self._issue(request, ca, action, loaded)
            return
        cert, key = loaded
        verdict = assess(
            request,
            cert,
            key,
            ca=ca[0] if ca else None,
            now=self.now,
            renew_before_days=self.spec.spec.certificates.renew_before_days,
        )
        self.report.warnings.extend(verdict.warnings)
        reasons = verdict.reissue or (["renewal requested"] if renew else [])
        if reasons:
            self._issue(request, ca, "reissued", "; ".join(reasons))
            return
        self.issued[request.id] = (cert, key)
        days = crypto.describe(cert).days_left(self.now)
        note = f"valid, {days} day(s) left"
        if (
            request.is_ca
            and self.passphrase
            and not crypto.is_encrypted_pem(self.files.key(request.id).read_bytes())
        ):
            self._write_key(request, key)
            note += "; key now encrypted at rest"
        self.report.actions.append(PkiAction(request.id, request.description, "kept", note))

    def _issue(
        self,
        request: CertRequest,
        ca: tuple[x509.Certificate, crypto.PrivateKey] | None,
        action: ActionKind,
        reason: str,
    ) -> None:
        if request.ca is not None and ca is None:
            raise StateError(f"cannot issue {request.id}: its CA {request.ca} is not available")
        key = crypto.new_key()
        cert = crypto.issue(request, key, now=self.now, ca=ca)
        self._write_key(request, key)
        self.state.write_public(self.files.cert(request.id), crypto.cert_pem(cert))
        self.issued[request.id] = (cert, key)
        self.report.actions.append(PkiAction(request.id, request.description, action, reason))

    def _write_key(self, request: CertRequest, key: crypto.PrivateKey) -> None:
        passphrase = self.passphrase if request.is_ca else None
        self.state.write_private(self.files.key(request.id), crypto.key_pem(key, passphrase))

    # -- other secrets --------------------------------------------------------------------------

    def _ensure_service_account_keys(self) -> None:
        name, description = "sa", "service-account token signing key pair"
        key_path, pub_path = self.files.sa_key, self.files.sa_pub
        key: crypto.PrivateKey | None = None
        problem = "missing"
        if key_path.exists():
            try:
                key = crypto.load_key(key_path.read_bytes())
            except (OSError, ValueError, TypeError):
                problem = "sa.key is unreadable (existing service-account tokens become invalid)"
        if key is None:
            key = crypto.new_key()
            self.state.write_private(key_path, crypto.key_pem(key))
            self.state.write_public(pub_path, crypto.public_pem(key))
            action: ActionKind = "created" if problem == "missing" else "reissued"
            self.report.actions.append(PkiAction(name, description, action, problem))
            return
        public = crypto.public_pem(key)
        if not pub_path.exists() or pub_path.read_bytes() != public:
            self.state.write_public(pub_path, public)
            self.report.actions.append(
                PkiAction(name, description, "updated", "sa.pub rewritten from sa.key")
            )
            return
        self.report.actions.append(PkiAction(name, description, "kept", "valid"))

    def _ensure_encryption_key(self) -> None:
        name = self.files.encryption_key.name
        _, created = self.state.secret(name, nbytes=ENCRYPTION_KEY_BYTES)
        action: ActionKind = "created" if created else "kept"
        reason = "missing" if created else "valid"
        self.report.actions.append(PkiAction(name, "Secrets encryption key", action, reason))

    # -- kubeconfigs ----------------------------------------------------------------------------

    def _ensure_kubeconfigs(self) -> None:
        ca_cert, _ = self.issued[CertId("ca")]
        for item in kubeconfig_plan(self.spec):
            cert, key = self.issued[CertId(item.cert_id)]
            content = render_kubeconfig(
                cluster=self.spec.name,
                server=item.server,
                user=item.user,
                ca_pem=crypto.cert_pem(ca_cert),
                cert_pem=crypto.cert_pem(cert),
                key_pem=crypto.key_pem(key),
            )
            path = self.files.kubeconfig(item.file)
            name = f"kubeconfigs/{item.file}"
            description = f"kubeconfig for {item.user}"
            if path.exists() and path.read_bytes() == content:
                self.report.actions.append(PkiAction(name, description, "kept", "up to date"))
                continue
            action: ActionKind = "updated" if path.exists() else "created"
            self.state.write_private(path, content)
            reason = "credentials or server changed" if action == "updated" else "missing"
            self.report.actions.append(PkiAction(name, description, action, reason))

    def _find_orphans(self, expected: set[CertId]) -> None:
        pki = self.state.pki_dir
        if not pki.is_dir():
            return
        for cert_path in sorted(pki.glob("*.crt")):
            if cert_path.stem not in expected:
                self.report.orphans.append(os.fspath(cert_path.relative_to(self.state.root)))
        nodes = self.state.kubeconfig_dir / "nodes"
        hosts = {h.name for h in self.spec.hosts}
        if nodes.is_dir():
            for conf in sorted(nodes.glob("*.conf")):
                if conf.stem not in hosts:
                    self.report.orphans.append(os.fspath(conf.relative_to(self.state.root)))
