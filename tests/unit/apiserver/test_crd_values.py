"""Custom objects against their schema: validation messages and paths as kube-apiserver's,
defaulting, pruning and null handling."""

from __future__ import annotations

from typing import Any

from berth.apiserver.crd import fielderrors as fe
from berth.apiserver.crd import values
from berth.apiserver.crd.defaulting import apply_defaults, prune_nulls
from berth.apiserver.crd.pruning import prune
from berth.apiserver.crd.schema import compile_schema

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["image"],
            "properties": {
                "image": {"type": "string", "minLength": 3, "maxLength": 20},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                "ratio": {"type": "number", "exclusiveMaximum": True, "maximum": 1},
                "mode": {"type": "string", "enum": ["fast", "slow"], "default": "slow"},
                "name": {"type": "string", "pattern": "^[a-z]+$"},
                "port": {"x-kubernetes-int-or-string": True},
                "tags": {
                    "type": "array",
                    "maxItems": 2,
                    "minItems": 1,
                    "items": {"type": "string"},
                },
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "nested": {
                    "type": "object",
                    "default": {},
                    "properties": {"level": {"type": "integer", "default": 3}},
                },
                "opt": {"type": "string", "nullable": True},
                "created": {"type": "string", "format": "date-time"},
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "properties": {
                        "spec": {"type": "object", "properties": {"a": {"type": "string"}}}
                    },
                },
            },
        },
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    },
}


def check(obj: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(e.reason, e.field, e.message) for e in values.validate(compile_schema(SCHEMA), obj)]


def test_valid_object_has_no_errors() -> None:
    assert check({"spec": {"image": "nginx", "replicas": 3, "port": "http", "tags": ["a"]}}) == []
    assert check({"spec": {"image": "nginx", "port": 80, "ratio": 0.5, "opt": None}}) == []


def test_type_error_is_worded_as_upstream() -> None:
    assert check({"spec": {"image": "nginx", "replicas": "three"}}) == [
        (
            "FieldValueTypeInvalid",
            "spec.replicas",
            'Invalid value: "string": spec.replicas in body must be of type integer: "string"',
        )
    ]
    # int-or-string lists both types; a whole float is an integer
    assert check({"spec": {"image": "nginx", "port": True, "replicas": 2.0}}) == [
        (
            "FieldValueTypeInvalid",
            "spec.port",
            'Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean"',
        )
    ]


def test_required_enum_pattern_bounds() -> None:
    errs = check(
        {
            "spec": {
                "mode": "medium",
                "name": "ABC",
                "replicas": 0,
                "ratio": 1,
                "tags": ["a", "b", "c"],
            }
        }
    )
    assert ("FieldValueRequired", "spec.image", "Required value") in errs
    assert (
        "FieldValueNotSupported",
        "spec.mode",
        'Unsupported value: "medium": supported values: "fast", "slow"',
    ) in errs
    assert (
        "FieldValueInvalid",
        "spec.name",
        "Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'",
    ) in errs
    assert (
        "FieldValueInvalid",
        "spec.replicas",
        "Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
    ) in errs
    assert (
        "FieldValueInvalid",
        "spec.ratio",
        "Invalid value: 1: spec.ratio in body should be less than 1",
    ) in errs
    assert ("FieldValueTooMany", "spec.tags", "Too many: 3: must have at most 2 items") in errs
    assert len(errs) == 6


def test_lengths_items_and_additional_properties() -> None:
    errs = check(
        {"spec": {"image": "x" * 21, "tags": [], "labels": {"a": 1}, "created": "yesterday"}}
    )
    assert ("FieldValueTooLong", "spec.image", "Too long: may not be more than 20 bytes") in errs
    assert (
        "FieldValueInvalid",
        "spec.tags",
        "Invalid value: 0: spec.tags in body should have at least 1 items",
    ) in errs
    assert (
        "FieldValueTypeInvalid",
        "spec.labels.a",
        'Invalid value: "integer": spec.labels.a in body must be of type string: "integer"',
    ) in errs
    assert (
        "FieldValueTypeInvalid",
        "spec.created",
        'Invalid value: "yesterday": spec.created in body must be of type date-time: "yesterday"',
    ) in errs
    assert check({"spec": {"image": "ab"}}) == [
        (
            "FieldValueInvalid",
            "spec.image",
            'Invalid value: "ab": spec.image in body should be at least 3 chars long',
        )
    ]


def test_items_paths_and_null() -> None:
    assert check({"spec": {"image": "nginx", "tags": ["a", 5]}}) == [
        (
            "FieldValueTypeInvalid",
            "spec.tags[1]",
            'Invalid value: "integer": spec.tags[1] in body must be of type string: "integer"',
        )
    ]
    assert check({"spec": {"image": "nginx", "mode": None}})[0][2] == (
        'Invalid value: "null": spec.mode in body must be of type string: "null"'
    )


def test_enum_does_not_take_true_for_one() -> None:
    s = compile_schema({"type": "object", "properties": {"x": {"enum": [1, "a"]}}})
    assert values.validate(s, {"x": 1}) == []
    assert values.validate(s, {"x": 1.0}) == []
    [err] = values.validate(s, {"x": True})
    assert err.message == 'Unsupported value: true: supported values: "1", "a"'


def test_pattern_is_re2_and_linear() -> None:
    s = compile_schema(
        {"type": "object", "properties": {"x": {"type": "string", "pattern": "^(a+)+$"}}}
    )
    # a catastrophic case for a backtracking engine: RE2 answers at once
    assert len(values.validate(s, {"x": "a" * 5000 + "!"})) == 1


def test_defaults_fill_absent_and_nested() -> None:
    obj: dict[str, Any] = {"spec": {"image": "nginx", "mode": None}}
    s = compile_schema(SCHEMA)
    apply_defaults(s, obj)
    assert obj["spec"]["replicas"] == 1
    assert obj["spec"]["mode"] == "slow"  # null of a non-nullable field takes the default
    assert obj["spec"]["nested"] == {"level": 3}  # the default, then its own defaults
    obj2: dict[str, Any] = {"spec": {"image": "n", "replicas": 5, "nested": {"level": 7}}}
    apply_defaults(s, obj2)
    assert obj2["spec"]["replicas"] == 5
    assert obj2["spec"]["nested"] == {"level": 7}


def test_defaults_do_not_share_objects() -> None:
    s = compile_schema(SCHEMA)
    a: dict[str, Any] = {"spec": {}}
    b: dict[str, Any] = {"spec": {}}
    apply_defaults(s, a)
    apply_defaults(s, b)
    a["spec"]["nested"]["level"] = 9
    assert b["spec"]["nested"]["level"] == 3


def test_prune_nulls_drops_non_nullable_without_default() -> None:
    obj: dict[str, Any] = {"spec": {"image": None, "opt": None, "replicas": None}}
    prune_nulls(compile_schema(SCHEMA), obj)
    assert obj == {"spec": {"opt": None, "replicas": None}}


def test_pruning_drops_unknown_keeps_preserved() -> None:
    obj: dict[str, Any] = {
        "apiVersion": "x.io/v1",
        "kind": "X",
        "metadata": {"name": "a", "bogus": 1},
        "spec": {
            "image": "n",
            "unknown": 1,
            "labels": {"k": "v"},
            "free": {"anything": {"deep": 1}},
            "tags": ["a"],
            "template": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p", "junk": 1},
                "spec": {"a": "x", "b": "y"},
            },
        },
        "extra": True,
    }
    dropped = prune(compile_schema(SCHEMA), obj)
    assert sorted(dropped) == [
        "extra",
        "metadata.bogus",
        "spec.template.metadata.junk",
        "spec.template.spec.b",
        "spec.unknown",
    ]
    assert obj["spec"]["free"] == {"anything": {"deep": 1}}
    assert obj["spec"]["template"]["apiVersion"] == "v1"
    assert obj["metadata"] == {"name": "a"}


def test_go_value_rendering() -> None:
    assert fe.go_float(1.0) == "1"
    assert fe.go_float(0.5) == "0.5"
    assert fe.go_float(1e21) == "1e+21"
    assert fe.go_float(100000.0) == "100000"
    assert fe.go_float(1e6) == "1e+06"
    assert fe.go_float(123456789.0) == "1.23456789e+08"
    assert fe.go_float(0.00001) == "1e-05"
    assert fe.go_value("a") == '"a"'
    assert fe.go_value({"a": [1]}) == '{"a":[1]}'
