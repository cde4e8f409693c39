"""The official ``kubernetes`` Python client against the real API server."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.harness.apiserver import ServerHandle

from .helpers import Raw, Watch, apps_api, core_api, deployment, pod

pytestmark = pytest.mark.timeout(60)
NS = "py"


@pytest.fixture(scope="module", autouse=True)
def namespace(api: k8s.ApiClient) -> None:
    core_api(api).create_namespace({"metadata": {"name": NS}})


def test_version(api: k8s.ApiClient) -> None:
    info: Any = k8s.VersionApi(api).get_code()
    assert (info.major, info.minor) == ("1", "32")


def test_crud_deployment(api: k8s.ApiClient) -> None:
    apps = apps_api(api)
    created = apps.create_namespaced_deployment(NS, deployment("crud"))
    assert created.metadata.uid
    assert created.metadata.generation == 1
    assert created.metadata.namespace == NS
    assert created.spec.strategy.type == "RollingUpdate"  # defaulted by the server
    read = apps.read_namespaced_deployment("crud", NS)
    assert read.metadata.resource_version == created.metadata.resource_version
    patched = apps.patch_namespaced_deployment("crud", NS, {"spec": {"replicas": 5}})
    assert patched.spec.replicas == 5
    assert patched.metadata.generation == 2
    json_patched = apps.patch_namespaced_deployment(
        "crud", NS, [{"op": "replace", "path": "/spec/replicas", "value": 2}]
    )
    assert json_patched.spec.replicas == 2
    scale = apps.patch_namespaced_deployment_scale("crud", NS, {"spec": {"replicas": 4}})
    assert scale.spec.replicas == 4
    assert scale.status.selector == "app=crud"
    read.spec.template.spec.containers[0].image = "nginx:1.25"
    read.metadata.resource_version = None
    replaced = apps.replace_namespaced_deployment("crud", NS, read)
    assert replaced.spec.template.spec.containers[0].image == "nginx:1.25"
    assert replaced.spec.replicas == 2  # from the object we read earlier: a full replace
    status = apps.delete_namespaced_deployment("crud", NS)
    assert (status["status"], status["details"]["name"]) == ("Success", "crud")  # 37.x: a dict
    with pytest.raises(k8s.ApiException) as exc:
        apps.read_namespaced_deployment("crud", NS)
    assert exc.value.status == 404


def test_status_subresource_is_split_from_spec(api: k8s.ApiClient) -> None:
    core = core_api(api)
    core.create_namespaced_pod(NS, pod("split", node_name="n1"))
    core.patch_namespaced_pod(
        "split", NS, {"status": {"phase": "Running"}, "metadata": {"labels": {"a": "b"}}}
    )
    p = core.read_namespaced_pod("split", NS)
    assert p.status.phase == "Pending"  # status ignored on the main resource
    assert p.metadata.labels == {"a": "b"}
    core.patch_namespaced_pod_status(
        "split", NS, {"status": {"phase": "Running"}, "spec": {"nodeName": "other"}}
    )
    p = core.read_namespaced_pod("split", NS)
    assert p.status.phase == "Running"
    assert p.spec.node_name == "n1"  # spec ignored on /status
    assert p.metadata.generation == 1


def test_list_with_selectors_and_pagination(api: k8s.ApiClient) -> None:
    core = core_api(api)
    for i in range(7):
        core.create_namespaced_config_map(
            NS, {"metadata": {"name": f"page-{i}", "labels": {"batch": "p", "odd": str(i % 2)}}}
        )
    odd = core.list_namespaced_config_map(NS, label_selector="batch=p,odd=1")
    assert [c.metadata.name for c in odd.items] == ["page-1", "page-3", "page-5"]
    named = core.list_namespaced_config_map(NS, field_selector="metadata.name=page-4")
    assert [c.metadata.name for c in named.items] == ["page-4"]
    names: list[str] = []
    token = None
    pages = 0
    while True:
        page = core.list_namespaced_config_map(
            NS, label_selector="batch=p", limit=3, _continue=token
        )
        pages += 1
        names += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert pages == 3
    assert names == [f"page-{i}" for i in range(7)]


def test_create_errors(api: k8s.ApiClient, raw: Raw) -> None:
    core = core_api(api)
    core.create_namespaced_config_map(NS, {"metadata": {"name": "dup"}})
    with pytest.raises(k8s.ApiException) as exc:
        core.create_namespaced_config_map(NS, {"metadata": {"name": "dup"}})
    assert exc.value.status == 409
    assert "already exists" in str(exc.value.body)
    status, body = raw.json(
        "POST", f"/api/v1/namespaces/{NS}/pods", {"metadata": {"name": "bad"}, "spec": {}}
    )
    assert status == 422
    assert body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "spec.containers"
    status, body = raw.json(
        "POST",
        f"/api/v1/namespaces/{NS}/pods",
        {"metadata": {"name": "bad"}, "spec": {"containers": [{"name": "c"}]}},
    )
    assert (status, body["details"]["causes"][0]["field"]) == (422, "spec.containers[0].image")
    # The list stays readable by the strict client: nothing invalid was stored.
    assert core.list_namespaced_pod(NS) is not None


def test_generate_name(api: k8s.ApiClient) -> None:
    core = core_api(api)
    a = core.create_namespaced_config_map(NS, {"metadata": {"generateName": "gen-"}})
    b = core.create_namespaced_config_map(NS, {"metadata": {"generateName": "gen-"}})
    assert a.metadata.name.startswith("gen-")
    assert len(a.metadata.name) == len("gen-") + 5
    assert a.metadata.name != b.metadata.name


def test_watch_stream(api: k8s.ApiClient) -> None:
    core = core_api(api)
    events: list[tuple[str, str, str]] = []
    ready = threading.Event()

    def writer() -> None:
        ready.wait(10)
        core.create_namespaced_config_map(
            NS, {"metadata": {"name": "watched", "labels": {"w": "1"}}, "data": {"v": "1"}}
        )
        core.patch_namespaced_config_map("watched", NS, {"data": {"v": "2"}})
        core.delete_namespaced_config_map("watched", NS)

    # A marker object makes the watch's first (synthetic ADDED) event arrive at once, which
    # tells the writer the watch is open.
    core.create_namespaced_config_map(NS, {"metadata": {"name": "marker", "labels": {"w": "1"}}})
    t = threading.Thread(target=writer)
    t.start()
    w = Watch()
    for ev in w.stream(
        core.list_namespaced_config_map, NS, label_selector="w=1", timeout_seconds=10
    ):
        ready.set()
        obj = ev["object"]
        if obj.metadata.name != "marker":
            events.append((ev["type"], obj.metadata.name, (obj.data or {}).get("v", "")))
        if ev["type"] == "DELETED":
            w.stop()
    ready.set()
    t.join()
    assert events == [
        ("ADDED", "watched", "1"),
        ("MODIFIED", "watched", "2"),
        ("DELETED", "watched", "2"),
    ]


def test_graceful_pod_deletion(api: k8s.ApiClient, server: ServerHandle) -> None:
    core = core_api(api)
    core.create_namespaced_pod(NS, pod("unbound"))
    core.delete_namespaced_pod("unbound", NS)
    with pytest.raises(k8s.ApiException):
        core.read_namespaced_pod("unbound", NS)  # never scheduled: deleted at once
    core.create_namespaced_pod(NS, pod("bound", node_name="n1"))
    core.delete_namespaced_pod("bound", NS, grace_period_seconds=20)
    p = core.read_namespaced_pod("bound", NS)
    assert p.metadata.deletion_timestamp is not None
    assert p.metadata.deletion_grace_period_seconds == 20
    node_user = server.kubeconfig("system:node:n1", groups=["system:nodes"])
    cfg = k8s.Configuration()
    load: Any = __import__("kubernetes.config", fromlist=["load_kube_config"]).load_kube_config
    load(config_file=str(node_user), client_configuration=cfg)
    with k8s.ApiClient(cfg) as node_api:
        core_api(node_api).delete_namespaced_pod("bound", NS, grace_period_seconds=0)
    with pytest.raises(k8s.ApiException) as exc:
        core.read_namespaced_pod("bound", NS)
    assert exc.value.status == 404


def test_finalizers_hold_deletion(api: k8s.ApiClient) -> None:
    core = core_api(api)
    core.create_namespaced_config_map(
        NS, {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    )
    core.delete_namespaced_config_map("held", NS)
    cm = core.read_namespaced_config_map("held", NS)
    assert cm.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("held", NS, [{"op": "remove", "path": "/metadata/finalizers"}])
    with pytest.raises(k8s.ApiException) as exc:
        core.read_namespaced_config_map("held", NS)
    assert exc.value.status == 404


def test_services_get_addresses(api: k8s.ApiClient) -> None:
    core = core_api(api)
    default = core.read_namespaced_service("kubernetes", "default")
    assert default.spec.cluster_ip == "10.96.0.1"
    a = core.create_namespaced_service(
        NS, {"metadata": {"name": "a"}, "spec": {"ports": [{"port": 80}]}}
    )
    b = core.create_namespaced_service(
        NS, {"metadata": {"name": "b"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}
    )
    assert a.spec.cluster_ip != b.spec.cluster_ip
    assert a.spec.cluster_ip.startswith("10.")
    assert 30000 <= b.spec.ports[0].node_port <= 32767
    with pytest.raises(k8s.ApiException) as exc:
        core.create_namespaced_service(
            NS,
            {
                "metadata": {"name": "c"},
                "spec": {"clusterIP": a.spec.cluster_ip, "ports": [{"port": 80}]},
            },
        )
    assert exc.value.status == 422
    core.delete_namespaced_service("a", NS)
    c = core.create_namespaced_service(
        NS,
        {
            "metadata": {"name": "c"},
            "spec": {"clusterIP": a.spec.cluster_ip, "ports": [{"port": 80}]},
        },
    )
    assert c.spec.cluster_ip == a.spec.cluster_ip  # released on delete


def test_namespace_deletion_removes_content(api: k8s.ApiClient) -> None:
    core = core_api(api)
    core.create_namespace({"metadata": {"name": "doomed"}})
    core.create_namespaced_config_map("doomed", {"metadata": {"name": "x"}})
    core.delete_namespace("doomed")
    w = Watch()
    for ev in w.stream(
        core.list_namespace, field_selector="metadata.name=doomed", timeout_seconds=10
    ):
        if ev["type"] == "DELETED":
            w.stop()
    with pytest.raises(k8s.ApiException) as exc:
        core.read_namespace("doomed")
    assert exc.value.status == 404
    assert core.list_namespaced_config_map("doomed").items == []


def test_eviction_respects_disruption_budgets(api: k8s.ApiClient, raw: Raw) -> None:
    core = core_api(api)
    for name in ("guarded-1", "guarded-2"):
        core.create_namespaced_pod(NS, pod(name, labels={"app": "guarded"}, node_name="n1"))
        core.patch_namespaced_pod_status(
            name,
            NS,
            {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
        )
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "guard"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "guarded"}}},
    }
    status, _ = raw.json("POST", f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets", pdb)
    assert status == 201
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "guarded-1", "namespace": NS},
    }
    status, headers, data = raw.request(
        "POST", f"/api/v1/namespaces/{NS}/pods/guarded-1/eviction", eviction
    )
    assert status == 429
    # as kube-apiserver: no Retry-After, so clients see the 429 at once (kubectl drain
    # prints that it will retry, and keeps to its --timeout)
    assert "retry-after" not in headers
    assert b"would violate the pod's disruption budget" in data
    status, _ = raw.json(
        "PATCH",
        f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/guard",
        {"spec": {"minAvailable": "50%"}},
        content_type="application/merge-patch+json",
    )
    assert status == 200
    status, body = raw.json("POST", f"/api/v1/namespaces/{NS}/pods/guarded-1/eviction", eviction)
    assert (status, body["status"]) == (201, "Success")
    assert core.read_namespaced_pod("guarded-1", NS).metadata.deletion_timestamp is not None
    status, _ = raw.json("POST", f"/api/v1/namespaces/{NS}/pods/guarded-2/eviction", eviction)
    assert status == 429  # one of two left healthy: 50% must stay


def test_delete_collection(api: k8s.ApiClient) -> None:
    core = core_api(api)
    for i in range(3):
        core.create_namespaced_config_map(
            NS, {"metadata": {"name": f"bulk-{i}", "labels": {"bulk": "yes"}}}
        )
    core.create_namespaced_config_map(NS, {"metadata": {"name": "keep", "labels": {"bulk": "no"}}})
    core.delete_collection_namespaced_config_map(NS, label_selector="bulk=yes")
    names = {
        c.metadata.name for c in core.list_namespaced_config_map(NS, label_selector="bulk").items
    }
    assert names == {"keep"}
