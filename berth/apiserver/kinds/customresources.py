"""Custom objects: the kinds CustomResourceDefinitions define.

One :class:`CustomObjectStrategy` per API server serves every custom resource version: each
hook finds the version's compiled form (schema, printer columns, subresources) in the server's
:class:`~berth.apiserver.crd.manager.CustomResources` with one dict lookup. Writes are pruned,
defaulted and validated against the version's ``openAPIV3Schema`` (422 with one cause per
field); objects are stored in the CRD's storage version and served in the version asked for
(the None conversion: only ``apiVersion`` differs), with the served version's defaults applied
to what was stored. The ``scale`` subresource reads and writes the replicas at the paths the
CRD names.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from aiohttp import web

from berth.api.meta import Obj, get_path
from berth.api.resources import ResourceDef
from berth.apiserver import strategy as shared
from berth.apiserver.crd import strategy as crs
from berth.apiserver.crd.defaulting import apply_defaults
from berth.apiserver.crd.manager import CustomResources
from berth.apiserver.crd.printers import NAME_DESCRIPTION, PrinterColumn, row
from berth.apiserver.crd.pruning import prune
from berth.apiserver.crd.scale import NotAnInteger, scale_of, set_replicas, validate_scale
from berth.apiserver.crd.served import ServedVersion
from berth.apiserver.errors import (
    ApiError,
    FieldError,
    bad_request,
    conflict,
    invalid,
    not_found,
)
from berth.apiserver.handlers import Call, Endpoint, json_response
from berth.apiserver.handlers import patch as patch_object
from berth.apiserver.patch import json_merge_patch, json_patch, strategic_merge_patch
from berth.apiserver.tables import Column, Printer

from .base import KindStrategy

if TYPE_CHECKING:
    from berth.apiserver.app import ApiServer

MAX_SCALE_RETRIES = 5
_NOT_SPEC = frozenset(("metadata", "apiVersion", "kind"))
_NOT_SPEC_WITH_STATUS = _NOT_SPEC | {"status"}
SCALE_RESOURCE = ResourceDef(
    group="autoscaling",
    version="v1",
    plural="scale",
    singular="scale",
    kind="Scale",
    namespaced=True,
)


def _served(call: Call) -> tuple[CustomObjectStrategy, ServedVersion]:
    st = call.strategy
    assert isinstance(st, CustomObjectStrategy)
    return st, st.version(call.route.rd)


def _scale(obj: Obj, v: ServedVersion) -> Obj:
    assert v.scale is not None
    try:
        return scale_of(obj, v.scale)
    except NotAnInteger as exc:
        # A replicas path holding something else (written before the subresource existed).
        raise ApiError(422, "Invalid", str(exc)) from None


def _patched(patch_type: str, scale: Obj, patch: Any) -> Any:
    if patch_type == "json":
        return json_patch(scale, patch)
    if patch_type == "merge":
        return json_merge_patch(scale, patch)
    return strategic_merge_patch(scale, patch)  # Scale has no lists: a merge patch too


async def get_scale(server: ApiServer, call: Call) -> web.StreamResponse:
    r = call.route
    _st, v = _served(call)
    return json_response(_scale(await server.registry.get(r.rd, r.namespace, r.name), v))


async def write_scale(server: ApiServer, call: Call) -> web.StreamResponse:
    """PUT or PATCH of ``scale``: the replicas at the CRD's ``specReplicasPath``."""
    r = call.route
    _st, v = _served(call)
    assert v.scale is not None
    for _attempt in range(MAX_SCALE_RETRIES):
        kv, obj = await server.registry.get_kv(r.rd, r.namespace, r.name)
        current = _scale(obj, v)
        wanted = _patched(call.patch_type, current, call.body) if call.patch_type else call.body
        if not isinstance(wanted, dict):
            raise bad_request("Scale must be an object")
        errs = validate_scale(wanted)
        if errs:
            raise invalid(SCALE_RESOURCE, r.name, errs)
        wanted_rv = get_path(wanted, "metadata", "resourceVersion")
        if wanted_rv not in (None, "") and str(wanted_rv) != str(kv.mod_revision):
            raise conflict(r.rd, r.name)
        new = copy.deepcopy(obj)
        set_replicas(new, v.scale, int(get_path(wanted, "spec", "replicas") or 0))
        new["metadata"]["resourceVersion"] = str(kv.mod_revision)
        try:
            written = await server.registry.update(
                r.rd, r.namespace, r.name, new, user=call.user, dry_run=call.dry_run
            )
        except ApiError as exc:
            if exc.reason == "Conflict" and wanted_rv in (None, ""):
                continue  # someone wrote in between: scale the new state
            raise
        return json_response(_scale(written, v))
    raise conflict(r.rd, r.name)


async def patch(server: ApiServer, call: Call) -> web.StreamResponse:
    """PATCH of a custom object or its status: no strategic merge (custom objects carry no
    patch strategies), as kube-apiserver."""
    if call.patch_type == "strategic":
        raise ApiError(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include:"
            " application/json-patch+json, application/merge-patch+json,"
            " application/apply-patch+yaml",
        )
    return await patch_object(server, call)


def _printer(columns: tuple[PrinterColumn, ...]) -> Printer:
    return Printer(
        (
            Column("Name", format="name", description=NAME_DESCRIPTION),
            *(
                Column(
                    c.name,
                    type=c.type,
                    priority=c.priority,
                    format=c.format,
                    description=c.description,
                )
                for c in columns
            ),
        ),
        lambda o: row(columns, o),
    )


class CustomObjectStrategy(KindStrategy):
    """Every custom resource version one server serves (registered for each with
    :meth:`~berth.apiserver.app.ApiServer.add_resource`)."""

    converts = True
    endpoints = {
        ("patch", ""): Endpoint(patch),
        ("patch", "status"): Endpoint(patch),
        ("get", "scale"): Endpoint(get_scale),
        ("update", "scale"): Endpoint(write_scale),
        ("patch", "scale"): Endpoint(write_scale),
    }

    def __init__(self, resources: CustomResources) -> None:
        self.resources = resources
        self._printers: dict[int, tuple[ServedVersion, Printer]] = {}

    def version(self, rd: ResourceDef) -> ServedVersion:
        v = self.resources.version(rd)
        if v is None:  # the CRD went away while the request was on its way
            raise not_found(rd, "")
        return v

    # -- writes -----------------------------------------------------------------------------

    def prune_unknown(self, rd: ResourceDef, obj: Obj) -> list[str]:
        """The version's structural pruning of what a client sent (reported as its
        ``fieldValidation`` says: a warning by default, a 400 with ``Strict``)."""
        return sorted(prune(self.version(rd).schema, obj))  # a stable order, as upstream

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        """Prune (what the merge of a status write may bring back), drop non-nullable
        nulls, apply the schema's defaults."""
        crs.normalize(self.version(rd), obj)

    def prepare_for_create(self, rd: ResourceDef, obj: Obj, namespace: str) -> Obj:
        crd = self.resources.crd_of(rd)
        if crd is not None and crd.terminating:
            raise ApiError(
                405,
                "MethodNotAllowed",
                "create not allowed while custom resource definition is terminating",
                details={"kind": rd.plural, "group": rd.group},
            )
        return super().prepare_for_create(rd, obj, namespace)

    def spec_part(self, rd: ResourceDef, obj: Obj) -> Any:
        # Everything but metadata (and status, with the status subresource) is "spec".
        skip = _NOT_SPEC_WITH_STATUS if rd.has_status else _NOT_SPEC
        return {k: v for k, v in obj.items() if k not in skip}

    def prepare_for_update(self, rd: ResourceDef, old: Obj, new: Obj, subresource: str) -> Obj:
        if subresource == "status":
            # Upstream's status strategy: everything but status stays as stored; the
            # status is pruned and defaulted as any write.
            merged = shared.status_update(old, new)
            merged["apiVersion"] = rd.api_version
            if "status" not in new:
                merged.pop("status", None)
            self.defaults(rd, merged)
            return merged
        return super().prepare_for_update(rd, old, new, subresource)

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        return crs.validate_object(self.version(rd), obj)

    # -- versions ---------------------------------------------------------------------------

    def to_storage(self, rd: ResourceDef, obj: Obj) -> Obj:
        storage = self.resources.storage_rd(rd)
        return crs.convert(obj, storage.api_version) if storage is not None else obj

    def to_served(self, rd: ResourceDef, obj: Obj) -> Obj:
        """``obj`` as stored, served as ``rd``'s version: its apiVersion, and the version's
        defaults for fields stored before they had one. Never changes ``obj`` (a watch event
        is shared by every watcher)."""
        v = self.resources.version(rd)
        if v is None:
            return obj
        schema = v.schema
        if schema.defaults_below or schema.has_default:
            out = copy.deepcopy(obj)
            out["apiVersion"] = rd.api_version
            apply_defaults(schema, out)
            return out
        return crs.convert(obj, rd.api_version)

    # -- reads ------------------------------------------------------------------------------

    def printer(self, rd: ResourceDef) -> Printer:
        v = self.resources.version(rd)
        if v is None:
            return self.columns
        cached = self._printers.get(id(v))
        if cached is None or cached[0] is not v:
            if len(self._printers) > 1024:  # CRDs come and go: never grow without bound
                self._printers.clear()
            cached = (v, _printer(v.columns))
            self._printers[id(v)] = cached
        return cached[1]
