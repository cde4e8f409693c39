"""One encoding of a created object for the store and the answer: byte for byte what the
two encodings it stands in for give, for objects built to trip a splice."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from berth.api.meta import Obj
from berth.apiserver.codec import Codec, answer
from berth.store.interface import KeyValue

_PLACEHOLDER_TEXT = ',"resourceVersion":@}'


def _pod(**meta: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ns", **meta},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Pending"},
    }


OBJECTS: list[Obj] = [
    _pod(),
    _pod(labels={"app": "web"}, annotations={"resourceVersion": "7"}),
    _pod(annotations={"x": _PLACEHOLDER_TEXT, "resourceVersion": _PLACEHOLDER_TEXT}),
    _pod(annotations={"é": "ü\u2028\x00", "emoji": "\U0001f600"}),
    _pod(managedFields=[{"manager": "m", "fieldsV1": {"f:metadata": {"f:resourceVersion": {}}}}]),
    # metadata first, last, alone; objects nested under other keys named metadata
    {"metadata": {"name": "first"}, "apiVersion": "v1", "kind": "ConfigMap", "data": {}},
    {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}, "metadata": {"name": "last"}},
    {"metadata": {"name": "alone"}},
    {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "spec": {"template": {"metadata": {"labels": {"a": "b"}, "resourceVersion": "1"}}},
        "metadata": {"name": "d"},
        "status": {"metadata": {"resourceVersion": "2"}},
    },
    {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "spec": {"metadata": {"x": 1}, "deep": [[{"metadata": {}}]]},
        "metadata": {"name": "w", "generation": 1},
    },
    # numbers at their limits, floats, nulls, booleans
    _pod(
        annotations={"n": "1"},
        generation=2**63 - 1,
        deletionGracePeriodSeconds=-(2**63),
        x=1.5e300,
        y=None,
        z=False,
    ),
]


def _with_rv(obj: Obj, rv: str) -> Obj:
    out = copy.deepcopy(obj)
    out["metadata"]["resourceVersion"] = rv
    return out


@pytest.mark.parametrize("obj", OBJECTS)
def test_the_stored_bytes_and_the_answer_are_the_two_encodings(obj: Obj) -> None:
    codec = Codec()
    before = copy.deepcopy(obj)
    encoded = codec.encode_created("/registry/x/ns/p", obj)
    assert encoded is not None
    stored, plain, at = encoded
    assert obj == before
    assert list(obj["metadata"]) == list(before["metadata"])
    assert stored == plain == codec.encode("/registry/x/ns/p", obj)
    for rv in ("1", "12345678901234567890"):
        assert answer(plain, at, rv) == orjson.dumps(_with_rv(obj, rv))


def test_a_sealed_secret_opens_to_the_same_object_and_the_answer_is_in_clear() -> None:
    codec = Codec(key=b"k" * 32)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"a": "Yg=="},
    }
    key = "/registry/core/secrets/ns/s"
    encoded = codec.encode_created(key, secret)
    assert encoded is not None
    stored, plain, at = encoded
    assert b"Yg==" not in stored
    assert codec.decode(KeyValue(key, stored, 5, 5)) == _with_rv(secret, "5")
    assert answer(plain, at, "5") == orjson.dumps(_with_rv(secret, "5"))


@pytest.mark.parametrize(
    "obj",
    [
        {"metadata": {}},
        {"metadata": None},
        {"apiVersion": "v1"},
        {"metadata": {"name": "p", "resourceVersion": "3"}},
    ],
)
def test_objects_without_a_place_for_the_version_are_encoded_as_before(obj: Obj) -> None:
    before = copy.deepcopy(obj)
    assert Codec().encode_created("/registry/x/p", obj) is None
    assert obj == before


def test_what_cannot_be_encoded_fails_as_encode_does_and_leaves_the_object() -> None:
    obj = _pod(generation=2**64)
    before = copy.deepcopy(obj)
    with pytest.raises(orjson.JSONEncodeError):
        Codec().encode("/registry/x/p", obj)
    with pytest.raises(orjson.JSONEncodeError):
        Codec().encode_created("/registry/x/p", obj)
    assert obj == before
