"""Legacy discovery documents: ``/version``, ``/api``, ``/apis`` and per-group-version
``APIResourceList``s, built from the resource table.

kubectl 1.32 asks for aggregated discovery first; answering with these legacy documents makes
it fall back to the per-group-version requests, which is what kubectl 1.20 always does.
"""

from __future__ import annotations

import platform
from typing import Any

from berth.api.resources import ResourceDef, ResourceTable

from . import reviews

SUBRESOURCE_VERBS = {
    "status": ["get", "patch", "update"],
    "scale": ["get", "patch", "update"],
    "log": ["get"],
    "binding": ["create"],
    "eviction": ["create"],
    "finalize": ["update"],
    "token": ["create"],
}


def version_info(berth_version: str) -> dict[str, Any]:
    return {
        "major": "1",
        "minor": "32",
        "gitVersion": f"v1.32.0+berth.{berth_version}",
        "gitCommit": "berth",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": f"python{platform.python_version()}",
        "compiler": "cpython",
        "platform": "linux/amd64",
    }


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group(table: ResourceTable, name: str) -> dict[str, Any]:
    versions = table.group_versions()[name]
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


def api_group(table: ResourceTable, name: str) -> dict[str, Any] | None:
    if name not in table.group_versions() or name == "":
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(table, name)}


def api_group_list(table: ResourceTable) -> dict[str, Any]:
    groups = [_group(table, g) for g in table.group_versions() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _entry(rd: ResourceDef) -> dict[str, Any]:
    e: dict[str, Any] = {
        "name": rd.plural,
        "singularName": rd.singular,
        "namespaced": rd.namespaced,
        "kind": rd.kind,
        "verbs": list(rd.verbs),
        "storageVersionHash": "",
    }
    if rd.short_names:
        e["shortNames"] = list(rd.short_names)
    if rd.categories:
        e["categories"] = list(rd.categories)
    return e


def _sub_entry(rd: ResourceDef, sub: str) -> dict[str, Any]:
    e: dict[str, Any] = {
        "name": f"{rd.plural}/{sub}",
        "singularName": "",
        "namespaced": rd.namespaced,
        "kind": rd.kind,
        "verbs": SUBRESOURCE_VERBS[sub],
    }
    if sub == "scale":
        e.update(group="autoscaling", version="v1", kind="Scale")
    elif sub == "eviction":
        e.update(group="policy", version="v1", kind="Eviction")
    elif sub == "binding":
        e["kind"] = "Binding"
    elif sub == "token":
        e.update(group="authentication.k8s.io", version="v1", kind="TokenRequest")
    return e


def resource_list(table: ResourceTable, group: str, version: str) -> dict[str, Any] | None:
    served = table.group_versions().get(group)
    if served is None or version not in served:
        return None
    resources: list[dict[str, Any]] = []
    for rd in table.in_group_version(group, version):
        resources.append(_entry(rd))
        resources.extend(_sub_entry(rd, s) for s in rd.subresources)
    resources.extend(reviews.discovery_resources(group, version))
    gv = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }
