"""A node and the local volumes on its disk (issue 16): with its own certificate a node reads
the local volumes pinned to it, even once no pod uses them, and may drop their
``berth.io/local-volume-cleanup`` finalizer — and nothing else: not another node's volume, not
a volume's spec, labels or other finalizers, not a volume it merely mounts; a restarted server
still knows which volumes each node may read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from berth.api import storage as st
from tests.harness.apiserver import ServerHandle, running_server
from tests.security.test_node_authz import Api, _node

JSON_PATCH = "application/json-patch+json"


def _local_pv(name: str, node: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "annotations": {st.PROVISIONED_BY_ANNOTATION: st.LOCAL_PROVISIONER},
            "finalizers": [st.LOCAL_CLEANUP_FINALIZER],
        },
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "local": {"path": f"{st.LOCAL_VOLUMES_DIR}/{name}"},
            "nodeAffinity": st.pinned_to(node),
        },
    }


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    with running_server(tmp_path_factory.mktemp("node-volumes")) as handle:
        yield handle


@pytest.fixture(scope="module")
def admin(srv: ServerHandle) -> Iterator[Api]:
    api = Api(srv, "admin", ["system:masters"])
    for n in ("n1", "n2"):
        api.ok("POST", "/api/v1/nodes", _node(n))
    for name, node in (("pv-n1", "n1"), ("pv-n2", "n2"), ("pv-n1-b", "n1")):
        created = api.ok("POST", "/api/v1/persistentvolumes", _local_pv(name, node))
    api.seen("/api/v1/persistentvolumes", "pv-n1-b", created["metadata"]["resourceVersion"])
    hostpath = {
        "metadata": {"name": "pv-static"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/srv/x"},
        },
    }
    api.ok("POST", "/api/v1/persistentvolumes", hostpath)
    yield api
    api.close()


@pytest.fixture(scope="module")
def n1(srv: ServerHandle, admin: Api) -> Iterator[Api]:
    api = Api(srv, "system:node:n1", ["system:nodes"])
    yield api
    api.close()


def test_node_reads_only_its_own_local_volumes(n1: Api) -> None:
    assert n1("GET", "/api/v1/persistentvolumes/pv-n1")[0] == 200
    assert n1("GET", "/api/v1/persistentvolumes/pv-n2")[0] == 403
    assert n1("GET", "/api/v1/persistentvolumes/pv-static")[0] == 403
    assert n1("GET", "/api/v1/persistentvolumes")[0] == 403


@pytest.mark.parametrize(
    "patch",
    [
        [{"op": "replace", "path": "/spec/local/path", "value": "/etc"}],
        [{"op": "replace", "path": "/spec/persistentVolumeReclaimPolicy", "value": "Retain"}],
        [{"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}],
        [{"op": "add", "path": "/metadata/annotations/x", "value": "y"}],
        [
            {
                "op": "remove",
                "path": f"/metadata/annotations/{st.PROVISIONED_BY_ANNOTATION.replace('/', '~1')}",
            }
        ],
        [{"op": "add", "path": "/metadata/finalizers/-", "value": "example.com/hold"}],
        [{"op": "remove", "path": "/spec/claimRef"}],
    ],
)
def test_node_may_change_nothing_but_the_cleanup_finalizer(
    n1: Api, patch: list[dict[str, Any]]
) -> None:
    status, body = n1(
        "PATCH",
        "/api/v1/persistentvolumes/pv-n1",
        patch,
        content_type=JSON_PATCH,
    )
    assert status in (403, 422), body
    if status == 403:
        assert st.LOCAL_CLEANUP_FINALIZER in body["message"]


def test_node_drops_the_cleanup_finalizer_of_its_volume_only(admin: Api, n1: Api) -> None:
    drop_all = [{"op": "replace", "path": "/metadata/finalizers", "value": []}]
    status, _ = n1("PATCH", "/api/v1/persistentvolumes/pv-n1-b", drop_all, content_type=JSON_PATCH)
    assert status == 403  # pv-protection is not the node's to drop
    drop = [
        {"op": "replace", "path": "/metadata/finalizers", "value": [st.PV_PROTECTION_FINALIZER]}
    ]
    status, _ = n1("PATCH", "/api/v1/persistentvolumes/pv-n2", drop, content_type=JSON_PATCH)
    assert status == 403
    got = n1.ok("PATCH", "/api/v1/persistentvolumes/pv-n1-b", drop, content_type=JSON_PATCH)
    assert got["metadata"]["finalizers"] == [st.PV_PROTECTION_FINALIZER]
    theirs = admin.ok("GET", "/api/v1/persistentvolumes/pv-n2")
    assert sorted(theirs["metadata"]["finalizers"]) == sorted(
        [st.LOCAL_CLEANUP_FINALIZER, st.PV_PROTECTION_FINALIZER]
    )


def test_node_marks_its_volume_made(n1: Api) -> None:
    key = st.LOCAL_VOLUME_MADE_ANNOTATION.replace("/", "~1")
    mark = [{"op": "add", "path": f"/metadata/annotations/{key}", "value": "true"}]
    status, _ = n1("PATCH", "/api/v1/persistentvolumes/pv-n2", mark, content_type=JSON_PATCH)
    assert status == 403
    got = n1.ok("PATCH", "/api/v1/persistentvolumes/pv-n1", mark, content_type=JSON_PATCH)
    assert got["metadata"]["annotations"][st.LOCAL_VOLUME_MADE_ANNOTATION] == "true"
    unmark = [{"op": "replace", "path": f"/metadata/annotations/{key}", "value": "false"}]
    status, _ = n1("PATCH", "/api/v1/persistentvolumes/pv-n1", unmark, content_type=JSON_PATCH)
    assert status == 403


def test_a_restarted_server_still_lets_a_node_read_the_volumes_it_uses(tmp_path: Path) -> None:
    """The node graph is rebuilt from the store when a server starts (an upgrade restarts
    them all): the volumes bound before it, through their claims or pinned to the node, stay
    readable by the node whose pods use them. (A restarted server forgot every volume until
    the volume itself changed: pods with claims could not start after an upgrade.)"""
    db = tmp_path / "state.db"
    claimed = {
        "metadata": {"name": "pv-claimed"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/srv/claimed"},
            "claimRef": {"namespace": "default", "name": "data"},
        },
    }
    claim = {
        "metadata": {"name": "data"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "",
            "volumeName": "pv-claimed",
        },
    }
    pod = {
        "metadata": {"name": "user"},
        "spec": {
            "nodeName": "n1",
            "containers": [{"name": "c", "image": "busybox:1.36"}],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
        },
    }
    volumes = ("/api/v1/persistentvolumes/pv-claimed", "/api/v1/persistentvolumes/pv-local")
    with running_server(tmp_path / "old", datastore="sqlite", sqlite_path=db) as old:
        admin = Api(old, "admin", ["system:masters"])
        admin.ok("POST", "/api/v1/nodes", _node("n1"))
        admin.ok("POST", "/api/v1/persistentvolumes", claimed)
        admin.ok("POST", "/api/v1/persistentvolumes", _local_pv("pv-local", "n1"))
        admin.ok("POST", "/api/v1/namespaces/default/persistentvolumeclaims", claim)
        made = admin.ok("POST", "/api/v1/namespaces/default/pods", pod)
        admin.seen("/api/v1/namespaces/default/pods", "user", made["metadata"]["resourceVersion"])
        node = Api(old, "system:node:n1", ["system:nodes"])
        assert [node("GET", path)[0] for path in volumes] == [200, 200]
        node.close()
        admin.close()
    with running_server(tmp_path / "new", datastore="sqlite", sqlite_path=db) as new:
        node = Api(new, "system:node:n1", ["system:nodes"])
        other = Api(new, "system:node:n2", ["system:nodes"])
        try:
            assert [node("GET", path)[0] for path in volumes] == [200, 200]
            assert [other("GET", path)[0] for path in volumes] == [403, 403]
        finally:
            node.close()
            other.close()
