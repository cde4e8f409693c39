"""Cluster checks through the API (admin kubeconfig): nodes registered with the right roles,
labels and taints, all Ready, components healthy, leaders elected, and a smoke workload — one pod
on every schedulable node, placed by the scheduler, Running, then deleted.

On a runc cluster the smoke pods are real containers (busybox httpd from the smoke image the
agents phase loaded, ``imagePullPolicy: Never``), each serving its node's name, and a ClusterIP
Service over them must reach every pod from every node (nftables service proxy, host-gw routes)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import http.client
import secrets
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from berth.api.resources import LEASES, NAMESPACES, NODES, PODS, SERVICES
from berth.client import errors as api_errors
from berth.client.http import HttpClient
from berth.client.kubeconfig import load_kubeconfig
from provisioner import hostlayout as layout
from provisioner.clusterapi import Retry, admin_client, is_ready, readyz, until_reachable
from provisioner.errors import ProvisionerError
from provisioner.nodestate import desired_nodes, node_patch
from provisioner.smoke_image import SERVE, SERVE_PORT, smoke_image
from provisioner.spec import ClusterSpec
from provisioner.verify.hosts import CheckResult
from provisioner.verify.ingress import ingress_checks
from provisioner.verify.units import UnitStates, UnitWatch, deadline_for
from provisioner.verify.waiting import (
    SYSTEM_CLOCK,
    Clock,
    Deadline,
    ask_until,
    ask_until_async,
)

CLUSTER = "(cluster)"
SMOKE_NAMESPACE = "berth-verify"
SMOKE_TIMEOUT = 60.0
SMOKE_RETRY_EVERY = 0.5
RUN_LABEL = "berth.dev/verify-run"
LEASE_STALE_SECONDS = 60.0
Obj = dict[str, Any]


_ready = is_ready


def _check(name: str, ok: bool, detail: str = "") -> CheckResult:
    return CheckResult(name, CLUSTER, ok, detail)


def _noted(detail: str, note: str) -> str:
    """``detail`` with ``note`` after it (either may be empty)."""
    return "; ".join(part for part in (detail, note) if part)


async def _node_checks(
    client: HttpClient,
    spec: ClusterSpec,
    units: UnitStates | None = None,
    clock: Clock = SYSTEM_CLOCK,
    watch: UnitWatch | None = None,
) -> tuple[list[CheckResult], dict[str, Obj]]:
    results: list[CheckResult] = []
    units = units or UnitStates()
    wanted = [w.name for w in desired_nodes(spec)]

    async def listing() -> dict[str, Obj]:
        return {n["metadata"]["name"]: n for n in (await client.list(NODES)).items}

    def unsettled(nodes: dict[str, Obj]) -> list[str]:
        # A node Ready again still carries the lifecycle controller's not-ready/unreachable
        # taints until its next pass (a slow VM's heartbeat gap): nothing is scheduled there yet.
        return [
            name
            for name in wanted
            if name not in nodes or not _ready(nodes[name]) or _lifecycle_tainted(nodes[name])
        ]

    # right after an apply a node that just registered may not be Ready yet: list again until
    # every node of the spec is there and Ready, or NODES_WITHIN seconds passed, while an
    # agent that could still make one Ready runs (longer while the agents of the nodes still
    # missing demonstrably start: ``watch``)
    seen: dict[str, Obj] = {}

    async def listed() -> dict[str, Obj]:
        seen.clear()
        seen.update(await listing())
        return seen

    nodes = await ask_until_async(
        listed,
        lambda nodes: not unsettled(nodes),
        deadline_for(
            watch, NODES_WITHIN, lambda: ((n, layout.AGENT) for n in unsettled(seen)), clock
        ),
        pause=NODES_RETRY_EVERY,
        worth_waiting=lambda nodes: any(
            not units.stopped(name, layout.AGENT) for name in unsettled(nodes)
        ),
    )
    for want in desired_nodes(spec):
        node = nodes.get(want.name)
        if node is None:
            why = _noted("no Node object", units.why_not_waited(want.name, layout.AGENT))
            results.append(_check(f"node {want.name} registered", False, why))
            continue
        results.append(_check(f"node {want.name} registered", True))
        patch = node_patch(node, want)
        results.append(
            _check(
                f"node {want.name} roles/labels/taints",
                not patch.changes,
                "; ".join(f"needs {c}" for c in patch.changes),
            )
        )
        ready = _ready(node)
        why = "" if ready else units.why_not_waited(want.name, layout.AGENT)
        results.append(_check(f"node {want.name} Ready", ready, why))
    extra = sorted(set(nodes) - {h.name for h in spec.hosts})
    results.append(
        _check("no nodes outside the spec", not extra, ", ".join(extra) if extra else "")
    )
    return results, nodes


async def _leader_checks(client: HttpClient, cluster: ClusterSpec) -> list[CheckResult]:
    results = []
    now = dt.datetime.now(dt.UTC)
    vip = ("berth-vip",) if cluster.api_vip is not None else ()  # the API VIP's holder
    for lease_name in ("kube-controller-manager", "kube-scheduler", *vip):
        try:
            lease = await client.get(LEASES, lease_name, namespace="kube-system")
        except api_errors.NotFound:
            results.append(_check(f"leader elected: {lease_name}", False, "no Lease"))
            continue
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        renewed = spec.get("renewTime") or ""
        fresh = False
        if renewed:
            try:
                when = dt.datetime.fromisoformat(renewed.replace("Z", "+00:00"))
                fresh = (now - when).total_seconds() < LEASE_STALE_SECONDS
            except ValueError:
                fresh = False
        results.append(
            _check(
                f"leader elected: {lease_name}",
                bool(holder) and fresh,
                f"holder {holder or 'none'}, renewed {renewed or 'never'}",
            )
        )
    return results


LIFECYCLE_TAINTS = frozenset({"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"})
"""Taints the node lifecycle controller puts on a node that stopped heartbeating (and takes
off once it is back): verify waits for them to go like it waits for Ready."""


def _lifecycle_tainted(node: Obj) -> bool:
    return any(
        t.get("key") in LIFECYCLE_TAINTS for t in (node.get("spec") or {}).get("taints") or []
    )


def _schedulable(node: Obj) -> bool:
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    return not any(
        t.get("effect") in ("NoSchedule", "NoExecute")
        for t in (node.get("spec") or {}).get("taints") or []
    )


Probe = Callable[[str, str, int], dict[str, int]]
"""``probe(host, url, expected)``: from ``host``, GET ``url`` until ``expected`` distinct bodies
answered (or a deadline); how often each body (or error) answered."""


def _runtime_of(node: Obj) -> str:
    info = (node.get("status") or {}).get("nodeInfo") or {}
    return str(info.get("containerRuntimeVersion") or "unknown")


def _smoke_pod(name: str, node: str, run: str, image: str | None) -> Obj:
    """A pod pinned to ``node``: with ``image`` (a runc cluster) busybox httpd serving the node
    name from the preloaded smoke image; without, a pod that only has to run (simulated)."""
    container: Obj = {"name": "smoke", "image": "busybox:1.36", "command": ["true"]}
    spec: Obj = {"restartPolicy": "Never"}
    if image is not None:
        # smoke-serve, not a bare httpd: a PID 1 that exits on SIGTERM (see smoke_image)
        serve = f"mkdir -p /tmp/www && echo {node} > /tmp/www/index.html && exec {SERVE} /tmp/www"
        container = {
            "name": "smoke",
            "image": image,
            "imagePullPolicy": "Never",  # loaded by the agents phase: no registry involved
            "command": ["/bin/sh", "-c", serve],
            "ports": [{"containerPort": SERVE_PORT, "name": "http"}],
        }
        spec = {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "berth-verify", RUN_LABEL: run}},
        "spec": {
            **spec,
            "nodeSelector": {"kubernetes.io/hostname": node},
            "containers": [container],
            "terminationGracePeriodSeconds": 0,
        },
    }


async def _wait_pods(
    client: HttpClient,
    pods: dict[str, str],
    *,
    serving: bool,
    units: UnitStates,
    clock: Clock = SYSTEM_CLOCK,
    watch: UnitWatch | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """Poll until every pod runs (and is Ready when it serves), for up to SMOKE_TIMEOUT
    seconds while an agent that could still run one of them runs; its phase and node.
    ``pods``: each pod's node."""
    phases: dict[str, str] = {}
    placed: dict[str, str] = {}

    def running(pod: str) -> bool:
        return phases.get(pod) in ("Running", "Succeeded")

    async def look() -> None:
        for pod in pods:
            try:
                obj = await client.get(PODS, pod, namespace=SMOKE_NAMESPACE)
            except (api_errors.NotFound, api_errors.Unreachable):
                continue  # not there yet, or no answer this time: ask again until the deadline
            phase = (obj.get("status") or {}).get("phase", "")
            if serving and phase == "Running" and not _ready(obj):
                phase = "Running (not Ready)"
            for status in (obj.get("status") or {}).get("containerStatuses") or []:
                waiting = (status.get("state") or {}).get("waiting") or {}
                if waiting.get("reason"):  # e.g. ErrImageNeverPull: the smoke image is missing
                    phase += f" ({waiting['reason']}: {str(waiting.get('message', ''))[:160]})"
            phases[pod] = phase
            placed[pod] = (obj.get("spec") or {}).get("nodeName", "")

    await ask_until_async(
        look,
        lambda _: all(running(p) for p in pods),
        deadline_for(
            watch,
            SMOKE_TIMEOUT,
            lambda: {(node, layout.AGENT) for p, node in pods.items() if not running(p)},
            clock,
        ),
        pause=SMOKE_RETRY_EVERY,
        worth_waiting=lambda _: any(
            not units.stopped(node, layout.AGENT) for p, node in pods.items() if not running(p)
        ),
    )
    return phases, placed


def service_result(
    host: str, cluster_ip: str, backends: set[str], counts: dict[str, int], seconds: float
) -> CheckResult:
    """``host``'s probe of the smoke Service: ``counts`` of each answer (a pod's node name, or
    ``error: ...``), ``seconds`` the probe took (its SSH session included) — how long a node
    waited for every pod, which is what bounds the probe (see ``PROBE_WITHIN``)."""
    answered = {body for body in counts if not body.startswith("error")}
    missing = sorted(backends - answered)
    detail = " ".join(f"{k}x{v}" for k, v in sorted(counts.items()))
    if missing:
        detail += f"; no answer from the pod on {', '.join(missing)} in {seconds:.1f} s"
    else:
        detail += f"; every pod answered in {seconds:.1f} s"
    return CheckResult(f"smoke Service {cluster_ip} reaches every pod", host, not missing, detail)


async def _service_checks(
    client: HttpClient, run: str, pods: dict[str, str], probe: Probe
) -> list[CheckResult]:
    """A ClusterIP Service over the smoke pods; every node must reach every pod through it."""
    service = f"smoke-{run}"
    body: Obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service},
        "spec": {
            "selector": {RUN_LABEL: run},
            "ports": [{"name": "http", "port": 80, "targetPort": SERVE_PORT}],
        },
    }
    try:
        created = await client.create(SERVICES, body, namespace=SMOKE_NAMESPACE)
    except api_errors.ApiError as error:
        return [_check("smoke Service created", False, f"{type(error).__name__}: {error}")]
    try:
        cluster_ip = str((created.get("spec") or {}).get("clusterIP") or "")
        if not cluster_ip:
            return [_check("smoke Service created", False, "no clusterIP allocated")]
        url = f"http://{cluster_ip}/"
        backends = set(pods.values())
        hosts = sorted(backends)

        async def one(host: str) -> CheckResult:
            started = time.monotonic()
            counts = await asyncio.to_thread(probe, host, url, len(backends))
            took = time.monotonic() - started
            return service_result(host, cluster_ip, backends, counts, took)

        return list(await asyncio.gather(*(one(host) for host in hosts)))
    finally:
        with contextlib.suppress(api_errors.ApiError):
            await client.delete(SERVICES, service, namespace=SMOKE_NAMESPACE)


SMOKE_RETRY = Retry(within=60.0)
"""How long verify's smoke writes are tried again while the API server cannot be reached: an
HA control plane under load refuses or drops a request now and then (the VIP moving)."""


async def _create_if_absent(
    client: HttpClient, resource: Any, body: Obj, namespace: str | None = None
) -> None:
    """Create ``body``; one that exists (an earlier try committed but went unanswered) is
    fine: the names are this run's own."""
    with contextlib.suppress(api_errors.AlreadyExists):
        await client.create(resource, body, namespace=namespace)


async def _smoke(
    client: HttpClient,
    nodes: dict[str, Obj],
    *,
    image: str | None,
    probe: Probe | None,
    units: UnitStates | None = None,
    watch: UnitWatch | None = None,
) -> list[CheckResult]:
    units = units or UnitStates()
    targets = sorted(name for name, node in nodes.items() if _schedulable(node) and _ready(node))
    if not targets:
        return [_check("smoke workload", False, "no schedulable Ready node")]
    await until_reachable(
        lambda: _create_if_absent(client, NAMESPACES, {"metadata": {"name": SMOKE_NAMESPACE}}),
        SMOKE_RETRY,
    )
    run = secrets.token_hex(3)
    pods = {}
    try:
        for name in targets:
            pod = f"smoke-{name}-{run}"
            pods[pod] = name
            body = _smoke_pod(pod, name, run, image)
            await until_reachable(
                partial(_create_if_absent, client, PODS, body, SMOKE_NAMESPACE),
                SMOKE_RETRY,
            )
        phases, placed = await _wait_pods(
            client, pods, serving=image is not None, units=units, watch=watch
        )
        results = []
        for pod, node in pods.items():
            runtime = _runtime_of(nodes[node])
            ok = phases.get(pod) in ("Running", "Succeeded") and placed.get(pod) == node
            simulated = " (simulated: no container ran)" if runtime.startswith("simulated") else ""
            detail = (
                f"{phases.get(pod) or 'not started'} on {placed.get(pod) or 'no node'}; "
                f"runtime {runtime}{simulated}"
            )
            if not ok:
                detail = _noted(detail, units.why_not_waited(node, layout.AGENT))
            results.append(_check(f"smoke pod on {node}", ok, detail))
        if image is not None and probe is not None and all(r.ok for r in results):
            results += await _service_checks(client, run, pods, probe)
        return results
    finally:
        for pod in pods:
            with contextlib.suppress(api_errors.ApiError):
                await client.delete(PODS, pod, namespace=SMOKE_NAMESPACE, grace_period_seconds=0)


def _readyz(kubeconfig: Path, spec: ClusterSpec) -> list[CheckResult]:
    """``/readyz`` of every API server (each control-plane host, dialled directly)."""
    results = []
    for host in spec.control_plane_hosts:
        answer = readyz(kubeconfig, host.address, spec.api_port, timeout=10)
        body = answer.body[:200].strip() if answer.status is not None else answer.body
        results.append(_check(f"API server on {host.name} ready (/readyz)", answer.ok, body))
    return results


NODES_WITHIN = 60.0
"""Seconds the nodes of the spec may take to be registered and Ready."""
NODES_RETRY_EVERY = 0.5
METRICS_WITHIN = 60.0
"""Seconds every /metrics endpoint may take to answer right (as long as the smoke pods may
take to run)."""
METRICS_RETRY_EVERY = 0.25

METRIC_FIGURES = {
    "apiserver": ("apiserver_request_total", "apiserver_request_duration_seconds"),
    "agent": ("kubelet_pod_start_duration_seconds", "kubelet_runtime_operations_errors_total"),
}


def _get_text(context: ssl.SSLContext, address: str, port: int, path: str, name: str) -> str:
    """GET ``path`` over TLS from ``address``, checking the certificate against ``name`` (a
    node's serving certificate names the node, not necessarily its address)."""
    raw = socket.create_connection((address, port), timeout=10)
    conn = http.client.HTTPSConnection(address, port, timeout=10, context=context)
    conn.sock = context.wrap_socket(raw, server_hostname=name)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        body = answer.read(4 << 20).decode(errors="replace")
        if answer.status != 200:
            raise OSError(f"HTTP {answer.status}: {body[:200]}")
        return body
    finally:
        conn.close()


@dataclass(frozen=True)
class _MetricsEndpoint:
    label: str  # "API server" or "agent"
    kind: str  # its METRIC_FIGURES key
    host: str  # the host (or node) it runs on
    address: str
    port: int
    cert_name: str  # the name its serving certificate is checked against
    unit: str  # the unit that serves it


def _metrics(
    kubeconfig: Path,
    spec: ClusterSpec,
    nodes: dict[str, Obj],
    *,
    units: UnitStates | None = None,
    within: float = METRICS_WITHIN,
    clock: Clock = SYSTEM_CLOCK,
    watch: UnitWatch | None = None,
) -> list[CheckResult]:
    """The Prometheus figures people alert on answer: each API server's ``/metrics`` and
    each node agent's (read with the admin certificate). Asked again until they answer right
    or ``within`` seconds passed, while the unit serving them runs: right after an apply an
    agent has registered its Node before its own server listens."""
    units = units or UnitStates()
    context = load_kubeconfig(kubeconfig).ssl_context()
    targets = [
        _MetricsEndpoint(
            "API server", "apiserver", h.name, h.address, spec.api_port, h.address, layout.APISERVER
        )
        for h in spec.control_plane_hosts
    ]
    for name, node in sorted(nodes.items()):
        address = next(
            (a.get("address") for a in (node.get("status") or {}).get("addresses") or ()
             if a.get("type") == "InternalIP"),
            None,
        )  # fmt: skip
        port = (
            ((node.get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}
        ).get("Port")
        if address and isinstance(port, int):
            targets.append(
                _MetricsEndpoint("agent", "agent", name, str(address), port, name, layout.AGENT)
            )
    # one deadline for all (asked side by side): a dead endpoint costs `within` once; with a
    # ``watch``, each its own patient one (still started together)
    deadline = Deadline.after(within, clock)

    def answer(target: _MetricsEndpoint) -> tuple[bool, str]:
        try:
            text = _get_text(context, target.address, target.port, "/metrics", target.cert_name)
        except (OSError, ValueError, ssl.SSLError) as error:
            return False, f"{type(error).__name__}: {error}"
        missing = [f for f in METRIC_FIGURES[target.kind] if f"# TYPE {f} " not in text]
        return not missing, ", ".join(f"no {f}" for f in missing)

    def ask(target: _MetricsEndpoint) -> CheckResult:
        ok, detail = ask_until(
            partial(answer, target),
            lambda answered: answered[0],
            deadline
            if watch is None
            else deadline_for(watch, within, lambda: [(target.host, target.unit)], clock),
            pause=METRICS_RETRY_EVERY,
            worth_waiting=lambda _: not units.stopped(target.host, target.unit),
        )
        if not ok:
            detail = _noted(detail, units.why_not_waited(target.host, target.unit))
        return _check(f"{target.label} on {target.host} /metrics answers", ok, detail)

    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
        return list(pool.map(ask, targets))


async def _all(
    kubeconfig: Path,
    spec: ClusterSpec,
    *,
    smoke: bool,
    probe: Probe | None,
    units: UnitStates | None = None,
    watch: UnitWatch | None = None,
) -> list[CheckResult]:
    units = units or UnitStates()
    client = admin_client(kubeconfig, timeout=10.0)
    try:
        try:
            node_results, nodes = await _node_checks(client, spec, units, watch=watch)
        except (TimeoutError, OSError, api_errors.ApiError) as error:
            return [_check("API server reachable", False, f"{type(error).__name__}: {error}")]
        results = [_check("API server reachable", True, spec.api_server_url)]
        results += await asyncio.to_thread(_readyz, kubeconfig, spec)
        results += node_results
        results += await _leader_checks(client, spec)
        results += await asyncio.to_thread(
            _metrics, kubeconfig, spec, nodes, units=units, watch=watch
        )
        results += await asyncio.to_thread(ingress_checks, spec, watch=watch)
        if smoke:
            image = None
            if spec.spec.runtime == "runc":
                try:
                    image = smoke_image().reference
                except ProvisionerError as error:
                    return [*results, _check("smoke image", False, error.message)]
            try:
                results += await _smoke(
                    client, nodes, image=image, probe=probe, units=units, watch=watch
                )
            except (TimeoutError, OSError, api_errors.ApiError) as error:
                # a failed check with the reason, never a traceback out of verify or apply
                results.append(_check("smoke workload", False, f"{type(error).__name__}: {error}"))
        return results
    finally:
        await client.close()


def cluster_checks(
    kubeconfig: Path,
    spec: ClusterSpec,
    *,
    smoke: bool = True,
    probe: Probe | None = None,
    units: UnitStates | None = None,
    watch: UnitWatch | None = None,
) -> list[CheckResult]:
    """Every cluster check (see the module docstring). ``probe`` lets the runc smoke check
    reach the smoke Service from every node (without it the Service is not checked).
    ``units``: what the host checks (run beside) find; a wait for a component whose unit they
    found stopped ends at once (without it every wait runs its course). ``watch``: looks at
    units on their hosts, so that a wait for a component still starting goes on past its
    first minute while the unit behind it demonstrably starts (without it: a minute at most)."""
    if not kubeconfig.exists():
        return [_check("admin kubeconfig", False, f"{kubeconfig} is missing; run `berth apply`")]
    return asyncio.run(_all(kubeconfig, spec, smoke=smoke, probe=probe, units=units, watch=watch))
