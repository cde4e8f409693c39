"""EndpointSlices written the way the controller writes them, from Endpoints-shaped input:
for tests of readers (proxy, DNS) that seed a fake client."""

from __future__ import annotations

from typing import Any

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def slice_from_endpoints(eps: dict[str, Any], *, suffix: str = "abcde") -> dict[str, Any]:
    """One IPv4 slice per Endpoints object (its first subset's ports; addresses ready,
    notReadyAddresses not)."""
    meta = eps.get("metadata") or {}
    endpoints: list[dict[str, Any]] = []
    ports: list[dict[str, Any]] = []
    for subset in eps.get("subsets") or []:
        ports = ports or list(subset.get("ports") or [])
        for field, ready in (("addresses", True), ("notReadyAddresses", False)):
            for address in subset.get(field) or []:
                ep: dict[str, Any] = {
                    "addresses": [address.get("ip")],
                    "conditions": {"ready": ready, "serving": ready, "terminating": False},
                }
                for key in ("hostname", "nodeName"):
                    if address.get(key):
                        ep[key] = address[key]
                endpoints.append(ep)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{meta['name']}-{suffix}",
            "namespace": meta.get("namespace", "default"),
            "labels": {SERVICE_NAME_LABEL: meta["name"]},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }
