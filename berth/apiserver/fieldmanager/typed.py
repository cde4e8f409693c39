"""Structured merge on decoded JSON objects guided by schema nodes.

* :func:`to_fieldset` — the fields an applied configuration sets (an Apply's ownership);
* :func:`compare` — what an update added, modified and removed (an Update's ownership);
* :func:`merge` — an applied configuration merged into the live object;
* :func:`remove_items` — an object without the members of a field set (pruning);
* :func:`ensure_named_fields_are_members` — struct fields with owned children count as owned.

JSON ``null`` is absence throughout: built-in objects are Go values where a null field is an
unset one, and a ``null`` in an applied configuration removes the field.
"""

from __future__ import annotations

from typing import Any

from .fieldpath import SELF, FieldSet, children, is_member, map_key, value_key
from .schema import ATOMIC, DEDUCED, LIST_MAP, LIST_SET, MAP, SCALAR, STRUCT, Node


class TypedError(ValueError):
    """The object does not fit its schema in a way structured merge cannot work around (a
    keyed list item without its key, duplicate keys in an applied configuration)."""


def _is_leaf(node: Node, value: Any) -> bool:
    kind = node.kind
    if kind in (SCALAR, ATOMIC):
        return True
    if kind in (LIST_MAP, LIST_SET):
        return not isinstance(value, list)
    return not isinstance(value, dict)


def item_key(item: Any, node: Node, where: str = "") -> str:
    """The path element of a keyed list item (``k:{...}``)."""
    if not isinstance(item, dict):
        raise TypedError(f"{where}: expected a map item in an associative list")
    keys = node.keys
    if len(keys) == 1:
        # the common case, without a loop
        k = keys[0]
        return map_key({k: _key_field(item, node, k, where)}, keys)
    return map_key({k: _key_field(item, node, k, where) for k in keys}, keys)


def _key_field(item: dict[str, Any], node: Node, k: str, where: str) -> Any:
    """The item's value of key field ``k`` (its schema default when absent): a scalar."""
    v = item.get(k)
    if v is None:
        if k not in node.key_defaults:
            raise TypedError(_missing_key(where, k))
        v = node.key_defaults[k]
    if isinstance(v, dict | list):
        raise TypedError(f"{where}: key field {k!r} must be a scalar")
    return v


def _missing_key(where: str, key: str) -> str:
    return (
        f"{where}: associative list with keys has an element that omits key field"
        f" {key!r} (and doesn't have default value)"
    )


def _pe(item: Any, node: Node, where: str) -> str:
    if node.kind == LIST_MAP:
        return item_key(item, node, where)
    return value_key(item)


# -- ownership of an applied configuration ------------------------------------------------


def to_fieldset(value: Any, node: Node) -> FieldSet:
    """Every leaf, map entry and list item the configuration sets (struct fields count only
    through what they hold, as upstream). Duplicate keys are an error."""
    out: FieldSet = {}
    _apply_walk(value, node, out, "")
    return out


def _apply_walk(value: Any, node: Node, out: FieldSet, where: str) -> None:
    kind = node.kind
    if kind in (STRUCT, MAP, DEDUCED):
        fields = node.fields if kind == STRUCT else None
        for k, v in value.items():
            if v is None:
                continue
            child = fields.get(k) if fields is not None else None
            named = child is not None
            if child is None:
                child = node.elem
            _apply_entry(out, "f:" + k, v, child, member=not named, where=f"{where}.{k}")
    elif kind in (LIST_MAP, LIST_SET):
        elem = node.elem
        for i, item in enumerate(value):
            if item is None:
                continue
            pe = _pe(item, node, f"{where}[{i}]")
            if pe in out:
                raise TypedError(f"{where}: duplicate entries for key {pe[2:]}")
            _apply_entry(out, pe, item, elem, member=True, where=f"{where}[{i}]")


def _apply_entry(out: FieldSet, key: str, v: Any, node: Node, *, member: bool, where: str) -> None:
    if _is_leaf(node, v):
        out[key] = {}
        return
    sub: FieldSet = {SELF: {}} if member else {}
    _apply_walk(v, node, sub, where)
    if member:
        out[key] = {} if len(sub) == 1 else sub
    elif sub:
        out[key] = sub


# -- what an update changed ---------------------------------------------------------------


def added(value: Any, node: Node) -> FieldSet:
    """What writing ``value`` over nothing adds (the field set of a create)."""
    out: FieldSet = {}
    if not _is_leaf(node, value):
        _added_walk(value, node, out, in_item=False)
    return out


def _added_walk(value: Any, node: Node, out: FieldSet, *, in_item: bool) -> None:
    kind = node.kind
    if kind in (STRUCT, MAP, DEDUCED):
        fields = node.fields if kind == STRUCT else None
        for k, v in value.items():
            cls = v.__class__
            if cls is not dict and cls is not list:
                if v is not None:
                    out["f:" + k] = {}  # a scalar is a leaf whatever the schema says
                continue
            child = None if fields is None else fields.get(k)
            if child is None:
                child = node.elem
            _added_entry(out, "f:" + k, v, child, in_item=in_item)
    else:
        elem = node.elem
        for item in value:
            if item is None:
                continue
            try:
                pe = _pe(item, node, "")
            except TypedError:
                continue  # a live object may hold what apply would refuse; it is not owned
            _added_entry(out, pe, item, elem, in_item=True)


def _added_entry(out: FieldSet, key: str, v: Any, node: Node, *, in_item: bool) -> None:
    if _is_leaf(node, v):
        out[key] = {}
        return
    # A struct reached through struct fields only exists in every built-in object (a Go
    # value), so adding it adds only what it holds; maps, lists, list items and the structs
    # inside them did not exist before and are members themselves.
    member = node.kind != STRUCT or node.loose or in_item or not v
    sub: FieldSet = {SELF: {}} if member else {}
    _added_walk(v, node, sub, in_item=in_item)
    if member:
        out[key] = {} if len(sub) == 1 else sub
    elif sub:
        out[key] = sub


class Comparison:
    __slots__ = ("added", "modified", "removed")

    def __init__(self) -> None:
        self.added: FieldSet = {}
        self.modified: FieldSet = {}
        self.removed: FieldSet = {}

    def changed(self) -> bool:
        return bool(self.added or self.modified or self.removed)


def compare(old: Any, new: Any, node: Node) -> Comparison:
    """Fields ``new`` adds to, modifies in and removes from ``old``."""
    c = Comparison()
    if old is None:
        c.added = added(new, node)
    elif new is None:
        c.removed = added(old, node)
    elif _is_leaf(node, old) or _is_leaf(node, new):
        pass  # a root is never a leaf for objects
    else:
        _cmp(old, new, node, add=c.added, mod=c.modified, rem=c.removed, in_item=False)
    return c


def _cmp(
    old: Any,
    new: Any,
    node: Node,
    *,
    add: FieldSet,
    mod: FieldSet,
    rem: FieldSet,
    in_item: bool,
) -> None:
    kind = node.kind
    if kind in (STRUCT, MAP, DEDUCED):
        fields = node.fields if kind == STRUCT else None
        for k, nv in new.items():
            child = None if fields is None else fields.get(k)
            if child is None:
                child = node.elem
            _cmp_entry("f:" + k, old.get(k), nv, child, add=add, mod=mod, rem=rem, in_item=in_item)
        for k, ov in old.items():
            if ov is not None and new.get(k) is None:
                child = None if fields is None else fields.get(k)
                if child is None:
                    child = node.elem
                _added_entry(rem, "f:" + k, ov, child, in_item=in_item)
        return
    elem = node.elem
    old_items = _index(old, node)
    new_items = _index(new, node)
    for pe, nv in new_items.items():
        _cmp_entry(pe, old_items.get(pe), nv, elem, add=add, mod=mod, rem=rem, in_item=True)
    for pe, ov in old_items.items():
        if pe not in new_items:
            _added_entry(rem, pe, ov, elem, in_item=True)


def _index(items: list[Any], node: Node) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if item is None:
            continue
        try:
            out[_pe(item, node, "")] = item
        except TypedError:
            continue
    return out


def _cmp_entry(
    key: str,
    ov: Any,
    nv: Any,
    node: Node,
    *,
    add: FieldSet,
    mod: FieldSet,
    rem: FieldSet,
    in_item: bool,
) -> None:
    if nv is ov:
        # The very same value (a patch shares what it did not touch with the stored
        # object): nothing added, modified or removed under it.
        return
    if nv is None:
        _added_entry(rem, key, ov, node, in_item=in_item)
        return
    if ov is None:
        _added_entry(add, key, nv, node, in_item=in_item)
        return
    if _is_leaf(node, ov) or _is_leaf(node, nv):
        if ov != nv or type(ov) is not type(nv):
            mod[key] = {}
        return
    sa: FieldSet = {}
    sm: FieldSet = {}
    sr: FieldSet = {}
    _cmp(ov, nv, node, add=sa, mod=sm, rem=sr, in_item=in_item)
    if sa:
        add[key] = sa
    if sm:
        mod[key] = sm
    if sr:
        rem[key] = sr


# -- merging an applied configuration -----------------------------------------------------


def merge(live: Any, config: Any, node: Node) -> Any:
    """``config`` merged into ``live``: config values win, maps and keyed lists merge."""
    if live is None:
        return _clean(config)
    if _is_leaf(node, live) or _is_leaf(node, config):
        return _clean(config)
    kind = node.kind
    if kind in (STRUCT, MAP, DEDUCED):
        out = dict(live)
        for k, v in config.items():
            if v is None:
                out.pop(k, None)
                continue
            lv = out.get(k)
            out[k] = _clean(v) if lv is None else merge(lv, v, node.field(k))
        return out
    return _merge_list(live, config, node)


def _clean(value: Any) -> Any:
    """A configuration value without its null map entries (nulls are absence)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _merge_list(live: list[Any], config: list[Any], node: Node) -> list[Any]:
    """Keyed/set lists: the configuration's items in its order, merged with the live items
    of the same key; live-only items keep their place relative to the shared ones."""
    elem = node.elem
    lpes: list[str] = []
    lhs: dict[str, Any] = {}
    for item in live:
        try:
            pe = _pe(item, node, "")
        except TypedError:
            pe = value_key(item)  # kept as an opaque live-only item
        lpes.append(pe)
        lhs.setdefault(pe, item)
    rpes: list[str] = []
    rhs: dict[str, Any] = {}
    for i, item in enumerate(config):
        if item is None:
            continue
        pe = _pe(item, node, f"[{i}]")
        if pe in rhs:
            raise TypedError(f"duplicate entries for key {pe[2:]}")
        rpes.append(pe)
        rhs[pe] = item
    shared = [pe for pe in rpes if pe in lhs]
    out: list[Any] = []
    done: set[str] = set()
    li = ri = si = 0

    def take(pe: str) -> None:
        done.add(pe)
        lv = lhs.get(pe)
        out.append(_clean(rhs[pe]) if lv is None else merge(lv, rhs[pe], elem))

    while li < len(lpes) or ri < len(rpes):
        if li < len(lpes) and ri < len(rpes):
            pe = lpes[li]
            if pe == rpes[ri]:
                take(pe)
                li += 1
                ri += 1
                si = shared.index(pe) + 1 if pe in shared else si
                continue
            nxt = shared[si] if si < len(shared) else None
            if pe in rhs and nxt is not None and nxt != pe:
                li += 1  # shared, but the configuration places it later
                continue
        if li < len(lpes):
            pe = lpes[li]
            if pe not in rhs:
                out.append(live[li])
                li += 1
                continue
            if pe in done:
                li += 1
        if ri < len(rpes):
            pe = rpes[ri]
            if pe not in done:
                take(pe)
            ri += 1
            if si < len(shared) and shared[si] == pe:
                si += 1
    return out


# -- removing owned fields ----------------------------------------------------------------


_GONE = object()


def remove_items(value: Any, s: FieldSet, node: Node) -> Any:
    """``value`` without the members of ``s`` (a container emptied by removal goes too)."""
    if not s:
        return value
    out = _remove(value, s, node)
    return value if out is _GONE else out


def _remove(value: Any, s: FieldSet, node: Node) -> Any:
    if _is_leaf(node, value):
        return value
    kind = node.kind
    if kind in (STRUCT, MAP, DEDUCED):
        if not value:
            return value
        out: dict[str, Any] = {}
        for k, v in value.items():
            sub = s.get("f:" + k)
            if sub is None:
                out[k] = v
                continue
            if is_member(sub):
                continue
            nv = _remove(v, sub, node.field(k))
            if nv is not _GONE:
                out[k] = nv
        return out if out else _GONE
    if not value:
        return value
    items: list[Any] = []
    elem = node.elem
    for item in value:
        try:
            pe = _pe(item, node, "")
        except TypedError:
            items.append(item)
            continue
        sub = s.get(pe)
        if sub is None:
            items.append(item)
            continue
        if is_member(sub):
            continue
        nv = _remove(item, sub, elem)
        if nv is not _GONE:
            items.append(nv)
    return items if items else _GONE


def ensure_named_fields_are_members(s: FieldSet, node: Node) -> FieldSet:
    """``s`` where every declared struct field holding members is a member itself (so that
    pruning removes a struct a manager stopped applying, not only its leaves)."""
    if not s:
        return s
    out: FieldSet = {SELF: {}} if SELF in s else {}
    kind = node.kind
    for key, child in children(s):
        if key.startswith("f:"):
            name = key[2:]
            sub_node = node.field(name) if kind in (STRUCT, MAP, DEDUCED) else node.elem
            named = kind == STRUCT and name in node.fields
        else:
            sub_node = node.elem
            named = False
        grand = ensure_named_fields_are_members(child, sub_node) if child else child
        if named and grand and SELF not in grand:
            grand = {SELF: {}, **grand}
        out[key] = grand
    return out
