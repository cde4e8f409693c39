"""The three PATCH flavours: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and
Kubernetes strategic merge patch, shared by the API server and its clients (the fake client
applies patches exactly as the server does).

Strategic merge patch is what ``kubectl apply`` sends for built-in kinds. Lists of structs
merge by a key (containers by ``name``, container ports by ``containerPort`` ...) instead of
being replaced; directives (``$patch``, ``$setElementOrder/``, ``$retainKeys``,
``$deleteFromPrimitiveList/``) refine the merge. The merge keys come from the
``patchMergeKey``/``patchStrategy`` tags of the Kubernetes Go types for the kinds berth serves.
"""

from __future__ import annotations

import copy
from typing import Any

# Operations in one JSON patch, as kube-apiserver bounds them: a bound on what a client can
# make the server do with one request.
MAX_JSON_PATCH_OPERATIONS = 10_000


class PatchError(ValueError):
    """A patch that cannot be applied to the object (the API server answers 422)."""


class PatchFormatError(PatchError):
    """A patch that is not a patch of its type at all (the API server answers 400)."""


class PatchTooLarge(PatchError):
    """A JSON patch with more operations than :data:`MAX_JSON_PATCH_OPERATIONS` (413)."""


# --- JSON merge patch ------------------------------------------------------------------------


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, ``null`` deletes, anything else replaces. The result
    shares the subtrees the patch does not touch with ``target``; copy it before mutating."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = json_merge_patch(result.get(k), v)
    return result


# --- JSON patch ------------------------------------------------------------------------------


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str):
        raise PatchError(f"invalid JSON pointer {path!r}")
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}: must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], segment: str, *, for_add: bool) -> int:
    if segment == "-" and for_add:
        return len(container)
    if not segment.isdigit() or (len(segment) > 1 and segment.startswith("0")):
        raise PatchError(f"invalid array index {segment!r}")
    i = int(segment)
    limit = len(container) if for_add else len(container) - 1
    if i > limit:
        raise PatchError(f"array index {i} out of range")
    return i


def _parent(doc: Any, tokens: list[str]) -> Any:
    cur = doc
    for t in tokens[:-1]:
        if isinstance(cur, dict):
            if t not in cur:
                raise PatchError(f"path segment {t!r} not found")
            cur = cur[t]
        elif isinstance(cur, list):
            cur = cur[_index(cur, t, for_add=False)]
        else:
            raise PatchError(f"cannot traverse into a scalar at {t!r}")
    return cur


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path {'/'.join(tokens)!r} not found")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, for_add=False)]
    raise PatchError("cannot index a scalar")


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, for_add=True), value)
    else:
        raise PatchError("cannot add to a scalar")
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path {'/'.join(tokens)!r} not found")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(parent, last, for_add=False)]
    else:
        raise PatchError("cannot remove from a scalar")
    return doc


def json_patch(doc: Any, ops: Any, *, owned: bool = False) -> Any:
    """Apply an RFC 6902 operation list; raises :class:`PatchError` on any failure.
    ``owned``: ``doc`` is the caller's own copy (the API server's json_copy of the stored
    object), changed in place instead of deep-copied again; after a failure it is
    half-patched."""
    if not isinstance(ops, list):
        raise PatchFormatError("a JSON patch must be a list of operations")
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise PatchTooLarge(
            f"The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, "
            f"got {len(ops)}"
        )
    if not owned:
        doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict):
            raise PatchError("each JSON patch operation must be an object")
        kind = op.get("op")
        path = _pointer(op.get("path"))
        if kind == "add":
            if "value" not in op:
                raise PatchError("add needs a value")
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            if "value" not in op:
                raise PatchError("replace needs a value")
            _get(doc, path)
            doc = _remove(doc, path) if path else doc
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            src = _pointer(op.get("from"))
            value = copy.deepcopy(_get(doc, src))
            if kind == "move":
                if path[: len(src)] == src and len(path) > len(src):
                    raise PatchError("cannot move a value into one of its children")
                doc = _remove(doc, src)
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise PatchError(f"test operation failed at {op.get('path')!r}")
        else:
            raise PatchError(f"unknown JSON patch operation {kind!r}")
    return doc


# --- strategic merge patch -------------------------------------------------------------------

# Field-name suffixes of list fields that merge by key, from the Go struct tags. Lists not
# named here are atomic: a patch replaces them.
_MERGE_KEYS: dict[tuple[str, ...], str] = {
    ("containers",): "name",
    ("initContainers",): "name",
    ("ephemeralContainers",): "name",
    ("containers", "ports"): "containerPort",
    ("initContainers", "ports"): "containerPort",
    ("spec", "ports"): "port",  # Service.spec.ports
    ("env",): "name",
    ("volumeMounts",): "mountPath",
    ("volumeDevices",): "devicePath",
    ("volumes",): "name",
    ("imagePullSecrets",): "name",
    ("hostAliases",): "ip",
    ("conditions",): "type",
    ("addresses",): "type",  # Node.status.addresses
    ("ownerReferences",): "uid",
    ("topologySpreadConstraints",): "topologyKey",
    ("secrets",): "name",  # ServiceAccount.secrets
}
# Primitive lists that merge as a set.
_SET_LISTS: set[tuple[str, ...]] = {("metadata", "finalizers")}


def merge_key_for(path: tuple[str, ...]) -> str | None:
    for n in (2, 1):
        if len(path) >= n and path[-n:] in _MERGE_KEYS:
            return _MERGE_KEYS[path[-n:]]
    return None


def _is_set_list(path: tuple[str, ...]) -> bool:
    return len(path) >= 2 and path[-2:] in _SET_LISTS


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _strip_directives(v)
            for k, v in value.items()
            if not k.startswith("$") and v is not None
        }
    if isinstance(value, list):
        return [_strip_directives(v) for v in value if not _is_delete_item(v)]
    return value


def _is_delete_item(v: Any) -> bool:
    return isinstance(v, dict) and v.get("$patch") == "delete"


def strategic_merge_patch(original: Any, patch: Any) -> Any:
    """Apply a strategic merge patch to ``original`` (a decoded object); returns a new value.
    ``original`` is never modified; the result is new along the paths the patch touches and
    shares the other subtrees with ``original`` (as :func:`json_merge_patch`): copy it
    before mutating. (Each level deep-copied what it merged into: a pod status patch copied
    the pod, then its status, then each condition, and a pod is mostly managedFields.)"""
    if not isinstance(patch, dict):
        raise PatchFormatError("a strategic merge patch must be a JSON object")
    return _merge_map(original if isinstance(original, dict) else {}, patch, ())


def _merge_map(orig: dict[str, Any], patch: dict[str, Any], path: tuple[str, ...]) -> Any:
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip_directives({k: v for k, v in patch.items() if k != "$patch"})
    if directive == "delete":
        return None
    if directive not in (None, "merge"):
        raise PatchError(f"unknown $patch directive {directive!r}")
    result = dict(orig)  # new here; what the patch does not reach stays shared
    orders: dict[str, list[Any]] = {}
    retain: list[str] | None = None
    for k, v in patch.items():
        if k == "$patch":
            continue
        if k == "$retainKeys":
            if not isinstance(v, list):
                raise PatchError("$retainKeys must be a list")
            retain = [str(x) for x in v]
            continue
        if k.startswith("$setElementOrder/"):
            if not isinstance(v, list):
                raise PatchError(f"{k} must be a list")
            orders[k.split("/", 1)[1]] = v
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            if not isinstance(v, list):
                raise PatchError(f"{k} must be a list")
            cur = result.get(field)
            if isinstance(cur, list):
                result[field] = [x for x in cur if x not in v]
            continue
        if k.startswith("$"):
            raise PatchError(f"unknown directive {k!r}")
        if v is None:
            result.pop(k, None)
            continue
        sub_path = (*path, k)
        if isinstance(v, dict):
            merged = _merge_map(result[k] if isinstance(result.get(k), dict) else {}, v, sub_path)
            if merged is None:
                result.pop(k, None)
            else:
                result[k] = merged
        elif isinstance(v, list):
            result[k] = _merge_list(result.get(k), v, sub_path)
        else:
            result[k] = v
    for field, order in orders.items():
        cur = result.get(field)
        if isinstance(cur, list):
            result[field] = _apply_order(cur, order, merge_key_for((*path, field)))
    if retain is not None:
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(orig: Any, patch: list[Any], path: tuple[str, ...]) -> list[Any]:
    key = merge_key_for(path)
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [_strip_directives(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    if _is_set_list(path):
        base = list(orig) if isinstance(orig, list) else []
        for item in patch:
            if item not in base:
                base.append(item)
        return base
    if key is None or not isinstance(orig, list):
        if key is None:
            return [_strip_directives(i) for i in patch]
        orig = []
    result: list[Any] = list(orig)  # items merged into are replaced, never modified
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"list {'.'.join(path)} merges by {key!r}; items must be objects")
        if key not in item:
            raise PatchError(f"item in list {'.'.join(path)} lacks merge key {key!r}")
        idx = next(
            (i for i, o in enumerate(result) if isinstance(o, dict) and o.get(key) == item[key]),
            None,
        )
        if item.get("$patch") == "delete":
            if idx is not None:
                del result[idx]
            continue
        if idx is None:
            result.append(_strip_directives(item))
        else:
            merged = _merge_map(result[idx], item, path)
            result[idx] = merged
    return result


def _apply_order(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(x: Any) -> Any:
        if key is not None and isinstance(x, dict):
            x = x.get(key)
        return x if isinstance(x, str | int | float | bool) else repr(x)

    wanted = [ident(o) for o in order]
    ranked = {w: i for i, w in enumerate(wanted) if isinstance(w, str | int | float | bool)}
    positioned = [x for x in items if ident(x) in ranked]
    rest = [x for x in items if ident(x) not in ranked]
    positioned.sort(key=lambda x: ranked[ident(x)])
    return positioned + rest
