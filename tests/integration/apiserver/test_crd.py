"""CustomResourceDefinitions with unmodified kubectl (1.32 and 1.20) and the Python client:
dynamic serving and discovery, printer columns, validation errors, the status and scale
subresources, several versions, watch, and deletion of a CRD's objects."""

from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from tests.harness.apiserver import ServerHandle

from .helpers import Kubectl, Raw, Watch, table

pytestmark = pytest.mark.timeout(180)

CRD_BASE = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def short_name(group: str) -> str:
    return "wdg" + group.split(".", 1)[0]


def widget_crd(group: str, *, scope: str = "Namespaced") -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "image": {"type": "string", "pattern": "^[a-z0-9./:-]+$"},
                    "replicas": {"type": "integer", "minimum": 0, "default": 1},
                    "size": {"type": "string", "enum": ["small", "large"]},
                    "selector": {"type": "string"},
                },
            },
            "status": {
                "type": "object",
                "properties": {
                    "replicas": {"type": "integer"},
                    "phase": {"type": "string"},
                    "selector": {"type": "string"},
                },
            },
        },
    }
    version = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
        "subresources": {
            "status": {},
            "scale": {
                "specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.replicas",
                "labelSelectorPath": ".status.selector",
            },
        },
        "additionalPrinterColumns": [
            {"name": "Image", "type": "string", "jsonPath": ".spec.image"},
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    }
    beta = copy.deepcopy(version)
    beta.update(name="v1beta1", storage=False)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                # one per group: both kubectl runs share the server, and a short name
                # several CRDs hold resolves to any of them
                "shortNames": [short_name(group)],
                "categories": ["all"],
            },
            "versions": [version, beta],
        },
    }


def widget(name: str, group: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"image": "nginx:1.25", **spec},
    }


@pytest.fixture(scope="module")
def suffix(kubectl: Kubectl) -> str:
    return "v" + kubectl.version.replace(".", "")


@pytest.fixture(scope="module")
def ns(suffix: str, raw: Raw) -> str:
    status, _ = raw.json("POST", "/api/v1/namespaces", {"metadata": {"name": f"crd-{suffix}"}})
    assert status == 201
    return f"crd-{suffix}"


def _discovered(raw: Raw, group: str) -> bool:
    status, doc = raw.json("GET", f"/apis/{group}/v1")
    return status == 200 and any(r["name"] == "widgets" for r in doc["resources"])


@pytest.fixture(scope="module")
def group(suffix: str, raw: Raw, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A CRD created with kubectl; served (in discovery) within one second."""
    group = f"{suffix}.example.com"
    path = tmp_path_factory.mktemp("crd") / "crd.yaml"
    path.write_text(yaml.safe_dump(widget_crd(group)))
    out = kubectl("apply", "-f", str(path))
    created = time.monotonic()
    assert out.strip() == f"customresourcedefinition.apiextensions.k8s.io/widgets.{group} created"
    while not _discovered(raw, group):
        assert time.monotonic() - created < 1.0, "the CRD was not in discovery within 1 s"
        time.sleep(0.02)
    print(f"discovery of a new CRD: {time.monotonic() - created:.3f} s")
    return group


def test_crd_status_conditions_and_discovery(kubectl: Kubectl, group: str, raw: Raw) -> None:
    status, crd = raw.json("GET", f"{CRD_BASE}/widgets.{group}")
    assert status == 200
    conds = {c["type"]: c for c in crd["status"]["conditions"]}
    assert conds["NamesAccepted"]["status"] == "True"
    assert conds["NamesAccepted"]["reason"] == "NoConflicts"
    assert conds["Established"]["status"] == "True"
    assert crd["status"]["acceptedNames"]["shortNames"] == [short_name(group)]
    assert crd["status"]["storedVersions"] == ["v1"]
    assert "customresourcecleanup.apiextensions.k8s.io" in crd["metadata"]["finalizers"]
    rows = table(kubectl("api-resources", "--api-group", group))
    assert rows[1][0] == "widgets"
    assert short_name(group) in rows[1]
    assert rows[1][-1] == "Widget"
    assert f"{group}/v1beta1" in kubectl("api-versions")
    # the CRD itself in kubectl's table
    assert kubectl("get", "crd", f"widgets.{group}", "-o", "name").strip() == (
        f"customresourcedefinition.apiextensions.k8s.io/widgets.{group}"
    )


def test_get_prints_columns_short_names_and_categories(
    kubectl: Kubectl, group: str, ns: str, tmp_path: Path
) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(widget("w1", group, replicas=2)))
    assert kubectl("apply", "-n", ns, "-f", str(path)).strip() == f"widget.{group}/w1 created"
    rows = table(kubectl("get", short_name(group), "-n", ns))
    assert rows[0] == ["NAME", "IMAGE", "REPLICAS", "PHASE", "AGE"]
    assert rows[1][:3] == ["w1", "nginx:1.25", "2"]
    assert rows[1][-1].endswith("s")
    # v1beta1 serves the same object under its own apiVersion (None conversion)
    got = json.loads(kubectl("get", f"widgets.v1beta1.{group}", "w1", "-n", ns, "-o", "json"))
    assert got["apiVersion"] == f"{group}/v1beta1"
    assert got["spec"]["replicas"] == 2
    # `kubectl get all` includes the category
    assert f"widget.{group}/w1" in kubectl("get", "all", "-n", ns)


def test_explain_reads_the_crd_schema(kubectl: Kubectl, group: str) -> None:
    out = kubectl("explain", "widgets.spec.replicas", f"--api-version={group}/v1")
    assert "KIND:" in out
    assert "Widget" in out
    assert "replicas" in out
    assert "<integer>" in out


def test_validation_errors_name_the_field(
    kubectl: Kubectl, group: str, ns: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.yaml"
    bad = widget("bad", group, replicas="three", size="medium")
    path.write_text(yaml.safe_dump(bad))
    server_side: tuple[str, ...] = ()
    if kubectl.version == "1.20":
        # kubectl 1.20 validates against the CRD's schema in /openapi/v2 before sending
        r = kubectl.run("apply", "-n", ns, "-f", str(path))
        assert r.returncode != 0
        assert "invalid type for com.example.v120.v1.Widget.spec.replicas" in r.stderr, r.stderr
        server_side = ("--validate=false",)
    r = kubectl.run("apply", *server_side, "-n", ns, "-f", str(path))
    assert r.returncode != 0
    assert 'The Widget "bad" is invalid' in r.stderr
    assert (
        'spec.replicas: Invalid value: "string": spec.replicas in body must be of type '
        'integer: "string"'
    ) in r.stderr
    assert 'spec.size: Unsupported value: "medium": supported values: "small", "large"' in r.stderr
    missing = widget("bad2", group)
    del missing["spec"]["image"]
    path.write_text(yaml.safe_dump(missing))
    r = kubectl.run("create", *server_side, "-n", ns, "-f", str(path))
    assert "spec.image: Required value" in r.stderr


def test_server_side_apply(kubectl: Kubectl, group: str, ns: str, tmp_path: Path) -> None:
    path = tmp_path / "ssa.yaml"
    path.write_text(yaml.safe_dump(widget("ssa", group, replicas=2)))
    out = kubectl("apply", "--server-side", "-n", ns, "-f", str(path))
    assert out.strip() == f"widget.{group}/ssa serverside-applied"
    path.write_text(yaml.safe_dump(widget("ssa", group, replicas=4)))
    r = kubectl.run("apply", "--server-side", "--field-manager=other", "-n", ns, "-f", str(path))
    assert r.returncode != 0
    assert "conflict" in r.stderr.lower()
    assert ".spec.replicas" in r.stderr
    out = kubectl(
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-n",
        ns,
        "-f",
        str(path),
    )
    assert "serverside-applied" in out
    got = json.loads(kubectl("get", f"widgets.{group}", "ssa", "-n", ns, "-o", "json"))
    assert got["spec"]["replicas"] == 4


def test_defaults_and_pruning(group: str, ns: str, raw: Raw) -> None:
    body = widget("pruned", group)
    body["spec"]["unknown"] = "dropped"
    body["extra"] = 1
    status, obj = raw.json("POST", f"/apis/{group}/v1/namespaces/{ns}/widgets", body)
    assert status == 201, obj
    assert obj["spec"] == {"image": "nginx:1.25", "replicas": 1}
    assert "extra" not in obj
    assert obj["metadata"]["generation"] == 1
    # fieldValidation: Warn (the default) names the dropped fields, Strict refuses them
    body["metadata"]["name"] = "warned"
    code, headers, _ = raw.request("POST", f"/apis/{group}/v1/namespaces/{ns}/widgets", body)
    assert code == 201
    # (one Warning header per field; this client keeps the last)
    assert headers["warning"] == '299 - "unknown field \\"spec.unknown\\""', headers
    body["metadata"]["name"] = "strict"
    status, err = raw.json(
        "POST", f"/apis/{group}/v1/namespaces/{ns}/widgets?fieldValidation=Strict", body
    )
    assert status == 400
    assert err["message"] == (
        'Widget in version "v1" cannot be handled as a Widget: strict decoding error: unknown'
        ' field "extra", unknown field "spec.unknown"'
    )
    status, err = raw.json(
        "POST", f"/apis/{group}/v1/namespaces/{ns}/widgets", widget("x", group, replicas=-1)
    )
    assert status == 422
    assert err["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": (
                "Invalid value: -1: spec.replicas in body should be greater than or equal to 0"
            ),
            "field": "spec.replicas",
        },
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: -1: should be a non-negative integer",
            "field": ".spec.replicas",
        },
    ]


def test_strategic_merge_patch_is_refused(group: str, ns: str, raw: Raw) -> None:
    base = f"/apis/{group}/v1/namespaces/{ns}/widgets"
    status, _ = raw.json("POST", base, widget("smp", group))
    assert status == 201
    status, err = raw.json(
        "PATCH",
        f"{base}/smp",
        {"spec": {"replicas": 2}},
        content_type="application/strategic-merge-patch+json",
    )
    assert (status, err["reason"]) == (415, "UnsupportedMediaType")
    status, obj = raw.json(
        "PATCH",
        f"{base}/smp",
        {"spec": {"replicas": 2}},
        content_type="application/merge-patch+json",
    )
    assert (status, obj["spec"]["replicas"]) == (200, 2)


def test_status_subresource(group: str, ns: str, raw: Raw) -> None:
    base = f"/apis/{group}/v1/namespaces/{ns}/widgets"
    body = widget("st", group)
    body["status"] = {"phase": "Ignored"}
    status, obj = raw.json("POST", base, body)
    assert status == 201
    assert "status" not in obj  # a create never writes status
    # status writes change only status; generation stays
    status, obj = raw.json(
        "PATCH",
        f"{base}/st/status",
        {"status": {"phase": "Running", "replicas": 1}, "spec": {"image": "changed"}},
        content_type="application/merge-patch+json",
    )
    assert status == 200, obj
    assert obj["status"] == {"phase": "Running", "replicas": 1}
    assert obj["spec"]["image"] == "nginx:1.25"
    assert obj["metadata"]["generation"] == 1
    # main-resource writes keep status; a spec change bumps generation
    status, obj = raw.json(
        "PATCH",
        f"{base}/st",
        {"status": {"phase": "Hacked"}, "spec": {"image": "busybox"}},
        content_type="application/merge-patch+json",
    )
    assert status == 200
    assert obj["status"]["phase"] == "Running"
    assert obj["metadata"]["generation"] == 2
    status, err = raw.json(
        "PATCH",
        f"{base}/st/status",
        {"status": {"replicas": "many"}},
        content_type="application/merge-patch+json",
    )
    assert status == 422
    assert err["details"]["causes"][0]["field"] == "status.replicas"


def test_scale_subresource(kubectl: Kubectl, group: str, ns: str, raw: Raw) -> None:
    base = f"/apis/{group}/v1/namespaces/{ns}/widgets"
    status, _ = raw.json("POST", base, widget("sc", group, replicas=1))
    assert status == 201
    raw.json(
        "PATCH",
        f"{base}/sc/status",
        {"status": {"replicas": 1, "selector": "app=sc"}},
        content_type="application/merge-patch+json",
    )
    out = kubectl("scale", "-n", ns, f"widgets.{group}/sc", "--replicas=3")
    assert out.strip() == f"widget.{group}/sc scaled"
    status, scale = raw.json("GET", f"{base}/sc/scale")
    assert status == 200
    assert scale["kind"] == "Scale"
    assert scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 3}
    assert scale["status"] == {"replicas": 1, "selector": "app=sc"}
    status, obj = raw.json("GET", f"{base}/sc")
    assert obj["spec"]["replicas"] == 3
    assert obj["metadata"]["generation"] == 2
    # a dry run answers with the scale it would set, and sets nothing
    status, scale = raw.json(
        "PATCH",
        f"{base}/sc/scale?dryRun=All",
        {"spec": {"replicas": 5}},
        content_type="application/merge-patch+json",
    )
    assert (status, scale["spec"]["replicas"]) == (200, 5)
    assert raw.json("GET", f"{base}/sc")[1]["spec"]["replicas"] == 3
    status, err = raw.json("PUT", f"{base}/sc/scale", {**scale, "spec": {"replicas": -1}})
    assert status == 422
    assert err["details"]["causes"][0]["field"] == "spec.replicas"


def test_watch_sees_custom_objects(group: str, ns: str, api: k8s.ApiClient) -> None:
    custom: Any = k8s.CustomObjectsApi(api)
    events: list[tuple[str, str]] = []
    # The watch starts at the list's resourceVersion: it sees what happens after the list
    # whenever its request is actually sent. (It was 'sleep 0.5 s, then create and delete':
    # a watch that opened later, on a loaded machine, saw neither.)
    listed = custom.list_namespaced_custom_object(group, "v1", ns, "widgets")
    version = listed["metadata"]["resourceVersion"]

    def reader() -> None:
        w = Watch()
        for ev in w.stream(
            custom.list_namespaced_custom_object, group, "v1", ns, "widgets",
            resource_version=version, timeout_seconds=30,
        ):  # fmt: skip
            events.append((ev["type"], ev["object"]["metadata"]["name"]))
            if ev["object"]["metadata"]["name"] == "watched" and ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=reader)
    t.start()
    custom.create_namespaced_custom_object(group, "v1", ns, "widgets", widget("watched", group))
    custom.delete_namespaced_custom_object(group, "v1", ns, "widgets", "watched")
    t.join(45)
    assert ("ADDED", "watched") in events
    assert ("DELETED", "watched") in events


def test_a_watch_through_another_version_converts(group: str, ns: str, raw: Raw) -> None:
    v1 = f"/apis/{group}/v1/namespaces/{ns}/widgets"
    status, listed = raw.json("GET", v1)
    rv = listed["metadata"]["resourceVersion"]
    status, _ = raw.json("POST", v1, widget("converted", group))
    assert status == 201
    code, _, body = raw.request(
        "GET",
        f"/apis/{group}/v1beta1/namespaces/{ns}/widgets?watch=true&resourceVersion={rv}"
        "&timeoutSeconds=1",
    )
    assert code == 200
    events = [json.loads(line) for line in body.splitlines()]
    [added] = [e for e in events if e["object"]["metadata"]["name"] == "converted"]
    assert added["type"] == "ADDED"
    assert added["object"]["apiVersion"] == f"{group}/v1beta1"
    assert added["object"]["spec"]["replicas"] == 1


def test_objects_are_stored_in_the_storage_version(
    group: str, ns: str, raw: Raw, server: ServerHandle
) -> None:
    body = widget("beta", group)
    body["apiVersion"] = f"{group}/v1beta1"
    status, obj = raw.json("POST", f"/apis/{group}/v1beta1/namespaces/{ns}/widgets", body)
    assert (status, obj["apiVersion"]) == (201, f"{group}/v1beta1")

    async def stored() -> dict[str, Any]:
        kv = await server.server.store.get(f"/registry/{group}/widgets/{ns}/beta")
        assert kv is not None
        return server.server.codec.decode(kv)

    assert server.call(stored())["apiVersion"] == f"{group}/v1"
    # written back by a deletion that waits on a finalizer: still in the storage version
    beta = f"/apis/{group}/v1beta1/namespaces/{ns}/widgets/beta"
    status, _ = raw.json(
        "PATCH",
        beta,
        {"metadata": {"finalizers": ["example.com/hold"]}},
        content_type="application/merge-patch+json",
    )
    assert status == 200
    status, obj = raw.json("DELETE", beta)
    assert (status, obj["apiVersion"]) == (200, f"{group}/v1beta1")
    assert obj["metadata"]["deletionTimestamp"]
    assert server.call(stored())["apiVersion"] == f"{group}/v1"
    status, _ = raw.json(
        "PATCH",
        beta,
        [{"op": "remove", "path": "/metadata/finalizers"}],
        content_type="application/json-patch+json",
    )
    assert status == 200
    assert raw.json("GET", beta)[0] == 404


def _conditions_once_named(raw: Raw, name: str) -> dict[str, Any]:
    """The CRD's conditions by type, once its names have been judged (NamesAccepted set).
    Polled: it was a fixed 0.2-0.3 s after the create."""
    deadline = time.monotonic() + 30
    while True:
        _, obj = raw.json("GET", f"{CRD_BASE}/{name}")
        conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
        if "NamesAccepted" in conds:
            return conds
        assert time.monotonic() < deadline, f"{name}: no NamesAccepted condition: {obj}"
        time.sleep(0.05)


def test_cluster_scoped_and_names_conflict(suffix: str, raw: Raw) -> None:
    group = f"cl{suffix}.example.com"
    crd = widget_crd(group, scope="Cluster")
    status, _ = raw.json("POST", CRD_BASE, crd)
    assert status == 201
    deadline = time.monotonic() + 30  # an API server on a loaded machine
    while not _discovered(raw, group):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    status, obj = raw.json("POST", f"/apis/{group}/v1/widgets", widget("c1", group))
    assert status == 201, obj
    assert "namespace" not in obj["metadata"]
    # a second CRD asking for the same kind in the group is created but not served
    clash = widget_crd(group, scope="Cluster")
    clash["metadata"]["name"] = f"gadgets.{group}"
    # (its own listKind: the default, WidgetList, would conflict too, and kube-apiserver
    # reports the last conflict it finds, ListKindConflict)
    clash["spec"]["names"] = {"plural": "gadgets", "kind": "Widget", "listKind": "GadgetList"}
    status, obj = raw.json("POST", CRD_BASE, clash)
    assert status == 201
    conds = _conditions_once_named(raw, f"gadgets.{group}")
    assert conds["NamesAccepted"]["status"] == "False"
    assert conds["NamesAccepted"]["reason"] == "KindConflict"
    assert conds["Established"]["status"] == "False"
    status, _ = raw.json("GET", f"/apis/{group}/v1/gadgets")
    assert status == 404
    # once the CRD holding the kind is gone (with its object), the other one gets it
    status, _ = raw.json("DELETE", f"{CRD_BASE}/widgets.{group}")
    assert status == 200
    deadline = time.monotonic() + 30  # an API server on a loaded machine
    while raw.json("GET", f"/apis/{group}/v1/gadgets")[0] != 200:
        assert time.monotonic() < deadline, "the freed names were not accepted"
        time.sleep(0.05)
    status, obj = raw.json("GET", f"{CRD_BASE}/gadgets.{group}")
    conds = {c["type"]: c for c in obj["status"]["conditions"]}
    assert (conds["NamesAccepted"]["status"], conds["Established"]["status"]) == ("True", "True")
    assert obj["status"]["acceptedNames"]["kind"] == "Widget"


def test_deleting_a_crd_for_a_builtins_names_leaves_the_builtin_alone(
    suffix: str, raw: Raw
) -> None:
    crd = widget_crd("rbac.authorization.k8s.io", scope="Cluster")
    crd["metadata"] = {
        "name": "clusterroles.rbac.authorization.k8s.io",
        "annotations": {"api-approved.kubernetes.io": f"unapproved, test {suffix}"},
    }
    crd["spec"]["names"] = {"plural": "clusterroles", "kind": f"Sneaky{suffix}"}
    status, body = raw.json("POST", CRD_BASE, crd)
    assert status == 201, body
    conds = _conditions_once_named(raw, "clusterroles.rbac.authorization.k8s.io")
    assert conds["NamesAccepted"]["reason"] == "PluralConflict"
    status, _ = raw.json("DELETE", f"{CRD_BASE}/clusterroles.rbac.authorization.k8s.io")
    assert status == 200
    deadline = time.monotonic() + 30  # an API server on a loaded machine
    while raw.json("GET", f"{CRD_BASE}/clusterroles.rbac.authorization.k8s.io")[0] != 404:
        assert time.monotonic() < deadline, "the CRD was not deleted"
        time.sleep(0.05)
    status, roles = raw.json("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles")
    assert status == 200
    assert any(r["metadata"]["name"] == "cluster-admin" for r in roles["items"])


def test_a_terminating_crd_waits_for_its_objects_finalizers(suffix: str, raw: Raw) -> None:
    group = f"fin{suffix}.example.com"
    status, _ = raw.json("POST", CRD_BASE, widget_crd(group))
    assert status == 201
    deadline = time.monotonic() + 30  # an API server on a loaded machine
    while not _discovered(raw, group):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    base = f"/apis/{group}/v1/namespaces/default/widgets"
    held = widget("held", group)
    held["metadata"]["finalizers"] = ["example.com/hold"]
    status, _ = raw.json("POST", base, held)
    assert status == 201
    status, _ = raw.json("DELETE", f"{CRD_BASE}/widgets.{group}")
    assert status == 200

    def deleting() -> bool:
        _, obj = raw.json("GET", f"{base}/held")
        return bool(obj.get("metadata", {}).get("deletionTimestamp"))

    while not deleting():
        assert time.monotonic() < deadline + 5, "the object was not deleted"
        time.sleep(0.05)
    # still served while it terminates, but creates are refused
    status, err = raw.json("POST", base, widget("late", group))
    assert (status, err["reason"]) == (405, "MethodNotAllowed")
    assert err["message"] == "create not allowed while custom resource definition is terminating"
    status, crd = raw.json("GET", f"{CRD_BASE}/widgets.{group}")
    assert status == 200  # the object's finalizer holds the CRD's
    assert crd["metadata"]["finalizers"] == ["customresourcecleanup.apiextensions.k8s.io"]
    conds = {c["type"]: c for c in crd["status"]["conditions"]}
    assert conds["Terminating"]["status"] == "True"
    assert conds["Terminating"]["reason"] == "InstanceDeletionInProgress"
    status, _ = raw.json(
        "PATCH",
        f"{base}/held",
        [{"op": "remove", "path": "/metadata/finalizers"}],
        content_type="application/json-patch+json",
    )
    assert status == 200
    deadline = time.monotonic() + 30  # an API server on a loaded machine
    while raw.json("GET", f"{CRD_BASE}/widgets.{group}")[0] != 404:
        assert time.monotonic() < deadline, "the CRD was not deleted"
        time.sleep(0.05)
    assert not _discovered(raw, group)


def test_invalid_crd_is_refused(suffix: str, raw: Raw) -> None:
    crd = widget_crd(f"bad{suffix}.example.com")
    crd["metadata"]["name"] = "widgets.other.example.com"
    crd["spec"]["versions"][1]["storage"] = True
    status, err = raw.json("POST", CRD_BASE, crd)
    assert status == 422
    fields = {c["field"] for c in err["details"]["causes"]}
    # two storage versions: none is recorded in storedVersions either (as kube-apiserver)
    assert fields == {"metadata.name", "spec.versions", "status.storedVersions"}


def test_deleting_the_crd_deletes_its_objects(
    kubectl: Kubectl, group: str, ns: str, raw: Raw
) -> None:
    base = f"/apis/{group}/v1/namespaces/{ns}/widgets"
    # a widget of this test's own (it does not lean on what earlier tests left)
    status, _ = raw.json("POST", base, widget("doomed", group))
    assert status in (201, 409), status
    status, listed = raw.json("GET", base)
    assert status == 200
    assert "doomed" in [w["metadata"]["name"] for w in listed["items"]]
    kubectl("delete", "crd", f"widgets.{group}", "--timeout=20s")
    status, _ = raw.json("GET", f"{CRD_BASE}/widgets.{group}")
    assert status == 404
    assert not _discovered(raw, group)
    # recreated, the CRD starts empty
    status, _ = raw.json("POST", CRD_BASE, widget_crd(group))
    assert status == 201
    deadline = time.monotonic() + 30  # an API server on a loaded machine
    while not _discovered(raw, group):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    status, listed = raw.json("GET", base)
    assert status == 200
    assert listed["items"] == []
    assert "No resources found" in kubectl.run("get", f"widgets.{group}", "-n", ns).stderr
