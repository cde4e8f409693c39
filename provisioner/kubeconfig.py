"""Kubeconfig files with embedded credentials, readable by unmodified kubectl and the official
Python client.

Which kubeconfigs a cluster has, whom they name and which server they dial is declared once in
:func:`kubeconfig_plan`; :func:`render_kubeconfig` writes one. Control-plane components
(scheduler, controller manager) talk to the API server on their own host (``127.0.0.1``, which
the serving certificate covers); everything else dials the cluster's API endpoint.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import yaml

from provisioner.spec.model import ClusterSpec, https_url


@dataclass(frozen=True)
class KubeconfigSpec:
    """One kubeconfig: its file (relative to the state's kubeconfig directory), the user it
    names, the client certificate it embeds and the server it dials."""

    file: str
    user: str
    cert_id: str
    server: str
    host: str | None = None  # the host it is for (per-node agent kubeconfigs)


ADMIN_KUBECONFIG = "admin.conf"
"""The admin kubeconfig's file name (its path in a cluster state:
:func:`provisioner.clusterapi.admin_kubeconfig_path`)."""


def kubeconfig_plan(spec: ClusterSpec) -> list[KubeconfigSpec]:
    """Every kubeconfig the cluster needs."""
    local = https_url("127.0.0.1", spec.api_port)
    endpoint = spec.api_server_url
    plan = [
        KubeconfigSpec(ADMIN_KUBECONFIG, "berth-admin", "admin", endpoint),
        KubeconfigSpec("scheduler.conf", "system:kube-scheduler", "scheduler", local),
        KubeconfigSpec(
            "controller-manager.conf", "system:kube-controller-manager", "controller-manager", local
        ),
        KubeconfigSpec("proxy.conf", "system:kube-proxy", "proxy", endpoint),
        KubeconfigSpec("ingress.conf", "system:berth-ingress", "ingress", endpoint),
    ]
    if spec.api_vip is not None:
        # the VIP holder speaks to its own host's API server: a renewal through it proves that
        # server serves and reaches a datastore quorum
        plan.append(KubeconfigSpec("vip.conf", "system:berth-vip", "vip", local))
    plan += [
        KubeconfigSpec(
            f"nodes/{host.name}.conf",
            f"system:node:{host.name}",
            f"agent-client-{host.name}",
            endpoint,
            host=host.name,
        )
        for host in spec.hosts
    ]
    return plan


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def render_kubeconfig(
    *,
    cluster: str,
    server: str,
    user: str,
    ca_pem: bytes,
    cert_pem: bytes,
    key_pem: bytes,
) -> bytes:
    """A kubeconfig with one cluster, one user and one context (``USER@CLUSTER``), current."""
    context = f"{user}@{cluster}"
    document: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(cert_pem),
                    "client-key-data": _b64(key_pem),
                },
            }
        ],
        "contexts": [
            {"name": context, "context": {"cluster": cluster, "user": user, "namespace": "default"}}
        ],
        "current-context": context,
        "preferences": {},
    }
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False).encode()


def embedded_client_cert(kubeconfig: bytes) -> bytes | None:
    """The PEM client certificate embedded in a kubeconfig's first user (``None`` if absent)."""
    try:
        document = yaml.safe_load(kubeconfig)
        data = document["users"][0]["user"]["client-certificate-data"]
        return base64.b64decode(data)
    except (yaml.YAMLError, KeyError, IndexError, TypeError, ValueError):
        return None
