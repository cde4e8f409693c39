"""Which PKI files each host needs, and where they go on it.

The CA private keys never leave the operator's state directory: every certificate the cluster
uses is issued here, so no host has to sign anything. A control-plane host gets what the API
server, scheduler, controller manager (and etcd member) need; every host gets its node agent's
credentials and the service proxy's kubeconfig. Remote paths are a suggestion the engine may
adopt; the *selection* is the contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from provisioner.hostlayout import KUBECONFIGS, PKI
from provisioner.pki.files import PkiFiles
from provisioner.spec.model import ClusterSpec
from provisioner.state import ClusterState

REMOTE_PKI = PKI
REMOTE_KUBECONFIGS = KUBECONFIGS


@dataclass(frozen=True)
class HostFile:
    """One file to put on a host: from ``source`` in the state to ``remote_path``, ``mode``."""

    remote_path: str
    source: Path
    mode: int
    purpose: str

    @property
    def secret(self) -> bool:
        return self.mode & 0o077 == 0


def _pair(
    files: PkiFiles, cert_id: str, purpose: str, remote_name: str | None = None
) -> list[HostFile]:
    """Certificate and key; per-host certificates get a host-independent ``remote_name`` so
    every host's configuration can name the same path."""
    name = remote_name or cert_id
    return [
        HostFile(f"{REMOTE_PKI}/{name}.crt", files.cert(cert_id), 0o644, purpose),
        HostFile(f"{REMOTE_PKI}/{name}.key", files.key(cert_id), 0o600, purpose),
    ]


def files_for_host(spec: ClusterSpec, state: ClusterState, host_name: str) -> list[HostFile]:
    """The PKI files host ``host_name`` needs (``KeyError`` for an unknown host)."""
    host = spec.host(host_name)
    files = PkiFiles(state)
    out = [HostFile(f"{REMOTE_PKI}/ca.crt", files.cert("ca"), 0o644, "cluster CA (trust)")]
    if host.is_control_plane:
        out += _pair(files, "apiserver", "API server serving")
        out += _pair(files, "apiserver-agent-client", "API server -> node agent client")
        out += [
            HostFile(f"{REMOTE_PKI}/sa.key", files.sa_key, 0o600, "service-account signing"),
            HostFile(f"{REMOTE_PKI}/sa.pub", files.sa_pub, 0o644, "service-account verification"),
        ]
        if spec.spec.secrets_encryption:
            out.append(
                HostFile(
                    f"{REMOTE_PKI}/encryption-key",
                    files.encryption_key,
                    0o600,
                    "Secrets at-rest encryption key",
                )
            )
        vip = ("vip",) if spec.api_vip is not None else ()
        for component in ("scheduler", "controller-manager", *vip):
            out.append(
                HostFile(
                    f"{REMOTE_KUBECONFIGS}/{component}.conf",
                    files.kubeconfig(f"{component}.conf"),
                    0o600,
                    f"{component} kubeconfig",
                )
            )
        if spec.uses_etcd:
            out.append(
                HostFile(f"{REMOTE_PKI}/etcd-ca.crt", files.cert("etcd-ca"), 0o644, "etcd CA")
            )
            out += _pair(files, "apiserver-etcd-client", "API server -> etcd client")
            out += _pair(files, f"etcd-server-{host.name}", "etcd serving", "etcd-server")
            out += _pair(files, f"etcd-peer-{host.name}", "etcd peer", "etcd-peer")
    out += _pair(files, f"agent-serving-{host.name}", "node agent serving", "agent-serving")
    out += [
        HostFile(
            f"{REMOTE_KUBECONFIGS}/agent.conf",
            files.kubeconfig(f"nodes/{host.name}.conf"),
            0o600,
            "node agent kubeconfig",
        ),
        HostFile(
            f"{REMOTE_KUBECONFIGS}/proxy.conf",
            files.kubeconfig("proxy.conf"),
            0o600,
            "service proxy kubeconfig",
        ),
        HostFile(
            f"{REMOTE_KUBECONFIGS}/ingress.conf",
            files.kubeconfig("ingress.conf"),
            0o600,
            "ingress controller kubeconfig",
        ),
    ]
    return out
