"""Server-side apply and managedFields (upstream's field manager).

:class:`FieldManager` is what the registry calls: :meth:`FieldManager.record_update` on every
create, update and non-apply patch (an ``Update`` entry for the writer), and
:meth:`FieldManager.apply` for ``application/apply-patch+yaml`` patches. The pure parts live
beside it: ``fieldpath`` (field sets), ``schema`` (types), ``typed`` (structured merge) and
``managers`` (ownership bookkeeping).
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Mapping
from typing import Any

import orjson

from berth.api.meta import Obj, format_now
from berth.api.resources import ResourceDef
from berth.apiserver.errors import ApiError
from berth.apiserver.podtemplate import Remembered

from .fieldpath import FieldSet, FrozenFields, frozen, members, path_string
from .managers import (
    UPDATE,
    ApplyResult,
    Conflict,
    Conflicts,
    Entry,
    Ignored,
    Managed,
    created_fields,
    decode,
    encode,
    is_reset,
    valid_manager,
)
from .managers import apply as apply_config
from .managers import update as update_managers
from .schema import Node, SchemaProvider, Schemas, custom_resource_node
from .typed import TypedError, compare, to_fieldset

__all__ = [
    "LAST_APPLIED",
    "FieldManager",
    "Node",
    "SchemaProvider",
    "Schemas",
    "custom_resource_node",
    "manager_from_user_agent",
    "request_field_manager",
]

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
KUBECTL = "kubectl"
"""kubectl's default server-side apply manager: the one whose applies upgrade objects from
client-side apply (conflicts with what the last-applied annotation covers are taken over,
and the annotation is kept current)."""

_MISSING: Any = object()


@functools.lru_cache(maxsize=256)  # a cluster's clients send a handful of User-Agents
def manager_from_user_agent(user_agent: str) -> str:
    """Upstream's default manager of a write without ``fieldManager``: the User-Agent up to
    its first ``/``, printable characters only, at most 128 bytes."""
    out: list[str] = []
    size = 0
    for c in user_agent.split("/", 1)[0]:
        if c != " " and unicodedata.category(c)[0] not in "LMNPS":
            continue
        size += len(c.encode())
        if size > 128:
            break
        out.append(c)
    return "".join(out)


def check_field_manager(name: str, *, apply: bool, force: bool | None, kind: str) -> None:
    """Validate ``fieldManager``/``force`` as upstream's {Create,Update,Patch}Options."""
    causes: list[dict[str, str]] = []
    if apply and not name:
        causes.append(
            {
                "reason": "FieldValueRequired",
                "message": "Required value: is required for apply patch",
                "field": "fieldManager",
            }
        )
    if not apply and force is not None:
        causes.append(
            {
                "reason": "FieldValueForbidden",
                "message": "Forbidden: may not be specified for non-apply patch",
                "field": "force",
            }
        )
    if len(name) > 128:
        causes.append(
            {
                "reason": "FieldValueTooLong",
                "message": "Too long: may not be more than 128 bytes",
                "field": "fieldManager",
            }
        )
    elif name and not valid_manager(name):
        causes.append(
            {
                "reason": "FieldValueInvalid",
                "message": f"Invalid value: {orjson.dumps(name).decode()}: invalid character",
                "field": "fieldManager",
            }
        )
    if causes:
        summary = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
        message = f'{kind}.meta.k8s.io "" is invalid: ' + (
            summary if len(causes) == 1 else f"[{summary}]"
        )
        raise ApiError(
            422,
            "Invalid",
            message,
            details={"group": "meta.k8s.io", "kind": kind, "name": "", "causes": causes},
        )


_OPTIONS_KIND = {"POST": "CreateOptions", "PUT": "UpdateOptions", "PATCH": "PatchOptions"}
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False", ""}


def request_field_manager(
    query: Mapping[str, str], method: str, user_agent: str, patch_type: str
) -> tuple[str, bool]:
    """A write's field manager and ``force``: ``fieldManager`` (required for apply patches,
    validated as upstream's options), else derived from the User-Agent as kube-apiserver
    does."""
    name = query.get("fieldManager", "")
    raw_force = query.get("force")
    if raw_force is not None and raw_force not in _TRUE | _FALSE:
        raise ApiError(
            400, "BadRequest", f"invalid boolean value {raw_force!r} for parameter 'force'"
        )
    force = None if raw_force is None else raw_force in _TRUE
    check_field_manager(
        name,
        apply=patch_type == "apply",
        force=force if method == "PATCH" else None,
        kind=_OPTIONS_KIND.get(method, "PatchOptions"),
    )
    return name or manager_from_user_agent(user_agent), bool(force)


def _manager_label(entry: Entry) -> str:
    label = orjson.dumps(entry.manager).decode()
    if entry.subresource:
        label += f" with subresource {orjson.dumps(entry.subresource).decode()}"
    if entry.operation == UPDATE:
        if entry.time is None:
            return f"{label} using {entry.api_version}"
        return f"{label} using {entry.api_version} at {entry.time}"
    return label


def conflict_error(conflicts: list[Conflict]) -> ApiError:
    """The 409 upstream answers an apply that would change other managers' fields."""
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {_manager_label(c.entry)}",
            "field": path_string(c.path),
        }
        for c in conflicts
    ]
    if len(conflicts) == 1:
        c = conflicts[0]
        message = (
            f"Apply failed with 1 conflict: conflict with {_manager_label(c.entry)}:"
            f" {path_string(c.path)}"
        )
    else:
        by_manager: dict[str, list[str]] = {}
        for c in conflicts:
            by_manager.setdefault(_manager_label(c.entry), []).append(path_string(c.path))
        lines: list[str] = []
        for label in sorted(by_manager):
            lines.append(f"conflicts with {label}:")
            lines.extend(f"- {p}" for p in by_manager[label])
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return ApiError(409, "Conflict", message, details={"causes": causes})


def _body(obj: Obj | None) -> Obj:
    """The object without its managedFields (a shallow copy; they are not compared)."""
    if obj is None:
        return {}
    m = obj.get("metadata")
    if not isinstance(m, dict) or "managedFields" not in m:
        return obj
    out = dict(obj)
    out["metadata"] = {k: v for k, v in m.items() if k != "managedFields"}
    return out


# Identity metadata no manager owns (see ``managers._STRIPPED``), whose scalar values a create's
# field-set memo leaves out of its key.
_PER_OBJECT = frozenset(
    (
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "resourceVersion",
    )
)
_MAX_CREATE_KEY = 16 * 1024
"""Larger objects are not remembered (the memo's memory stays bounded)."""


def _create_key(body: Obj) -> bytes | None:
    """The memo key of a created object's field set (see ``_pod_create_fields``); ``None``
    when it is not to be remembered."""
    m = body.get("metadata")
    if not isinstance(m, dict):
        return None
    blanked = {
        k: (0 if k in _PER_OBJECT and v.__class__ in (str, int) else v)
        for k, v in m.items()
        if k != "managedFields"
    }
    try:
        data = orjson.dumps({**body, "metadata": blanked})
    except TypeError:  # not JSON (an integer past 64 bits): never remembered
        return None
    return data if len(data) <= _MAX_CREATE_KEY else None


class FieldManager:
    """Computes managedFields for writes and merges applied configurations."""

    def __init__(self, schemas: Schemas | None = None) -> None:
        self.schemas = schemas or Schemas()
        self._created: Remembered[tuple[Node, bool, str, bytes], FrozenFields] = Remembered()

    def _ignored(self, rd: ResourceDef, subresource: str) -> Ignored:
        if subresource == "status":
            return Ignored(only="f:status")
        return Ignored(status=not subresource and (rd.has_status or rd.kind == "Namespace"))

    def record_update(
        self,
        rd: ResourceDef,
        old: Obj | None,
        new: Obj,
        *,
        manager: str,
        subresource: str = "",
        requested: Any = _MISSING,
        body_key: bytes | None = None,
    ) -> None:
        """Set ``new``'s managedFields after ``manager`` wrote it over ``old`` (``None`` for a
        create). ``requested`` is the managedFields the request carried, if any: a client may
        set them (kubectl's migration from client-side apply does), ``[]`` clears them, and
        anything malformed or empty keeps the stored ones. ``body_key`` (a created pod's):
        the body checks' key of the body ``new`` was prepared from (see
        :meth:`_pod_create_fields`)."""
        live_raw = (old.get("metadata") or {}).get("managedFields") if old is not None else None
        base: Managed | None
        if subresource or requested is _MISSING or requested is None:
            base = decode(live_raw)
        elif is_reset(requested):
            base = {}
        else:
            base = decode(requested)
            if not base:
                base = decode(live_raw)
        node = self.schemas.node_for(rd)
        ignored = self._ignored(rd, subresource)
        if old is None and not base and not subresource and rd.kind == "Pod" and rd.group == "":
            fields = self._pod_create_fields(_body(new), node, ignored, body_key)
            m = new.setdefault("metadata", {})
            if fields:
                # encode() of the one Update entry, built directly (every pod create)
                m["managedFields"] = [
                    {
                        "manager": manager or "unknown",
                        "operation": UPDATE,
                        "apiVersion": rd.api_version,
                        "time": format_now(),
                        "fieldsType": "FieldsV1",
                        "fieldsV1": fields,
                    }
                ]
            else:
                m.pop("managedFields", None)
            return
        managed = update_managers(
            base or {},
            _body(old) if old is not None else None,
            _body(new),
            node,
            manager=manager or "unknown",
            api_version=rd.api_version,
            subresource=subresource,
            time=format_now(),
            ignored=ignored,
        )
        m = new.setdefault("metadata", {})
        if managed:
            m["managedFields"] = encode(managed)
        else:
            m.pop("managedFields", None)

    def _pod_create_fields(
        self, body: Obj, node: Node, ignored: Ignored, body_key: bytes | None = None
    ) -> FieldSet:
        """The fields a created pod's writer owns (no entries before it): its Update entry
        owns every field the pod has, as :func:`update_managers` computes it.

        The pods of one template differ only in the identity metadata no manager owns
        (name, uid, creationTimestamp, ...), so that field set is remembered per template.
        The key is the pod as JSON with the *values* of those fields blanked when they are
        scalars: two pods with one key then have the same fields with the same JSON types
        everywhere, and differ only in scalar values at paths that are stripped, which the
        walk never reads (a scalar is a leaf whatever its value) -- so their field sets are
        equal. The remembered field set is :class:`FrozenFields`, shared by every pod that
        hits it: field sets are values (:mod:`fieldpath`: nothing changes one in place, and
        a frozen one raises if anything tried), so sharing it saves each create decoding a
        copy and the garbage collector tracking ~30 more dicts per stored pod.

        ``body_key``, when given, keys it instead: the body checks' key of the request body
        (:mod:`berth.apiserver.bodycheck`: the body as JSON with a string name blanked), from
        which the registry prepared the pod by functions of the body alone (the identity
        metadata stamped, the status reset, the spec defaulted), so equal keys give pods that
        differ only in those identity values -- and the pod need not be encoded again. The
        two kinds of key are told apart in the memo (a tag), never compared."""
        if body_key is not None:
            memo_key: tuple[Node, bool, str, bytes] | None = (
                node,
                ignored.status,
                "body",
                body_key,
            )
        else:
            key = _create_key(body)
            memo_key = None if key is None else (node, ignored.status, "pod", key)
        found = None if memo_key is None else self._created.get(memo_key)
        if found is not None:
            return found
        fields = created_fields(body, node, ignored=ignored)
        if memo_key is None:
            return fields
        shared = frozen(fields)
        self._created.put(memo_key, shared)
        return shared

    def apply(
        self,
        rd: ResourceDef,
        live: Obj | None,
        config: Any,
        *,
        manager: str,
        force: bool,
        subresource: str = "",
    ) -> tuple[Obj, bool]:
        """The object after ``manager`` applies ``config`` (with its managedFields) and
        whether its content changed. ``live`` is ``None`` when apply creates the object."""
        if not isinstance(config, dict):
            raise ApiError(400, "BadRequest", "error decoding patch: the patch must be an object")
        version = config.get("apiVersion")
        if version != rd.api_version:
            raise ApiError(
                400,
                "BadRequest",
                "Incorrect version specified in apply patch. Specified patch version:"
                f" {version if isinstance(version, str) else ''}, expected: {rd.api_version}",
            )
        if config.get("kind") != rd.kind:
            kind = config.get("kind")
            raise ApiError(
                400,
                "BadRequest",
                f"the kind in the apply patch ({kind if isinstance(kind, str) else ''}) does"
                f" not match the expected kind ({rd.kind})",
            )
        meta = config.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        if isinstance(meta, dict) and meta.get("managedFields") is not None:
            raise ApiError(400, "BadRequest", "metadata.managedFields must be nil")
        node = self.schemas.node_for(rd)
        live_body = _body(live)
        raw = (live.get("metadata") or {}).get("managedFields") if live is not None else None
        managed = decode(raw) or {}
        when = format_now()
        ignored = self._ignored(rd, subresource)

        def run(force: bool) -> ApplyResult:
            return apply_config(
                managed,
                live_body,
                config,
                node,
                manager=manager,
                api_version=rd.api_version,
                subresource=subresource,
                time=when,
                force=force,
                ignored=ignored,
            )

        try:
            try:
                result = run(force)
            except Conflicts as exc:
                if manager != KUBECTL or live is None:
                    raise
                allowed = self._allowed_by_last_applied(rd, live_body, node)
                remaining = [c for c in exc.conflicts if c.path not in allowed]
                if remaining:
                    raise Conflicts(remaining) from None
                result = run(True)
        except Conflicts as exc:
            raise conflict_error(exc.conflicts) from None
        except TypedError as exc:
            raise ApiError(400, "BadRequest", f"failed to apply the configuration: {exc}") from None
        obj: Obj = result.obj
        if not isinstance(obj.get("metadata"), dict):
            obj["metadata"] = {}
        if manager == KUBECTL and live is not None:
            annotations = obj["metadata"].get("annotations")
            if isinstance(annotations, dict) and annotations.get(LAST_APPLIED):
                obj["metadata"]["annotations"] = {
                    **annotations,
                    LAST_APPLIED: _last_applied(config),
                }
        entries = encode(result.managed)
        if entries:
            obj["metadata"]["managedFields"] = entries
        else:
            obj["metadata"].pop("managedFields", None)
        return obj, result.changed

    def _allowed_by_last_applied(
        self, rd: ResourceDef, live: Obj, node: Node
    ) -> set[tuple[str, ...]]:
        """Fields the client-side apply annotation says kubectl applied and that still hold
        the values it applied: kubectl's server-side apply may take them over."""
        annotations = (live.get("metadata") or {}).get("annotations") or {}
        text = annotations.get(LAST_APPLIED) if isinstance(annotations, dict) else None
        if not isinstance(text, str) or not text:
            return set()
        try:
            last = orjson.loads(text)
        except orjson.JSONDecodeError:
            return set()
        if not isinstance(last, dict) or last.get("apiVersion") != rd.api_version:
            return set()
        try:
            fields = to_fieldset(last, node)
            c = compare(last, live, node)
        except TypedError:
            return set()
        differing = set(members(c.modified)) | set(members(c.added)) | set(members(c.removed))
        return {p for p in members(fields) if p not in differing}


def _last_applied(config: Obj) -> str:
    """The applied configuration as the last-applied annotation holds it."""
    out = dict(config)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        annotations = meta.get("annotations")
        if isinstance(annotations, dict) and LAST_APPLIED in annotations:
            meta = dict(meta)
            rest = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
            if rest:
                meta["annotations"] = rest
            else:
                meta.pop("annotations")
            out["metadata"] = meta
    return orjson.dumps(out, option=orjson.OPT_SORT_KEYS).decode()
