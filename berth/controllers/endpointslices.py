"""EndpointSlice controller: the ``discovery.k8s.io/v1`` slices of every Service with a
selector, as upstream's endpointslice controller keeps them.

* One endpoint per pod that matches the selector, has an IP and is not finished: conditions
  ``ready`` (Ready and not terminating — or the Service publishes not-ready addresses),
  ``serving`` (Ready, even while terminating) and ``terminating`` (being deleted); ``nodeName``,
  ``targetRef`` and ``hostname`` (when the pod's ``subdomain`` names this Service).
* Endpoints are grouped by their resolved port set (a named ``targetPort`` resolves per pod);
  each group fills slices of at most :data:`MAX_ENDPOINTS_PER_SLICE`. An endpoint stays in the
  slice it is in while it can (fewer writes, and the proxy/DNS see fewer changes); new ones
  fill slices with room first, then new slices. A Service without endpoints keeps one empty
  placeholder slice, as upstream.
* A Service without a selector gets its user-written ``v1/Endpoints`` mirrored into slices
  (upstream's endpointslicemirroring controller, folded in here), so the proxy and DNS, which
  read only slices, serve the ``kubernetes`` Service and other selector-less ones too.
* Slices carry ``kubernetes.io/service-name``, ``endpointslice.kubernetes.io/managed-by`` and
  the Service's labels (plus ``service.kubernetes.io/headless`` for headless Services) and an
  owner reference to the Service, so the garbage collector removes them with it.

The informer may lag behind the controller's own writes: a reconcile that would act on a
cache older than what it wrote waits for the cache (see :class:`_WriteTracker`) instead of
creating duplicate slices.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Mapping
from typing import Any

from berth.api.resources import ENDPOINTS, ENDPOINTSLICES, SERVICES
from berth.client import errors
from berth.client.interface import Obj
from berth.client.keys import ObjectKey, split_key
from berth.controllers import pods as podutil
from berth.controllers.context import Context
from berth.controllers.endpoints import _resolve_port, _selector
from berth.machinery import ownership
from berth.machinery.controller import Controller, Retry
from berth.machinery.informer import Handlers
from berth.machinery.objects import Frozen, is_deleting, key_of, labels, meta, name, namespace, thaw
from berth.machinery.queue import WorkQueue

MAX_ENDPOINTS_PER_SLICE = 100
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
MIRRORED_BY = "endpointslicemirroring-controller.k8s.io"
SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"
OURS = (MANAGED_BY, MIRRORED_BY)
HEADLESS_LABEL = "service.kubernetes.io/headless"

PortSet = tuple[tuple[str, int, str], ...]


def slice_service(sl: Frozen) -> str | None:
    """The Service a slice belongs to (its ``kubernetes.io/service-name`` label)."""
    value = labels(sl).get(SERVICE_NAME_LABEL)
    return str(value) if value else None


def _ports_of(sl: Frozen | Obj) -> PortSet:
    return tuple(
        (str(p.get("name") or ""), int(p.get("port") or 0), str(p.get("protocol") or "TCP"))
        for p in sl.get("ports") or ()
    )


def _slice_ports(port_set: PortSet) -> list[Obj]:
    return [{"name": n, "port": num, "protocol": proto} for n, num, proto in port_set]


def _endpoint_for(pod: Frozen, svc: Frozen, publish_unready: bool) -> Obj:
    spec = pod.get("spec") or {}
    terminating = is_deleting(pod)
    ready_pod = podutil.is_ready(pod)
    ep: Obj = {
        "addresses": [str((pod.get("status") or {}).get("podIP"))],
        "conditions": {
            "ready": publish_unready or (ready_pod and not terminating),
            "serving": publish_unready or ready_pod,
            "terminating": terminating,
        },
        "targetRef": {
            "kind": "Pod",
            "namespace": namespace(pod),
            "name": name(pod),
            "uid": meta(pod).get("uid"),
        },
    }
    if spec.get("nodeName"):
        ep["nodeName"] = spec["nodeName"]
    if spec.get("hostname") and spec.get("subdomain") == name(svc):
        ep["hostname"] = spec["hostname"]
    return ep


def _ep_key(ep: Mapping[str, Any]) -> str:
    ref = ep.get("targetRef") or {}
    return str(ref.get("uid") or (ep.get("addresses") or [""])[0])


class _WriteTracker:
    """What this controller last wrote per Service: slice name -> resourceVersion (``None``
    for a slice it deleted). The cache is current for a Service once it holds every write."""

    def __init__(self) -> None:
        self._written: dict[ObjectKey, dict[str, str | None]] = {}

    def record(self, svc: ObjectKey, slice_name: str, rv: str | None) -> None:
        self._written.setdefault(svc, {})[slice_name] = rv

    def forget(self, svc: ObjectKey) -> None:
        self._written.pop(svc, None)

    def stale(self, svc: ObjectKey, ns: str, cached: Mapping[str, Frozen]) -> bool:
        written = self._written.get(svc)
        if not written:
            return False
        for slice_name, rv in written.items():
            have = cached.get(slice_name)
            if rv is None:
                if have is not None:
                    return True
            elif have is None or _rv(meta(have).get("resourceVersion")) < _rv(rv):
                return True
        self._written.pop(svc, None)
        return False


def _loopback(value: Any) -> bool:
    try:
        return ipaddress.ip_address(str(value)).is_loopback
    except ValueError:
        return False


def _rv(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


class EndpointSliceController:
    def __init__(self, ctx: Context, *, max_per_slice: int = MAX_ENDPOINTS_PER_SLICE) -> None:
        self.ctx = ctx
        self.max_per_slice = max_per_slice
        self.services = ctx.informers.informer(SERVICES)
        self.endpoints = ctx.informers.informer(ENDPOINTS)
        self.slices = ctx.informers.informer(ENDPOINTSLICES)
        self.slices.add_index("service", _by_service)
        self.pods = ctx.pods()
        self.tracker = _WriteTracker()
        self.queue: WorkQueue[ObjectKey] = WorkQueue(ctx.clock, name="endpointslice")
        self.controller = Controller("endpointslice", self, self.queue, workers=4)
        self.services.add_handlers(ownership.requeue_handlers(lambda s: self.queue.add(key_of(s))))
        self.pods.add_handlers(
            Handlers(
                on_add=self._pod_changed, on_update=self._pod_updated, on_delete=self._pod_changed
            )
        )
        # someone else changing or deleting a managed slice: put it back
        self.slices.add_handlers(ownership.requeue_handlers(self._slice_changed))

    def _slice_changed(self, sl: Frozen) -> None:
        svc = slice_service(sl)
        if svc and labels(sl).get(MANAGED_BY_LABEL) in OURS:
            self.queue.add(ObjectKey(f"{namespace(sl)}/{svc}"))

    def _pod_changed(self, pod: Frozen) -> None:
        for svc in self.services.list(namespace(pod) or ""):
            sel = _selector(svc)
            if sel is not None and sel.matches(labels(pod)):
                self.queue.add(key_of(svc))

    def _pod_updated(self, old: Frozen, new: Frozen) -> None:
        self._pod_changed(old)
        if labels(old) != labels(new):
            self._pod_changed(new)

    def desired(self, svc: Frozen) -> dict[PortSet, list[Obj]]:
        """Endpoints of ``svc`` by resolved port set, in a stable order."""
        sel = _selector(svc)
        spec = svc.get("spec") or {}
        ports = list(spec.get("ports") or ())
        publish_unready = bool(spec.get("publishNotReadyAddresses"))
        groups: dict[PortSet, list[Obj]] = {}
        if sel is None:
            return self._mirrored(svc)
        for pod in sorted(self.pods.list(namespace(svc) or ""), key=name):
            if not sel.matches(labels(pod)) or podutil.is_terminal(pod):
                continue
            if not (pod.get("status") or {}).get("podIP"):
                continue
            resolved: list[tuple[str, int, str]] = []
            for p in ports:
                num = _resolve_port(p, pod)
                if num is not None:
                    resolved.append((str(p.get("name") or ""), num, str(p.get("protocol", "TCP"))))
            groups.setdefault(tuple(resolved), []).append(_endpoint_for(pod, svc, publish_unready))
        return groups

    def _mirrored(self, svc: Frozen) -> dict[PortSet, list[Obj]]:
        """The Endpoints of a selector-less Service, as slice endpoints by port set."""
        eps = self.endpoints.get(key_of(svc))
        groups: dict[PortSet, list[Obj]] = {}
        if eps is None or labels(eps).get(SKIP_MIRROR_LABEL) == "true":
            return groups
        for subset in eps.get("subsets") or ():
            port_set: PortSet = tuple(
                (str(p.get("name") or ""), int(p.get("port") or 0), str(p.get("protocol") or "TCP"))
                for p in subset.get("ports") or ()
            )
            for field, ready in (("addresses", True), ("notReadyAddresses", False)):
                for address in subset.get(field) or ():
                    if _loopback(address.get("ip")):
                        continue  # a test server's own advertise address: never forwarded to
                    ep: Obj = {
                        "addresses": [str(address.get("ip"))],
                        "conditions": {"ready": ready, "serving": ready, "terminating": False},
                    }
                    for key in ("hostname", "nodeName"):
                        if address.get(key):
                            ep[key] = str(address[key])
                    if address.get("targetRef"):
                        ep["targetRef"] = thaw(address["targetRef"])
                    groups.setdefault(port_set, []).append(ep)
        return groups

    def _labels(self, svc: Frozen) -> dict[str, str]:
        out = {str(k): str(v) for k, v in labels(svc).items()}
        out[SERVICE_NAME_LABEL] = name(svc)
        out[MANAGED_BY_LABEL] = MANAGED_BY if _selector(svc) is not None else MIRRORED_BY
        if (svc.get("spec") or {}).get("clusterIP") == "None":
            out[HEADLESS_LABEL] = ""
        else:
            out.pop(HEADLESS_LABEL, None)
        return out

    def plan(
        self, svc: Frozen, existing: list[Frozen]
    ) -> tuple[list[Obj], list[tuple[Frozen, Obj]], list[Frozen]]:
        """(slices to create, (slice, new body) to update, slices to delete)."""
        want_labels = self._labels(svc)
        desired = self.desired(svc)
        creates: list[Obj] = []
        updates: list[tuple[Frozen, Obj]] = []
        deletes: list[Frozen] = []
        by_ports: dict[PortSet, list[Frozen]] = {}
        for sl in sorted(existing, key=name):
            if sl.get("addressType") != "IPv4":
                deletes.append(sl)
            else:
                by_ports.setdefault(_ports_of(sl), []).append(sl)
        if not desired:
            desired = {(): []}  # the placeholder slice of a Service without endpoints
        for port_set, endpoints in desired.items():
            wanted = {_ep_key(ep): ep for ep in endpoints}
            placed: set[str] = set()
            contents: list[tuple[Frozen | None, list[Obj]]] = []
            for sl in by_ports.pop(port_set, []):
                kept = []
                for ep in sl.get("endpoints") or ():
                    k = _ep_key(ep)
                    if k in wanted and k not in placed:
                        kept.append(wanted[k])
                        placed.add(k)
                contents.append((sl, kept))
            rest = [ep for ep in endpoints if _ep_key(ep) not in placed]
            for _old, kept in contents:
                room = self.max_per_slice - len(kept)
                if room > 0 and rest:
                    kept.extend(rest[:room])
                    rest = rest[room:]
            while rest:
                contents.append((None, rest[: self.max_per_slice]))
                rest = rest[self.max_per_slice :]
            if not contents:
                contents.append((None, []))  # the placeholder
            for i, (current, eps) in enumerate(contents):
                if current is not None and not eps and (endpoints or i > 0):
                    deletes.append(current)  # emptied (only a placeholder stays empty)
                    continue
                body = self._body(svc, port_set, eps, want_labels)
                if current is None:
                    creates.append(body)
                elif (
                    thaw(current.get("endpoints") or []) != eps
                    or dict(labels(current)) != want_labels
                    or thaw(current.get("ports") or []) != body["ports"]
                ):
                    updates.append((current, body))
        for stale in by_ports.values():
            deletes.extend(stale)
        return creates, updates, deletes

    def _body(self, svc: Frozen, port_set: PortSet, eps: list[Obj], lbls: dict[str, str]) -> Obj:
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "generateName": f"{name(svc)[:57]}-",
                "namespace": namespace(svc),
                "labels": dict(lbls),
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "Service",
                        "name": name(svc),
                        "uid": meta(svc).get("uid"),
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "addressType": "IPv4",
            "endpoints": eps,
            "ports": _slice_ports(port_set),
        }

    def _managed(self, ns: str, svc_name: str) -> list[Frozen]:
        return [
            sl
            for sl in self.slices.by_index("service", f"{ns}/{svc_name}")
            if labels(sl).get(MANAGED_BY_LABEL) in OURS
        ]

    async def reconcile(self, key: ObjectKey) -> None:
        ns, svc_name = split_key(key)
        ns = ns or ""
        existing = self._managed(ns, svc_name)
        cached = {name(sl): sl for sl in existing}
        if self.tracker.stale(key, ns, cached):
            raise Retry(0.05, "slice cache behind this controller's writes")
        svc = self.services.get(key)
        if svc is None or (svc.get("spec") or {}).get("type") == "ExternalName":
            # the garbage collector would remove them with the Service; do it now
            for sl in existing:
                with contextlib.suppress(errors.NotFound):
                    await self.ctx.client.delete(ENDPOINTSLICES, name(sl), namespace=ns)
                self.tracker.record(key, name(sl), None)
            if svc is None:
                self.tracker.forget(key)
            return
        creates, updates, deletes = self.plan(svc, existing)
        for sl, body in updates:
            body["metadata"]["name"] = name(sl)
            body["metadata"].pop("generateName")
            body["metadata"]["resourceVersion"] = meta(sl).get("resourceVersion")
            written = await self.ctx.client.update(ENDPOINTSLICES, body)
            self.tracker.record(key, name(sl), str(meta(written).get("resourceVersion")))
        for body in creates:
            written = await self.ctx.client.create(ENDPOINTSLICES, body, namespace=ns)
            self.tracker.record(key, name(written), str(meta(written).get("resourceVersion")))
        for sl in deletes:
            with contextlib.suppress(errors.NotFound):
                await self.ctx.client.delete(ENDPOINTSLICES, name(sl), namespace=ns)
            self.tracker.record(key, name(sl), None)


def _by_service(sl: Frozen) -> list[str]:
    svc = slice_service(sl)
    return [f"{namespace(sl)}/{svc}"] if svc else []
