"""Discovery lists each subresource with the verbs the dispatch table serves for it, so a
subresource a kind module or a custom resource brings is discovered (and one nothing serves is
left out) instead of crashing the discovery document."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from berth.api.resources import TABLE, ResourceDef, ResourceTable
from berth.apiserver.app import ApiServer
from berth.apiserver.discovery import resource_list
from berth.apiserver.handlers import Call, Endpoint, json_response
from berth.apiserver.kinds import KindStrategy, Strategies

WIDGETS = ResourceDef(
    group="example.com",
    version="v1",
    plural="widgets",
    singular="widget",
    kind="Widget",
    namespaced=True,
    subresources=("status", "scale", "polish", "nothing"),
)


async def _polish(server: ApiServer, call: Call) -> web.StreamResponse:
    return json_response({}, 201)


class WidgetStrategy(KindStrategy):
    endpoints = {
        ("create", "polish"): Endpoint(_polish, kind=("example.com", "v2", "Polish")),
        ("get", "polish"): Endpoint(_polish),
        ("watch", "polish"): Endpoint(_polish),
    }


def _by_name(doc: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    assert doc is not None
    return {r["name"]: r for r in doc["resources"]}


def test_built_in_subresources_list_the_verbs_kube_apiserver_lists() -> None:
    core = _by_name(resource_list(TABLE, "", "v1"))
    apps = _by_name(resource_list(TABLE, "apps", "v1"))
    verbs = {name: r["verbs"] for name, r in {**core, **apps}.items() if "/" in name}
    assert verbs == {
        "namespaces/status": ["get", "patch", "update"],
        "resourcequotas/status": ["get", "patch", "update"],
        "namespaces/finalize": ["update"],
        "nodes/status": ["get", "patch", "update"],
        "nodes/proxy": ["create", "delete", "get", "patch", "update"],
        "services/proxy": ["create", "delete", "get", "patch", "update"],
        "pods/proxy": ["create", "delete", "get", "patch", "update"],
        "pods/status": ["get", "patch", "update"],
        "pods/binding": ["create"],
        "pods/log": ["get"],
        "pods/eviction": ["create"],
        "pods/exec": ["create", "get"],
        "pods/attach": ["create", "get"],
        "pods/ephemeralcontainers": ["get", "patch", "update"],
        "pods/portforward": ["create", "get"],
        "services/status": ["get", "patch", "update"],
        "replicationcontrollers/status": ["get", "patch", "update"],
        "replicationcontrollers/scale": ["get", "patch", "update"],
        "serviceaccounts/token": ["create"],
        "persistentvolumeclaims/status": ["get", "patch", "update"],
        "persistentvolumes/status": ["get", "patch", "update"],
        "deployments/status": ["get", "patch", "update"],
        "deployments/scale": ["get", "patch", "update"],
        "replicasets/status": ["get", "patch", "update"],
        "replicasets/scale": ["get", "patch", "update"],
        "daemonsets/status": ["get", "patch", "update"],
        "statefulsets/status": ["get", "patch", "update"],
        "statefulsets/scale": ["get", "patch", "update"],
    }
    assert "group" not in core["pods/binding"]
    assert core["pods/binding"]["kind"] == "Binding"
    token = core["serviceaccounts/token"]
    assert (token["group"], token["version"], token["kind"]) == (
        "authentication.k8s.io",
        "v1",
        "TokenRequest",
    )
    assert core["pods/status"]["kind"] == "Pod"
    assert "group" not in core["pods/status"]
    # the streaming subresources take options kinds of the core group, named without group
    # or version, as kube-apiserver lists them
    assert {k: core[f"pods/{k}"]["kind"] for k in ("exec", "portforward")} == {
        "exec": "PodExecOptions",
        "portforward": "PodPortForwardOptions",
    }
    assert "group" not in core["pods/exec"]


def test_a_new_subresource_is_discovered_from_its_handlers() -> None:
    table = ResourceTable()
    table.add(WIDGETS)
    strategies = Strategies()
    strategies.register(WIDGETS, WidgetStrategy())
    doc = _by_name(resource_list(table, "example.com", "v1", strategies))
    assert list(doc) == ["widgets", "widgets/status", "widgets/scale", "widgets/polish"]
    polish = doc["widgets/polish"]
    assert polish["verbs"] == ["create", "get"]  # a watch on a subresource is not listed
    assert (polish["group"], polish["version"], polish["kind"]) == ("example.com", "v2", "Polish")
    assert doc["widgets/status"]["kind"] == "Widget"
    assert doc["widgets/scale"]["kind"] == "Scale"
