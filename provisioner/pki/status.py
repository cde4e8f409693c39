"""A read-only view of every certificate of the cluster: subject, SANs, expiry, days left, and
whether it still matches the spec. Kubeconfigs are included, since they embed client
certificates of their own that can fall out of step with the PKI directory."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from cryptography import x509

from provisioner.kubeconfig import embedded_client_cert, kubeconfig_plan
from provisioner.pki import x509 as crypto
from provisioner.pki.certlist import CertId, expand
from provisioner.pki.files import PkiFiles
from provisioner.pki.verify import assess
from provisioner.spec.model import ClusterSpec
from provisioner.state import ClusterState

Health = Literal["ok", "expiring", "expired", "mismatch", "missing"]


@dataclass(frozen=True)
class CertStatus:
    """One row of ``berth certs status``."""

    name: str
    description: str
    health: Health
    subject: str = ""
    sans: tuple[str, ...] = ()
    not_after: dt.datetime | None = None
    days_left: int | None = None
    notes: tuple[str, ...] = ()


def status(
    spec: ClusterSpec, state: ClusterState, *, now: dt.datetime | None = None
) -> list[CertStatus]:
    """The status of every certificate and kubeconfig the spec calls for (reads only)."""
    now = now or dt.datetime.now(dt.UTC)
    files = PkiFiles(state)
    window = spec.spec.certificates.renew_before_days
    rows: list[CertStatus] = []
    loaded: dict[CertId, x509.Certificate] = {}
    for request in expand(spec):
        cert_path = files.cert(request.id)
        if not cert_path.exists():
            rows.append(CertStatus(request.id, request.description, "missing"))
            continue
        try:
            cert = crypto.load_cert(cert_path.read_bytes())
        except ValueError:
            rows.append(
                CertStatus(
                    request.id, request.description, "mismatch", notes=("certificate unreadable",)
                )
            )
            continue
        loaded[request.id] = cert
        info = crypto.describe(cert)
        notes: list[str] = []
        key_path = files.key(request.id)
        key_data = key_path.read_bytes() if key_path.exists() else b""
        if not key_data:
            notes.append("private key missing")
        elif not crypto.is_encrypted_pem(key_data):
            ca = loaded.get(request.ca) if request.ca else None
            try:
                key = crypto.load_key(key_data)
            except (ValueError, TypeError):
                notes.append("private key unreadable")
            else:
                notes += assess(
                    request, cert, key, ca=ca, now=now, renew_before_days=window
                ).reissue
        rows.append(
            CertStatus(
                name=request.id,
                description=request.description,
                health=_health(info.days_left(now), info.not_after <= now, window, notes),
                subject=info.subject_text,
                sans=tuple(sorted(info.sans)),
                not_after=info.not_after,
                days_left=info.days_left(now),
                notes=tuple(notes),
            )
        )
    rows += _kubeconfig_rows(spec, files, loaded, now, window)
    return rows


def _health(days: int, expired: bool, window: int, notes: list[str]) -> Health:
    if expired:
        return "expired"
    if days < window:
        return "expiring"
    return "mismatch" if notes else "ok"


def _kubeconfig_rows(
    spec: ClusterSpec,
    files: PkiFiles,
    loaded: dict[CertId, x509.Certificate],
    now: dt.datetime,
    window: int,
) -> list[CertStatus]:
    rows: list[CertStatus] = []
    for item in kubeconfig_plan(spec):
        name = f"kubeconfigs/{item.file}"
        description = f"kubeconfig for {item.user}"
        path = files.kubeconfig(item.file)
        pem = embedded_client_cert(path.read_bytes()) if path.exists() else None
        if pem is None:
            rows.append(CertStatus(name, description, "missing"))
            continue
        try:
            cert = crypto.load_cert(pem)
        except ValueError:
            rows.append(
                CertStatus(name, description, "mismatch", notes=("embedded cert unreadable",))
            )
            continue
        info = crypto.describe(cert)
        notes: list[str] = []
        current = loaded.get(CertId(item.cert_id))
        if current is not None and current.serial_number != cert.serial_number:
            notes.append(f"embeds an older certificate than pki/{item.cert_id}.crt")
        rows.append(
            CertStatus(
                name=name,
                description=description,
                health=_health(info.days_left(now), info.not_after <= now, window, notes),
                subject=info.subject_text,
                not_after=info.not_after,
                days_left=info.days_left(now),
                notes=tuple(notes),
            )
        )
    return rows


def expiry_warnings(
    spec: ClusterSpec, state: ClusterState, *, now: dt.datetime | None = None
) -> list[str]:
    """One line per certificate or kubeconfig that is expired or inside the renewal window,
    for any command to print before it starts (empty when all is well or nothing exists yet)."""
    lines = []
    for row in status(spec, state, now=now):
        if row.health == "expired" and row.not_after is not None:
            lines.append(f"{row.name} expired on {row.not_after:%Y-%m-%d}")
        elif row.health == "expiring":
            lines.append(f"{row.name} expires in {row.days_left} day(s)")
    if lines:
        lines.append(f"run `berth certs renew -i {spec.source_path or 'SPEC'}`")
    return lines
