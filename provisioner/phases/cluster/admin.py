"""The admin kubeconfig in the cluster state (0600), rewritten from the state's PKI (its path:
:func:`provisioner.clusterapi.admin_kubeconfig_path`)."""

from __future__ import annotations

from pathlib import Path

from provisioner.clusterapi import admin_kubeconfig_path
from provisioner.kubeconfig import render_kubeconfig
from provisioner.pki import PkiFiles
from provisioner.spec import ClusterSpec
from provisioner.state import ClusterState


def write_admin_kubeconfig(spec: ClusterSpec, state: ClusterState) -> Path | None:
    """Rewrite ``kubeconfigs/admin.conf`` (``None`` when the cluster has no PKI yet)."""
    files = PkiFiles(state)
    try:
        ca, cert, key = (files.cert("ca"), files.cert("admin"), files.key("admin"))
        content = render_kubeconfig(
            cluster=spec.name, server=spec.api_server_url, user="berth-admin",
            ca_pem=ca.read_bytes(), cert_pem=cert.read_bytes(), key_pem=key.read_bytes(),
        )  # fmt: skip
    except FileNotFoundError:
        return None
    path = admin_kubeconfig_path(state)
    state.write_private(path, content)
    return path
