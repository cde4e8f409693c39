"""Where the PKI lives in a cluster state directory.

::

    pki/<id>.crt, pki/<id>.key       every certificate of the table (ids: ca, etcd-ca, apiserver,
                                     apiserver-agent-client, apiserver-etcd-client,
                                     etcd-server-<host>, etcd-peer-<host>, agent-client-<host>,
                                     agent-serving-<host>, scheduler, controller-manager, proxy,
                                     admin)
    pki/sa.key, pki/sa.pub           service-account token signing key pair (ECDSA P-256, ES256)
    secrets/encryption-key           32 random bytes, base64, for Secrets at rest
    kubeconfigs/*.conf               see provisioner.kubeconfig
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from provisioner.pki.certlist import CertId
from provisioner.state import ClusterState


@dataclass(frozen=True)
class PkiFiles:
    """Paths of the PKI inside one state directory."""

    state: ClusterState

    def cert(self, cert_id: CertId | str) -> Path:
        return self.state.pki_dir / f"{cert_id}.crt"

    def key(self, cert_id: CertId | str) -> Path:
        return self.state.pki_dir / f"{cert_id}.key"

    @property
    def sa_key(self) -> Path:
        return self.state.pki_dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.state.pki_dir / "sa.pub"

    @property
    def encryption_key(self) -> Path:
        return self.state.secrets_dir / "encryption-key"

    def kubeconfig(self, file: str) -> Path:
        return self.state.kubeconfig_dir / file
