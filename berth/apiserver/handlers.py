"""Request dispatch: which handler serves a (verb, subresource) of a resource.

:class:`~berth.apiserver.app.ApiServer` routes a request to a :class:`Route`, turns its method
into the RBAC verb (``get``, ``list``, ``watch``, ``create``, ``update``, ``patch``, ``delete``,
``deletecollection``), and looks the pair (verb, subresource) up first in the kind strategy's
own :attr:`~berth.apiserver.kinds.base.KindStrategy.endpoints` (pods' ``binding``, ``eviction``
and ``log``, a namespace's ``finalize``, a service account's ``token``), then in
:data:`ENDPOINTS`, the handlers every resource shares (the object itself, ``status`` and
``scale``). A pair in neither is a 405. The server authorizes, reads the body, then calls the
handler with a :class:`Call`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from berth.api.meta import Obj
from berth.api.resources import ResourceDef
from berth.api.values import value_class

from . import bodycheck
from .auth import UserInfo
from .bodycheck import UNKEYED
from .errors import ApiError
from .fieldmanager import request_field_manager
from .openapi import fieldvalidation
from .openapi.fieldvalidation import Findings
from .options import DeleteOptions, ListOptions
from .params import parse_int, table_version, wants_metadata_only
from .selectors import FieldSelector, LabelSelector, parse_field_selector, parse_label_selector
from .tables import to_table
from .watchhttp import serve_watch
from .watchlist import list_options

if TYPE_CHECKING:
    from .app import ApiServer
    from .kinds.base import KindStrategy

JSON = "application/json"


@value_class
class Route:
    rd: ResourceDef
    namespace: str
    name: str
    subresource: str


@value_class
class Call:
    """One authorized request to a resource, as its handler gets it."""

    request: web.Request
    user: UserInfo
    route: Route
    strategy: KindStrategy
    body: Any
    """The decoded body of a write (``None`` for reads and empty bodies)."""
    patch_type: str
    """``json``, ``merge``, ``strategic`` or ``apply`` for a PATCH, else ``""``."""
    dry_run: bool
    """``dryRun=All``: every handler that writes must honour it."""


Handler = Callable[["ApiServer", Call], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A handler and how its requests are authorized and counted."""

    handler: Handler
    authorize_as: str = ""
    """RBAC verb checked instead of the request's (``pods/log`` is a ``get``, watch or not)."""
    also_authorize: str = ""
    """A second verb checked on the object itself before the body is read (an eviction needs
    ``delete`` on the pod as well as ``create`` on ``pods/eviction``)."""
    metric_subresource: bool = False
    """Count requests as ``plural/subresource`` in the metrics (else as ``plural``)."""
    kind: tuple[str, str, str] | None = None
    """(group, version, kind) of the object a subresource takes and answers with, as
    discovery shows it (``scale`` is an ``autoscaling/v1`` Scale); ``None``: the resource's
    own kind. An empty group and version stay out of discovery (the core ``Binding``)."""
    connect: bool = False
    """A connect subresource (exec, attach, portforward, proxy): a stream to a running
    container or a proxied request; upstream's connect options carry no dryRun, and the
    handler writes nothing to the store whatever the request's verb."""


METRIC_VERBS = {
    "get": "GET",
    "list": "LIST",
    "watch": "WATCH",
    "create": "CREATE",
    "update": "UPDATE",
    "patch": "PATCH",
    "delete": "DELETE",
    "deletecollection": "DELETECOLLECTION",
}


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type=JSON)


def success_status(rd: ResourceDef, name: str, uid: str = "") -> Obj:
    details: Obj = {"name": name, "kind": rd.plural}
    if rd.group:
        details["group"] = rd.group
    if uid:
        details["uid"] = uid
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


def created_status() -> Obj:
    """The Status a subresource POST (binding, eviction) answers with."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def selectors(call: Call) -> tuple[LabelSelector, FieldSelector]:
    q = call.request.query
    return parse_label_selector(q.get("labelSelector")), parse_field_selector(
        q.get("fieldSelector"), call.strategy.field_selectors
    )


# -- reads ------------------------------------------------------------------------------------


def render_one(call: Call, obj: Obj) -> web.Response:
    request = call.request
    accept = request.headers.get("Accept", "")
    tv = table_version(accept)
    if tv:
        include = request.query.get("includeObject", "Metadata")
        return json_response(
            to_table(
                call.strategy.printer(call.route.rd),
                [obj],
                table_api_version=tv,
                resource_version=str(obj["metadata"].get("resourceVersion", "")),
                include_object=include,
            )
        )
    if wants_metadata_only(accept):
        return json_response(
            {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        )
    return json_response(obj)


async def get_object(server: ApiServer, call: Call) -> web.StreamResponse:
    r = call.route
    return render_one(call, await server.registry.get(r.rd, r.namespace, r.name))


async def get_scale(server: ApiServer, call: Call) -> web.StreamResponse:
    r = call.route
    obj = await server.registry.get(r.rd, r.namespace, r.name)
    return json_response(server.registry.to_scale(r.rd, obj))


async def list_objects(server: ApiServer, call: Call) -> web.StreamResponse:
    rd = call.route.rd
    q = call.request.query
    list_options(q, watch=False)  # 422 for watch-only or contradictory options
    label, field = selectors(call)
    opts = ListOptions(
        label=label,
        field=field,
        limit=parse_int(q.get("limit"), "limit", minimum=0) or 0,
        continue_token=q.get("continue", ""),
        resource_version=q.get("resourceVersion", ""),
    )
    page = await server.registry.list_objects(rd, call.route.namespace, opts)
    accept = call.request.headers.get("Accept", "")
    tv = table_version(accept)
    rv = str(page.revision)
    if tv:
        include = q.get("includeObject", "Metadata")
        return json_response(
            to_table(
                call.strategy.printer(rd),
                page.items,
                table_api_version=tv,
                resource_version=rv,
                include_object=include,
                continue_token=page.continue_token,
            )
        )
    meta: Obj = {"resourceVersion": rv}
    if page.continue_token:
        meta["continue"] = page.continue_token
    if wants_metadata_only(accept):
        items = [
            {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": o["metadata"],
            }
            for o in page.items
        ]
        return json_response(
            {
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
                "items": items,
            }
        )
    return json_response(
        {
            "kind": rd.list_kind_name,
            "apiVersion": rd.api_version,
            "metadata": meta,
            "items": page.items,
        }
    )


async def watch(server: ApiServer, call: Call) -> web.StreamResponse:
    label, field = selectors(call)
    r = call.route
    return await serve_watch(
        server,
        call.request,
        r.rd,
        namespace=r.namespace,
        name=r.name,
        label=label,
        field=field,
        printer=call.strategy.printer(r.rd),
        convert=call.strategy.to_served if call.strategy.converts else None,
    )


# -- writes -----------------------------------------------------------------------------------


def field_manager(call: Call) -> tuple[str, bool]:
    """The write's field manager (managedFields) and whether an apply is forced."""
    request = call.request
    return request_field_manager(
        request.query, request.method, request.headers.get("User-Agent", ""), call.patch_type
    )


async def field_validation(
    call: Call, verb: str, body_key: bytes | None = None
) -> tuple[str, Findings | None]:
    """The ``fieldValidation`` directive of a write and the duplicate keys of its body
    (not looked for with ``Ignore``). The body was read before: aiohttp keeps its bytes.
    ``body_key``: the body checks' key of the body (``bodycheck.clean_key``), if known."""
    how = fieldvalidation.directive(call.request.query.get("fieldValidation"), verb)
    if how == fieldvalidation.IGNORE:
        return how, None
    raw = await call.request.read()
    if call.patch_type == "json":
        return how, fieldvalidation.json_patch_findings(raw, call.body)
    return how, fieldvalidation.body_duplicates(
        raw,
        call.request.content_type or "",
        call.body,
        key_ends=None if body_key is None else bodycheck.key_ends(body_key, call.body),
    )


async def create(server: ApiServer, call: Call) -> web.StreamResponse:
    r = call.route
    manager, _ = field_manager(call)
    body = call.body
    # The body checks' key, computed once here for both the duplicate-key check and the
    # registry's body checks (it encodes the body); only for a body with metadata, which
    # the registry then checks as it is.
    body_key = (
        bodycheck.clean_key(r.rd, body)
        if body.__class__ is dict and body.get("metadata").__class__ is dict
        else UNKEYED
    )
    how, findings = await field_validation(
        call, "create", None if body_key is UNKEYED else body_key
    )
    obj = await server.registry.create(
        r.rd,
        r.namespace,
        call.body,
        user=call.user,
        dry_run=call.dry_run,
        field_validation=how,
        findings=findings,
        field_manager=manager,
        only_serialized=True,
        body_key=body_key,
    )
    return json_response(obj, 201)


async def update(server: ApiServer, call: Call) -> web.StreamResponse:
    """PUT of the object or of its ``status`` (201 when it created the object)."""
    r = call.route
    manager, _ = field_manager(call)
    how, findings = await field_validation(call, "update")
    obj, created = await server.registry.put(
        r.rd,
        r.namespace,
        r.name,
        call.body,
        subresource=r.subresource,
        user=call.user,
        dry_run=call.dry_run,
        field_manager=manager,
        field_validation=how,
        findings=findings,
    )
    return json_response(obj, 201 if created else 200)


async def patch(server: ApiServer, call: Call) -> web.StreamResponse:
    """PATCH of the object or of its ``status``."""
    r = call.route
    manager, force = field_manager(call)
    how, findings = await field_validation(call, "patch")
    if call.patch_type == "apply":
        # Server-side apply reports only the body's duplicate keys this way; the fields of
        # the applied configuration are checked by the apply itself.
        fieldvalidation.enforce_apply(how, findings or Findings())
        how, findings = fieldvalidation.IGNORE, None
    obj = await server.registry.patch(
        r.rd,
        r.namespace,
        r.name,
        call.patch_type,
        call.body,
        subresource=r.subresource,
        user=call.user,
        dry_run=call.dry_run,
        field_manager=manager,
        force=force,
        field_validation=how,
        findings=findings,
    )
    return json_response(obj)


async def write_scale(server: ApiServer, call: Call) -> web.StreamResponse:
    """PUT or PATCH of ``scale``: ``spec.replicas`` of the object."""
    r = call.route
    manager, _ = field_manager(call)
    obj = await server.registry.update_scale(
        r.rd,
        r.namespace,
        r.name,
        patch_type=call.patch_type or None,
        body=call.body,
        user=call.user,
        dry_run=call.dry_run,
        field_manager=manager,
    )
    return json_response(obj)


def delete_options(call: Call) -> DeleteOptions:
    q = call.request.query
    body = call.body
    grace_q = parse_int(q.get("gracePeriodSeconds"), "gracePeriodSeconds", minimum=0)
    opts = DeleteOptions.from_body(body, grace_query=grace_q)
    if q.get("propagationPolicy"):
        opts = DeleteOptions.from_body(
            {**(body or {}), "propagationPolicy": q["propagationPolicy"]},
            grace_query=grace_q,
        )
    if call.dry_run:  # the query's dryRun, or the body's (DeleteOptions.dryRun)
        opts = dataclasses.replace(opts, dry_run=True)
    return opts


async def delete(server: ApiServer, call: Call) -> web.StreamResponse:
    r = call.route
    opts = delete_options(call)
    obj, gone_now = await server.registry.delete(r.rd, r.namespace, r.name, opts, user=call.user)
    if call.strategy.delete_returns_object or not gone_now:
        return json_response(obj)
    return json_response(success_status(r.rd, r.name, str(obj["metadata"].get("uid", ""))))


async def delete_collection(server: ApiServer, call: Call) -> web.StreamResponse:
    rd = call.route.rd
    opts = delete_options(call)
    label, field = selectors(call)
    page = await server.registry.list_objects(
        rd, call.route.namespace, ListOptions(label=label, field=field)
    )
    deleted = []
    for obj in page.items:
        ns = str(obj["metadata"].get("namespace", ""))
        try:
            gone_obj, _ = await server.registry.delete(
                rd, ns, str(obj["metadata"]["name"]), opts, user=call.user
            )
            deleted.append(gone_obj)
        except ApiError as exc:
            if exc.code != 404:
                raise
    return json_response(
        {
            "kind": rd.list_kind_name,
            "apiVersion": rd.api_version,
            "metadata": {"resourceVersion": str(await server.store.current_revision())},
            "items": deleted,
        }
    )


SCALE = ("autoscaling", "v1", "Scale")

ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("get", ""): Endpoint(get_object),
    ("list", ""): Endpoint(list_objects),
    ("watch", ""): Endpoint(watch),
    ("create", ""): Endpoint(create),
    ("update", ""): Endpoint(update),
    ("patch", ""): Endpoint(patch),
    ("delete", ""): Endpoint(delete),
    ("deletecollection", ""): Endpoint(delete_collection),
    # GET .../status answers with the whole object, as kube-apiserver; a watch on a
    # subresource URL watches the object.
    ("get", "status"): Endpoint(get_object),
    ("watch", "status"): Endpoint(watch),
    ("update", "status"): Endpoint(update),
    ("patch", "status"): Endpoint(patch),
    ("get", "scale"): Endpoint(get_scale, kind=SCALE),
    ("watch", "scale"): Endpoint(watch),
    ("update", "scale"): Endpoint(write_scale, kind=SCALE),
    ("patch", "scale"): Endpoint(write_scale, kind=SCALE),
}
"""Handlers every resource shares: the object, ``status`` and ``scale`` (served where the
resource lists the subresource; routing refuses the others with 404)."""


def endpoint_for(st: KindStrategy, verb: str, subresource: str) -> Endpoint | None:
    """The handler of (verb, subresource) for a resource served by ``st``: the strategy's
    own, else the shared one, else ``None`` (405)."""
    key = (verb, subresource)
    return st.endpoints.get(key) or ENDPOINTS.get(key)


def subresource_endpoints(st: KindStrategy, subresource: str) -> dict[str, Endpoint]:
    """Verb -> handler of everything served on ``subresource`` (strategy's own first).

    A watch on a subresource URL is a ``get`` with ``watch=true`` that discovery does not
    list (kube-apiserver lists ``get``, ``patch``, ``update`` for ``status``), so ``watch``
    is left out."""
    found = {v: e for (v, sub), e in ENDPOINTS.items() if sub == subresource and v != "watch"}
    found.update(
        {v: e for (v, sub), e in st.endpoints.items() if sub == subresource and v != "watch"}
    )
    return found
