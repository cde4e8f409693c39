"""Duplicate keys in a request body, reported as kube-apiserver reports them.

A JSON or YAML object may repeat a key; decoders keep the last value. kube-apiserver's
strict decoding reports each repeat: ``duplicate field "metadata.labels.app"`` for JSON, and
for YAML go-yaml's ``line 7: key "image" already set in map`` (under ``error converting
YAML to JSON: yaml: unmarshal errors:``).

orjson, which decodes every JSON body, keeps the last value silently, so the check must
not slow the common case (no repeats) down: :func:`json_duplicates` compares the number of
``":`` (a key's closing quote and its colon) in the body with that in the decoded value
encoded again by orjson (compact, as kubectl and client libraries send): C-speed counts, a
few microseconds for a pod. Only when they differ (repeats, or text laid out differently:
``"key" :``) does it parse again, slowly, to name the repeated keys exactly. A body could
hide a repeat from the count only by writing a quote inside a string as ``\u0022``
right before a colon, once per repeat; it then gets the last value, as with ``Ignore``.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import yaml

from berth.apiserver.gostrings import go_quote

MAX_REPORTED = 100

KEY_END = b'":'


class _Pairs(list[tuple[str, Any]]):
    """An object as decoded with its key order and repeats (``object_pairs_hook``)."""


def _paths(node: Any, path: str, found: list[str]) -> None:
    if isinstance(node, _Pairs):
        seen: set[str] = set()
        for key, value in node:
            child = f"{path}.{key}" if path else key
            if key in seen:
                found.append(child)
            seen.add(key)
            _paths(value, child, found)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            _paths(item, f"{path}[{index}]", found)


def is_json(raw: bytes) -> bool:
    """Whether ``raw`` is JSON text (a YAML body may start with ``{`` and still not be)."""
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return True


def json_duplicates(raw: bytes, value: Any, *, key_ends: int | None = None) -> list[str]:
    """The paths of the repeated keys in JSON text ``raw`` (decoded as ``value``), in
    document order, without repeats, at most :data:`MAX_REPORTED`. ``key_ends``: the
    number of ``":`` in ``orjson.dumps(value)`` when the caller knows it already (see
    :func:`berth.apiserver.bodycheck.key_ends`), which spares encoding ``value`` again."""
    if not isinstance(value, dict | list):
        return []
    if key_ends is None:
        key_ends = orjson.dumps(value).count(KEY_END)
    if raw.count(KEY_END) == key_ends:
        return []
    tree = json.loads(raw, object_pairs_hook=_Pairs)
    found: list[str] = []
    _paths(tree, "", found)
    return list(dict.fromkeys(found))[:MAX_REPORTED]


def yaml_duplicates(raw: bytes) -> list[str]:
    """go-yaml's ``line N: key "k" already set in map`` for each repeated key of YAML text
    ``raw`` (already checked and bounded by :func:`berth.apiserver.bodies.scan_yaml`)."""
    try:
        root = yaml.compose(raw, Loader=yaml.CSafeLoader)
    except yaml.YAMLError:
        return []
    found: list[str] = []
    stack: list[yaml.Node] = [root] if root is not None else []
    seen_nodes: set[int] = set()
    while stack and len(found) < MAX_REPORTED:
        node = stack.pop()
        if id(node) in seen_nodes:  # aliases share nodes: visit each once
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    key = str(key_node.value)
                    if key in keys:
                        line = key_node.start_mark.line + 1
                        found.append(f"line {line}: key {go_quote(key)} already set in map")
                    keys.add(key)
                stack.append(value_node)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    found.sort(key=lambda text: int(text.split(":", 1)[0].removeprefix("line ")))
    return found
