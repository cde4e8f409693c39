from __future__ import annotations

import copy
from typing import Any

import pytest

from berth.apiserver.errors import ApiError
from berth.apiserver.patch import json_merge_patch, json_patch, strategic_merge_patch


def _deploy(containers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"spec": {"replicas": 1, "template": {"spec": {"containers": containers}}}}


def test_kubectl_apply_patch_merges_containers_by_name() -> None:
    """The exact patch kubectl 1.20 sends on apply: ports must survive."""
    original = _deploy([{"name": "nginx", "image": "nginx:1.19", "ports": [{"containerPort": 80}]}])
    patch = {
        "spec": {
            "replicas": 3,
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "nginx"}],
                    "containers": [{"image": "nginx:1.20", "name": "nginx"}],
                }
            },
        }
    }
    out = strategic_merge_patch(original, patch)
    assert out["spec"]["replicas"] == 3
    assert out["spec"]["template"]["spec"]["containers"] == [
        {"name": "nginx", "image": "nginx:1.20", "ports": [{"containerPort": 80}]}
    ]
    assert original["spec"]["replicas"] == 1  # input untouched


def test_set_element_order_and_patch_delete() -> None:
    original = _deploy(
        [{"name": "a", "image": "a"}, {"name": "b", "image": "b"}, {"name": "c", "image": "c"}]
    )
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
                    "containers": [{"name": "b", "$patch": "delete"}],
                }
            }
        }
    }
    out = strategic_merge_patch(original, patch)
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["c", "a"]


def test_patch_replace_and_retain_keys_and_null() -> None:
    original = {
        "spec": {
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "paused": True,
        }
    }
    out = strategic_merge_patch(
        original,
        {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}, "paused": None}},
    )
    assert out == {"spec": {"strategy": {"type": "Recreate"}}}
    out = strategic_merge_patch(
        {"metadata": {"labels": {"a": "1", "b": "2"}}},
        {"metadata": {"labels": {"$patch": "replace", "c": "3"}}},
    )
    assert out["metadata"]["labels"] == {"c": "3"}


def test_primitive_lists() -> None:
    out = strategic_merge_patch(
        {"metadata": {"finalizers": ["a", "b"]}}, {"metadata": {"finalizers": ["c"]}}
    )
    assert out["metadata"]["finalizers"] == ["a", "b", "c"]
    out = strategic_merge_patch(
        {"metadata": {"finalizers": ["a", "b"]}},
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}},
    )
    assert out["metadata"]["finalizers"] == ["b"]
    # args is atomic: replaced, not merged
    out = strategic_merge_patch(
        _deploy([{"name": "x", "args": ["1", "2"]}]), _deploy([{"name": "x", "args": ["3"]}])
    )
    assert out["spec"]["template"]["spec"]["containers"][0]["args"] == ["3"]


def test_service_ports_merge_by_port_and_env_by_name() -> None:
    svc = {"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}}
    out = strategic_merge_patch(svc, {"spec": {"ports": [{"port": 443, "targetPort": 8443}]}})
    assert out["spec"]["ports"][1] == {"port": 443, "name": "https", "targetPort": 8443}
    pod = {"spec": {"containers": [{"name": "c", "env": [{"name": "A", "value": "1"}]}]}}
    out = strategic_merge_patch(
        pod, {"spec": {"containers": [{"name": "c", "env": [{"name": "B", "value": "2"}]}]}}
    )
    assert out["spec"]["containers"][0]["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "2"},
    ]


def test_smp_errors_are_api_errors() -> None:
    with pytest.raises(ApiError):
        strategic_merge_patch({}, ["not", "a", "map"])
    with pytest.raises(ApiError):
        strategic_merge_patch(_deploy([]), _deploy([{"image": "no-name"}]))
    with pytest.raises(ApiError):
        strategic_merge_patch({}, {"$patch": "explode"})


def test_json_merge_patch() -> None:
    assert json_merge_patch(
        {"a": {"b": 1, "c": 2}, "l": [1, 2]}, {"a": {"b": None, "d": 3}, "l": [3]}
    ) == {
        "a": {"c": 2, "d": 3},
        "l": [3],
    }


def test_json_patch_operations() -> None:
    doc: dict[str, Any] = {
        "spec": {"replicas": 1, "list": [1, 2]},
        "metadata": {"labels": {"a/b": "x"}},
    }
    out = json_patch(
        doc,
        [
            {"op": "test", "path": "/spec/replicas", "value": 1},
            {"op": "replace", "path": "/spec/replicas", "value": 2},
            {"op": "add", "path": "/spec/list/-", "value": 3},
            {"op": "add", "path": "/spec/list/0", "value": 0},
            {"op": "remove", "path": "/metadata/labels/a~1b"},
            {"op": "copy", "from": "/spec/replicas", "path": "/spec/copied"},
            {"op": "move", "from": "/spec/copied", "path": "/spec/moved"},
        ],
    )
    assert out == {
        "spec": {"replicas": 2, "list": [0, 1, 2, 3], "moved": 2},
        "metadata": {"labels": {}},
    }
    assert doc["spec"]["replicas"] == 1
    for bad in (
        [{"op": "test", "path": "/spec/replicas", "value": 9}],
        [{"op": "remove", "path": "/nope"}],
        [{"op": "add", "path": "/spec/list/9", "value": 1}],
        [{"op": "frobnicate", "path": "/"}],
        [{"op": "add", "path": "no-slash", "value": 1}],
        {"op": "add"},
    ):
        with pytest.raises(ApiError):
            json_patch(doc, bad)


_STRATEGIC_CASES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (
        _deploy([{"name": "a", "image": "a", "ports": [{"containerPort": 80}]}, {"name": "b"}]),
        {
            "spec": {
                "replicas": 2,
                "template": {
                    "spec": {
                        "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                        "containers": [{"name": "a", "image": "a2"}, {"name": "c"}],
                    }
                },
            }
        },
    ),
    (
        _deploy([{"name": "a"}, {"name": "b", "env": [{"name": "X", "value": "1"}]}]),
        {"spec": {"template": {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}}},
    ),
    (
        {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
        {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}, "paused": None}},
    ),
    (
        {"metadata": {"finalizers": ["a"], "labels": {"x": "1"}}, "status": {"phase": "P"}},
        {"metadata": {"finalizers": ["b"], "labels": {"x": None}}, "status": {"phase": "R"}},
    ),
    (
        {"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Other"}]}},
        {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
    ),
]


@pytest.mark.parametrize(("original", "patch"), _STRATEGIC_CASES)
def test_an_owned_original_is_patched_in_place_to_the_same_result(
    original: dict[str, Any], patch: dict[str, Any]
) -> None:
    """The API server hands the patch functions its own copy (``owned``): patched in place, the
    result is what the copying path gives, and the copying path leaves the original alone."""
    before = copy.deepcopy(original)
    copied = strategic_merge_patch(original, patch)
    assert original == before
    assert strategic_merge_patch(copy.deepcopy(original), patch, owned=True) == copied
    ops = [
        {"op": "add", "path": "/metadata", "value": {"labels": {"k": "v"}}},
        {"op": "copy", "from": "/metadata", "path": "/copied"},
        {"op": "replace", "path": "/copied/labels/k", "value": "w"},
    ]
    plain = json_patch(original, ops)
    assert original == before
    assert plain["metadata"] == {"labels": {"k": "v"}}  # the copy op shares nothing with it
    assert json_patch(copy.deepcopy(original), ops, owned=True) == plain
