"""The API server's request door: what reaches it before and while a body is decoded.

Issue 13, points 3 and 4 and the API half of 11, played against a real server in a child
process whose data segment is capped (so an attack that makes it allocate without bound
kills that process, not the machine):

- a YAML alias bomb or a malformed body from an identity with no rights is refused 403
  before a byte of it is parsed; from an admin it is a 400; ``/healthz`` keeps answering
  within a second while such bodies arrive; the process survives;
- a write to a subresource never creates the object and changes only that subresource;
- bodies nested too deeply, fields of the wrong JSON type and out-of-range integers are a
  400 (or 422), never a 500.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness.apiserver import ServerProcess
from tests.integration.apiserver.helpers import (
    Raw,
    capped_server_process,
    deployment,
    json_paths,
    pod,
    raw_client,
    replaced_at,
)

pytestmark = pytest.mark.timeout(300)

HEALTHZ_WITHIN = 1.0
MAX_DEPTH = 100
"""The nesting bound (``berth.apiserver.bodies.MAX_DEPTH``), literal here so that this
module also runs, and fails, against the code from before the bound existed."""
NS = "/api/v1/namespaces/default"
APPS = "/apis/apps/v1/namespaces/default"
YAML = "application/yaml"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def alias_bomb(levels: int, width: int = 9) -> bytes:
    """The "billion laughs": each anchor repeats the previous one ``width`` times, so the
    document stands for ``width ** levels`` strings. Nine levels are about 450 bytes."""
    lines = ["a0: &a0 [" + ",".join(['"x"'] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return ("\n".join(lines) + "\n").encode()


def nested_yaml(depth: int) -> bytes:
    """Block sequences ``depth`` levels deep on one line (``- - - v``: YAML, not JSON)."""
    return b"- " * depth + b"v\n"


def nested_json(depth: int) -> bytes:
    return b'{"metadata":{"name":"deep"},"data":' + b"[" * depth + b"]" * depth + b"}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from capped_server_process(tmp_path_factory.mktemp("door"))


_CERTS: dict[tuple[str, ...], tuple[Path, Path]] = {}


def _raw(server: ServerProcess, user: str, groups: list[str]) -> Raw:
    """A client as ``user``; its certificate is issued once (threads share it)."""
    files = server.files
    key = (files.url, user, *groups)
    if key not in _CERTS:
        _CERTS[key] = files.client_cert(user, groups)
    return raw_client(server, _CERTS[key])


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Iterator[Raw]:
    r = _raw(server, "door-admin", ["system:masters"])
    yield r
    r.close()


@pytest.fixture(scope="module")
def nobody(server: ServerProcess) -> Iterator[Raw]:
    """Authenticated, bound to nothing: may only discover and review itself."""
    r = _raw(server, "mallory", [])
    yield r
    r.close()


def _alive(server: ServerProcess, admin: Raw) -> None:
    assert server.process.poll() is None, "the API server process died"
    status, _, data = admin.request("GET", "/healthz")
    assert (status, data) == (200, b"ok")


def _status(data: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(data)
    assert doc["kind"] == "Status", doc
    return doc


# -- point 4: authorize before parsing; bounded decoding ------------------------------------

WRITES = [
    ("POST", f"{NS}/configmaps"),
    ("PUT", f"{NS}/configmaps/cm"),
    ("PATCH", f"{NS}/configmaps/cm"),
    ("PATCH", f"{NS}/pods/p/status"),
    ("DELETE", f"{NS}/configmaps/cm"),
    ("DELETE", f"{NS}/configmaps"),
    ("POST", f"{NS}/pods/p/eviction"),
    ("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews"),
]


@pytest.mark.parametrize(("method", "path"), WRITES)
@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (b"{: [unclosed", YAML),  # a parser would answer 400: 403 proves none ran
        (b"{not json", "application/json"),
        (b"{not json", MERGE),
        (b"{: [unclosed", APPLY),
        (alias_bomb(9), YAML),
        (alias_bomb(9), APPLY),
    ],
    ids=["bad-yaml", "bad-json", "bad-merge", "bad-apply", "bomb-yaml", "bomb-apply"],
)
def test_identity_without_rights_is_refused_before_its_body_is_parsed(
    server: ServerProcess,
    admin: Raw,
    nobody: Raw,
    method: str,
    path: str,
    body: bytes,
    ctype: str,
) -> None:
    status, _, data = nobody.request(method, path, body, content_type=ctype)
    assert status == 403, data[:300]
    doc = _status(data)
    assert doc["reason"] == "Forbidden"
    assert "mallory" in doc["message"]
    _alive(server, admin)


@pytest.mark.parametrize("levels", [7, 8, 9], ids=["350B", "400B", "450B"])
@pytest.mark.parametrize("ctype", [YAML, APPLY])
def test_alias_bomb_from_admin_is_400(
    server: ServerProcess, admin: Raw, levels: int, ctype: str
) -> None:
    bomb = alias_bomb(levels)
    method, path = (
        ("POST", f"{NS}/configmaps")
        if ctype == YAML
        else ("PATCH", f"{NS}/configmaps/bomb?fieldManager=door")
    )
    started = time.monotonic()
    status, _, data = admin.request(method, path, bomb, content_type=ctype)
    assert (status, _status(data)["reason"]) == (400, "BadRequest"), data[:300]
    assert "aliases count" in _status(data)["message"]
    assert time.monotonic() - started < HEALTHZ_WITHIN
    _alive(server, admin)


def test_moderate_anchors_still_work(admin: Raw) -> None:
    """Anchors are legitimate YAML: a manifest reusing a block is accepted."""
    doc = b"metadata: {name: anchored}\ndata:\n  a: &v hello\n  b: *v\nbinaryData: {}\n"
    status, _, data = admin.request("POST", f"{NS}/configmaps", doc, content_type=YAML)
    assert status == 201, data[:300]
    assert json.loads(data)["data"] == {"a": "hello", "b": "hello"}


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (nested_yaml(3000), YAML),
        (nested_yaml(MAX_DEPTH + 1), YAML),
        (b"[" * 3000 + b"]" * 3000, YAML),
        (nested_json(400), "application/json"),
        (nested_json(MAX_DEPTH + 1), "application/json"),
        (nested_json(2000), "application/json"),
    ],
    ids=["yaml-3000", "yaml-101", "flow-3000", "json-400", "json-101", "json-2000"],
)
def test_deep_nesting_is_400(server: ServerProcess, admin: Raw, body: bytes, ctype: str) -> None:
    status, _, data = admin.request("POST", f"{NS}/configmaps", body, content_type=ctype)
    assert (status, _status(data)["reason"]) == (400, "BadRequest"), data[:300]
    assert "nest" in _status(data)["message"]
    _alive(server, admin)


def test_nesting_within_the_bound_is_accepted(admin: Raw) -> None:
    template = deployment("nested")
    value: Any = "leaf"
    # The root, spec, template, template.spec and affinity are 5 levels: the innermost
    # array is at exactly MAX_DEPTH.
    for _ in range(MAX_DEPTH - 5):
        value = [value]
    template["spec"]["template"]["spec"]["affinity"] = {"deep": value}
    status, _, data = admin.request("POST", f"{APPS}/deployments", template)
    assert status == 201, data[:300]


def test_json_patch_cannot_build_an_object_deeper_than_the_bound(admin: Raw) -> None:
    status, _, data = admin.request(
        "POST", f"{NS}/configmaps", {"metadata": {"name": "grow"}, "data": {}}
    )
    assert status == 201, data[:300]
    deep: Any = {}
    for _ in range(MAX_DEPTH - 5):
        deep = {"a": deep}
    ops = [{"op": "add", "path": "/x", "value": deep}]
    ops.append({"op": "add", "path": "/x" + "/a" * (MAX_DEPTH - 6) + "/b", "value": deep})
    status, _, data = admin.request(
        "PATCH", f"{NS}/configmaps/grow", json.dumps(ops), content_type=JSON_PATCH
    )
    assert (status, _status(data)["reason"]) == (400, "BadRequest"), data[:300]
    assert "nested too deeply" in _status(data)["message"]


def test_healthz_answers_within_a_second_while_bombs_arrive(
    server: ServerProcess, admin: Raw
) -> None:
    stop = threading.Event()
    errors: list[str] = []
    sent = [0]

    def attack(user: str, groups: list[str], body: bytes, ctype: str) -> None:
        client = _raw(server, user, groups)
        try:
            while not stop.is_set():
                status, _, data = client.request(
                    "POST", f"{NS}/configmaps", body, content_type=ctype, timeout=60
                )
                sent[0] += 1
                if status not in (400, 403):
                    errors.append(f"{user}: {status} {data[:200]!r}")
        except OSError as exc:
            errors.append(f"{user}: {exc!r}")
        finally:
            client.close()

    big_yaml = b"metadata: {name: big}\ndata:\n" + b"".join(
        b"  k%d: v\n" % i for i in range(60_000)
    )
    attackers = [
        threading.Thread(target=attack, args=("mallory", [], alias_bomb(9), YAML)),
        threading.Thread(target=attack, args=("mallory", [], alias_bomb(9), APPLY)),
        threading.Thread(
            target=attack, args=("door-admin", ["system:masters"], alias_bomb(9), YAML)
        ),
        threading.Thread(target=attack, args=("door-admin", ["system:masters"], big_yaml, YAML)),
        threading.Thread(
            target=attack, args=("door-admin", ["system:masters"], nested_yaml(3000), YAML)
        ),
    ]
    probe = _raw(server, "door-admin", ["system:masters"])
    _raw(server, "mallory", []).close()  # issue the certificates before the threads start
    for t in attackers:
        t.start()
    slowest = 0.0
    try:
        deadline = time.monotonic() + 4
        probes = 0
        while time.monotonic() < deadline or probes < 20:
            started = time.monotonic()
            status, _, data = probe.request("GET", "/healthz", timeout=10)
            slowest = max(slowest, time.monotonic() - started)
            assert (status, data) == (200, b"ok")
            probes += 1
    finally:
        stop.set()
        for t in attackers:
            t.join(60)
        probe.close()
    assert not errors, errors[:5]
    assert sent[0] >= len(attackers)
    assert slowest < HEALTHZ_WITHIN, f"/healthz took {slowest:.2f}s while bombs arrived"
    _alive(server, admin)


# -- point 3: subresource writes -----------------------------------------------------------


def _ghost_pod() -> dict[str, Any]:
    body = pod("ghost", node_name="victim-node")
    body["spec"]["volumes"] = [{"name": "root", "hostPath": {"path": "/"}}]
    body["spec"]["containers"][0]["volumeMounts"] = [{"name": "root", "mountPath": "/host"}]
    body["status"] = {"phase": "Running"}
    return body


@pytest.mark.parametrize(
    ("method", "ctype"),
    [("PATCH", APPLY), ("PATCH", MERGE), ("PATCH", STRATEGIC), ("PUT", "application/json")],
)
def test_status_write_for_a_missing_pod_is_404_and_creates_nothing(
    admin: Raw, method: str, ctype: str
) -> None:
    path = f"{NS}/pods/ghost/status?fieldManager=door"
    status, _, data = admin.request(method, path, json.dumps(_ghost_pod()), content_type=ctype)
    assert (status, _status(data)["reason"]) == (404, "NotFound"), data[:300]
    status, _, _ = admin.request("GET", f"{NS}/pods/ghost")
    assert status == 404


def test_status_apply_for_a_missing_deployment_is_404(admin: Raw) -> None:
    body = deployment("ghost-deploy")
    status, _, data = admin.request(
        "PATCH",
        f"{APPS}/deployments/ghost-deploy/status?fieldManager=door",
        json.dumps(body),
        content_type=APPLY,
    )
    assert status == 404, data[:300]
    assert admin.request("GET", f"{APPS}/deployments/ghost-deploy")[0] == 404


def _status_writes(name: str) -> list[tuple[str, str, Any]]:
    """Status writes that also try to move the pod, mount the host and relabel it."""
    evil_spec = {
        "nodeName": "evil-node",
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
        "containers": [{"name": "app", "image": "evil:1"}],
    }
    whole = pod(name, labels={"app": "stolen"})
    whole["spec"].update(evil_spec)
    whole["status"] = {"phase": "Running", "podIP": "10.1.2.3"}
    return [
        ("PUT", "application/json", whole),
        (
            "PATCH",
            MERGE,
            {
                "metadata": {"labels": {"app": "stolen"}},
                "spec": evil_spec,
                "status": {"phase": "Running"},
            },
        ),
        (
            "PATCH",
            STRATEGIC,
            {
                "metadata": {"labels": {"app": "stolen"}},
                "spec": evil_spec,
                "status": {"phase": "Running"},
            },
        ),
        (
            "PATCH",
            JSON_PATCH,
            [
                {"op": "replace", "path": "/spec/nodeName", "value": "evil-node"},
                {"op": "add", "path": "/spec/volumes", "value": evil_spec["volumes"]},
                {"op": "add", "path": "/metadata/labels/app", "value": "stolen"},
                {"op": "add", "path": "/status/phase", "value": "Running"},
            ],
        ),
        ("PATCH", APPLY, whole),
    ]


@pytest.mark.parametrize("case", range(5), ids=["put", "merge", "strategic", "json", "apply"])
def test_status_write_changes_only_the_status(admin: Raw, case: int) -> None:
    name = f"bound-{case}"
    original = pod(name, labels={"app": "mine"}, node_name="good-node")
    status, _, data = admin.request("POST", f"{NS}/pods", original)
    assert status == 201, data[:300]
    before = json.loads(data)
    method, ctype, body = _status_writes(name)[case]
    status, _, data = admin.request(
        method, f"{NS}/pods/{name}/status?fieldManager=door", json.dumps(body), content_type=ctype
    )
    assert status == 200, data[:300]
    _, _, data = admin.request("GET", f"{NS}/pods/{name}")
    after = json.loads(data)
    assert after["status"]["phase"] == "Running"
    assert after["spec"] == before["spec"]
    assert after["spec"]["nodeName"] == "good-node"
    # The only volume is the service-account token admission added at create, no hostPath.
    assert not [v for v in after["spec"].get("volumes", []) if "hostPath" in v]
    assert after["metadata"]["labels"] == {"app": "mine"}


def test_deployment_status_write_cannot_change_spec_or_labels(admin: Raw) -> None:
    status, _, data = admin.request("POST", f"{APPS}/deployments", deployment("st", replicas=1))
    assert status == 201, data[:300]
    before = json.loads(data)
    patch = {
        "metadata": {"labels": {"app": "other"}},
        "spec": {"replicas": 50, "template": {"spec": {"hostNetwork": True}}},
        "status": {"replicas": 1, "readyReplicas": 1},
    }
    status, _, data = admin.request(
        "PATCH", f"{APPS}/deployments/st/status", json.dumps(patch), content_type=MERGE
    )
    assert status == 200, data[:300]
    after = json.loads(admin.request("GET", f"{APPS}/deployments/st")[2])
    assert after["spec"] == before["spec"]
    assert after["metadata"]["labels"] == before["metadata"]["labels"]
    assert after["status"]["readyReplicas"] == 1


@pytest.mark.parametrize(
    ("method", "ctype", "body"),
    [
        ("PUT", "application/json", None),
        ("PATCH", MERGE, None),
        ("PATCH", APPLY, None),
        ("PATCH", JSON_PATCH, [{"op": "replace", "path": "/spec/replicas", "value": 4}]),
    ],
    ids=["put", "merge", "apply", "json"],
)
def test_scale_write_changes_only_replicas(admin: Raw, method: str, ctype: str, body: Any) -> None:
    name = f"sc-{method.lower()}-{ctype.split('/')[1].split('+', maxsplit=1)[0]}"
    status, _, data = admin.request("POST", f"{APPS}/deployments", deployment(name, replicas=1))
    assert status == 201, data[:300]
    before = json.loads(data)
    if body is None:
        body = {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": name, "labels": {"app": "hijacked"}, "annotations": {"a": "b"}},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"x": "y"}}},
            "status": {"replicas": 99, "selector": "x=y"},
        }
    status, _, data = admin.request(
        method,
        f"{APPS}/deployments/{name}/scale?fieldManager=door",
        json.dumps(body),
        content_type=ctype,
    )
    assert status == 200, data[:300]
    after = json.loads(admin.request("GET", f"{APPS}/deployments/{name}")[2])
    assert after["spec"]["replicas"] == 4
    expected_spec = copy.deepcopy(before["spec"])
    expected_spec["replicas"] = 4
    assert after["spec"] == expected_spec
    assert after["metadata"]["labels"] == before["metadata"]["labels"]
    assert "annotations" not in after["metadata"]
    assert after.get("status", {}).get("replicas") != 99


def test_scale_replicas_beyond_int32_are_refused(admin: Raw) -> None:
    status, _, data = admin.request("POST", f"{APPS}/deployments", deployment("huge", replicas=1))
    assert status == 201, data[:300]
    for replicas in (2**31, 2**40):
        status, _, data = admin.request(
            "PATCH",
            f"{APPS}/deployments/huge/scale",
            json.dumps({"spec": {"replicas": replicas}}),
            content_type=MERGE,
        )
        assert (status, _status(data)["reason"]) == (400, "BadRequest"), data[:300]
    after = json.loads(admin.request("GET", f"{APPS}/deployments/huge")[2])
    assert after["spec"]["replicas"] == 1


def test_scale_write_for_a_missing_deployment_is_404(admin: Raw) -> None:
    status, _, data = admin.request(
        "PATCH",
        f"{APPS}/deployments/nowhere/scale?fieldManager=door",
        json.dumps({"spec": {"replicas": 3}}),
        content_type=APPLY,
    )
    assert status == 404, data[:300]
    assert admin.request("GET", f"{APPS}/deployments/nowhere")[0] == 404


@pytest.mark.parametrize(
    ("method", "sub", "ctype"),
    [
        ("PATCH", "eviction", MERGE),
        ("PATCH", "binding", STRATEGIC),
        ("PUT", "binding", "application/json"),
        ("PUT", "eviction", "application/json"),
        ("PATCH", "log", MERGE),
        ("PUT", "log", "application/json"),
    ],
)
def test_other_subresources_never_write_the_object(
    admin: Raw, method: str, sub: str, ctype: str
) -> None:
    name = f"sub-{method.lower()}-{sub}"
    status, _, data = admin.request("POST", f"{NS}/pods", pod(name))
    assert status == 201, data[:300]
    before = json.loads(data)
    evil = pod(name, labels={"app": "stolen"}, node_name="evil-node")
    evil["metadata"]["annotations"] = {"evil": "yes"}
    status, _, data = admin.request(
        method, f"{NS}/pods/{name}/{sub}", json.dumps(evil), content_type=ctype
    )
    assert (status, _status(data)["reason"]) == (405, "MethodNotAllowed"), data[:300]
    after = json.loads(admin.request("GET", f"{NS}/pods/{name}")[2])
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_namespace_finalize_accepts_only_put(admin: Raw) -> None:
    status, _, data = admin.request("POST", "/api/v1/namespaces", {"metadata": {"name": "fin"}})
    assert status == 201, data[:300]
    status, _, data = admin.request(
        "PATCH",
        "/api/v1/namespaces/fin/finalize",
        json.dumps({"metadata": {"labels": {"x": "y"}}}),
        content_type=MERGE,
    )
    assert status == 405, data[:300]
    after = json.loads(admin.request("GET", "/api/v1/namespaces/fin")[2])
    assert after["metadata"]["labels"] == {"kubernetes.io/metadata.name": "fin"}


# -- point 11 (API): former 500s -----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", f"{NS}/pods", {"metadata": {"name": "s"}, "spec": {"containers": "x"}}),
        ("POST", f"{NS}/pods", {"metadata": {"name": "s"}, "spec": "x"}),
        ("POST", f"{NS}/pods", {"metadata": {"name": "s"}, "spec": {"tolerations": "x"}}),
        (
            "POST",
            f"{NS}/pods",
            {"metadata": {"name": "s"}, "spec": {"containers": [{"name": "a", "ports": 7}]}},
        ),
        ("POST", f"{NS}/services", {"metadata": {"name": "s"}, "spec": {"ports": 80}}),
        (
            "POST",
            f"{APPS}/deployments",
            {"metadata": {"name": "s"}, "spec": {"template": {"metadata": "x"}}},
        ),
        ("POST", f"{NS}/configmaps", {"metadata": ["x"]}),
        ("POST", f"{NS}/configmaps", {"metadata": {"name": "s", "labels": "x"}}),
        (
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
            {"metadata": {"name": "s"}, "roleRef": {"kind": "Role", "name": "r"}, "subjects": 7},
        ),
        (
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            {"metadata": "x", "spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}},
        ),
    ],
)
def test_wrong_json_types_are_400(admin: Raw, method: str, path: str, body: Any) -> None:
    status, _, data = admin.request(method, path, body)
    assert status in (400, 422), data[:300]
    doc = _status(data)
    assert doc["reason"] in ("BadRequest", "Invalid")
    assert "expected" in doc["message"] or "must be" in doc["message"], doc["message"]


@pytest.mark.parametrize(
    "query",
    [
        "limit=99999999999999999999",
        "limit=9223372036854775807",
        "limit=" + "9" * 5000,
    ],
)
def test_huge_list_limit_is_not_a_500(admin: Raw, query: str) -> None:
    status, _, data = admin.request("GET", f"{NS}/pods?{query}")
    assert status in (200, 400), data[:300]


def test_huge_grace_period_is_not_a_500(admin: Raw) -> None:
    status, _, data = admin.request("POST", f"{NS}/pods", pod("graceful", node_name="n1"))
    assert status == 201, data[:300]
    status, _, data = admin.request(
        "DELETE", f"{NS}/pods/graceful?gracePeriodSeconds=9223372036854775807"
    )
    assert status in (200, 400, 422), data[:300]


# A hypothesis search over type confusion: take a valid object of every kind, put a value
# of the wrong JSON type at any path in it, and send it as a create, an update, a patch or
# a status write. Nothing may be a 500.

SEEDS: dict[str, dict[str, Any]] = {
    f"{NS}/pods": {
        "metadata": {"name": "tc", "labels": {"a": "b"}, "annotations": {"c": "d"}},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "busybox:1.36",
                    "ports": [{"containerPort": 80}],
                    "env": [{"name": "A", "value": "b"}],
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                    "volumeMounts": [{"name": "v", "mountPath": "/v"}],
                }
            ],
            "volumes": [{"name": "v", "emptyDir": {}}],
            "tolerations": [{"key": "k", "operator": "Exists"}],
            "nodeSelector": {"a": "b"},
        },
    },
    f"{APPS}/deployments": deployment("tc"),
    f"{APPS}/daemonsets": {
        "metadata": {"name": "tc"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    },
    f"{APPS}/statefulsets": {
        "metadata": {"name": "tc"},
        "spec": {
            "serviceName": "tc",
            "ordinals": {"start": 1},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete"},
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    },
    f"{APPS}/controllerrevisions": {
        "metadata": {"name": "tc"},
        "data": {"spec": {"template": {"$patch": "replace"}}},
        "revision": 1,
    },
    f"{NS}/services": {
        "metadata": {"name": "tc"},
        "spec": {"selector": {"a": "b"}, "ports": [{"port": 80, "targetPort": 8080}]},
    },
    f"{NS}/endpoints": {
        "metadata": {"name": "tc"},
        "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}],
    },
    f"{NS}/configmaps": {"metadata": {"name": "tc", "finalizers": ["a/b"]}, "data": {"a": "b"}},
    f"{NS}/secrets": {"metadata": {"name": "tc"}, "stringData": {"a": "b"}},
    "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings": {
        "metadata": {"name": "tc"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
        "subjects": [{"kind": "User", "name": "u"}],
    },
    "/apis/policy/v1/namespaces/default/poddisruptionbudgets": {
        "metadata": {"name": "tc"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"a": "b"}}},
    },
    "/api/v1/nodes": {
        "metadata": {"name": "tc"},
        "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.9"}]},
    },
}
WRONG_VALUES: st.SearchStrategy[Any] = st.sampled_from(
    ["x", 7, -1, 1.5, True, None, [], ["x"], [1], {}, {"a": 1}, [{}], [None], 2**70]
)
WRITE_KINDS = [
    ("POST", "", "application/json"),
    ("PUT", "/{name}", "application/json"),
    ("PATCH", "/{name}", MERGE),
    ("PATCH", "/{name}", STRATEGIC),
    ("PATCH", "/{name}", APPLY),
    ("PUT", "/{name}/status", "application/json"),
    ("PATCH", "/{name}/status", MERGE),
]


@pytest.fixture(scope="module")
def seeded(admin: Raw) -> None:
    for collection, body in SEEDS.items():
        status, _, data = admin.request("POST", collection, body)
        assert status == 201, (collection, data[:300])


@st.composite
def confused_writes(draw: st.DrawFn) -> tuple[str, str, str, Any]:
    collection = draw(st.sampled_from(sorted(SEEDS)))
    seed = SEEDS[collection]
    path = draw(st.sampled_from(list(json_paths(seed))))
    body = replaced_at(seed, path, draw(WRONG_VALUES))
    method, suffix, ctype = draw(st.sampled_from(WRITE_KINDS))
    if suffix.endswith("/status") and collection.endswith(
        ("configmaps", "secrets", "endpoints", "rolebindings", "controllerrevisions")
    ):
        suffix = suffix.removesuffix("/status")
    url = collection + suffix.format(name="tc") + "?fieldManager=door"
    return method, url, ctype, body


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(write=confused_writes())
def test_type_confused_writes_are_never_500(
    server: ServerProcess, admin: Raw, seeded: None, write: tuple[str, str, str, Any]
) -> None:
    method, url, ctype, body = write
    status, _, data = admin.request(method, url, json.dumps(body), content_type=ctype)
    assert status != 500, (method, url, body, data[:300])
    assert status < 500, data[:300]
    if status >= 400:
        assert _status(data)["code"] == status


def test_server_survived_the_door_attacks(server: ServerProcess, admin: Raw) -> None:
    _alive(server, admin)
