"""A stolen control-plane certificate no longer owns the cluster.

The controller manager's identity held ``*`` on everything: its certificate (on every
control-plane host) could bind cluster-admin, impersonate anyone, or rewrite any role. Its role
is now the union of what its controllers call (berth/apiserver/component_roles.py); the
scheduler and the proxy hold kube's bootstrap rules for the work berth's components do.

What the controller manager still may, as kube's own controllers may: read every kind it
monitors, Secrets included (kube's garbage collector and namespace controller hold get/list/
watch on ``*.*``), and patch/delete them. That is asserted in the unit tests, not here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.apiserver import ServerHandle, running_server
from tests.integration.apiserver.helpers import Raw
from tests.security.helpers import groupless_clients

pytestmark = pytest.mark.timeout(60)

RBAC = "/apis/rbac.authorization.k8s.io/v1"
GROUP = "rbac.authorization.k8s.io"
NS = "tenant"
MERGE = "application/merge-patch+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    with running_server(tmp_path_factory.mktemp("least-privilege")) as srv:
        admin = Raw(srv, srv.client_cert("admin", ["system:masters"]))
        status, body = admin.json("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
        assert status == 201, body
        secret = {"metadata": {"name": "db"}, "stringData": {"password": "hunter2"}}
        status, body = admin.json("POST", f"/api/v1/namespaces/{NS}/secrets", secret)
        assert status == 201, body
        admin.close()
        yield srv


@pytest.fixture
def component(server: ServerHandle) -> Iterator[Any]:
    yield from groupless_clients(server)


def _refused(result: tuple[int, Any]) -> None:
    status, body = result
    assert status == 403, body
    assert body["reason"] == "Forbidden"


def _cluster_admin_binding(name: str, user: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": GROUP, "kind": "User", "name": user}],
    }


def test_controller_manager_cannot_grant_itself_or_anyone_more(component: Any) -> None:
    cm = component("system:kube-controller-manager")
    _refused(cm.json("POST", f"{RBAC}/clusterrolebindings", _cluster_admin_binding("x", "mallory")))
    _refused(
        cm.json(
            "POST",
            f"{RBAC}/namespaces/{NS}/rolebindings",
            _cluster_admin_binding("x", "mallory"),
        )
    )
    _refused(
        cm.json(
            "PATCH",
            f"{RBAC}/clusterroles/view",
            {"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]},
            content_type=MERGE,
        )
    )
    _refused(cm.json("DELETE", f"{RBAC}/clusterroles/system:node"))
    _refused(cm.json("POST", "/api/v1/namespaces", {"metadata": {"name": "cm-made"}}))


def test_controller_manager_cannot_impersonate(component: Any) -> None:
    cm = component("system:kube-controller-manager")
    for headers in (
        {"Impersonate-User": "admin", "Impersonate-Group": "system:masters"},
        {"Impersonate-User": f"system:serviceaccount:{NS}:default"},
        {"Impersonate-User": "system:node:n1"},
    ):
        status, body = cm.json("GET", f"/api/v1/namespaces/{NS}/pods", headers=headers)
        assert status == 403, body
        assert "cannot impersonate" in body["message"]


def test_controller_manager_still_does_its_work(component: Any) -> None:
    """The narrowed role still lets it read what its informers watch (a sanity check; the
    control-plane integration tests run the real controllers)."""
    cm = component("system:kube-controller-manager")
    for path in ("/api/v1/pods", "/apis/apps/v1/deployments", "/api/v1/nodes"):
        status, body = cm.json("GET", path)
        assert status == 200, (path, body)


def test_scheduler_cannot_read_secrets_or_rewrite_pods(component: Any) -> None:
    sched = component("system:kube-scheduler")
    _refused(sched.json("GET", f"/api/v1/namespaces/{NS}/secrets/db"))
    _refused(sched.json("GET", f"/api/v1/namespaces/{NS}/configmaps"))
    # preemption deletes victims (as kube's system:kube-scheduler may); rewriting a pod, or
    # creating one, stays out of reach
    _refused(sched.json("PUT", f"/api/v1/namespaces/{NS}/pods/anything", {}))
    _refused(sched.json("POST", f"/api/v1/namespaces/{NS}/pods", {}))
    _refused(sched.json("POST", f"{RBAC}/clusterrolebindings", _cluster_admin_binding("s", "s")))
    status, body = sched.json("GET", "/api/v1/pods")
    assert status == 200, body


def test_proxy_reads_only_what_it_routes(component: Any) -> None:
    proxy = component("system:kube-proxy")
    _refused(proxy.json("GET", f"/api/v1/namespaces/{NS}/secrets/db"))
    _refused(proxy.json("GET", "/api/v1/namespaces/default/services/kubernetes"))
    _refused(proxy.json("DELETE", "/api/v1/namespaces/default/services/kubernetes"))
    status, body = proxy.json("GET", "/api/v1/services")
    assert status == 200, body


def test_a_cluster_from_an_older_berth_gets_the_narrowed_roles(tmp_path: Path) -> None:
    """Bootstrap roles were only created when absent: a cluster made by an older berth kept
    the controller manager's ``*`` on everything across upgrades."""
    db = tmp_path / "state.db"
    role = f"{RBAC}/clusterroles/system:kube-controller-manager"
    everything = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
    with running_server(tmp_path / "old", datastore="sqlite", sqlite_path=db) as old:
        admin = Raw(old, old.client_cert("admin", ["system:masters"]))
        status, stored = admin.json("GET", role)
        assert status == 200, stored
        status, body = admin.json("PUT", role, {**stored, "rules": everything})
        assert status == 200, body
        # an operator's own edit of a bootstrap role, kept by opting out (as upstream)
        status, body = admin.json(
            "PATCH",
            f"{RBAC}/clusterroles/view",
            {
                "metadata": {
                    "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "false"}
                },
                "rules": everything,
            },
            content_type=MERGE,
        )
        assert status == 200, body
        admin.close()
    with running_server(tmp_path / "new", datastore="sqlite", sqlite_path=db) as new:
        admin = Raw(new, new.client_cert("admin", ["system:masters"]))
        cm = Raw(new, new.client_cert("system:kube-controller-manager", []))
        try:
            status, stored = admin.json("GET", role)
            assert status == 200, stored
            assert everything[0] not in stored["rules"]
            assert {"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]} in stored[
                "rules"
            ]
            _refused(
                cm.json("POST", f"{RBAC}/clusterrolebindings", _cluster_admin_binding("x", "m"))
            )
            status, view = admin.json("GET", f"{RBAC}/clusterroles/view")
            assert view["rules"] == everything
        finally:
            admin.close()
            cm.close()
