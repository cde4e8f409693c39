"""freeze: every container in an object becomes read-only, whatever its exact type (the fast
path by exact type must not skip mappings and sequences of other types)."""

from __future__ import annotations

from collections import OrderedDict
from types import MappingProxyType

import pytest

from berth.machinery.objects import freeze, thaw


class _Names(list[str]):
    pass


def test_json_object_is_frozen_all_the_way_down() -> None:
    obj = {"a": {"b": [1, {"c": None}], "d": (True, 1.5)}, "e": "x"}
    frozen = freeze(obj)
    assert isinstance(frozen, MappingProxyType)
    assert isinstance(frozen["a"], MappingProxyType)
    assert frozen["a"]["b"] == (1, MappingProxyType({"c": None}))
    assert isinstance(frozen["a"]["b"][1], MappingProxyType)
    assert frozen["a"]["d"] == (True, 1.5)
    assert thaw(frozen) == {"a": {"b": [1, {"c": None}], "d": [True, 1.5]}, "e": "x"}
    with pytest.raises(TypeError):
        frozen["a"]["b"][1]["c"] = 1  # type: ignore[index]


def test_other_mappings_and_sequences_are_frozen_too() -> None:
    inner = OrderedDict(k=_Names(["v"]))
    frozen = freeze({"m": inner, "p": MappingProxyType({"q": [1]})})
    assert isinstance(frozen["m"], MappingProxyType)
    assert frozen["m"]["k"] == ("v",)
    assert frozen["p"]["q"] == (1,)
