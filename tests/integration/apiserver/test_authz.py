"""Authentication, RBAC denials, node restriction, and optimistic concurrency."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client as k8s

from tests.harness.apiserver import ServerHandle, running_server

from .helpers import Raw, core_api, node, pod, rbac_api

pytestmark = pytest.mark.timeout(60)
NS = "authz"


@pytest.fixture(scope="module", autouse=True)
def setup(api: k8s.ApiClient) -> None:
    core = core_api(api)
    core.create_namespace({"metadata": {"name": NS}})
    core.create_node(node("node-a", ip="10.0.1.1"))
    core.create_node(node("node-b", ip="10.0.1.2"))
    core.create_namespaced_pod(NS, pod("on-a", node_name="node-a"))
    core.create_namespaced_pod(NS, pod("on-b", node_name="node-b"))


def _raw_as(server: ServerHandle, user: str, groups: list[str]) -> Raw:
    return Raw(server, server.client_cert(user, groups))


def test_anonymous_gets_401_except_health_and_version(server: ServerHandle) -> None:
    anon = Raw(server, None)
    try:
        status, body = anon.json("GET", "/api/v1/pods")
        assert (status, body["reason"]) == (401, "Unauthorized")
        status, _, data = anon.request("GET", "/healthz")
        assert (status, data) == (200, b"ok")
        status, body = anon.json("GET", "/version")
        assert (status, body["major"]) == (200, "1")
        status, body = anon.json("GET", "/version/")
        assert status == 200
    finally:
        anon.close()


def test_bearer_tokens(tmp_path_factory: pytest.TempPathFactory) -> None:
    d = tmp_path_factory.mktemp("tokens")
    tokens = d / "tokens.csv"
    tokens.write_text('s3cr3t-token,robot,uid-1,"system:masters"\n')
    with running_server(d, token_auth_file=tokens) as srv:
        r = Raw(srv, None)
        try:
            status, body = r.json(
                "GET", "/api/v1/namespaces", headers={"Authorization": "Bearer s3cr3t-token"}
            )
            assert status == 200
            assert {i["metadata"]["name"] for i in body["items"]} >= {"default", "kube-system"}
            status, body = r.json(
                "GET", "/api/v1/namespaces", headers={"Authorization": "Bearer wrong"}
            )
            assert (status, body["reason"]) == (401, "Unauthorized")
        finally:
            r.close()


def test_rbac_denial_message(server: ServerHandle) -> None:
    bob = _raw_as(server, "bob", ["devs"])
    try:
        status, body = bob.json("GET", f"/api/v1/namespaces/{NS}/pods")
        assert status == 403
        assert body["reason"] == "Forbidden"
        assert body["message"] == (
            'pods is forbidden: User "bob" cannot list resource "pods" in API group ""'
            f' in the namespace "{NS}"'
        )
        status, body = bob.json("DELETE", "/api/v1/nodes/node-a")
        assert status == 403
        assert (
            'cannot delete resource "nodes" in API group "" at the cluster scope' in body["message"]
        )
        # Discovery stays open to every authenticated user.
        status, body = bob.json("GET", "/api/v1")
        assert status == 200
    finally:
        bob.close()


def test_group_binding_grants_access(api: k8s.ApiClient, server: ServerHandle) -> None:
    rbac = rbac_api(api)
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": "devs-view"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "view",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "devs"}
            ],
        }
    )
    carol = _raw_as(server, "carol", ["devs"])
    try:
        status, body = carol.json("GET", f"/api/v1/namespaces/{NS}/pods")
        assert status == 200
        assert {i["metadata"]["name"] for i in body["items"]} == {"on-a", "on-b"}
        status, _ = carol.json("DELETE", f"/api/v1/namespaces/{NS}/pods/on-a")
        assert status == 403
    finally:
        carol.close()


def test_node_restriction(server: ServerHandle) -> None:
    agent = _raw_as(server, "system:node:node-a", ["system:nodes"])
    merge = "application/merge-patch+json"
    try:
        status, _ = agent.json(
            "PATCH",
            "/api/v1/nodes/node-a/status",
            {"status": {"allocatable": {"pods": "110"}}},
            content_type=merge,
        )
        assert status == 200
        status, body = agent.json(
            "PATCH",
            "/api/v1/nodes/node-b/status",
            {"status": {"allocatable": {"pods": "1"}}},
            content_type=merge,
        )
        assert status == 403
        assert body["message"] == 'node "node-a" is not allowed to modify node "node-b"'
        status, _ = agent.json(
            "PATCH",
            f"/api/v1/namespaces/{NS}/pods/on-a/status",
            {"status": {"phase": "Running"}},
            content_type=merge,
        )
        assert status == 200
        status, _ = agent.json(
            "PATCH",
            f"/api/v1/namespaces/{NS}/pods/on-b/status",
            {"status": {"phase": "Running"}},
            content_type=merge,
        )
        assert status == 403
        status, _ = agent.json(
            "PATCH",
            f"/api/v1/namespaces/{NS}/pods/on-a",
            {"metadata": {"labels": {"x": "y"}}},
            content_type=merge,
        )
        assert status == 403
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "node-a", "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": "node-a", "leaseDurationSeconds": 40},
        }
        status, _ = agent.json(
            "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease
        )
        assert status == 201
        lease["metadata"]["name"] = "node-b"  # type: ignore[index]
        status, _ = agent.json(
            "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease
        )
        assert status == 403
        status, _ = agent.json("POST", f"/api/v1/namespaces/{NS}/pods", pod("sneaky"))
        assert status == 403
    finally:
        agent.close()


def test_stale_update_is_409_conflict(api: k8s.ApiClient, raw: Raw) -> None:
    core = core_api(api)
    cm = core.create_namespaced_config_map(NS, {"metadata": {"name": "occ"}, "data": {"v": "0"}})
    stale_rv = cm.metadata.resource_version
    core.patch_namespaced_config_map("occ", NS, {"data": {"v": "1"}})
    body = {"metadata": {"name": "occ", "resourceVersion": stale_rv}, "data": {"v": "stale"}}
    status, resp = raw.json("PUT", f"/api/v1/namespaces/{NS}/configmaps/occ", body)
    assert status == 409
    assert resp["reason"] == "Conflict"
    assert resp["message"] == (
        'Operation cannot be fulfilled on configmaps "occ": the object has been modified;'
        " please apply your changes to the latest version and try again"
    )
    status, resp = raw.json(
        "PATCH",
        f"/api/v1/namespaces/{NS}/configmaps/occ",
        {"metadata": {"resourceVersion": stale_rv}, "data": {"v": "stale"}},
        content_type="application/merge-patch+json",
    )
    assert status == 409
    assert core.read_namespaced_config_map("occ", NS).data == {"v": "1"}


def test_concurrent_patches_all_land(api: k8s.ApiClient, server: ServerHandle) -> None:
    core = core_api(api)
    core.create_namespaced_config_map(NS, {"metadata": {"name": "many"}})
    errors: list[BaseException] = []

    cert = server.client_cert("admin", ["system:masters"])
    clients = [Raw(server, cert) for _ in range(6)]

    def patcher(i: int) -> None:
        r = clients[i]
        try:
            for j in range(5):
                status, _ = r.json(
                    "PATCH",
                    f"/api/v1/namespaces/{NS}/configmaps/many",
                    {"metadata": {"labels": {f"k{i}-{j}": "v"}}},
                    content_type="application/strategic-merge-patch+json",
                )
                assert status == 200
        except BaseException as exc:
            errors.append(exc)
        finally:
            r.close()

    threads = [threading.Thread(target=patcher, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    labels = core.read_namespaced_config_map("many", NS).metadata.labels
    assert len(labels) == 30


def test_service_account_tokens_authenticate(api: k8s.ApiClient, server: ServerHandle) -> None:
    core = core_api(api)
    core.create_namespaced_service_account(NS, {"metadata": {"name": "robot"}})
    # A signed token from the TokenRequest API (token Secrets are filled by the controller
    # manager's token controller, which this server-only test does not run).
    request = core.create_namespaced_service_account_token("robot", NS, {"spec": {}})
    token = request.status.token
    rbac_api(api).create_namespaced_role_binding(
        NS,
        {
            "metadata": {"name": "robot-view"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "view",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": NS}],
        },
    )
    client = Raw(server, None)
    auth = {"Authorization": f"Bearer {token}"}
    try:
        deadline = time.monotonic() + 30  # the authorizer follows the store (load)
        while True:
            status, body = client.json("GET", f"/api/v1/namespaces/{NS}/pods", headers=auth)
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status == 200
        status, body = client.json("GET", "/api/v1/namespaces/default/pods", headers=auth)
        assert status == 403
        assert 'User "system:serviceaccount:authz:robot"' in body["message"]
        core.delete_namespaced_service_account("robot", NS)
        deadline = time.monotonic() + 30  # the authorizer follows the store (load)
        while client.json("GET", f"/api/v1/namespaces/{NS}/pods", headers=auth)[0] != 401:
            assert time.monotonic() < deadline, "token still accepted after its account was deleted"
            time.sleep(0.1)
    finally:
        client.close()


def test_impersonation(raw: Raw, server: ServerHandle) -> None:
    status, body = raw.json(
        "GET", f"/api/v1/namespaces/{NS}/pods", headers={"Impersonate-User": "mallory"}
    )
    assert status == 403
    assert 'User "mallory" cannot list resource "pods"' in body["message"]
    status, _ = raw.json(
        "GET",
        f"/api/v1/namespaces/{NS}/pods",
        headers={"Impersonate-User": "mallory", "Impersonate-Group": "system:masters"},
    )
    assert status == 200
    bob = _raw_as(server, "bob", ["devs"])
    try:
        status, body = bob.json("GET", "/api/v1/namespaces", headers={"Impersonate-User": "admin"})
        assert status == 403
        assert 'cannot impersonate resource "users"' in body["message"]
    finally:
        bob.close()


def test_table_include_object_variants(raw: Raw) -> None:
    accept = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io, application/json"}
    for include, kind in (("Object", "Pod"), ("Metadata", "PartialObjectMetadata")):
        status, body = raw.json(
            "GET", f"/api/v1/namespaces/{NS}/pods?includeObject={include}", headers=accept
        )
        assert status == 200
        assert body["kind"] == "Table"
        assert int(body["metadata"]["resourceVersion"]) > 0
        assert {r["object"]["kind"] for r in body["rows"]} == {kind}
    status, body = raw.json(
        "GET", f"/api/v1/namespaces/{NS}/pods?includeObject=None", headers=accept
    )
    assert all("object" not in r for r in body["rows"])
    meta_accept = {"Accept": "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"}
    status, body = raw.json("GET", f"/api/v1/namespaces/{NS}/pods", headers=meta_accept)
    assert body["kind"] == "PartialObjectMetadataList"
    assert {i["metadata"]["name"] for i in body["items"]} >= {"on-a", "on-b"}
    assert all("spec" not in i for i in body["items"])


def test_metrics_count_requests(raw: Raw, server: ServerHandle) -> None:
    raw.json("GET", "/apis/apps/v1/namespaces/authz/deployments")
    status, _, data = raw.request("GET", "/metrics")
    assert status == 200
    text = data.decode()
    assert (
        'apiserver_request_total{verb="LIST",group="apps",resource="deployments",code="200"}'
        in text
    )
    assert 'apiserver_request_duration_seconds_count{verb="LIST",resource="deployments"}' in text
    bob = _raw_as(server, "bob", ["devs"])
    try:
        assert bob.request("GET", "/metrics")[0] == 403  # not for every authenticated user
    finally:
        bob.close()


@pytest.mark.parametrize(
    ("resource", "spec"),
    [
        ("selfsubjectaccessreviews", "not-an-object"),
        ("selfsubjectaccessreviews", [1, 2]),
        ("subjectaccessreviews", {"user": "u", "groups": "not-a-list"}),
    ],
)
def test_malformed_access_reviews_are_400_not_500(raw: Raw, resource: str, spec: object) -> None:
    # Found by the request fuzzer: a spec that is not an object crashed the handler.
    status, _, body = raw.request(
        "POST",
        f"/apis/authorization.k8s.io/v1/{resource}",
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": spec},
    )
    assert status == 400, body
    assert b'"kind":"Status"' in body.replace(b" ", b"")
