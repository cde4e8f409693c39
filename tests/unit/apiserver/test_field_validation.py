"""Unknown and duplicate fields, and the fieldValidation directives, as pure functions."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from berth.api.resources import TABLE, ResourceDef
from berth.apiserver import client_warnings
from berth.apiserver.errors import ApiError
from berth.apiserver.openapi import duplicates, fieldtree, fieldvalidation
from berth.apiserver.openapi.definitions import load_definitions


def _rd(group: str, kind: str) -> ResourceDef:
    rd = TABLE.by_kind(group, kind)
    assert rd is not None
    return rd


POD = _rd("", "Pod")
CONFIGMAP = _rd("", "ConfigMap")
DEPLOYMENT = _rd("apps", "Deployment")


def _pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"any": "label"}, "annotations": {"a": "b"}},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "nginx",
                    "ports": [{"containerPort": 80}],
                    "resources": {"limits": {"cpu": "1"}},
                    "env": [{"name": "A", "value": "1"}],
                }
            ],
            "volumes": [{"name": "v", "emptyDir": {}}],
        },
        "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_a_valid_object_is_left_alone() -> None:
    pod = _pod()
    assert fieldvalidation.drop_unknown(POD, pod).errors == []
    assert pod == _pod()


def test_unknown_fields_are_named_in_upstreams_syntax_and_dropped() -> None:
    pod = _pod()
    pod["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    pod["spec"]["volumes"][0]["emptyDir"]["sizeLimitt"] = "1Gi"
    pod["metadata"]["bogus"] = 1
    pod["extra"] = {"deep": True}
    found = fieldvalidation.drop_unknown(POD, pod)
    assert found.errors == [
        'unknown field "metadata.bogus"',
        'unknown field "spec.containers[0].imagePullPolicyy"',
        'unknown field "spec.volumes[0].emptyDir.sizeLimitt"',
        'unknown field "extra"',
    ]
    assert pod == _pod()


def test_a_configmap_keeps_no_status() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "v"}}
    sent = {**copy.deepcopy(cm), "status": {"phase": "x"}}
    assert fieldvalidation.drop_unknown(CONFIGMAP, sent).errors == ['unknown field "status"']
    assert sent == cm


def test_free_form_fields_are_never_walked() -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "d",
            "managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {"f:anything": {}}}}],
        },
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}},
        },
    }
    before = copy.deepcopy(deployment)
    assert fieldvalidation.drop_unknown(DEPLOYMENT, deployment).errors == []
    assert deployment == before


def test_map_values_with_a_schema_are_checked() -> None:
    defs = load_definitions()
    tree = fieldtree.compile_schema(
        defs,
        {
            "type": "object",
            "properties": {
                "byName": {"additionalProperties": {"$ref": "#/$defs/io.k8s.api.core.v1.EnvVar"}}
            },
        },
    )
    value = {"byName": {"x": {"name": "x", "valuee": "1"}}}
    assert fieldtree.unknown_fields(tree, value) == ["byName.x.valuee"]
    assert value == {"byName": {"x": {"name": "x"}}}


def test_recursive_definitions_compile() -> None:
    name = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"
    tree = fieldtree.compile_kind(load_definitions(), name)
    value = {"properties": {"a": {"type": "object", "properties": {"b": {"typo": 1}}}}}
    assert fieldtree.unknown_fields(tree, value) == ["properties.a.properties.b.typo"]


def test_at_most_a_hundred_are_reported_but_all_are_dropped() -> None:
    cm: dict[str, Any] = {"metadata": {"name": "x"}}
    cm.update({f"f{i}": i for i in range(150)})
    found = fieldvalidation.drop_unknown(CONFIGMAP, cm)
    assert len(found.errors) == 100
    assert cm == {"metadata": {"name": "x"}}


def test_json_duplicates_are_found_by_path() -> None:
    raw = (
        b'{"metadata": {"name": "a", "labels": {"x": "1", "x": "2"}, "name": "b"},'
        b' "spec": {"containers": [{"name": "c", "image": "i", "image": "j"}]}}'
    )
    value = json.loads(raw)
    assert duplicates.json_duplicates(raw, value) == [
        "metadata.labels.x",
        "metadata.name",
        "spec.containers[0].image",
    ]


def test_json_without_duplicates_takes_the_fast_path() -> None:
    # strings holding quotes, colons and escapes do not confuse the key count
    raw = rb'{"a": "x\": \"y", "b": ["c:", {"d\\": 1}], "e": {"\u0066": "\\"}}'
    assert duplicates.json_duplicates(raw, json.loads(raw)) == []
    twice = rb'{"a": 1, "\u0061": 2}'
    assert duplicates.json_duplicates(twice, json.loads(twice)) == ["a"]


def test_yaml_duplicates_name_the_line() -> None:
    raw = b"metadata:\n  name: a\n  name: b\nspec:\n  containers:\n  - image: x\n    image: y\n"
    assert duplicates.yaml_duplicates(raw) == [
        'line 3: key "name" already set in map',
        'line 7: key "image" already set in map',
    ]
    found = fieldvalidation.body_duplicates(raw, "application/yaml", None)
    assert found.errors == [
        "error converting YAML to JSON: yaml: unmarshal errors:\n"
        '  line 3: key "name" already set in map\n'
        '  line 7: key "image" already set in map'
    ]
    assert found.warnings == [
        'line 3: key "name" already set in map',
        'line 7: key "image" already set in map',
    ]


def test_json_patch_operations_with_unknown_keys() -> None:
    raw = b'[{"op": "add", "path": "/a", "value": 1, "valu": 2, "op": "add"}]'
    found = fieldvalidation.json_patch_findings(raw, json.loads(raw))
    assert found.errors == [
        'json patch duplicate field "[0].op"',
        'json patch unknown field "[0].valu"',
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "Warn"), ("", "Warn"), ("Strict", "Strict"), ("Ignore", "Ignore"), ("Warn", "Warn")],
)
def test_directive_defaults_to_warn(value: str | None, expected: str) -> None:
    assert fieldvalidation.directive(value, "create") == expected


def test_an_unknown_directive_is_invalid() -> None:
    with pytest.raises(ApiError) as err:
        fieldvalidation.directive("strict", "patch")
    assert err.value.code == 422
    assert err.value.message == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "strict":'
        ' supported values: "", "Ignore", "Strict", "Warn"'
    )


def _findings() -> fieldvalidation.Findings:
    found = fieldvalidation.Findings()
    found.add('unknown field "spec.a"')
    found.add('duplicate field "metadata.name"')
    return found


def test_strict_fails_a_create_listing_every_problem() -> None:
    with pytest.raises(ApiError) as err:
        fieldvalidation.enforce("Strict", POD, _findings())
    assert err.value.code == 400
    assert err.value.reason == "BadRequest"
    assert err.value.message == (
        'Pod in version "v1" cannot be handled as a Pod: strict decoding error:'
        ' unknown field "spec.a", duplicate field "metadata.name"'
    )


def test_strict_fails_a_patch_as_invalid() -> None:
    with pytest.raises(ApiError) as err:
        fieldvalidation.enforce_patch("Strict", _findings(), {"spec": {"a": 1}})
    assert err.value.code == 422
    assert err.value.message == (
        ' "" is invalid: patch: Invalid value: "{\\"spec\\":{\\"a\\":1}}": strict decoding'
        ' error: unknown field "spec.a", duplicate field "metadata.name"'
    )


def test_warn_sends_a_warning_per_problem_and_ignore_nothing() -> None:
    with client_warnings.collecting() as warned:
        fieldvalidation.enforce("Warn", POD, _findings())
    assert warned == ['unknown field "spec.a"', 'duplicate field "metadata.name"']
    with client_warnings.collecting() as warned:
        fieldvalidation.enforce("Ignore", POD, _findings())
        fieldvalidation.enforce_patch("Ignore", _findings(), {})
    assert warned == []


def test_every_served_kind_compiles() -> None:
    # read-only resources (metrics.k8s.io) never decode a client's object
    for rd in (r for r in TABLE.resources if "create" in r.verbs):
        assert fieldvalidation.tree_for(rd) is not None, rd.kind


def test_yaml_flow_style_that_starts_like_json_is_read_as_yaml() -> None:
    # found by the hostile-body fuzz: ``{a: {a: 1}}`` is YAML, not JSON; it used to reach the
    # JSON duplicate scan and raise (a 500)
    found = fieldvalidation.body_duplicates(b"{a: {a: 1}, a: 2}", "application/yaml", {"a": 2})
    assert found.errors
    assert "already set in map" in found.errors[0]
    clean = fieldvalidation.body_duplicates(b"{a: {a: 1}}", "application/yaml", {"a": {"a": 1}})
    assert not clean.errors
