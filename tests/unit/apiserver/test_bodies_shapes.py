"""Bounded body decoding (bodies.py) and the typed shape check (shapes.py), without a server."""

from __future__ import annotations

import time
from typing import Any

import pytest

from berth.api.resources import TABLE, ResourceDef
from berth.apiserver import bodies, shapes
from berth.apiserver.errors import ApiError


def _rd(plural: str, group: str = "") -> ResourceDef:
    rd = TABLE.lookup(group, "v1", plural)
    assert rd is not None
    return rd


def _bomb(levels: int, width: int = 9) -> bytes:
    lines = ["a0: &a0 [" + ",".join(['"x"'] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return ("\n".join(lines) + "\n").encode()


def _bad_request(fn: Any, *args: Any) -> str:
    with pytest.raises(ApiError) as info:
        fn(*args)
    assert (info.value.code, info.value.reason) == (400, "BadRequest")
    return info.value.message


@pytest.mark.parametrize("levels", [6, 9, 30])
def test_alias_bomb_is_refused_before_construction(levels: int) -> None:
    started = time.monotonic()
    message = _bad_request(bodies.decode_yaml, _bomb(levels))
    assert f"more than {bodies.MAX_YAML_NODES} nodes" in message
    assert time.monotonic() - started < 1.0


def test_small_alias_use_is_fine() -> None:
    doc = b"a: &x {k: v}\nb: *x\nc: [*x, *x]\n"
    assert bodies.decode_yaml(doc) == {"a": {"k": "v"}, "b": {"k": "v"}, "c": [{"k": "v"}] * 2}


def test_alias_depth_counts_the_expanded_nesting() -> None:
    # 60 levels, used inside another 60 levels: 120 once expanded.
    inner = "&deep " + "[" * 60 + "]" * 60
    doc = f"a: {inner}\nb: {'[' * 59}*deep{']' * 59}\n".encode()
    assert "nested too deeply" in _bad_request(bodies.decode_yaml, doc)


def test_recursive_or_undefined_alias_is_400() -> None:
    _bad_request(bodies.decode_yaml, b"a: &x [*x]\n")
    _bad_request(bodies.decode_yaml, b"a: *nowhere\n")


@pytest.mark.parametrize(
    "doc",
    [
        b"- " * (bodies.MAX_DEPTH + 1) + b"x\n",
        b"- " * 5000 + b"x\n",
        b"[" * 3000 + b"]" * 3000,
        b"{a: " * 2000 + b"1" + b"}" * 2000,
    ],
)
def test_deep_yaml_is_400(doc: bytes) -> None:
    assert "nested too deeply" in _bad_request(bodies.decode_yaml, doc)


def test_yaml_at_the_depth_bound_is_accepted() -> None:
    value = bodies.decode_yaml(b"- " * bodies.MAX_DEPTH + b"x\n")
    for _ in range(bodies.MAX_DEPTH):
        value = value[0]
    assert value == "x"


@pytest.mark.parametrize("depth", [bodies.MAX_DEPTH + 1, 400, 1025, 100_000])
def test_deep_json_is_400(depth: int) -> None:
    doc = b"[" * depth + b"]" * depth
    assert "nested too deeply" in _bad_request(bodies.decode_json, doc)


@pytest.mark.parametrize(
    "doc",
    [
        b"a: !!binary aGVsbG8=\n",  # bytes: not JSON
        b"a: !!set {x, y}\n",
        b"a: " + b"9" * 5000 + b"\n",  # past Python's int-from-text digit limit
        b"a: " + b"9" * 30 + b"\n",  # beyond 64 bits
        b"{: [unclosed",
        b"a: 1\n---\nb: 2\n",  # two documents
        b"\xff\xfe\x00",
    ],
)
def test_yaml_that_json_cannot_hold_is_400(doc: bytes) -> None:
    _bad_request(bodies.decode_yaml, doc)


def test_yaml_keys_and_dates_convert_to_json_strings() -> None:
    assert bodies.decode_yaml(b"1: a\nwhen: 2024-01-02\n") == {"1": "a", "when": "2024-01-02"}


def test_json_body_sent_as_yaml_takes_the_json_path() -> None:
    assert bodies.decode_yaml(b'{"a": [1, 2]}') == {"a": [1, 2]}
    assert bodies.decode_yaml(b"{a: [1, 2]}") == {"a": [1, 2]}  # flow YAML, not JSON


def test_check_depth_is_iterative() -> None:
    deep: Any = []
    for _ in range(50_000):  # far past the recursion limit
        deep = [deep]
    assert "nested too deeply" in _bad_request(bodies.check_depth, deep)


def test_shapes_refuse_wrong_types_with_the_path() -> None:
    pods = _rd("pods")
    with pytest.raises(ApiError) as info:
        shapes.check(pods, {"spec": {"containers": "x"}})
    assert info.value.code == 400
    assert info.value.message == (
        'Pod in version "v1" cannot be handled as a Pod: spec.containers: expected an array'
        " of objects, got a string"
    )
    with pytest.raises(ApiError) as info:
        shapes.check(
            pods, {"spec": {"containers": [{"name": "a", "ports": [{"containerPort": "80"}]}]}}
        )
    assert "spec.containers[0].ports[0].containerPort: expected an integer" in info.value.message
    with pytest.raises(ApiError) as info:
        shapes.check(pods, {"metadata": {"labels": {"a": 1}}})
    assert "metadata.labels[a]: expected a string, got a number" in info.value.message


@pytest.mark.parametrize("value", [2**31, -(2**31) - 1, 1.5, True])
def test_shapes_int32_fields(value: Any) -> None:
    with pytest.raises(ApiError):
        shapes.check(_rd("deployments", "apps"), {"spec": {"replicas": value}})


def test_shapes_drop_null_objects_and_arrays_as_go_decoding_does() -> None:
    pod: dict[str, Any] = {
        "metadata": {"labels": None, "name": "p"},
        "spec": {"tolerations": None, "containers": [None], "nodeName": None},
    }
    shapes.check(_rd("pods"), pod)
    assert pod == {"metadata": {"name": "p"}, "spec": {"containers": [{}], "nodeName": None}}


def test_shapes_accept_int_or_string_and_quantities() -> None:
    shapes.check(_rd("services"), {"spec": {"ports": [{"port": 80, "targetPort": "http"}]}})
    shapes.check(
        _rd("pods"),
        {"spec": {"containers": [{"resources": {"limits": {"cpu": 1, "memory": "1Gi"}}}]}},
    )


@pytest.mark.parametrize("decode", [bodies.decode_json, bodies.decode_yaml])
def test_depth_at_the_limit_passes_and_one_more_is_400(decode: Any) -> None:
    # The byte-count shortcut (at most MAX_DEPTH brackets) and the walk agree at the edge.
    at_limit = b"[" * bodies.MAX_DEPTH + b"]" * bodies.MAX_DEPTH
    assert decode(at_limit) is not None
    over = b'{"a":' + at_limit + b"}"
    assert "nested too deeply" in _bad_request(decode, over)
