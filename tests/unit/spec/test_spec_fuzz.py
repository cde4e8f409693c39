"""Whatever a spec file holds, loading ends in a spec or in located problems, never a crash."""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.errors import SpecError
from provisioner.spec import parse_spec

BASE: dict[str, Any] = {
    "apiVersion": "berth.dev/v1alpha1",
    "kind": "Cluster",
    "metadata": {"name": "f"},
    "spec": {
        "ssh": {"user": "root", "jumpHost": {"address": "b.example"}},
        "hosts": [
            {"name": "a", "address": "10.0.0.1", "roles": ["control-plane"], "labels": {"x": "y"}},
            {
                "name": "b",
                "address": "10.0.0.2",
                "roles": ["worker"],
                "taints": [{"key": "k", "effect": "NoSchedule"}],
            },
        ],
        "datastore": {"type": "sqlite"},
        "network": {"podCIDR": "10.244.0.0/16", "clusterDNS": "10.96.0.10"},
        "apiServer": {"endpoint": "10.0.0.1", "extraSANs": ["api.example"]},
        "certificates": {"leafValidityDays": 365},
        "upgrade": {"maxUnavailable": 1},
    },
}


def _paths(node: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


PATHS = _paths(BASE)
LINE = re.compile(r"^f\.yaml:\d+:\d+: \S.*?: \S.*$")

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _problems(document: Any) -> list[str] | None:
    """``None`` if the document loads, else its problem lines."""
    try:
        parse_spec(yaml.safe_dump(document), filename="f.yaml")
    except SpecError as error:
        return error.problems
    return None


def _assert_loads_or_locates(document: Any) -> None:
    problems = _problems(document)
    if problems is not None:
        assert problems
        for line in problems:
            assert LINE.match(line), line


@settings(max_examples=150, deadline=None)
@given(path=st.sampled_from(PATHS), value=values)
def test_any_value_anywhere(path: tuple[str | int, ...], value: Any) -> None:
    document = copy.deepcopy(BASE)
    parent: Any = document
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    _assert_loads_or_locates(document)


@settings(max_examples=100, deadline=None)
@given(
    path=st.sampled_from([p for p in PATHS if isinstance(p[-1], str)]),
    key=st.text(max_size=10),
    value=values,
)
def test_any_extra_key_anywhere(path: tuple[str | int, ...], key: str, value: Any) -> None:
    document = copy.deepcopy(BASE)
    parent: Any = document
    for part in path[:-1]:
        parent = parent[part]
    parent[key] = value
    _assert_loads_or_locates(document)


def test_the_base_document_is_valid() -> None:
    spec = parse_spec(yaml.safe_dump(BASE), filename="f.yaml")
    assert len(spec.hosts) == 2


TEXT = yaml.safe_dump(BASE)


@settings(max_examples=200, deadline=None)
@given(position=st.integers(0, len(TEXT)), insert=st.text(max_size=6), delete=st.integers(0, 6))
def test_any_edit_of_the_text(position: int, insert: str, delete: int) -> None:
    text = TEXT[:position] + insert + TEXT[position + delete :]
    try:
        parse_spec(text, filename="f.yaml")
    except SpecError as error:
        problems = error.problems
    else:
        problems = []
    for line in problems:
        assert LINE.match(line), line
