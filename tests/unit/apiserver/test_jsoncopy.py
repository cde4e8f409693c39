"""json_copy: a deep copy of JSON data (what patches and status writes copy the stored object
with), and copy.deepcopy for anything that is not plain JSON."""

from __future__ import annotations

import asyncio
import copy
import datetime
from typing import Any

import pytest

from berth.api.resources import TABLE
from berth.apiserver.fieldmanager.fieldpath import FrozenFields, frozen
from berth.apiserver.jsoncopy import json_copy
from berth.apiserver.strategy import status_update
from tests.harness.registry import memory_registry


def _pod() -> dict[str, Any]:
    return {
        "metadata": {
            "name": "p",
            "labels": {"app": "web"},
            "managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]},
        "status": {"phase": "Pending", "ratio": 0.5, "big": 2**63 - 1, "none": None},
    }


def _shares_nothing(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a is not b and all(_shares_nothing(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return a is not b and all(_shares_nothing(x, y) for x, y in zip(a, b, strict=True))
    return True


def test_a_copy_is_equal_and_shares_nothing() -> None:
    pod = _pod()
    copied = json_copy(pod)
    assert copied == pod
    assert _shares_nothing(pod, copied)


def test_what_is_not_plain_json_is_copied_as_deepcopy_copies_it() -> None:
    when = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    for odd in ({"n": 2**70}, {1: "int key"}, {"t": when}):
        got = json_copy(odd)
        assert got == copy.deepcopy(odd)
        assert type(next(iter(got.values()))) is type(next(iter(odd.values())))


def test_a_status_write_keeps_spec_and_metadata_and_copies_them() -> None:
    old = _pod()
    new = {"metadata": {"labels": {"app": "db"}}, "spec": {}, "status": {"phase": "Running"}}
    result = status_update(old, new)
    assert result == {**_pod(), "status": {"phase": "Running"}}
    result["metadata"]["labels"]["app"] = "changed"
    result["spec"]["containers"][0]["name"] = "changed"
    assert old == _pod()  # nothing of the stored object is shared with the written one


def _no_slow_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """copy.deepcopy refuses from here on: json_copy's fallback, and any second copy."""

    def refuse(obj: Any, memo: Any = None) -> Any:
        raise AssertionError(f"a slow deep copy of a {type(obj).__name__}")

    monkeypatch.setattr(copy, "deepcopy", refuse)


def test_a_frozen_field_set_is_copied_fast_into_plain_mutable_dicts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shared = frozen({"f:spec": {"f:containers": {}}, "f:metadata": {}})
    pod = _pod()
    pod["metadata"]["managedFields"][0]["fieldsV1"] = shared
    _no_slow_copy(monkeypatch)
    copied = json_copy(pod)
    fields = copied["metadata"]["managedFields"][0]["fieldsV1"]
    assert fields == shared
    assert type(fields) is dict
    assert type(fields["f:spec"]) is dict
    fields["f:spec"]["f:new"] = {}  # the copy is the caller's to change
    assert "f:new" not in shared["f:spec"]


def test_status_patches_of_a_created_pod_take_the_fast_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A created pod's managedFields hold the shared FrozenFields, which json_copy sent to
    deepcopy; and the strategic merge copied the already copied object again, whole."""
    asyncio.run(_patch_a_created_pod(monkeypatch))


async def _patch_a_created_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    reg = await memory_registry()
    rd = TABLE.lookup("", "v1", "pods")
    assert rd is not None
    body = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "b"}]}}
    created = await reg.create(rd, "default", body, user=None)
    assert isinstance(created, dict)
    assert type(created["metadata"]["managedFields"][0]["fieldsV1"]) is FrozenFields
    _no_slow_copy(monkeypatch)
    for message in ("one", "two"):
        patch = {"status": {"phase": "Running", "message": message}}
        got = await reg.patch(
            rd, "default", "p", "strategic", patch, subresource="status", user=None
        )
        assert got["status"]["message"] == message
