"""Pods: defaults, QoS class, immutable spec, graceful deletion, and the ``binding``,
``eviction``, ``log``, ``exec``, ``attach``, ``portforward`` and ``ephemeralcontainers``
subresources."""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from berth.api.meta import Obj, format_time, get_path, now
from berth.api.resources import ResourceDef
from berth.apiserver import ephemeral, resourceproxy
from berth.apiserver.admission import admit
from berth.apiserver.errors import FieldError, conflict, invalid, required
from berth.apiserver.handlers import (
    Call,
    Endpoint,
    Handler,
    created_status,
    get_object,
    json_response,
    patch,
    update,
)
from berth.apiserver.logs import proxy_logs
from berth.apiserver.options import DeleteOptions
from berth.apiserver.podtemplate import PodTemplate
from berth.apiserver.selectors import path_getter
from berth.apiserver.strategy import pod_spec_defaults
from berth.apiserver.streaming.proxy import serve_exec, serve_portforward
from berth.apiserver.tables import (
    AGE,
    NAME,
    Cell,
    Column,
    Printer,
    age,
    created,
    name_of,
    none_cell,
)
from berth.apiserver.tolerations import add_default_tolerations
from berth.apiserver.validation import pod_fields, pod_update, validate_metadata
from berth.store.interface import Conflict, KeyValue

from .base import KindStrategy

if TYPE_CHECKING:
    from berth.apiserver.app import ApiServer
    from berth.apiserver.registry import Registry

MAX_BIND_RETRIES = 5


# --- pods --------------------------------------------------------------------------------------


def _pod_row(o: Obj) -> list[Cell]:
    spec = o.get("spec") or {}
    status = o.get("status") or {}
    total = len(spec.get("containers") or [])
    ready = 0
    restarts = 0
    reason = status.get("reason") or status.get("phase") or ""
    init_statuses = status.get("initContainerStatuses") or []
    initializing = False
    n_init = len(spec.get("initContainers") or [])
    for i, cs in enumerate(init_statuses):
        restarts += int(cs.get("restartCount") or 0)
        st = cs.get("state") or {}
        term = st.get("terminated")
        if term and term.get("exitCode") == 0:
            continue
        if term:
            reason = "Init:" + (term.get("reason") or f"ExitCode:{term.get('exitCode')}")
        elif (st.get("waiting") or {}).get("reason") not in (None, "", "PodInitializing"):
            reason = "Init:" + st["waiting"]["reason"]
        else:
            reason = f"Init:{i}/{n_init}"
        initializing = True
        break
    if not initializing:
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += int(cs.get("restartCount") or 0)
            st = cs.get("state") or {}
            waiting, term, running = st.get("waiting"), st.get("terminated"), st.get("running")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif term is not None and term.get("reason"):
                reason = term["reason"]
            elif term is not None:
                sig = term.get("signal")
                reason = f"Signal:{sig}" if sig else f"ExitCode:{term.get('exitCode', 0)}"
            elif running is not None and cs.get("ready"):
                has_running = True
                ready += 1
            elif running is not None:
                has_running = True
        if reason == "Completed" and has_running:
            reason = "Running"
    if get_path(o, "metadata", "deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    gates = spec.get("readinessGates") or []
    gates_cell = "<none>"
    if gates:
        conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        ok = sum(1 for g in gates if conds.get(g.get("conditionType")) == "True")
        gates_cell = f"{ok}/{len(gates)}"
    ip = status.get("podIP")
    return [
        name_of(o),
        f"{ready}/{total}",
        reason,
        restarts,
        age(created(o)),
        none_cell(ip),
        none_cell(spec.get("nodeName")),
        none_cell(status.get("nominatedNodeName")),
        gates_cell,
    ]


POD = Printer(
    (
        NAME,
        Column(
            "Ready", description="The aggregate readiness state of this pod for accepting traffic."
        ),
        Column("Status", description="The aggregate status of the containers in this pod."),
        Column(
            "Restarts",
            type="integer",
            description="The number of times the containers in this pod have been restarted.",
        ),
        AGE,
        Column("IP", priority=1, description="IP address allocated to the pod."),
        Column("Node", priority=1, description="Name of the Node this pod is assigned to."),
        Column(
            "Nominated Node",
            priority=1,
            description="Name of the Node where this pod is nominated to run.",
        ),
        Column("Readiness Gates", priority=1, description="Pod readiness gates."),
    ),
    _pod_row,
)


def _qos_class(spec: Obj) -> str:
    containers = spec.get("containers") or []
    limits_all = True
    any_set = False
    for c in containers:
        res = c.get("resources") or {} if isinstance(c, dict) else {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        if not (lim.get("cpu") and lim.get("memory")) or any(
            req.get(k) not in (None, lim.get(k)) for k in ("cpu", "memory")
        ):
            limits_all = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if limits_all else "Burstable"


def _graceful_seconds(obj: Obj, opts: DeleteOptions) -> int | None:
    """Grace seconds when the pod must terminate gracefully; ``None`` to delete now."""
    spec = obj.get("spec") or {}
    phase = get_path(obj, "status", "phase")
    if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
        return None
    grace = opts.grace_period
    if grace is None:
        current = get_path(obj, "metadata", "deletionGracePeriodSeconds")
        grace = (
            current if isinstance(current, int) else spec.get("terminationGracePeriodSeconds", 30)
        )
    if not isinstance(grace, int) or grace <= 0:
        return None
    return grace


# --- subresources ------------------------------------------------------------------------------


async def bind(
    reg: Registry, rd: ResourceDef, ns: str, name: str, body: Any, *, dry_run: bool = False
) -> None:
    """POST pods/{name}/binding: assign the pod to ``target.name`` once (``dry_run``: check
    that it could be, and write nothing)."""
    target = get_path(body, "target", "name") if isinstance(body, dict) else None
    if not isinstance(target, str) or not target:
        raise invalid(rd, name, [required("target.name")])
    for _attempt in range(MAX_BIND_RETRIES):
        kv, pod = await reg.get_kv(rd, ns, name)
        spec = pod.setdefault("spec", {})
        if spec.get("nodeName"):
            raise conflict(rd, name, f'pod {name} is already assigned to node "{spec["nodeName"]}"')
        if pod["metadata"].get("deletionTimestamp"):
            raise conflict(rd, name, f"pod {name} is being deleted, cannot be assigned to a host")
        spec["nodeName"] = target
        status = pod.setdefault("status", {})
        conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        conds.append(
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": format_time(now()),
            }
        )
        status["conditions"] = conds
        if dry_run:
            return
        try:
            await reg.store.update(
                kv.key, reg.codec.encode(kv.key, pod), expected_revision=kv.mod_revision
            )
            return
        except Conflict:
            continue
    raise conflict(rd, name)


async def _binding(server: ApiServer, call: Call) -> web.StreamResponse:
    r = call.route
    await bind(server.registry, r.rd, r.namespace, r.name, call.body, dry_run=call.dry_run)
    return json_response(created_status(), 201)


async def _eviction(server: ApiServer, call: Call) -> web.StreamResponse:
    r, reg, body = call.route, server.registry, call.body
    opts = DeleteOptions.from_body(body.get("deleteOptions") if isinstance(body, dict) else None)
    if call.dry_run:  # the request's dryRun reaches the delete, as the Eviction's own does
        opts = dataclasses.replace(opts, dry_run=True)
    if call.user.node_name is not None:  # NodeRestriction first: no budget peeking
        pod = await reg.get(r.rd, r.namespace, r.name)
        admit(call.user, "create", r.rd, subresource="eviction", name=r.name, old=pod)
    await reg.check_disruption_budgets(r.namespace, r.name)
    await reg.delete(r.rd, r.namespace, r.name, opts, user=call.user)
    return json_response(created_status(), 201)


async def _log(server: ApiServer, call: Call) -> web.StreamResponse:
    r = call.route
    pod = await server.registry.get(r.rd, r.namespace, r.name)
    return await proxy_logs(call.request, server, pod)


_LOG = Endpoint(_log, authorize_as="get", metric_subresource=True)


async def _update_ephemeral(server: ApiServer, call: Call) -> web.StreamResponse:
    """PUT of ``pods/ephemeralcontainers``: a Pod, or the ``EphemeralContainers`` kind
    kubectl 1.20 sends (see :mod:`berth.apiserver.ephemeral`), answered in the same kind."""
    if not ephemeral.is_legacy(call.body):
        return await update(server, call)
    r = call.route
    stored = await server.registry.get(r.rd, r.namespace, r.name)
    as_pod = ephemeral.legacy_to_pod(call.body, stored)
    response = await update(server, dataclasses.replace(call, body=as_pod))
    assert isinstance(response, web.Response)
    written = orjson.loads(response.body)  # type: ignore[arg-type]
    return json_response(ephemeral.pod_to_legacy(written), response.status)


# exec, attach and port-forward are authorized with the request's own verb (a WebSocket
# upgrade is a GET: ``get``; a SPDY upgrade a POST: ``create``), as kube-apiserver 1.32 does.
async def _exec(server: ApiServer, call: Call) -> web.StreamResponse:
    pod = await server.registry.get(call.route.rd, call.route.namespace, call.route.name)
    return await serve_exec(call.request, server, call.user, pod, attach=False)


async def _attach(server: ApiServer, call: Call) -> web.StreamResponse:
    pod = await server.registry.get(call.route.rd, call.route.namespace, call.route.name)
    return await serve_exec(call.request, server, call.user, pod, attach=True)


async def _portforward(server: ApiServer, call: Call) -> web.StreamResponse:
    pod = await server.registry.get(call.route.rd, call.route.namespace, call.route.name)
    return await serve_portforward(call.request, server, call.user, pod)


def _streaming(handler: Handler, kind: str) -> Endpoint:
    return Endpoint(handler, metric_subresource=True, kind=("", "", kind), connect=True)


_EXEC = _streaming(_exec, "PodExecOptions")
_PORTFORWARD = _streaming(_portforward, "PodPortForwardOptions")
_ATTACH = _streaming(_attach, "PodAttachOptions")


class PodStrategy(KindStrategy):
    kind = "Pod"
    empty_status: Mapping[str, Any] = {}  # every PodStatus field is omitempty
    delete_returns_object = True
    teardown_gracefully = True
    field_selectors = {
        "spec.nodeName": path_getter("spec", "nodeName"),
        "spec.restartPolicy": path_getter("spec", "restartPolicy"),
        "spec.schedulerName": path_getter("spec", "schedulerName"),
        "spec.serviceAccountName": path_getter("spec", "serviceAccountName"),
        "status.phase": path_getter("status", "phase"),
        "status.podIP": path_getter("status", "podIP"),
        "status.nominatedNodeName": path_getter("status", "nominatedNodeName"),
    }
    columns = POD
    endpoints = {
        ("create", "binding"): Endpoint(
            _binding, metric_subresource=True, kind=("", "", "Binding")
        ),
        ("create", "eviction"): Endpoint(
            _eviction,
            also_authorize="delete",
            metric_subresource=True,
            kind=("policy", "v1", "Eviction"),
        ),
        ("get", "log"): _LOG,
        ("watch", "log"): _LOG,
        ("get", "exec"): _EXEC,
        ("create", "exec"): _EXEC,
        ("get", "attach"): _ATTACH,
        ("create", "attach"): _ATTACH,
        ("get", ephemeral.SUBRESOURCE): Endpoint(get_object),
        ("update", ephemeral.SUBRESOURCE): Endpoint(_update_ephemeral),
        ("patch", ephemeral.SUBRESOURCE): Endpoint(patch),
        ("get", "portforward"): _PORTFORWARD,
        ("create", "portforward"): _PORTFORWARD,
        **resourceproxy.POD_PROXY,
    }

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        spec = obj.get("spec")
        if isinstance(spec, dict):
            pod_spec_defaults(spec)
            if not spec.get("serviceAccountName"):
                spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
            spec.setdefault("serviceAccount", spec["serviceAccountName"])
            # priority and preemptionPolicy: Priority admission (berth.apiserver.priority)
            # not-ready/unreachable tolerations: berth.apiserver.tolerations (admission).

    def reset_status(self, rd: ResourceDef, obj: Obj) -> None:
        obj["status"] = {"phase": "Pending", "qosClass": _qos_class(obj.get("spec") or {})}

    def validate(
        self, rd: ResourceDef, obj: Obj, *, template: Hashable | None = None
    ) -> list[FieldError]:
        spec_errors = pod_fields(obj, template if isinstance(template, PodTemplate) else None)
        return validate_metadata(obj, self.name_rule) + spec_errors

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        return pod_fields(obj)

    def validate_update(self, rd: ResourceDef, old: Obj, new: Obj) -> list[FieldError]:
        return pod_update(old, new)

    async def admit_create(
        self, reg: Registry, rd: ResourceDef, ns: str, obj: Obj
    ) -> PodTemplate | None:
        add_default_tolerations(obj, reg.default_tolerations)
        # Before ServiceAccount admission keys the pod by its spec (podtemplate): what
        # these set is part of that key.
        reg.limit_ranger.admit_pod(rd, ns, obj)
        await reg.priority.admit_pod(reg, rd, obj)
        if reg.service_accounts is None:
            return None
        await reg.check_namespace(ns)  # a missing namespace is a 404, as upstream
        return await reg.service_accounts.admit_pod(reg, ns, obj)

    def prepare_for_update(self, rd: ResourceDef, old: Obj, new: Obj, subresource: str) -> Obj:
        if subresource != ephemeral.SUBRESOURCE:
            return super().prepare_for_update(rd, old, new, subresource)
        merged = ephemeral.merge(old, new)
        errs = ephemeral.validate(old, merged)
        if errs:
            raise invalid(rd, str(get_path(old, "metadata", "name")), errs)
        return merged

    def keep_on_update(self, rd: ResourceDef, old: Obj, new: Obj) -> None:
        super().keep_on_update(rd, old, new)
        # set by admission on create: an update that leaves them out keeps them
        spec, old_spec = new.get("spec"), old.get("spec")
        if isinstance(spec, dict) and isinstance(old_spec, dict):
            # written only through pods/ephemeralcontainers
            if "ephemeralContainers" in old_spec:
                spec["ephemeralContainers"] = old_spec["ephemeralContainers"]
            else:
                spec.pop("ephemeralContainers", None)
            for field in ("priority", "preemptionPolicy"):
                if field not in spec and field in old_spec:
                    spec[field] = old_spec[field]

    def admit_update(self, reg: Registry, rd: ResourceDef, new: Obj, subresource: str) -> None:
        if not subresource:
            add_default_tolerations(new, reg.default_tolerations)

    def finished_deleting(self, obj: Obj) -> bool:
        # A pod with a grace period left waits for its node to confirm it stopped.
        return super().finished_deleting(obj) and not (
            (get_path(obj, "metadata", "deletionGracePeriodSeconds") or 0) > 0
        )

    async def start_delete(
        self, reg: Registry, rd: ResourceDef, kv: KeyValue, obj: Obj, opts: DeleteOptions
    ) -> Obj | None:
        grace = _graceful_seconds(obj, opts)
        if grace is None:
            return None
        return await reg.mark_deleting(kv, obj, grace, [], dry_run=opts.dry_run)
