"""Namespaces: the ``kubernetes`` finalizer, termination on delete, the ``finalize``
subresource, and each new namespace's default ServiceAccount."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from berth.api.meta import Obj, format_time, get_path, now
from berth.api.resources import ResourceDef
from berth.apiserver.errors import bad_request, conflict, forbidden
from berth.apiserver.handlers import Call, Endpoint, json_response
from berth.apiserver.options import DeleteOptions
from berth.apiserver.selectors import path_getter
from berth.apiserver.tables import AGE, NAME, Column, Printer, age, created, name_of
from berth.apiserver.validation import LABEL
from berth.store.interface import Conflict, KeyValue

from .base import KindStrategy

if TYPE_CHECKING:
    from berth.apiserver.app import ApiServer
    from berth.apiserver.registry import Registry

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")

NAMESPACE = Printer(
    (NAME, Column("Status"), AGE),
    lambda o: [name_of(o), get_path(o, "status", "phase") or "Active", age(created(o))],
)


async def finalize(reg: Registry, rd: ResourceDef, name: str, body: Any) -> Obj:
    """PUT namespaces/{name}/finalize: replace ``spec.finalizers``."""
    kv, obj = await reg.get_kv(rd, "", name)
    wanted = get_path(body, "spec", "finalizers") if isinstance(body, dict) else None
    if not isinstance(wanted, list | None) or not all(isinstance(f, str) for f in wanted or []):
        raise bad_request("spec.finalizers must be a list of strings")
    obj.setdefault("spec", {})["finalizers"] = list(wanted or [])
    try:
        written = await reg.store.update(
            kv.key, reg.codec.encode(kv.key, obj), expected_revision=kv.mod_revision
        )
    except Conflict:
        raise conflict(rd, name) from None
    obj["metadata"]["resourceVersion"] = str(written.mod_revision)
    return obj


async def _finalize(server: ApiServer, call: Call) -> web.StreamResponse:
    return json_response(await finalize(server.registry, call.route.rd, call.route.name, call.body))


class NamespaceStrategy(KindStrategy):
    kind = "Namespace"
    name_rule = LABEL
    field_selectors = {"status.phase": path_getter("status", "phase")}
    columns = NAMESPACE
    endpoints = {("update", "finalize"): Endpoint(_finalize)}

    def reset_status(self, rd: ResourceDef, obj: Obj) -> None:
        obj["status"] = {"phase": "Active"}
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])

    def keep_on_update(self, rd: ResourceDef, old: Obj, new: Obj) -> None:
        # The phase moves only by deletion, the finalizers only through /finalize.
        new["status"] = old.get("status") or {"phase": "Active"}
        new["spec"] = old.get("spec") or {}

    async def after_create(self, reg: Registry, rd: ResourceDef, obj: Obj) -> None:
        name = str(obj["metadata"]["name"])
        reg.namespace_phase[name] = "Active"
        if reg.pod_security is not None:
            reg.pod_security.namespaces.remember(obj)
        if reg.service_accounts is not None:
            await reg.service_accounts.ensure_default_account(reg, name)

    async def after_update(self, reg: Registry, rd: ResourceDef, old: Obj, new: Obj) -> None:
        if reg.pod_security is not None:
            reg.pod_security.namespaces.remember(new)

    def finished_deleting(self, obj: Obj) -> bool:
        return False  # the registry's finalizer empties the namespace, then removes it

    async def start_delete(
        self, reg: Registry, rd: ResourceDef, kv: KeyValue, obj: Obj, opts: DeleteOptions
    ) -> Obj | None:
        """Mark the namespace Terminating; the registry empties it, then removes it."""
        name = str(obj["metadata"]["name"])
        if name in SYSTEM_NAMESPACES:
            raise forbidden(
                f'namespaces "{name}" is forbidden: this namespace may not be deleted', rd, name
            )
        if not obj["metadata"].get("deletionTimestamp"):
            obj["metadata"]["deletionTimestamp"] = format_time(now())
            obj["status"] = {"phase": "Terminating"}
            written = await reg.store.update(
                kv.key, reg.codec.encode(kv.key, obj), expected_revision=kv.mod_revision
            )
            obj["metadata"]["resourceVersion"] = str(written.mod_revision)
            reg.namespace_phase[name] = "Terminating"
            reg.finalize_soon(name)
        return obj
