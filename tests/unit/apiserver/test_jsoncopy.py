"""json_copy: a deep copy of JSON data (what patches and status writes copy the stored object
with), and copy.deepcopy for anything that is not plain JSON."""

from __future__ import annotations

import copy
import datetime
from typing import Any

from berth.apiserver.jsoncopy import json_copy
from berth.apiserver.strategy import status_update


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
