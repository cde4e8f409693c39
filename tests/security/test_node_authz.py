"""A compromised node (issue 13, points 1 and 7): a node's own certificate against a real API
server on 127.0.0.1.

Node n1 runs pod ``on-n1`` (a Secret volume, an env secretKeyRef, an imagePullSecret, a
projected ConfigMap, envFrom a ConfigMap, service account ``runner``); node n2 runs ``on-n2``
(its own Secret and ConfigMap, service account ``builder``). With n1's certificate:

* it reads what ``on-n1`` references and nothing else: not n2's Secret, not an unreferenced
  service-account token, no list or watch of Secrets/ConfigMaps, no list of every pod, no
  token for n2's service account; a Secret becomes readable when a pod using it is bound to
  n1 and unreadable once that pod is gone; an old cluster's ``system:nodes`` binding to
  ``system:node`` is removed at start;
* it cannot give its Node role or node-restriction labels (at registration or later), change
  its taints, unschedulable or podCIDR, register with a podCIDR, delete its Node, create
  pods, or touch n2's pods (delete, evict, status); nobody can move or mangle a podCIDR;
* the kubelet's own paths still work: its Node and status, its Lease, its pods' status, the
  Secrets its pods use, its pods by ``spec.nodeName``, Services, Endpoints and Nodes.

Every write here is followed by a watch that sees it (the node graph is fed by the same event
stream before any watcher), so no test waits on time.
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from berth.apiserver.nodeauthz import retire_node_group_binding
from berth.network.node import peers_from_nodes, usable_peers
from berth.network.routes import Peer, Route, desired_routes
from tests.harness.apiserver import ServerHandle, running_server
from tests.integration.apiserver.helpers import Raw

NS = "default"
MERGE = "application/merge-patch+json"
Obj = dict[str, Any]


def _secret(name: str) -> Obj:
    return {"metadata": {"name": name}, "stringData": {"value": f"value-of-{name}"}}


def _configmap(name: str) -> Obj:
    return {"metadata": {"name": name}, "data": {"k": name}}


def _node(name: str, **spec: Any) -> Obj:
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": spec,
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]},
    }


def _pod(name: str, node: str, *, account: str, secret: str, configmap: str, **extra: Any) -> Obj:
    return {
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "nodeName": node,
            "serviceAccountName": account,
            "containers": [
                {
                    "name": "c",
                    "image": "busybox:1.36",
                    "envFrom": [{"configMapRef": {"name": configmap}}],
                    "env": extra.pop("env", []),
                }
            ],
            "volumes": [{"name": "s", "secret": {"secretName": secret}}, *extra.pop("volumes", [])],
            **extra,
        },
    }


class Api:
    """One identity's raw requests."""

    def __init__(self, srv: ServerHandle, user: str, groups: list[str]) -> None:
        self.srv = srv
        self.cert = srv.client_cert(user, groups)
        self.raw = Raw(srv, self.cert)

    def __call__(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return self.raw.json(method, path, body, **kw)

    def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        status, got = self(method, path, body, **kw)
        assert status in (200, 201), (method, path, status, got)
        return got

    def seen(self, resource_path: str, name: str, rv: str) -> None:
        """Block until a watch from just before ``rv`` delivers the write of ``name``: the
        hub updates the node graph before it offers an event to any watcher."""
        ctx = ssl.create_default_context(cafile=str(self.srv.pki.ca_cert))
        ctx.load_cert_chain(str(self.cert[0]), str(self.cert[1]))
        conn = http.client.HTTPSConnection("127.0.0.1", self.srv.server.port, context=ctx)
        try:
            query = f"watch=1&resourceVersion={int(rv) - 1}&fieldSelector=metadata.name%3D{name}"
            conn.request("GET", f"{resource_path}?{query}&timeoutSeconds=30")
            resp = conn.getresponse()
            assert resp.status == 200
            event = json.loads(resp.readline())
            assert event["object"]["metadata"]["name"] == name, event
        finally:
            conn.close()

    def close(self) -> None:
        self.raw.close()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    with running_server(tmp_path_factory.mktemp("node-authz")) as handle:
        yield handle


@pytest.fixture(scope="module")
def admin(srv: ServerHandle) -> Iterator[Api]:
    api = Api(srv, "admin", ["system:masters"])
    for name in ("s-volume", "s-env", "s-pull", "s-n2", "sa-token-of-admin"):
        api.ok("POST", f"/api/v1/namespaces/{NS}/secrets", _secret(name))
    for name in ("cm-envfrom", "cm-projected", "cm-n2"):
        api.ok("POST", f"/api/v1/namespaces/{NS}/configmaps", _configmap(name))
    for name in ("runner", "builder"):  # ServiceAccount admission: a pod's account must exist
        api.ok("POST", f"/api/v1/namespaces/{NS}/serviceaccounts", {"metadata": {"name": name}})
    taint = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
    n1 = _node("n1", podCIDR="10.244.1.0/24", podCIDRs=["10.244.1.0/24"], taints=[taint])
    api.ok("POST", "/api/v1/nodes", n1)
    api.ok("POST", "/api/v1/nodes", _node("n2", podCIDR="10.244.2.0/24"))
    api.ok("POST", "/api/v1/nodes", _node("n3"))
    on_n1 = _pod(
        "on-n1",
        "n1",
        account="runner",
        secret="s-volume",
        configmap="cm-envfrom",
        env=[{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s-env", "key": "value"}}}],
        imagePullSecrets=[{"name": "s-pull"}],
        volumes=[
            {"name": "p", "projected": {"sources": [{"configMap": {"name": "cm-projected"}}]}}
        ],
    )
    api.ok("POST", f"/api/v1/namespaces/{NS}/pods", on_n1)
    on_n2 = _pod("on-n2", "n2", account="builder", secret="s-n2", configmap="cm-n2")
    created = api.ok("POST", f"/api/v1/namespaces/{NS}/pods", on_n2)
    api.seen(f"/api/v1/namespaces/{NS}/pods", "on-n2", created["metadata"]["resourceVersion"])
    yield api
    api.close()


@pytest.fixture(scope="module")
def n1(srv: ServerHandle, admin: Api) -> Iterator[Api]:
    api = Api(srv, "system:node:n1", ["system:nodes"])
    yield api
    api.close()


def _ns(path: str) -> str:
    return f"/api/v1/namespaces/{NS}/{path}"


# -- point 1: what a node reads ------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["secrets/s-volume", "secrets/s-env", "secrets/s-pull", "configmaps/cm-envfrom",
             "configmaps/cm-projected", "pods/on-n1"],
)  # fmt: skip
def test_node_reads_what_its_pods_reference(n1: Api, path: str) -> None:
    status, body = n1("GET", _ns(path))
    assert status == 200, body


@pytest.mark.parametrize(
    "path", ["secrets/s-n2", "secrets/sa-token-of-admin", "configmaps/cm-n2", "pods/on-n2"]
)
def test_node_cannot_read_objects_of_other_nodes_pods(n1: Api, path: str) -> None:
    status, body = n1("GET", _ns(path))
    assert status == 403, body
    assert body["reason"] == "Forbidden"
    assert "no relationship found between node 'n1' and this object" in body["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/secrets",
        _ns("secrets"),
        _ns("secrets?watch=1"),
        "/api/v1/watch/secrets",
        _ns("configmaps"),
        "/api/v1/configmaps?watch=true",
        _ns("secrets?fieldSelector=metadata.name%3Ds-n2"),
        "/api/v1/pods",
        _ns("pods"),
        "/api/v1/pods?fieldSelector=spec.nodeName%3Dn2",
        "/api/v1/pods?watch=1&fieldSelector=spec.nodeName!%3Dn1",
    ],
)
def test_node_cannot_list_or_watch_secrets_configmaps_or_every_pod(n1: Api, path: str) -> None:
    status, body = n1("GET", path)
    assert status == 403, body


def test_node_lists_only_the_named_secret_and_its_own_pods(n1: Api) -> None:
    listed = n1.ok("GET", _ns("secrets?fieldSelector=metadata.name%3Ds-volume"))
    assert [s["metadata"]["name"] for s in listed["items"]] == ["s-volume"]
    pods = n1.ok("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1")
    assert [p["metadata"]["name"] for p in pods["items"]] == ["on-n1"]


def _may(api: Api, verb: str, resource: str, name: str, sub: str = "") -> bool:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {
            "resourceAttributes": {
                "verb": verb,
                "resource": resource,
                "subresource": sub,
                "namespace": NS,
                "name": name,
            }
        },
    }
    got = api.ok("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
    return bool(got["status"]["allowed"])


def test_node_gets_tokens_only_for_its_pods_service_accounts(n1: Api) -> None:
    assert _may(n1, "create", "serviceaccounts", "runner", "token")
    assert not _may(n1, "create", "serviceaccounts", "builder", "token")
    assert not _may(n1, "get", "serviceaccounts", "runner")
    assert not _may(n1, "create", "serviceaccounts", "runner")


def test_node_reads_a_secret_only_while_a_pod_of_its_uses_it(admin: Api, n1: Api) -> None:
    admin.ok("POST", _ns("secrets"), _secret("s-late"))
    pod = _pod("late", "", account="default", secret="s-late", configmap="cm-envfrom")
    del pod["spec"]["nodeName"]
    admin.ok("POST", _ns("pods"), pod)
    assert n1("GET", _ns("secrets/s-late"))[0] == 403, "an unbound pod gives nobody access"
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "late"},
               "target": {"kind": "Node", "name": "n1"}}  # fmt: skip
    admin.ok("POST", _ns("pods/late/binding"), binding)
    bound = admin.ok("GET", _ns("pods/late"))
    admin.seen(_ns("pods"), "late", bound["metadata"]["resourceVersion"])
    assert n1("GET", _ns("secrets/s-late"))[0] == 200
    gone = admin.ok("DELETE", _ns("pods/late?gracePeriodSeconds=0"))
    admin.seen(_ns("pods"), "late", gone["metadata"]["resourceVersion"])
    assert n1("GET", _ns("secrets/s-late"))[0] == 403


def test_an_old_clusters_node_group_binding_is_removed(
    srv: ServerHandle, admin: Api, n1: Api
) -> None:
    path = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/system:node"
    legacy = admin.ok("GET", path)
    legacy["subjects"] = [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}
    ]
    legacy["metadata"].pop("resourceVersion")
    admin.ok("PUT", path, legacy)
    srv.call(retire_node_group_binding(srv.server.registry))
    assert not admin.ok("GET", path).get("subjects")
    assert n1("GET", _ns("secrets/s-n2"))[0] == 403


# -- point 7: what a node writes -------------------------------------------------------------


@pytest.mark.parametrize(
    "labels",
    [
        {"node-role.kubernetes.io/control-plane": ""},
        {"node-restriction.kubernetes.io/pci": "true"},
        {"kubernetes.io/role": "master"},
        {"example.node-restriction.kubernetes.io/x": "y"},
    ],
)
def test_node_cannot_give_itself_restricted_labels(admin: Api, n1: Api, labels: Obj) -> None:
    status, body = n1("PATCH", "/api/v1/nodes/n1", {"metadata": {"labels": labels}},
                      content_type=MERGE)  # fmt: skip
    assert status == 403, body
    assert "is not allowed to set or modify the labels" in body["message"]
    assert not set(labels) & set(admin.ok("GET", "/api/v1/nodes/n1")["metadata"]["labels"])


def test_node_cannot_drop_a_role_label_the_admin_set(admin: Api, n1: Api) -> None:
    role = {"metadata": {"labels": {"node-role.kubernetes.io/worker": ""}}}
    admin.ok("PATCH", "/api/v1/nodes/n1", role, content_type=MERGE)
    drop = {"metadata": {"labels": {"node-role.kubernetes.io/worker": None}}}
    assert n1("PATCH", "/api/v1/nodes/n1", drop, content_type=MERGE)[0] == 403
    # labels a kubelet owns stay writable, and unrelated annotations too
    mine = {"metadata": {"labels": {"topology.kubernetes.io/zone": "z1", "team": "a"}}}
    n1.ok("PATCH", "/api/v1/nodes/n1", mine, content_type=MERGE)


@pytest.mark.parametrize(
    "spec",
    [
        {"taints": None},
        {"taints": [{"key": "dedicated", "value": "db", "effect": "PreferNoSchedule"}]},
        {"unschedulable": True},
        {"podCIDR": "10.244.2.0/24", "podCIDRs": ["10.244.2.0/24"]},
        {"podCIDR": "10.0.0.0/8", "podCIDRs": ["10.0.0.0/8"]},
    ],
)
def test_node_cannot_change_its_spec(admin: Api, n1: Api, spec: Obj) -> None:
    status, body = n1("PATCH", "/api/v1/nodes/n1", {"spec": spec}, content_type=MERGE)
    assert status in (403, 422), body  # 422 when the change is invalid for anybody
    stored = admin.ok("GET", "/api/v1/nodes/n1")["spec"]
    assert stored["podCIDR"] == "10.244.1.0/24"
    assert stored["taints"] == [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]
    assert not stored.get("unschedulable")


def test_node_cannot_claim_a_pod_cidr(srv: ServerHandle, admin: Api) -> None:
    n3 = Api(srv, "system:node:n3", ["system:nodes"])
    try:
        claim = {"spec": {"podCIDR": "10.244.3.0/24", "podCIDRs": ["10.244.3.0/24"]}}
        status, body = n3("PATCH", "/api/v1/nodes/n3", claim, content_type=MERGE)
        assert status == 403, body
        assert "is not allowed to modify its spec" in body["message"]
    finally:
        n3.close()
    assert not admin.ok("GET", "/api/v1/nodes/n3")["spec"].get("podCIDR")


def test_node_registers_only_itself_without_role_labels_or_pod_cidr(srv: ServerHandle) -> None:
    n4 = Api(srv, "system:node:n4", ["system:nodes"])
    try:
        as_master = _node("n4")
        as_master["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = ""
        bad = [_node("n4", podCIDR="10.244.4.0/24"), as_master, _node("n5")]
        for body in bad:
            status, got = n4("POST", "/api/v1/nodes", body)
            assert status == 403, got
        taints = [{"key": "new", "value": "", "effect": "NoSchedule"}]
        n4.ok("POST", "/api/v1/nodes", _node("n4", taints=taints))  # as a kubelet registers
        assert n4("DELETE", "/api/v1/nodes/n4")[0] == 403
    finally:
        n4.close()


@pytest.mark.parametrize(
    "value",
    ["10.244.9.0/33", "10.244.9.1/24", "not-a-cidr", "10.244.9.0", " 10.244.9.0/24",
     "010.244.9.0/24"],
)  # fmt: skip
def test_pod_cidr_must_be_a_canonical_network(admin: Api, value: Any) -> None:
    status, body = admin("PATCH", "/api/v1/nodes/n3", {"spec": {"podCIDR": value}},
                         content_type=MERGE)  # fmt: skip
    assert status == 422, body
    assert body["details"]["causes"][0]["field"] == "spec.podCIDR"


def test_pod_cidr_of_the_wrong_type_is_a_decode_error(admin: Api) -> None:
    # As upstream: a number where the schema has a string fails decoding (400).
    status, body = admin("PATCH", "/api/v1/nodes/n3", {"spec": {"podCIDR": 24}},
                         content_type=MERGE)  # fmt: skip
    assert status == 400, body
    assert "spec.podCIDR" in body["message"]


def test_pod_cidrs_are_one_per_family_and_immutable_for_everybody(admin: Api) -> None:
    for spec in (
        {"podCIDRs": ["10.244.9.0/24", "10.244.10.0/24"]},
        {"podCIDR": "10.244.9.0/24", "podCIDRs": ["10.244.10.0/24"]},
        {"podCIDRs": "10.244.9.0/24"},
    ):
        status, body = admin("PATCH", "/api/v1/nodes/n3", {"spec": spec}, content_type=MERGE)
        # A string where a list belongs fails decoding (400), as upstream; the rest is 422.
        assert status == (400 if isinstance(spec.get("podCIDRs"), str) else 422), (spec, body)
    moved = {"spec": {"podCIDR": "10.244.7.0/24", "podCIDRs": ["10.244.7.0/24"]}}
    status, body = admin("PATCH", "/api/v1/nodes/n2", moved, content_type=MERGE)
    assert status == 422, body
    assert "field is immutable" in body["message"]
    assert admin.ok("GET", "/api/v1/nodes/n2")["spec"]["podCIDR"] == "10.244.2.0/24"


def test_node_cannot_create_pods_or_touch_other_nodes_pods(admin: Api, n1: Api) -> None:
    mirror = _pod("mirror", "n1", account="", secret="s-n2", configmap="cm-n2")
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "x"}
    status, body = n1("POST", _ns("pods"), mirror)
    assert status == 403, body
    evict = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "on-n2"}}
    assert n1("POST", _ns("pods/on-n2/eviction"), evict)[0] == 403
    assert n1("DELETE", _ns("pods/on-n2"))[0] == 403
    running = {"status": {"phase": "Running"}}
    assert n1("PATCH", _ns("pods/on-n2/status"), running, content_type=MERGE)[0] == 403
    relabel = {"metadata": {"labels": {"app": "stolen"}}}
    assert n1("PATCH", _ns("pods/on-n1"), relabel, content_type=MERGE)[0] == 403
    assert (
        n1("POST", _ns("pods/on-n2/binding"), {"target": {"kind": "Node", "name": "n1"}})[0] == 403
    )
    assert admin.ok("GET", _ns("pods/on-n2"))["spec"]["nodeName"] == "n2"


def test_node_learns_nothing_from_evicting_another_nodes_pod(admin: Api, n1: Api) -> None:
    selector = {"matchLabels": {"app": "on-n2"}}
    budget = {"metadata": {"name": "keep-n2"}, "spec": {"minAvailable": 1, "selector": selector}}
    admin.ok("POST", f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets", budget)
    evict = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "on-n2"}}
    status, body = n1("POST", _ns("pods/on-n2/eviction"), evict)
    assert status == 403, body  # refused as not its pod, before any budget is consulted


# -- the kubelet's own paths -----------------------------------------------------------------


def test_kubelet_paths_still_work(n1: Api) -> None:
    n1.ok("GET", "/api/v1/nodes/n1")
    n1.ok("GET", "/api/v1/nodes")
    status = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "R"}]}}
    n1.ok("PATCH", "/api/v1/nodes/n1/status", status, content_type=MERGE)
    lease = {
        "metadata": {"name": "n1", "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40},
    }
    leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
    n1.ok("POST", leases, lease)
    n1.ok("PATCH", f"{leases}/n1", {"spec": {"leaseDurationSeconds": 41}}, content_type=MERGE)
    assert n1("GET", f"{leases}/n2")[0] == 403
    pod_status = {"metadata": {"labels": {"app": "stolen"}}, "status": {"phase": "Running"}}
    patched = n1.ok("PATCH", _ns("pods/on-n1/status"), pod_status, content_type=MERGE)
    assert patched["metadata"]["labels"] == {"app": "on-n1"}, "status writes keep metadata"
    n1.ok("GET", "/api/v1/services")
    n1.ok("GET", "/api/v1/endpoints?watch=1&timeoutSeconds=1")
    event = {"metadata": {"name": "e1"}, "involvedObject": {"kind": "Node", "name": "n1"},
             "reason": "Started", "message": "m"}  # fmt: skip
    n1.ok("POST", _ns("events"), event)


# -- defence in depth on the node: one bad podCIDR --------------------------------------------


def _peer(name: str, cidr: str, ip: str) -> Obj:
    return {
        "metadata": {"name": name},
        "spec": {"podCIDR": cidr},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
    }


GOOD = [
    _peer("n1", "10.244.1.0/24", "10.0.0.1"),
    _peer("n2", "10.244.2.0/24", "10.0.0.2"),
    _peer("n3", "10.244.3.0/24", "10.0.0.3"),
]


def test_a_malformed_pod_cidr_does_not_stop_the_route_sync() -> None:
    nodes = [*GOOD, _peer("evil", "10.244.9.0/33", "10.0.0.9")]
    assert peers_from_nodes(nodes) == [
        Peer("10.244.1.0/24", "10.0.0.1"),
        Peer("10.244.2.0/24", "10.0.0.2"),
        Peer("10.244.3.0/24", "10.0.0.3"),
    ]


def test_a_claim_on_other_ranges_never_pulls_their_traffic() -> None:
    hostile = [
        _peer("host-bits", "10.244.5.1/24", "10.0.0.5"),
        _peer("wider", "10.244.0.0/16", "10.0.0.6"),
        _peer("narrower", "10.244.2.128/25", "10.0.0.7"),
        _peer("outside", "192.168.0.0/24", "10.0.0.8"),
        _peer("v6", "fd00::/120", "10.0.0.9"),
        _peer("bad-ip", "10.244.6.0/24", "10.0.0.300"),
    ]
    peers, skipped = usable_peers(
        [*GOOD, *hostile], cluster_cidr="10.244.0.0/16", own_pod_cidr="10.244.1.0/24"
    )
    assert desired_routes(peers, own_pod_cidr="10.244.1.0/24") == {
        Route("10.244.2.0/24", via="10.0.0.2"),
        Route("10.244.3.0/24", via="10.0.0.3"),
    }
    assert set(skipped) == {n["metadata"]["name"] for n in hostile}
    # with nothing to tell the size by, nested ranges are left out on both sides
    nested = usable_peers([*GOOD, _peer("wider", "10.244.0.0/16", "10.0.0.6")])[0]
    assert nested == []
    # the same range twice: neither node can be told right, the others keep their routes
    twice = usable_peers(
        [*GOOD, _peer("dup", "10.244.3.0/24", "10.0.0.66")], own_pod_cidr="10.244.1.0/24"
    )[0]
    assert [p.pod_cidr for p in twice] == ["10.244.1.0/24", "10.244.2.0/24"]
