"""``metrics.k8s.io/v1beta1`` NodeMetrics and PodMetrics (what ``kubectl top`` and the HPA
read): computed from the agents' recent samples (:mod:`berth.apiserver.resourcemetrics`),
nothing stored. Only ``get`` and ``list`` are served, with label selectors (and
``metadata.name``/``metadata.namespace`` field selectors) applied to the Node or Pod the
metrics are about, as metrics-server does. RBAC authorizes them as any resource
(``get``/``list`` on ``pods.metrics.k8s.io`` / ``nodes.metrics.k8s.io``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiohttp import web

from berth.api.meta import Obj
from berth.api.resources import NODES, PODS, ResourceDef
from berth.apiserver.errors import ApiError, method_not_allowed, not_found
from berth.apiserver.handlers import Call, Endpoint, json_response, selectors
from berth.apiserver.options import ListOptions
from berth.apiserver.resourcemetrics import node_metrics, pod_metrics

from .base import KindStrategy

if TYPE_CHECKING:
    from berth.apiserver.app import ApiServer


def _subject(rd: ResourceDef) -> ResourceDef:
    return NODES if rd.kind == "NodeMetrics" else PODS


def _metrics_of(server: ApiServer, rd: ResourceDef, obj: Obj) -> Obj | None:
    store = server.resource_metrics
    m = obj["metadata"]
    if rd.kind == "NodeMetrics":
        r = store.node_rate(str(m["name"]))
        return node_metrics(obj, r, time.time) if r is not None else None
    rates = store.pod_rates(str(m["namespace"]), str(m["name"]))
    return pod_metrics(obj, rates, time.time) if rates else None


async def get_metrics(server: ApiServer, call: Call) -> web.StreamResponse:
    r = call.route
    try:
        obj = await server.registry.get(_subject(r.rd), r.namespace, r.name)
    except ApiError as exc:  # the Node/Pod is missing: the metrics are what is not found
        if exc.code != 404:
            raise
        raise not_found(r.rd, r.name) from None
    found = _metrics_of(server, r.rd, obj)
    if found is None:
        raise not_found(r.rd, r.name)
    return json_response(found)


async def list_metrics(server: ApiServer, call: Call) -> web.StreamResponse:
    r = call.route
    label, field = selectors(call)
    page = await server.registry.list_objects(
        _subject(r.rd), r.namespace, ListOptions(label=label, field=field)
    )
    items = [m for o in page.items if (m := _metrics_of(server, r.rd, o)) is not None]
    return json_response(
        {
            "kind": r.rd.list_kind_name,
            "apiVersion": r.rd.api_version,
            "metadata": {},
            "items": items,
        }
    )


async def _refuse(server: ApiServer, call: Call) -> web.StreamResponse:
    raise method_not_allowed(call.request.method)


_READS = {("get", ""): Endpoint(get_metrics), ("list", ""): Endpoint(list_metrics)}
_REFUSED = {
    (verb, ""): Endpoint(_refuse)
    for verb in ("watch", "create", "update", "patch", "delete", "deletecollection")
}


class NodeMetricsStrategy(KindStrategy):
    group = "metrics.k8s.io"
    kind = "NodeMetrics"
    specless = True
    empty_status = None
    endpoints = {**_READS, **_REFUSED}


class PodMetricsStrategy(NodeMetricsStrategy):
    kind = "PodMetrics"
