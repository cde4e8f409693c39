"""Endpoints controller: one Endpoints object per Service with a selector, listing the
addresses of matching pods — ready ones under ``addresses``, others under
``notReadyAddresses`` — with the Service's ports resolved against each pod (named
``targetPort`` looked up in the pod's container ports).

reconcile(service key) is level-triggered; pod changes enqueue every Service in the pod's
namespace whose selector matches the pod's old or new labels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from berth.api.resources import ENDPOINTS, SERVICES
from berth.api.selectors import LabelSelector, selector_from_set
from berth.client import errors
from berth.client.interface import Obj
from berth.client.keys import ObjectKey, split_key
from berth.controllers import pods as podutil
from berth.controllers.context import Context
from berth.machinery import ownership
from berth.machinery.controller import Controller
from berth.machinery.informer import Handlers
from berth.machinery.objects import Frozen, is_deleting, key_of, labels, meta, name, namespace, thaw
from berth.machinery.queue import WorkQueue


def _selector(svc: Frozen) -> LabelSelector | None:
    sel = (svc.get("spec") or {}).get("selector")
    return selector_from_set(sel) if sel else None


def _resolve_port(port: Mapping[str, Any], pod: Frozen) -> int | None:
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target)
    for c in (pod.get("spec") or {}).get("containers") or ():
        for p in c.get("ports") or ():
            if p.get("name") == target and p.get("protocol", "TCP") == port.get("protocol", "TCP"):
                return int(p["containerPort"])
    return None


class EndpointsController:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.services = ctx.informers.informer(SERVICES)
        self.endpoints = ctx.informers.informer(ENDPOINTS)
        self.pods = ctx.pods()
        self.queue: WorkQueue[ObjectKey] = WorkQueue(ctx.clock, name="endpoints")
        self.controller = Controller("endpoints", self, self.queue, workers=4)
        self.services.add_handlers(ownership.requeue_handlers(lambda s: self.queue.add(key_of(s))))
        self.pods.add_handlers(
            Handlers(
                on_add=self._pod_changed,
                on_update=self._pod_updated,
                on_delete=self._pod_changed,
            )
        )

    def _pod_changed(self, pod: Frozen) -> None:
        for svc in self.services.list(namespace(pod) or ""):
            sel = _selector(svc)
            if sel is not None and sel.matches(labels(pod)):
                self.queue.add(key_of(svc))

    def _pod_updated(self, old: Frozen, new: Frozen) -> None:
        self._pod_changed(old)
        if labels(old) != labels(new):
            self._pod_changed(new)

    async def reconcile(self, key: ObjectKey) -> None:
        ns, svc_name = split_key(key)
        svc = self.services.get(key)
        current = self.endpoints.get(key)
        if svc is None:
            if current is not None:
                with contextlib.suppress(errors.NotFound):
                    await self.ctx.client.delete(ENDPOINTS, svc_name, namespace=ns)
            return
        sel = _selector(svc)
        if sel is None:
            return  # Endpoints of selector-less Services are managed by users
        ports = list((svc.get("spec") or {}).get("ports") or ())
        publish_unready = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
        groups: dict[tuple[tuple[str, int, str], ...], dict[str, list[Obj]]] = {}
        for pod in sorted(self.pods.list(ns or ""), key=name):
            if not sel.matches(labels(pod)) or is_deleting(pod) or podutil.is_terminal(pod):
                continue
            ip = (pod.get("status") or {}).get("podIP")
            if not ip:
                continue
            resolved = []
            for p in ports:
                num = _resolve_port(p, pod)
                if num is not None:
                    resolved.append((str(p.get("name") or ""), num, str(p.get("protocol", "TCP"))))
            address: Obj = {
                "ip": ip,
                "nodeName": (pod.get("spec") or {}).get("nodeName"),
                "targetRef": {
                    "kind": "Pod",
                    "namespace": namespace(pod),
                    "name": name(pod),
                    "uid": meta(pod).get("uid"),
                    "resourceVersion": meta(pod).get("resourceVersion"),
                },
            }
            bucket = groups.setdefault(tuple(resolved), {"addresses": [], "notReadyAddresses": []})
            ready = podutil.is_ready(pod) or publish_unready
            bucket["addresses" if ready else "notReadyAddresses"].append(address)
        subsets = []
        for port_set, addrs in groups.items():
            subset: Obj = {
                "ports": [
                    {**({"name": n} if n else {}), "port": num, "protocol": proto}
                    for n, num, proto in port_set
                ]
            }
            for field in ("addresses", "notReadyAddresses"):
                if addrs[field]:
                    subset[field] = addrs[field]
            subsets.append(subset)
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": svc_name,
                "namespace": ns,
                "labels": dict(labels(svc)),
            },
            "subsets": subsets,
        }
        if current is None:
            with contextlib.suppress(errors.AlreadyExists):
                await self.ctx.client.create(ENDPOINTS, body, namespace=ns)
            return
        if thaw(current.get("subsets") or []) == subsets and dict(labels(current)) == dict(
            labels(svc)
        ):
            return
        body["metadata"]["resourceVersion"] = meta(current).get("resourceVersion")
        await self.ctx.client.update(ENDPOINTS, body)
