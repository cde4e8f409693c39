"""Server-side apply core: field sets, structured merge, ownership, conflicts."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from berth.api.resources import TABLE, ResourceDef
from berth.apiserver.errors import ApiError
from berth.apiserver.fieldmanager import (
    LAST_APPLIED,
    FieldManager,
    Schemas,
    check_field_manager,
    custom_resource_node,
    manager_from_user_agent,
    typed,
)
from berth.apiserver.fieldmanager import fieldpath as fp
from berth.apiserver.fieldmanager.managers import MAX_UPDATE_MANAGERS, decode, encode
from berth.apiserver.fieldmanager.schema import builtin_node


def _rd(group: str, plural: str) -> ResourceDef:
    rd = TABLE.lookup(group, "v1", plural)
    assert rd is not None
    return rd


PODS = _rd("", "pods")
CMS = _rd("", "configmaps")
DEPLOYS = _rd("apps", "deployments")
SERVICES = _rd("", "services")


def cm(data: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    out["metadata"].update(meta)
    if data is not None:
        out["data"] = data
    return out


def entries(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields", [])}


def fields_of(obj: dict[str, Any], manager: str, operation: str = "Apply") -> Any:
    return entries(obj)[(manager, operation)]["fieldsV1"]


# -- field sets ------------------------------------------------------------------------


def test_set_operations_follow_membership_not_shape() -> None:
    a = fp.from_paths([("f:a",), ("f:b", "f:c"), ("f:b", "f:d")])
    b = fp.from_paths([("f:b",), ("f:b", "f:c"), ("f:e",)])
    assert fp.union(a, b) == {"f:a": {}, "f:b": {".": {}, "f:c": {}, "f:d": {}}, "f:e": {}}
    # exact difference: b owning the prefix "b" does not remove b.d
    assert fp.difference(a, b) == {"f:a": {}, "f:b": {"f:d": {}}}
    # recursive difference: everything below a member of b goes
    assert fp.recursive_difference(a, b) == {"f:a": {}}
    assert fp.intersection(a, b) == {"f:b": {"f:c": {}}}
    assert list(fp.members(fp.union(a, b))) == [
        ("f:a",),
        ("f:b",),
        ("f:b", "f:c"),
        ("f:b", "f:d"),
        ("f:e",),
    ]
    assert fp.has(b, ("f:b",))
    assert not fp.has(a, ("f:b",))


def test_path_strings_as_upstream_prints_them() -> None:
    key = fp.map_key({"protocol": "TCP", "containerPort": 80}, ("containerPort", "protocol"))
    assert key == 'k:{"containerPort":80,"protocol":"TCP"}'
    path = ("f:spec", "f:containers", 'k:{"name":"nginx"}', "f:ports", key, "f:hostPort")
    assert fp.path_string(path) == (
        '.spec.containers[name="nginx"].ports[containerPort=80,protocol="TCP"].hostPort'
    )
    assert fp.path_string(("f:metadata", "f:finalizers", fp.value_key("x"))) == (
        '.metadata.finalizers[="x"]'
    )


def test_client_fields_are_validated() -> None:
    assert fp.valid_fields({"f:a": {".": {}, "k:{}": {}}})
    assert not fp.valid_fields({"x:a": {}})
    assert not fp.valid_fields({"f:a": []})
    assert not fp.valid_fields({"f:a": {".": {"f:b": {}}}})
    deep: dict[str, Any] = {}
    for _ in range(150):
        deep = {"f:a": deep}
    assert not fp.valid_fields(deep)


# -- typed walks over built-in schemas --------------------------------------------------


POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p", "labels": {"app": "web"}, "finalizers": ["a/b"]},
    "spec": {
        "containers": [
            {
                "name": "web",
                "image": "nginx",
                "args": ["-v"],
                "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
                "resources": {},
            }
        ],
        "securityContext": {},
        "tolerations": [{"key": "k", "operator": "Exists"}],
    },
}


def test_apply_fieldset_keys_lists_and_skips_struct_members() -> None:
    s = typed.to_fieldset(POD, builtin_node(PODS))  # type: ignore[arg-type]
    container = s["f:spec"]["f:containers"]['k:{"name":"web"}']
    assert "." in container  # list items are members
    # several keys, the omitted protocol taking its default
    assert set(container["f:ports"]) == {
        'k:{"containerPort":80,"protocol":"TCP"}',
        'k:{"containerPort":53,"protocol":"UDP"}',
    }
    assert container["f:args"] == {}  # atomic list: a leaf
    assert s["f:spec"]["f:tolerations"] == {}  # atomic list of structs
    assert "f:resources" not in container  # an empty struct sets nothing
    assert s["f:metadata"]["f:finalizers"] == {'v:"a/b"': {}}  # a set
    assert s["f:metadata"]["f:labels"] == {"f:app": {}}  # map keys, the map itself not
    assert "." not in s["f:spec"]


def test_added_fieldset_marks_new_maps_and_items() -> None:
    c = typed.compare(None, POD, builtin_node(PODS))  # type: ignore[arg-type]
    assert c.added["f:metadata"]["f:labels"] == {".": {}, "f:app": {}}
    assert "." not in c.added["f:spec"]  # a Go struct that always exists
    container = c.added["f:spec"]["f:containers"]['k:{"name":"web"}']
    assert container["f:resources"] == {}  # inside a new item everything is new
    assert c.added["f:spec"]["f:securityContext"] == {}


def test_compare_reports_added_modified_removed() -> None:
    node = builtin_node(PODS)
    assert node is not None
    new = copy.deepcopy(POD)
    new["spec"]["containers"][0]["image"] = "nginx:2"
    new["spec"]["containers"][0]["ports"].pop()
    new["metadata"]["labels"]["tier"] = "front"
    c = typed.compare(POD, new, node)
    web = 'k:{"name":"web"}'
    assert c.modified == {"f:spec": {"f:containers": {web: {"f:image": {}}}}}
    assert c.added == {"f:metadata": {"f:labels": {"f:tier": {}}}}
    udp = 'k:{"containerPort":53,"protocol":"UDP"}'
    assert c.removed["f:spec"]["f:containers"][web]["f:ports"][udp] == {
        ".": {},
        "f:containerPort": {},
        "f:protocol": {},
    }


def test_merge_keeps_live_items_and_merges_keyed_ones() -> None:
    node = builtin_node(PODS)
    assert node is not None
    live = {
        "spec": {
            "containers": [
                {"name": "a", "image": "1", "imagePullPolicy": "Always"},
                {"name": "sidecar", "image": "s"},
                {"name": "b", "image": "2"},
            ]
        }
    }
    config = {"spec": {"containers": [{"name": "b", "image": "3"}, {"name": "a", "image": "1"}]}}
    merged = typed.merge(live, config, node)
    names = [c["name"] for c in merged["spec"]["containers"]]
    # the configuration's order for its items; the live-only item keeps its neighbourhood
    assert names == ["sidecar", "b", "a"]
    a = next(c for c in merged["spec"]["containers"] if c["name"] == "a")
    assert a == {"name": "a", "image": "1", "imagePullPolicy": "Always"}


def test_apply_rejects_items_without_keys_and_duplicates() -> None:
    fm = FieldManager()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    no_key = {**pod, "spec": {"containers": [{"image": "x"}]}}
    with pytest.raises(ApiError) as err:
        fm.apply(PODS, None, no_key, manager="m", force=False)
    assert err.value.code == 400
    assert "omits key field 'name'" in err.value.message
    dup = {**pod, "spec": {"containers": [{"name": "x"}, {"name": "x"}]}}
    with pytest.raises(ApiError) as err:
        fm.apply(PODS, None, dup, manager="m", force=False)
    assert err.value.code == 400
    assert "duplicate entries" in err.value.message


# -- apply semantics ---------------------------------------------------------------------


def test_apply_creates_and_owns_what_it_set() -> None:
    fm = FieldManager()
    obj, changed = fm.apply(CMS, None, cm({"a": "1"}, labels={"x": "y"}), manager="m1", force=False)
    assert changed
    assert obj["data"] == {"a": "1"}
    (entry,) = obj["metadata"]["managedFields"]
    assert entry["manager"] == "m1"
    assert entry["operation"] == "Apply"
    assert entry["apiVersion"] == "v1"
    assert entry["fieldsType"] == "FieldsV1"
    assert entry["fieldsV1"] == {"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:x": {}}}}


def test_conflict_names_fields_and_owner_and_force_takes_over() -> None:
    fm = FieldManager()
    obj, _ = fm.apply(CMS, None, cm({"a": "1", "b": "2"}), manager="m1", force=False)
    with pytest.raises(ApiError) as err:
        fm.apply(CMS, obj, cm({"a": "9", "b": "8"}), manager="m2", force=False)
    e = err.value
    assert e.code == 409
    assert e.reason == "Conflict"
    assert e.message == 'Apply failed with 2 conflicts: conflicts with "m1":\n- .data.a\n- .data.b'
    assert e.details == {
        "causes": [
            {"reason": "FieldManagerConflict", "message": 'conflict with "m1"', "field": ".data.a"},
            {"reason": "FieldManagerConflict", "message": 'conflict with "m1"', "field": ".data.b"},
        ]
    }
    forced, _ = fm.apply(CMS, obj, cm({"a": "9"}), manager="m2", force=True)
    assert forced["data"] == {"a": "9", "b": "2"}
    assert fields_of(forced, "m2") == {"f:data": {"f:a": {}}}
    assert fields_of(forced, "m1") == {"f:data": {"f:b": {}}}


def test_single_conflict_message_and_update_manager_label() -> None:
    fm = FieldManager()
    obj = cm({"a": "1"})
    fm.record_update(CMS, None, obj, manager="kubectl-create")
    when = obj["metadata"]["managedFields"][0]["time"]
    with pytest.raises(ApiError) as err:
        fm.apply(CMS, obj, cm({"a": "2"}), manager="m", force=False)
    assert err.value.message == (
        f'Apply failed with 1 conflict: conflict with "kubectl-create" using v1 at {when}: .data.a'
    )


def test_equal_values_are_shared_not_conflicting() -> None:
    fm = FieldManager()
    obj, _ = fm.apply(CMS, None, cm({"a": "1"}), manager="m1", force=False)
    obj, changed = fm.apply(CMS, obj, cm({"a": "1"}), manager="m2", force=False)
    assert not changed
    assert fields_of(obj, "m1") == fields_of(obj, "m2") == {"f:data": {"f:a": {}}}
    # m1 stops applying a: m2 still owns it, so it stays
    obj, _ = fm.apply(CMS, obj, cm({}), manager="m1", force=False)
    assert obj["data"] == {"a": "1"}
    assert ("m1", "Apply") not in entries(obj)
    # m2 stops too: nobody owns it, it goes (and the emptied map with it)
    obj, _ = fm.apply(CMS, obj, cm({}), manager="m2", force=False)
    assert "data" not in obj


def test_dropped_field_removed_only_when_unowned() -> None:
    fm = FieldManager()
    obj, _ = fm.apply(CMS, None, cm({"a": "1", "b": "2"}), manager="m1", force=False)
    live = copy.deepcopy(obj)
    live["data"]["c"] = "3"  # an updater adds c
    fm.record_update(CMS, obj, live, manager="editor")
    assert fields_of(live, "editor", "Update") == {"f:data": {"f:c": {}}}
    obj, _ = fm.apply(CMS, live, cm({"a": "1"}), manager="m1", force=False)
    assert obj["data"] == {"a": "1", "c": "3"}
    # a field m1 never applied is never removed by m1
    obj, _ = fm.apply(CMS, obj, cm({}), manager="m1", force=False)
    assert obj["data"] == {"c": "3"}


def test_update_takes_ownership_from_an_applier() -> None:
    fm = FieldManager()
    obj, _ = fm.apply(CMS, None, cm({"a": "1", "b": "2"}), manager="m1", force=False)
    new = copy.deepcopy(obj)
    new["data"]["a"] = "changed"
    fm.record_update(CMS, obj, new, manager="kubectl-edit")
    assert fields_of(new, "m1") == {"f:data": {"f:b": {}}}
    assert fields_of(new, "kubectl-edit", "Update") == {"f:data": {"f:a": {}}}
    # the applier re-applying its old value now conflicts with the editor
    with pytest.raises(ApiError) as err:
        fm.apply(CMS, new, cm({"a": "1", "b": "2"}), manager="m1", force=False)
    assert '"kubectl-edit" using v1' in err.value.message


def test_keyed_list_items_owned_per_key_and_pruned() -> None:
    fm = FieldManager()

    def svc(*ports: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "s"},
            "spec": {"ports": list(ports)},
        }

    http = {"name": "http", "port": 80}
    dns = {"name": "dns", "port": 53, "protocol": "UDP"}
    obj, _ = fm.apply(SERVICES, None, svc(http), manager="a", force=False)
    obj, _ = fm.apply(SERVICES, obj, svc(dns), manager="b", force=False)
    assert [p["name"] for p in obj["spec"]["ports"]] == ["http", "dns"]
    # same port number, another protocol: another item (keys port+protocol)
    obj, _ = fm.apply(
        SERVICES, obj, svc(dns, {"port": 53, "protocol": "TCP"}), manager="b", force=False
    )
    assert len(obj["spec"]["ports"]) == 3
    obj, _ = fm.apply(SERVICES, obj, svc(), manager="a", force=False)
    assert [p.get("name") for p in obj["spec"]["ports"]] == ["dns", None]
    renamed = {"name": "dns2", "port": 53, "protocol": "UDP"}
    with pytest.raises(ApiError) as err:
        fm.apply(SERVICES, obj, svc(renamed), manager="a", force=False)
    assert err.value.message == (
        'Apply failed with 1 conflict: conflict with "b": .spec.ports[port=53,protocol="UDP"].name'
    )


def test_set_lists_merge_by_value() -> None:
    fm = FieldManager()
    obj, _ = fm.apply(CMS, None, cm(finalizers=["x/a", "x/b"]), manager="m1", force=False)
    obj, _ = fm.apply(CMS, obj, cm(finalizers=["x/c"]), manager="m2", force=False)
    assert obj["metadata"]["finalizers"] == ["x/a", "x/b", "x/c"]
    obj, _ = fm.apply(CMS, obj, cm(finalizers=["x/b"]), manager="m1", force=False)
    assert obj["metadata"]["finalizers"] == ["x/b", "x/c"]


def test_atomic_lists_and_maps_are_replaced_and_owned_whole() -> None:
    fm = FieldManager()

    def deploy(selector: dict[str, Any], args: list[str]) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {
                "selector": selector,
                "template": {"spec": {"containers": [{"name": "c", "args": args}]}},
            },
        }

    obj, _ = fm.apply(
        DEPLOYS,
        None,
        deploy({"matchLabels": {"a": "1", "b": "2"}}, ["x", "y"]),
        manager="m1",
        force=False,
    )
    f = fields_of(obj, "m1")
    assert f["f:spec"]["f:selector"] == {}  # LabelSelector is an atomic map
    obj, _ = fm.apply(
        DEPLOYS, obj, deploy({"matchLabels": {"a": "1"}}, ["z"]), manager="m1", force=False
    )
    assert obj["spec"]["selector"] == {"matchLabels": {"a": "1"}}
    assert obj["spec"]["template"]["spec"]["containers"][0]["args"] == ["z"]
    with pytest.raises(ApiError) as err:
        fm.apply(
            DEPLOYS, obj, deploy({"matchLabels": {"a": "2"}}, ["z"]), manager="m2", force=False
        )
    assert ".spec.selector" in err.value.message
    assert '.spec.template.spec.containers[name="c"].args' not in err.value.message


def test_structs_pruned_when_their_last_field_goes() -> None:
    fm = FieldManager()
    base = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}
    with_strategy = {
        **base,
        "spec": {"replicas": 2, "strategy": {"rollingUpdate": {"maxSurge": 1}}},
    }
    obj, _ = fm.apply(DEPLOYS, None, with_strategy, manager="m", force=False)
    obj, _ = fm.apply(DEPLOYS, obj, {**base, "spec": {"replicas": 2}}, manager="m", force=False)
    assert obj["spec"] == {"replicas": 2}


def test_status_is_not_owned_through_the_main_resource() -> None:
    fm = FieldManager()
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"replicas": 1},
        "status": {"replicas": 3},
    }
    obj, _ = fm.apply(DEPLOYS, None, dep, manager="m", force=False)
    assert "f:status" not in fields_of(obj, "m")
    status = copy.deepcopy(obj)
    status["status"] = {"replicas": 1}
    fm.record_update(DEPLOYS, obj, status, manager="controller", subresource="status")
    (entry,) = [e for e in status["metadata"]["managedFields"] if e["manager"] == "controller"]
    assert entry["subresource"] == "status"
    assert entry["fieldsV1"] == {"f:status": {"f:replicas": {}}}


def test_identity_metadata_is_never_owned() -> None:
    fm = FieldManager()
    obj = cm({"a": "1"}, namespace="ns", uid="u", resourceVersion="5", creationTimestamp="t")
    fm.record_update(CMS, None, obj, manager="x")
    assert fields_of(obj, "x", "Update") == {"f:data": {".": {}, "f:a": {}}}


def test_apply_patch_validation() -> None:
    fm = FieldManager()
    with pytest.raises(ApiError) as err:
        fm.apply(CMS, None, {**cm(), "apiVersion": "v2"}, manager="m", force=False)
    assert err.value.message == (
        "Incorrect version specified in apply patch. Specified patch version: v2, expected: v1"
    )
    with pytest.raises(ApiError) as err:
        fm.apply(CMS, None, cm(managedFields=[{"manager": "x"}]), manager="m", force=False)
    assert err.value.code == 400
    assert err.value.message == "metadata.managedFields must be nil"
    with pytest.raises(ApiError) as err:
        check_field_manager("", apply=True, force=None, kind="PatchOptions")
    assert err.value.code == 422
    assert err.value.message == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required'
        " for apply patch"
    )
    assert err.value.details is not None
    assert err.value.details["causes"][0]["field"] == "fieldManager"
    with pytest.raises(ApiError):
        check_field_manager("m", apply=False, force=True, kind="PatchOptions")
    with pytest.raises(ApiError):
        check_field_manager("x" * 129, apply=False, force=None, kind="UpdateOptions")
    check_field_manager("kubectl", apply=True, force=False, kind="PatchOptions")


def test_manager_from_user_agent() -> None:
    assert manager_from_user_agent("kubectl/v1.32.0 (linux/amd64) kubernetes/abc") == "kubectl"
    assert manager_from_user_agent("OpenAPI-Generator/37.0.3/python") == "OpenAPI-Generator"
    assert manager_from_user_agent("a\tb/1") == "ab"
    assert len(manager_from_user_agent("x" * 500)) == 128


# -- update bookkeeping ------------------------------------------------------------------


def test_update_entries_per_manager_and_operation() -> None:
    fm = FieldManager()
    obj = cm({"a": "1"})
    fm.record_update(CMS, None, obj, manager="creator")
    new = copy.deepcopy(obj)
    new["data"]["b"] = "2"
    fm.record_update(CMS, obj, new, manager="creator")
    # the same manager's second write merges into its one Update entry
    assert len(new["metadata"]["managedFields"]) == 1
    assert fields_of(new, "creator", "Update") == {"f:data": {".": {}, "f:a": {}, "f:b": {}}}
    applied, _ = fm.apply(CMS, new, cm({"c": "3"}), manager="creator", force=False)
    assert set(entries(applied)) == {("creator", "Apply"), ("creator", "Update")}
    # Apply entries come first
    assert applied["metadata"]["managedFields"][0]["operation"] == "Apply"


def test_update_entries_are_capped() -> None:
    fm = FieldManager()
    obj = cm({})
    fm.record_update(CMS, None, obj, manager="m0")
    for i in range(1, MAX_UPDATE_MANAGERS + 4):
        new = copy.deepcopy(obj)
        new.setdefault("data", {})[f"k{i}"] = "v"
        fm.record_update(CMS, obj, new, manager=f"m{i}")
        obj = new
    managers = [e["manager"] for e in obj["metadata"]["managedFields"]]
    assert len(managers) == MAX_UPDATE_MANAGERS
    assert "ancient-changes" in managers


def test_client_provided_managed_fields() -> None:
    fm = FieldManager()
    obj = cm({"a": "1"})
    fm.record_update(CMS, None, obj, manager="creator")
    new = copy.deepcopy(obj)
    # a client rewriting managedFields (kubectl's client-side to server-side migration)
    new["metadata"]["managedFields"] = [
        {
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {"f:a": {}}},
        }
    ]
    fm.record_update(CMS, obj, new, manager="kubectl", requested=new["metadata"]["managedFields"])
    assert list(entries(new)) == [("kubectl", "Apply")]
    # malformed ones are ignored: the stored ones stay
    bad = copy.deepcopy(obj)
    fm.record_update(CMS, obj, bad, manager="x", requested=[{"operation": "Nope"}])
    assert list(entries(bad)) == [("creator", "Update")]
    # an empty list starts over: only this write's changes are recorded
    reset = copy.deepcopy(obj)
    reset["data"]["z"] = "1"
    fm.record_update(CMS, obj, reset, manager="x", requested=[])
    assert list(entries(reset)) == [("x", "Update")]


def test_decode_encode_roundtrip_and_rejects_garbage() -> None:
    raw = [
        {
            "manager": "b",
            "operation": "Update",
            "apiVersion": "v1",
            "time": "2024-01-01T00:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {}},
        },
        {
            "manager": "a",
            "operation": "Apply",
            "apiVersion": "v1",
            "time": "2025-01-01T00:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:x": {}},
        },
    ]
    managed = decode(raw)
    assert managed is not None
    assert encode(managed) == [raw[1], raw[0]]
    assert decode([{"operation": "Update", "apiVersion": "v1"}]) is None  # no fieldsType
    assert decode("x") is None


# -- client-side apply migration ---------------------------------------------------------


def test_kubectl_apply_takes_over_fields_of_client_side_apply() -> None:
    fm = FieldManager()
    last = cm({"a": "1", "b": "2"})
    obj = cm({"a": "1", "b": "2"}, annotations={LAST_APPLIED: orjson.dumps(last).decode()})
    fm.record_update(CMS, None, obj, manager="kubectl-client-side-apply")
    # another manager is refused ...
    with pytest.raises(ApiError):
        fm.apply(CMS, obj, cm({"a": "9", "b": "2"}), manager="other", force=False)
    # ... kubectl itself takes over what the annotation covers, and keeps it current
    out, _ = fm.apply(CMS, obj, cm({"a": "9"}), manager="kubectl", force=False)
    assert out["data"] == {"a": "9", "b": "2"}
    assert orjson.loads(out["metadata"]["annotations"][LAST_APPLIED]) == cm({"a": "9"})
    # a field changed since the client-side apply is a conflict still
    drifted = copy.deepcopy(obj)
    drifted["data"]["b"] = "edited"
    fm.record_update(CMS, obj, drifted, manager="kubectl-edit")
    with pytest.raises(ApiError) as err:
        fm.apply(CMS, drifted, cm({"a": "9", "b": "3"}), manager="kubectl", force=False)
    assert err.value.message.endswith(".data.b")


# -- custom resources ------------------------------------------------------------------

CRD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "size": {"type": "integer"},
                "routes": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["host", "port"],
                    "items": {
                        "type": "object",
                        "properties": {
                            "host": {"type": "string"},
                            "port": {"type": "integer", "default": 80},
                            "weight": {"type": "integer"},
                        },
                    },
                },
                "tags": {"type": "array", "items": {"type": "string"}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        }
    },
}
WIDGETS = ResourceDef(
    group="example.com",
    version="v1",
    plural="widgets",
    singular="widget",
    kind="Widget",
    namespaced=True,
)


def test_custom_resources_use_their_schema() -> None:
    schemas = Schemas()
    node = custom_resource_node(CRD_SCHEMA)
    schemas.add(lambda rd: node if rd.kind == "Widget" else None)
    fm = FieldManager(schemas)

    def widget(spec: dict[str, Any], **labels: str) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": "w"}
        if labels:
            meta["labels"] = labels
        return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": meta, "spec": spec}

    obj, _ = fm.apply(
        WIDGETS,
        None,
        widget({"routes": [{"host": "a"}], "tags": ["x"], "extra": {"deep": {"k": 1}}}, app="w"),
        manager="m1",
        force=False,
    )
    spec = fields_of(obj, "m1")["f:spec"]
    assert 'k:{"host":"a","port":80}' in spec["f:routes"]  # the key's schema default
    assert spec["f:tags"] == {}  # lists without a list type are atomic
    assert spec["f:extra"] == {"f:deep": {".": {}, "f:k": {}}}  # untyped maps are granular
    assert fields_of(obj, "m1")["f:metadata"] == {"f:labels": {"f:app": {}}}
    obj, _ = fm.apply(
        WIDGETS,
        obj,
        widget({"routes": [{"host": "a", "port": 81, "weight": 1}]}),
        manager="m2",
        force=False,
    )
    assert len(obj["spec"]["routes"]) == 2
    with pytest.raises(ApiError) as err:
        fm.apply(WIDGETS, obj, widget({"extra": {"deep": {"k": 2}}}), manager="m2", force=False)
    assert err.value.message.endswith(": .spec.extra.deep.k")
    # a CR's Update entry: new structs are members (objects are unstructured)
    created = widget({"size": 1})
    fm.record_update(WIDGETS, None, created, manager="c")
    assert fields_of(created, "c", "Update") == {"f:spec": {".": {}, "f:size": {}}}


def test_fields_a_write_resets_neither_conflict_nor_change_owners() -> None:
    fm = FieldManager()
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"replicas": 1},
    }
    obj, _ = fm.apply(DEPLOYS, None, dep, manager="owner", force=False)
    before = copy.deepcopy(obj)
    obj["status"] = {"replicas": 1}
    fm.record_update(DEPLOYS, before, obj, manager="ctrl", subresource="status")
    # through status, a changed spec is thrown away later: no conflict with its owner
    through_status = {**dep, "spec": {"replicas": 9}, "status": {"replicas": 1}}
    out, _ = fm.apply(DEPLOYS, obj, through_status, manager="st", force=False, subresource="status")
    assert fields_of(out, "owner")["f:spec"] == {"f:replicas": {}}
    assert entries(out)[("st", "Apply")]["fieldsV1"] == {"f:status": {"f:replicas": {}}}
    # and the main resource's apply of a status is no conflict with the status writer
    out, _ = fm.apply(
        DEPLOYS, obj, {**dep, "status": {"replicas": 5}}, manager="owner", force=False
    )
    assert entries(out)[("ctrl", "Update")]["fieldsV1"] == {"f:status": {"f:replicas": {}}}


def test_compare_of_shared_values_equals_compare_of_copies() -> None:
    """A status write shares the stored spec and metadata values with the written object:
    the comparison stops at the shared values and finds what it finds on copies."""
    node = builtin_node(PODS)
    assert node is not None
    old = copy.deepcopy(POD)
    old["status"] = {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]}
    shared = {k: v for k, v in old.items() if k != "status"}
    shared["metadata"] = dict(old["metadata"])
    shared["metadata"]["labels"] = {**old["metadata"]["labels"], "tier": "front"}
    shared["status"] = {"phase": "Running", "podIP": "10.0.0.9"}
    copied = copy.deepcopy(shared)
    assert shared["spec"] is old["spec"]
    a, b = typed.compare(old, shared, node), typed.compare(old, copied, node)
    assert (a.added, a.modified, a.removed) == (b.added, b.modified, b.removed)
    assert a.modified == {"f:status": {"f:phase": {}}}
    assert a.added["f:metadata"] == {"f:labels": {"f:tier": {}}}
    assert a.added["f:status"] == {"f:podIP": {}}
    assert "f:conditions" in a.removed["f:status"]
    assert "f:spec" not in a.added
    assert "f:spec" not in a.removed
