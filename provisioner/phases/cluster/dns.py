"""The ``kube-dns`` Service in ``kube-system``: the cluster DNS address (``clusterDNS``) as a
Service, for clients that look it up (upstream clusters have one, in front of CoreDNS).

It has no selector and no endpoints: every node answers on that address itself
(``berth-dns.service`` puts it on the node's loopback interface, and the node's proxy leaves
the address alone), so it only reserves the ClusterIP and names the ports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from berth.api.resources import SERVICES
from berth.client import errors as api_errors
from berth.client.http import HttpClient
from provisioner.spec import ClusterSpec

NAMESPACE = "kube-system"
NAME = "kube-dns"
LABELS = {
    "k8s-app": "kube-dns",
    "kubernetes.io/cluster-service": "true",
    "kubernetes.io/name": "berth-dns",
}


def dns_service(spec: ClusterSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(LABELS)},
        "spec": {
            "clusterIP": str(spec.spec.network.cluster_dns),
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
        },
    }


async def ensure_dns_service(
    client: HttpClient, spec: ClusterSpec, *, dry_run: bool, report: Callable[[str], None]
) -> int:
    """Create ``kube-system/kube-dns`` if it is missing; report one that has another address
    (a ClusterIP cannot change: it must be deleted by hand first). Returns the changes made."""
    want = dns_service(spec)
    try:
        have = await client.get(SERVICES, NAME, namespace=NAMESPACE)
    except api_errors.NotFound:
        have = None
    except (TimeoutError, OSError, api_errors.ApiError):
        if not dry_run:
            raise
        # planning a cluster whose API is not up (yet, or again: an admin kubeconfig outlives
        # a destroyed cluster): the apply will create the Service
        have = None
    if have is None:
        report(f"service {NAMESPACE}/{NAME}: create at {want['spec']['clusterIP']}")
        if not dry_run:
            try:
                await client.create(SERVICES, want, namespace=NAMESPACE)
            except api_errors.AlreadyExists:
                return 0
        return 1
    ip = (have.get("spec") or {}).get("clusterIP")
    if ip != want["spec"]["clusterIP"]:
        report(
            f"service {NAMESPACE}/{NAME} has clusterIP {ip}, the spec's clusterDNS is "
            f"{want['spec']['clusterIP']}: delete the Service to let berth recreate it"
        )
    return 0
