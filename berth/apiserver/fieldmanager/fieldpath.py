"""Field sets in their wire form: the ``fieldsV1`` trie of managedFields entries.

A field set is held exactly as ``fieldsV1`` serialises it, a nested ``dict``: each key is one
path element (``f:<field>``, ``k:<json object of list-map keys>``, ``v:<json value>`` for a
set item, ``i:<index>``) mapping to the set below it. A node is a *member* of the set when it
has no children (``{}``) or carries the ``"."`` entry; a node with children but no ``"."`` is
only a prefix of deeper members. Using the wire form as the working form makes encoding and
decoding managedFields free, which matters because every write records them.

Sets are values: no function here mutates its arguments, and results may share unchanged
sub-tries with them, so callers must not mutate a set they did not build themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

FieldSet = dict[str, Any]
"""A field set in ``fieldsV1`` form (see the module docstring)."""

SELF = "."
"""The entry marking a node with children as a member itself."""

MAX_KEY_LENGTH = 4096
"""Longest path element accepted in client-provided fieldsV1 (a list-map key is short JSON)."""


def is_member(node: FieldSet) -> bool:
    return not node or SELF in node


def children(node: FieldSet) -> Iterator[tuple[str, FieldSet]]:
    for key, child in node.items():
        if key != SELF:
            yield key, child


def _make(member: bool, kids: FieldSet) -> FieldSet | None:
    """A node from its membership and children; ``None`` when it would be empty."""
    if not kids:
        return {} if member else None
    if member:
        return {SELF: {}, **kids}
    return kids


def union(a: FieldSet, b: FieldSet) -> FieldSet:
    """Members of either set."""
    if not a:
        return b
    if not b:
        return a
    out: FieldSet = {}
    if SELF in a or SELF in b:
        out[SELF] = {}
    for key, child in a.items():
        if key == SELF:
            continue
        other = b.get(key)
        out[key] = child if other is None else _union_node(child, other)
    for key, child in b.items():
        if key != SELF and key not in a:
            out[key] = child
    return out


def _union_node(a: FieldSet, b: FieldSet) -> FieldSet:
    kids = union({k: v for k, v in children(a)}, {k: v for k, v in children(b)})
    node = _make(is_member(a) or is_member(b), kids)
    return node if node is not None else {}


def difference(a: FieldSet, b: FieldSet) -> FieldSet:
    """Members of ``a`` that are not members of ``b`` (exact paths: deeper members of ``a``
    stay even where ``b`` holds their prefix)."""
    if not a or not b:
        return a
    out: FieldSet = {}
    for key, child in a.items():
        if key == SELF:
            continue
        other = b.get(key)
        if other is None:
            out[key] = child
        elif not other:
            # b holds exactly this path: only what lies below it in a stays
            if child and (len(child) > 1 or SELF not in child):
                out[key] = {k: v for k, v in child.items() if k != SELF}
        else:
            node = _make(
                is_member(child) and SELF not in other,
                difference(
                    {k: v for k, v in child.items() if k != SELF},
                    {k: v for k, v in other.items() if k != SELF},
                ),
            )
            if node is not None:
                out[key] = node
    return out


def recursive_difference(a: FieldSet, b: FieldSet) -> FieldSet:
    """Members of ``a`` that are neither members of ``b`` nor below a member of ``b``."""
    if not a or not b:
        return a
    out: FieldSet = {}
    for key, child in children(a):
        other = b.get(key)
        if other is None:
            out[key] = child
            continue
        if is_member(other):
            continue
        node = _make(is_member(child), recursive_difference(dict(children(child)), other))
        if node is not None:
            out[key] = node
    return out


def intersection(a: FieldSet, b: FieldSet) -> FieldSet:
    """Members of both sets."""
    if not a or not b:
        return {}
    out: FieldSet = {}
    for key, child in children(a):
        other = b.get(key)
        if other is None:
            continue
        node = _make(
            is_member(child) and is_member(other),
            intersection(dict(children(child)), dict(children(other))),
        )
        if node is not None:
            out[key] = node
    return out


def members(s: FieldSet, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every member path, parents before children, siblings in sorted order."""
    for key in sorted(k for k in s if k != SELF):
        child = s[key]
        path = (*prefix, key)
        if is_member(child):
            yield path
        yield from members(child, path)


def has(s: FieldSet, path: tuple[str, ...]) -> bool:
    node = s
    for key in path:
        child = node.get(key) if key != SELF else None
        if child is None:
            return False
        node = child
    return bool(path) and is_member(node)


def from_paths(paths: list[tuple[str, ...]]) -> FieldSet:
    """A set holding exactly the given member paths (for tests and fixed sets)."""
    out: FieldSet = {}
    for path in paths:
        out = union(out, _single(path))
    return out


def _single(path: tuple[str, ...]) -> FieldSet:
    node: FieldSet = {}
    for key in reversed(path):
        node = {key: node}
    return node


# -- path elements --------------------------------------------------------------------------

_DUMP = orjson.OPT_SORT_KEYS


def field_key(name: str) -> str:
    return "f:" + name


def map_key(item: dict[str, Any], keys: tuple[str, ...]) -> str:
    return "k:" + orjson.dumps({k: item.get(k) for k in keys}, option=_DUMP).decode()


def value_key(value: Any) -> str:
    return "v:" + orjson.dumps(value, option=_DUMP).decode()


def index_key(i: int) -> str:
    return f"i:{i}"


def _go_value(v: Any) -> str:
    """A value as upstream's ``value.ToString`` prints it in a path (strings quoted)."""
    if isinstance(v, str):
        return orjson.dumps(v).decode()
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    return orjson.dumps(v, option=_DUMP).decode()


def element_string(key: str) -> str:
    """One path element as upstream prints it: ``.name``, ``[name="x"]``, ``[="v"]``, ``[0]``."""
    kind, _, rest = key.partition(":")
    try:
        if kind == "f":
            return "." + rest
        if kind == "k":
            fields = orjson.loads(rest)
            if isinstance(fields, dict):
                return "[" + ",".join(f"{k}={_go_value(v)}" for k, v in fields.items()) + "]"
        elif kind == "v":
            return f"[={_go_value(orjson.loads(rest))}]"
        elif kind == "i":
            return f"[{int(rest)}]"
    except (orjson.JSONDecodeError, ValueError):
        pass
    return "{{invalid path element}}"


def path_string(path: tuple[str, ...]) -> str:
    return "".join(element_string(k) for k in path)


def valid_fields(node: Any, depth: int = 0) -> bool:
    """Whether a client-provided ``fieldsV1`` is a well-formed set (bounded depth)."""
    if not isinstance(node, dict) or depth > 100:
        return False
    for key, child in node.items():
        if key == SELF:
            if child != {}:
                return False
            continue
        if len(key) > MAX_KEY_LENGTH or key[:2] not in ("f:", "k:", "v:", "i:"):
            return False
        if not valid_fields(child, depth + 1):
            return False
    return True


class FrozenFields(dict[str, Any]):
    """A field set that refuses every change in place, for one set shared by many objects
    (the remembered field set of created pods: see ``FieldManager._pod_create_fields``).

    It is a ``dict`` (JSON encoders, equality and the functions here treat it as one; they
    never mutate their arguments anyway), whose mutating methods raise ``TypeError``. A copy
    (``copy.copy``, ``copy.deepcopy``, pickling) is a plain, mutable ``dict``."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a shared field set cannot be changed in place: copy it first")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return {key: _thaw(child) for key, child in self.items()}

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self),))


def _thaw(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _thaw(child) for key, child in node.items()}
    return node


def frozen(s: FieldSet) -> FrozenFields:
    """``s`` as :class:`FrozenFields` all the way down (field sets hold only nested dicts)."""
    return FrozenFields({key: frozen(child) for key, child in s.items()})
