"""``dryRun=All`` on every write the dispatch table serves: the answer is what the write would
produce, and nothing changes — no key written or deleted in the datastore (so no object, no
ClusterIP/NodePort allocation, no default ServiceAccount, no namespace teardown), the stored
object and its resourceVersion as they were. Any other ``dryRun`` value is refused (422, the
options object is invalid), never taken for a real write. kubectl 1.32's ``--dry-run=server``
on scale, set image, create and delete."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client as k8s

from berth.api.resources import TABLE
from berth.apiserver.handlers import ENDPOINTS
from berth.apiserver.kinds import BUILTIN
from tests.harness.apiserver import ServerHandle

from .helpers import Kubectl, Raw, apps_api, core_api, deployment, pod

pytestmark = pytest.mark.timeout(180)

NS = "dry"
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
MERGE = "application/merge-patch+json"


class StoreWrites:
    """Every key the server writes or deletes, recorded by wrapping its store's write methods
    (the server's own Lease renewals and ``default/kubernetes`` Endpoints are left out)."""

    IGNORED = ("/registry/coordination.k8s.io/leases/", "/registry/core/endpoints/default/")

    def __init__(self, srv: ServerHandle) -> None:
        self.keys: list[str] = []
        self._lock = threading.Lock()
        store = srv.server.store
        for method in ("create", "update", "delete"):
            setattr(store, method, self._recording(getattr(store, method)))

    def _recording(self, write: Callable[..., Any]) -> Callable[..., Any]:
        async def recorded(key: str, *args: Any, **kwargs: Any) -> Any:
            if not key.startswith(self.IGNORED):
                with self._lock:
                    self.keys.append(key)
            return await write(key, *args, **kwargs)

        return recorded

    def take(self) -> list[str]:
        with self._lock:
            keys, self.keys = self.keys, []
        return keys


@pytest.fixture(scope="module")
def writes(server: ServerHandle) -> StoreWrites:
    return StoreWrites(server)


@pytest.fixture(scope="module")
def world(raw: Raw, api: k8s.ApiClient) -> Raw:
    """The objects the dry runs aim at, really created once."""
    core, apps = core_api(api), apps_api(api)
    core.create_namespace({"metadata": {"name": NS}})
    core.create_namespace({"metadata": {"name": "dry-doomed"}})
    core.create_namespaced_pod(NS, pod("idle"))
    core.create_namespaced_pod(NS, pod("placed", node_name="n1"))
    apps.create_namespaced_deployment(NS, deployment("web"))
    for name in ("one", "two"):
        core.create_namespaced_config_map(
            NS, {"metadata": {"name": name, "labels": {"set": "pair"}}, "data": {"k": name}}
        )
    core.create_namespaced_config_map(
        NS, {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    )
    core.create_namespaced_service(
        NS, {"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}}
    )
    core.create_namespaced_service_account(NS, {"metadata": {"name": "robot"}})
    return raw


DEBUGGER = {"name": "debugger", "image": "busybox:1.36", "command": ["sh"], "stdin": True}
"""An ephemeral container as ``kubectl debug`` adds one."""


@dataclass(frozen=True)
class Case:
    """One dry-run request, the object whose stored form must not change, and what the
    answer must say."""

    pair: tuple[str, str]  # (verb, subresource) of the dispatch table
    method: str
    path: str
    body: Any
    code: int
    watched: str  # path of an object to read before and after ("" = none)
    check: Callable[[Any], None]
    content_type: str = "application/json"


def _eq(*path_and_value: Any) -> Callable[[Any], None]:
    *path, value = path_and_value

    def check(body: Any) -> None:
        at = body
        for p in path:
            at = at[p]
        assert at == value, (path, at, value)

    return check


def _service_answer(body: Any) -> None:
    spec = body["spec"]
    assert spec["clusterIP"]
    assert spec["clusterIPs"] == [spec["clusterIP"]]
    assert 30000 <= spec["ports"][0]["nodePort"] <= 32767
    assert "resourceVersion" not in body["metadata"] or not body["metadata"]["resourceVersion"]


def _terminating(body: Any) -> None:
    assert body["status"]["phase"] == "Terminating"
    assert body["metadata"]["deletionTimestamp"]


def _graceful(body: Any) -> None:
    assert body["metadata"]["deletionTimestamp"]
    assert body["metadata"]["deletionGracePeriodSeconds"] == 30


def _status_success(body: Any) -> None:
    assert (body["kind"], body["status"]) == ("Status", "Success")


def _token(body: Any) -> None:
    assert body["kind"] == "TokenRequest"
    assert body["status"]["token"].count(".") == 2


def _items(*names: str) -> Callable[[Any], None]:
    def check(body: Any) -> None:
        assert sorted(i["metadata"]["name"] for i in body["items"]) == sorted(names)

    return check


API = f"/api/v1/namespaces/{NS}"
APPS = f"/apis/apps/v1/namespaces/{NS}"

CASES = [
    Case(
        ("create", ""),
        "POST",
        f"{API}/services",
        {
            "metadata": {"name": "never"},
            "spec": {"type": "NodePort", "ports": [{"port": 80}]},
        },
        201,
        f"{API}/services/never",
        _service_answer,
    ),
    Case(
        ("create", ""),
        "POST",
        "/api/v1/namespaces",
        {"metadata": {"name": "dry-never"}},
        201,
        "/api/v1/namespaces/dry-never",
        _eq("status", "phase", "Active"),
    ),
    Case(
        ("update", ""),
        "PUT",
        f"{API}/configmaps/one",
        {"metadata": {"name": "one", "labels": {"set": "pair"}}, "data": {"k": "changed"}},
        200,
        f"{API}/configmaps/one",
        _eq("data", "k", "changed"),
    ),
    Case(
        ("update", ""),  # an upsert kind: the PUT of a missing object creates it
        "PUT",
        f"{API}/endpoints/ghost",
        {"metadata": {"name": "ghost"}},
        201,
        f"{API}/endpoints/ghost",
        _eq("metadata", "name", "ghost"),
    ),
    Case(
        ("patch", ""),
        "PATCH",
        f"{APPS}/deployments/web",
        {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}},
        200,
        f"{APPS}/deployments/web",
        _eq("spec", "template", "spec", "containers", 0, "image", "nginx:2"),
        content_type="application/strategic-merge-patch+json",
    ),
    Case(
        ("delete", ""),
        "DELETE",
        f"{API}/configmaps/two",
        None,
        200,
        f"{API}/configmaps/two",
        _status_success,
    ),
    Case(
        ("delete", ""),  # a pod on a node terminates gracefully: the answer is marked
        "DELETE",
        f"{API}/pods/placed",
        None,
        200,
        f"{API}/pods/placed",
        _graceful,
    ),
    Case(
        ("delete", ""),  # a finalizer holds it: the answer is marked for deletion
        "DELETE",
        f"{API}/configmaps/held",
        {"propagationPolicy": "Foreground"},
        200,
        f"{API}/configmaps/held",
        _eq("metadata", "finalizers", ["example.com/hold", "foregroundDeletion"]),
    ),
    Case(
        ("delete", ""),  # no teardown of the namespace's content begins
        "DELETE",
        "/api/v1/namespaces/dry-doomed",
        None,
        200,
        "/api/v1/namespaces/dry-doomed",
        _terminating,
    ),
    Case(
        ("delete", ""),  # a Service's delete would free its ClusterIP
        "DELETE",
        f"{API}/services/svc",
        None,
        200,
        f"{API}/services/svc",
        _eq("metadata", "name", "svc"),
    ),
    Case(
        ("deletecollection", ""),
        "DELETE",
        f"{API}/configmaps?labelSelector=set%3Dpair",
        None,
        200,
        f"{API}/configmaps/one",
        _items("one", "two"),
    ),
    Case(
        ("update", "status"),
        "PUT",
        f"{API}/pods/idle/status",
        {"metadata": {"name": "idle"}, "status": {"phase": "Running", "podIP": "10.244.0.9"}},
        200,
        f"{API}/pods/idle",
        _eq("status", "phase", "Running"),
    ),
    Case(
        ("patch", "status"),
        "PATCH",
        f"{APPS}/deployments/web/status",
        {"status": {"replicas": 9}},
        200,
        f"{APPS}/deployments/web",
        _eq("status", "replicas", 9),
        content_type=MERGE,
    ),
    Case(
        ("patch", "ephemeralcontainers"),  # kubectl debug's write
        "PATCH",
        f"{API}/pods/idle/ephemeralcontainers",
        {"spec": {"ephemeralContainers": [DEBUGGER]}},
        200,
        f"{API}/pods/idle",
        _eq("spec", "ephemeralContainers", 0, "name", "debugger"),
        content_type=MERGE,
    ),
    Case(
        ("update", "ephemeralcontainers"),
        "PUT",
        f"{API}/pods/idle/ephemeralcontainers",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "idle", "namespace": NS},
            "spec": {**pod("idle")["spec"], "ephemeralContainers": [DEBUGGER]},
        },
        200,
        f"{API}/pods/idle",
        _eq("spec", "ephemeralContainers", 0, "name", "debugger"),
    ),
    Case(
        ("update", "scale"),
        "PUT",
        f"{APPS}/deployments/web/scale",
        {"metadata": {"name": "web", "namespace": NS}, "spec": {"replicas": 5}},
        200,
        f"{APPS}/deployments/web",
        _eq("spec", "replicas", 5),
    ),
    Case(
        ("patch", "scale"),
        "PATCH",
        f"{APPS}/deployments/web/scale",
        {"spec": {"replicas": 7}},
        200,
        f"{APPS}/deployments/web",
        _eq("spec", "replicas", 7),
        content_type=MERGE,
    ),
    Case(
        ("create", "binding"),
        "POST",
        f"{API}/pods/idle/binding",
        {"metadata": {"name": "idle"}, "target": {"kind": "Node", "name": "n1"}},
        201,
        f"{API}/pods/idle",
        _eq("status", "Success"),
    ),
    Case(
        ("create", "eviction"),
        "POST",
        f"{API}/pods/idle/eviction",
        {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "idle"}},
        201,
        f"{API}/pods/idle",
        _eq("status", "Success"),
    ),
    Case(
        ("update", "finalize"),
        "PUT",
        f"/api/v1/namespaces/{NS}/finalize",
        {"metadata": {"name": NS}, "spec": {"finalizers": []}},
        200,
        f"/api/v1/namespaces/{NS}",
        _eq("spec", "finalizers", []),
    ),
    Case(
        ("create", "token"),  # kube-apiserver issues the token on a dry run too
        "POST",
        f"{API}/serviceaccounts/robot/token",
        {"spec": {"audiences": ["api"]}},
        201,
        f"{API}/serviceaccounts/robot",
        _token,
    ),
]


def _served_write_pairs() -> set[tuple[str, str]]:
    """Every (verb, subresource) a built-in resource serves that may write. Connect
    endpoints (exec, attach, portforward, proxy) are left out: upstream's connect options
    carry no dryRun and they write nothing to the store (authorized with the request's verb,
    they are not writes)."""
    pairs: set[tuple[str, str]] = set()
    for rd in TABLE.resources:
        st = next((s for s in BUILTIN if (s.group, s.kind) == (rd.group, rd.kind)), None)
        own = dict(st.endpoints) if st is not None else {}
        for (verb, sub), endpoint in [*ENDPOINTS.items(), *own.items()]:
            if endpoint.connect:
                continue
            if verb in WRITE_VERBS and (not sub or sub in rd.subresources):
                pairs.add((verb, sub))
    return pairs


def test_every_write_of_the_dispatch_table_has_a_dry_run_case() -> None:
    assert _served_write_pairs() == {c.pair for c in CASES}


def _read(raw: Raw, path: str) -> tuple[int, Any]:
    return raw.json("GET", path) if path else (0, None)


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c.method}-{c.path.rsplit('/', 2)[-2]}-{c.pair}" for c in CASES]
)
def test_dry_run_answers_and_changes_nothing(
    case: Case, world: Raw, writes: StoreWrites, server: ServerHandle
) -> None:
    raw = world
    before = _read(raw, case.watched)
    writes.take()
    sep = "&" if "?" in case.path else "?"
    code, _, data = raw.request(
        case.method, f"{case.path}{sep}dryRun=All", case.body, content_type=case.content_type
    )
    body = json.loads(data)
    assert code == case.code, body
    case.check(body)
    assert writes.take() == []
    assert _read(raw, case.watched) == before


def test_a_dry_run_in_the_delete_options_body_is_honoured(world: Raw, writes: StoreWrites) -> None:
    before = world.json("GET", f"{API}/configmaps/one")
    writes.take()
    code, body = world.json("DELETE", f"{API}/configmaps/one", {"dryRun": ["All"]})
    assert (code, body["status"]) == (200, "Success")
    assert writes.take() == []
    assert world.json("GET", f"{API}/configmaps/one") == before


def test_an_eviction_carrying_its_own_dry_run_is_honoured(world: Raw, writes: StoreWrites) -> None:
    before = world.json("GET", f"{API}/pods/idle")
    writes.take()
    eviction = {"metadata": {"name": "idle"}, "deleteOptions": {"dryRun": ["All"]}}
    code, _ = world.json("POST", f"{API}/pods/idle/eviction", eviction)
    assert code == 201
    assert writes.take() == []
    assert world.json("GET", f"{API}/pods/idle") == before


@pytest.mark.parametrize(
    ("method", "path", "body", "query", "options"),
    [
        ("POST", f"{API}/configmaps", {"metadata": {"name": "bad"}}, "dryRun=all", "Create"),
        ("POST", f"{API}/configmaps", {"metadata": {"name": "bad"}}, "dryRun=", "Create"),
        (
            "POST",
            f"{API}/configmaps",
            {"metadata": {"name": "bad"}},
            "dryRun=All&dryRun=None",
            "Create",
        ),
        ("PUT", f"{API}/configmaps/one", {"metadata": {"name": "one"}}, "dryRun=true", "Update"),
        ("PATCH", f"{API}/configmaps/one", {"data": {"k": "x"}}, "dryRun=1", "Patch"),
        ("DELETE", f"{API}/configmaps/one", None, "dryRun=yes", "Delete"),
        ("DELETE", f"{API}/configmaps", None, "dryRun=yes", "Delete"),
        ("DELETE", f"{API}/configmaps/one", {"dryRun": ["all"]}, "", "Delete"),
        ("PUT", f"{APPS}/deployments/web/scale", {"spec": {"replicas": 1}}, "dryRun=x", "Update"),
        ("POST", f"{API}/pods/idle/eviction", {"metadata": {"name": "idle"}}, "dryRun=x", "Create"),
    ],
)
def test_a_dry_run_value_other_than_all_is_refused(
    world: Raw,
    writes: StoreWrites,
    method: str,
    path: str,
    body: Any,
    query: str,
    options: str,
) -> None:
    writes.take()
    content_type = MERGE if method == "PATCH" else "application/json"
    url = f"{path}?{query}" if query else path
    code, _, data = world.request(method, url, body, content_type=content_type)
    status = json.loads(data)
    assert code == 422, status
    assert status["reason"] == "Invalid"
    assert status["message"].startswith(f'{options}Options.meta.k8s.io "" is invalid: dryRun:')
    assert status["details"]["kind"] == f"{options}Options"
    assert status["details"]["causes"][0]["field"] == "dryRun"
    assert writes.take() == []


def test_a_dry_run_that_is_not_a_list_is_a_bad_request(world: Raw, writes: StoreWrites) -> None:
    writes.take()
    code, status = world.json("DELETE", f"{API}/configmaps/one", {"dryRun": "All"})
    assert (code, status["reason"]) == (400, "BadRequest")
    code, status = world.json("DELETE", f"{API}/configmaps/one", {"dryRun": ["x"] * 5000})
    assert code == 422
    assert len(status["message"]) < 300
    assert writes.take() == []


def test_reads_ignore_dry_run(world: Raw) -> None:
    code, body = world.json("GET", f"{API}/configmaps/one?dryRun=whatever")
    assert (code, body["metadata"]["name"]) == (200, "one")


# -- kubectl 1.32 --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kubectl_version() -> str:
    return "1.32"  # the server's answers are under test here, not the client's


def _deployment(raw: Raw) -> Any:
    return raw.json("GET", f"{APPS}/deployments/web")[1]


def test_kubectl_scale_dry_run_server(kubectl: Kubectl, world: Raw, writes: StoreWrites) -> None:
    before = _deployment(world)
    writes.take()
    out = kubectl("scale", "-n", NS, "deployment/web", "--replicas=6", "--dry-run=server")
    assert "deployment.apps/web scaled (server dry run)" in out
    assert writes.take() == []
    assert _deployment(world) == before


def test_kubectl_set_image_dry_run_server(
    kubectl: Kubectl, world: Raw, writes: StoreWrites
) -> None:
    before = _deployment(world)
    writes.take()
    out = kubectl(
        "set", "image", "-n", NS, "deployment/web", "web=nginx:3", "--dry-run=server", "-o", "json"
    )
    shown = json.loads(out)
    assert shown["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:3"
    assert writes.take() == []
    assert _deployment(world) == before


def test_kubectl_create_dry_run_server(kubectl: Kubectl, world: Raw, writes: StoreWrites) -> None:
    writes.take()
    out = kubectl(
        "create", "service", "nodeport", "edge", "-n", NS, "--tcp=80:8080", "--dry-run=server",
        "-o", "json",
    )  # fmt: skip
    shown = json.loads(out)
    assert shown["spec"]["clusterIP"]
    assert shown["spec"]["ports"][0]["nodePort"]
    assert writes.take() == []
    assert world.json("GET", f"{API}/services/edge")[0] == 404


def test_kubectl_delete_dry_run_server(kubectl: Kubectl, world: Raw, writes: StoreWrites) -> None:
    before = _deployment(world)
    writes.take()
    out = kubectl("delete", "-n", NS, "deployment/web", "--dry-run=server")
    assert 'deployment.apps "web" deleted (server dry run)' in out
    assert writes.take() == []
    assert _deployment(world) == before
