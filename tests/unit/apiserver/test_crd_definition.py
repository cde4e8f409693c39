"""CustomResourceDefinition objects: defaults, validation (structural schemas included),
accepted names and conditions, the served form, printer columns, scale and write strategy."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from berth.api.resources import TABLE
from berth.apiserver.crd import definition, names, strategy
from berth.apiserver.crd.printers import columns_for, definitions, row
from berth.apiserver.crd.scale import ScalePaths, scale_of, set_replicas, validate_scale
from berth.apiserver.crd.served import served_from


def make_crd(**over: Any) -> dict[str, Any]:
    crd: dict[str, Any] = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"replicas": {"type": "integer"}},
                                },
                                "status": {
                                    "type": "object",
                                    "properties": {"replicas": {"type": "integer"}},
                                },
                            },
                        }
                    },
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": [
                        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                }
            ],
        },
    }
    crd["spec"].update(over)
    return crd


def errors_of(crd: dict[str, Any], old: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    crd = copy.deepcopy(crd)
    if old is None:
        strategy.prepare_crd_create(crd)
    else:
        strategy.prepare_crd_update(old, crd)
    return [(e.field, e.message) for e in definition.validate(crd, old)]


def test_valid_crd_and_defaults() -> None:
    crd = make_crd()
    strategy.prepare_crd_create(crd)
    assert definition.validate(crd) == []
    assert crd["spec"]["names"]["singular"] == "widget"
    assert crd["spec"]["names"]["listKind"] == "WidgetList"
    assert crd["spec"]["conversion"] == {"strategy": "None"}
    assert crd["status"]["storedVersions"] == ["v1"]


def test_name_must_be_plural_dot_group() -> None:
    crd = make_crd()
    crd["metadata"]["name"] = "gadgets.example.com"
    assert errors_of(crd) == [
        (
            "metadata.name",
            'Invalid value: "gadgets.example.com": must be spec.names.plural+"."+spec.group',
        )
    ]


def test_group_scope_and_names() -> None:
    crd = make_crd(group="example", scope="Global")
    crd["metadata"]["name"] = "widgets.example"
    crd["spec"]["names"]["plural"] = "widgets"
    crd["spec"]["names"]["shortNames"] = ["W"]
    errs = errors_of(crd)
    assert (
        "spec.group",
        'Invalid value: "example": should be a domain with at least one dot',
    ) in errs
    assert (
        "spec.scope",
        'Unsupported value: "Global": supported values: "Cluster", "Namespaced"',
    ) in errs
    assert any(f == "spec.names.shortNames[0]" for f, _ in errs)


def test_protected_groups_need_the_approval_annotation() -> None:
    crd = make_crd(group="widgets.k8s.io")
    crd["metadata"]["name"] = "widgets.widgets.k8s.io"
    path = "metadata.annotations[api-approved.kubernetes.io]"
    assert any(f == path and m.startswith("Required value") for f, m in errors_of(crd))
    crd["metadata"]["annotations"] = {"api-approved.kubernetes.io": "yes"}
    assert any(f == path and m.startswith("Invalid value") for f, m in errors_of(crd))
    crd["metadata"]["annotations"] = {"api-approved.kubernetes.io": "unapproved, testing"}
    assert errors_of(crd) == []


def test_exactly_one_storage_version_and_schema_required() -> None:
    crd = make_crd()
    v2 = copy.deepcopy(crd["spec"]["versions"][0])
    v2["name"] = "v2"
    del v2["schema"]
    crd["spec"]["versions"].append(v2)
    errs = errors_of(crd)
    assert any(
        f == "spec.versions"
        and m.endswith("must have exactly one version marked as storage version")
        for f, m in errs
    )
    assert ("spec.versions[1].schema.openAPIV3Schema", "Required value") in errs


def test_structural_schema_rules() -> None:
    crd = make_crd()
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema["properties"]["spec"]["properties"]["loose"] = {"description": "no type"}
    schema["properties"]["spec"]["properties"]["list"] = {"type": "array"}
    schema["properties"]["spec"]["properties"]["both"] = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "additionalProperties": {"type": "string"},
    }
    schema["properties"]["spec"]["properties"]["bad"] = {"type": "strin"}
    schema["properties"]["metadata"] = {
        "type": "object",
        "properties": {"labels": {"type": "object"}},
    }
    p = "spec.versions[0].schema.openAPIV3Schema"
    errs = errors_of(crd)
    assert (
        f"{p}.properties[spec].properties[loose].type",
        "Required value: must not be empty for specified object fields",
    ) in errs
    assert (
        f"{p}.properties[spec].properties[list].items",
        "Required value: must be specified",
    ) in errs
    assert (
        f"{p}.properties[spec].properties[both].additionalProperties",
        "Forbidden: additionalProperties and properties are mutual exclusive",
    ) in errs
    assert (
        f"{p}.properties[spec].properties[bad].type",
        'Unsupported value: "strin": supported values: "array", "boolean", "integer", '
        '"number", "object", "string"',
    ) in errs
    assert (
        f"{p}.properties[metadata]",
        "Forbidden: must not specify anything other than name and generateName, but metadata is "
        "implicitly specified",
    ) in errs


def test_default_must_match_its_schema() -> None:
    crd = make_crd()
    props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    props["properties"]["replicas"]["default"] = "one"
    [(field, msg)] = errors_of(crd)
    assert (
        field
        == "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[replicas].default"
    )
    assert "must be of type integer" in msg


def test_int_or_string_and_preserve_unknown_need_no_type() -> None:
    crd = make_crd()
    props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]
    props["port"] = {
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
    }
    props["free"] = {"x-kubernetes-preserve-unknown-fields": True}
    assert errors_of(crd) == []


def test_printer_column_and_scale_paths() -> None:
    crd = make_crd()
    v = crd["spec"]["versions"][0]
    v["additionalPrinterColumns"] = [{"name": "X", "type": "text", "jsonPath": "spec.x"}]
    v["subresources"]["scale"]["specReplicasPath"] = ".status.replicas"
    errs = errors_of(crd)
    p = "spec.versions[0]"
    assert (
        f"{p}.additionalPrinterColumns[0].type",
        'Invalid value: "text": must be one of boolean,date,integer,number,string',
    ) in errs
    assert (
        f"{p}.additionalPrinterColumns[0].JSONPath",
        'Invalid value: "spec.x": must be a simple json path starting with .',
    ) in errs
    assert (
        f"{p}.subresources.scale.specReplicasPath",
        'Invalid value: ".status.replicas": should be a json path under .spec',
    ) in errs


def test_update_rules_and_stored_versions() -> None:
    old = make_crd()
    strategy.prepare_crd_create(old)
    new = make_crd(scope="Cluster")
    assert ("spec.scope", 'Invalid value: "Cluster": field is immutable') in errors_of(new, old)
    # a new storage version joins storedVersions; the old one must stay in spec.versions
    new = make_crd()
    v2 = copy.deepcopy(new["spec"]["versions"][0])
    v2["name"] = "v2"
    new["spec"]["versions"][0]["storage"] = False
    new["spec"]["versions"].append(v2)
    prepared = copy.deepcopy(new)
    strategy.prepare_crd_update(old, prepared)
    assert prepared["status"]["storedVersions"] == ["v1", "v2"]
    assert prepared["metadata"]["generation"] == 2
    dropped = copy.deepcopy(prepared)
    dropped["spec"]["versions"] = [v2]
    assert definition.validate(dropped, old)[0].field == "status.storedVersions[0]"


def test_names_conflict_with_another_crd_and_builtins() -> None:
    first = make_crd()
    strategy.prepare_crd_create(first)
    first["status"] = names.reconcile_status(first, [], TABLE.resources)
    assert names.is_true(first, "NamesAccepted")
    assert names.is_true(first, "Established")
    assert first["status"]["acceptedNames"]["plural"] == "widgets"

    second = make_crd()
    second["metadata"]["name"] = "gizmos.example.com"
    second["spec"]["names"] = {"plural": "gizmos", "kind": "Widget", "shortNames": ["wd"]}
    strategy.prepare_crd_create(second)
    status = names.reconcile_status(second, [first], TABLE.resources)
    cond = {c["type"]: c for c in status["conditions"]}
    assert cond["NamesAccepted"]["status"] == "False"
    assert cond["NamesAccepted"]["reason"] == "ListKindConflict"  # the last of four
    assert cond["NamesAccepted"]["message"] == '"WidgetList" is already in use'
    assert cond["Established"]["status"] == "False"
    assert status["acceptedNames"]["kind"] == ""  # conflicting kind never accepted
    second["status"] = status
    assert served_from(second) is None

    builtin = make_crd(group="rbac.authorization.k8s.io")
    builtin["metadata"]["name"] = "roles.rbac.authorization.k8s.io"
    builtin["spec"]["names"] = {"plural": "roles", "kind": "Thing"}
    strategy.prepare_crd_create(builtin)
    status = names.reconcile_status(builtin, [], TABLE.resources)
    assert {c["type"]: c["reason"] for c in status["conditions"]}[
        "NamesAccepted"
    ] == "PluralConflict"


def test_established_crd_served_form() -> None:
    crd = make_crd()
    strategy.prepare_crd_create(crd)
    crd["metadata"]["uid"] = "u1"
    crd["status"] = names.reconcile_status(crd, [], TABLE.resources)
    served = served_from(crd)
    assert served is not None
    [v] = served.versions
    assert v.rd.kind == "Widget"
    assert v.rd.namespaced
    assert v.rd.short_names == ("wd",)
    assert v.rd.subresources == ("status", "scale")
    assert v.rd.key("ns", "a") == "/registry/example.com/widgets/ns/a"
    assert not served.terminating
    # a CRD being deleted stays served (its objects are deleted through it), refusing creates
    crd["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    terminating = served_from(crd)
    assert terminating is not None
    assert terminating.terminating


def test_printer_columns_cells() -> None:
    cols = columns_for(
        [
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
            {"name": "Ready", "type": "boolean", "jsonPath": ".status.ready"},
            {"name": "Image", "type": "string", "jsonPath": ".spec.containers[0].image"},
            {"name": "Tags", "type": "string", "jsonPath": ".spec.tags", "priority": 1},
            {"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio"},
            {"name": "Missing", "type": "string", "jsonPath": ".spec.nothing"},
        ]
    )
    obj: dict[str, Any] = {
        "metadata": {"name": "w1"},
        "spec": {"replicas": 3, "containers": [{"image": "nginx"}], "tags": ["a", "b"], "ratio": 1},
        "status": {"ready": "yes"},
    }
    assert row(cols, obj) == ["w1", 3, None, "nginx", '["a","b"]', 1.0, None]
    defs = definitions(cols)
    assert defs[0]["name"] == "Name"
    assert defs[0]["format"] == "name"
    assert defs[4]["priority"] == 1
    assert (
        defs[1]["description"]
        == "Custom resource definition column (in JSONPath format): .spec.replicas"
    )
    # no columns: upstream's default Age column
    [age] = columns_for([])
    assert age.name == "Age"
    assert age.type == "date"
    assert row((age,), {"metadata": {"name": "x", "creationTimestamp": "bad"}}) == [
        "x",
        "<invalid>",
    ]


def test_scale_subresource_mapping() -> None:
    paths = ScalePaths(".spec.replicas", ".status.replicas", ".status.selector")
    obj: dict[str, Any] = {
        "metadata": {
            "name": "w",
            "namespace": "d",
            "uid": "u",
            "resourceVersion": "5",
            "labels": {},
        },
        "spec": {},
        "status": {"replicas": 2, "selector": "app=w"},
    }
    scale = scale_of(obj, paths)
    assert scale["spec"] == {"replicas": 0}
    assert scale["status"] == {"replicas": 2, "selector": "app=w"}
    assert scale["metadata"] == {"name": "w", "namespace": "d", "uid": "u", "resourceVersion": "5"}
    set_replicas(obj, paths, 4)
    assert obj["spec"]["replicas"] == 4
    assert validate_scale({"spec": {"replicas": -1}})[0].message == (
        "Invalid value: -1: must be greater than or equal to 0"
    )


@pytest.fixture
def served_version() -> Any:
    crd = make_crd()
    strategy.prepare_crd_create(crd)
    crd["status"] = names.reconcile_status(crd, [], TABLE.resources)
    served = served_from(crd)
    assert served is not None
    return served.versions[0]


def test_custom_object_strategy(served_version: Any) -> None:
    v = served_version
    obj: dict[str, Any] = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"replicas": 1, "junk": 1},
        "status": {"replicas": 5},
    }
    assert strategy.normalize(v, obj) == ["spec.junk"]
    # (status, generation and status-write rules: test_crd_kinds.py, through the kind)
    # the scale paths must hold integers
    bad = copy.deepcopy(obj)
    bad["spec"]["replicas"] = -1
    assert [e.field for e in strategy.validate_object(v, bad)] == [".spec.replicas"]
    wrong = copy.deepcopy(obj)
    wrong["kind"] = "Gadget"
    assert (
        strategy.validate_object(v, wrong)[0].message == 'Invalid value: "Gadget": must be Widget'
    )
    assert strategy.convert(obj, "example.com/v2")["apiVersion"] == "example.com/v2"
