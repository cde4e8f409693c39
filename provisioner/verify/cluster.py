"""Cluster checks through the API (admin kubeconfig): nodes registered with the right roles,
labels and taints, all Ready, components healthy, leaders elected, and a smoke workload — one pod
on every schedulable node, placed by the scheduler, Running, then deleted."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
import time
import urllib.request
from pathlib import Path
from typing import Any

from berth.client import errors as api_errors
from berth.client.http import HttpClient
from berth.client.kubeconfig import load_kubeconfig
from berth.client.resources import LEASES, NAMESPACES, NODES, PODS
from provisioner.phases.cluster.nodes import admin_client, desired_nodes, node_patch
from provisioner.spec import ClusterSpec
from provisioner.spec.model import https_url
from provisioner.verify.hosts import CheckResult

CLUSTER = "(cluster)"
SMOKE_NAMESPACE = "berth-verify"
SMOKE_TIMEOUT = 60.0
LEASE_STALE_SECONDS = 60.0
Obj = dict[str, Any]


def _ready(node: Obj) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _check(name: str, ok: bool, detail: str = "") -> CheckResult:
    return CheckResult(name, CLUSTER, ok, detail)


async def _node_checks(
    client: HttpClient, spec: ClusterSpec
) -> tuple[list[CheckResult], dict[str, Obj]]:
    results: list[CheckResult] = []
    nodes = {n["metadata"]["name"]: n for n in (await client.list(NODES)).items}
    for want in desired_nodes(spec):
        node = nodes.get(want.name)
        if node is None:
            results.append(_check(f"node {want.name} registered", False, "no Node object"))
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
        results.append(_check(f"node {want.name} Ready", _ready(node)))
    extra = sorted(set(nodes) - {h.name for h in spec.hosts})
    results.append(
        _check("no nodes outside the spec", not extra, ", ".join(extra) if extra else "")
    )
    return results, nodes


async def _leader_checks(client: HttpClient) -> list[CheckResult]:
    results = []
    now = dt.datetime.now(dt.UTC)
    for lease_name in ("kube-controller-manager", "kube-scheduler"):
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


def _schedulable(node: Obj) -> bool:
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    return not any(
        t.get("effect") in ("NoSchedule", "NoExecute")
        for t in (node.get("spec") or {}).get("taints") or []
    )


async def _smoke(client: HttpClient, nodes: dict[str, Obj]) -> list[CheckResult]:
    targets = sorted(name for name, node in nodes.items() if _schedulable(node) and _ready(node))
    if not targets:
        return [_check("smoke workload", False, "no schedulable Ready node")]
    with contextlib.suppress(api_errors.AlreadyExists):
        await client.create(NAMESPACES, {"metadata": {"name": SMOKE_NAMESPACE}})
    run = secrets.token_hex(3)
    pods = {}
    for name in targets:
        pod = f"smoke-{name}-{run}"
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod, "labels": {"app": "berth-verify"}},
            "spec": {
                "nodeSelector": {"kubernetes.io/hostname": name},
                "containers": [{"name": "smoke", "image": "busybox:1.36", "command": ["true"]}],
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 0,
            },
        }
        await client.create(PODS, body, namespace=SMOKE_NAMESPACE)
        pods[pod] = name
    deadline = time.monotonic() + SMOKE_TIMEOUT
    phases: dict[str, str] = {}
    placed: dict[str, str] = {}
    while time.monotonic() < deadline:
        for pod in pods:
            try:
                obj = await client.get(PODS, pod, namespace=SMOKE_NAMESPACE)
            except api_errors.NotFound:
                continue
            phases[pod] = (obj.get("status") or {}).get("phase", "")
            placed[pod] = (obj.get("spec") or {}).get("nodeName", "")
        if all(phases.get(p) in ("Running", "Succeeded") for p in pods):
            break
        await asyncio.sleep(0.5)
    results = []
    for pod, node in pods.items():
        runtime = (nodes[node].get("status") or {}).get("nodeInfo", {}).get(
            "containerRuntimeVersion"
        ) or "unknown"
        ok = phases.get(pod) in ("Running", "Succeeded") and placed.get(pod) == node
        simulated = " (simulated: no container ran)" if runtime.startswith("simulated") else ""
        results.append(
            _check(
                f"smoke pod on {node}",
                ok,
                f"{phases.get(pod) or 'not started'} on {placed.get(pod) or 'no node'}; "
                f"runtime {runtime}{simulated}",
            )
        )
        with contextlib.suppress(api_errors.ApiError):
            await client.delete(PODS, pod, namespace=SMOKE_NAMESPACE, grace_period_seconds=0)
    return results


def _readyz(kubeconfig: Path, spec: ClusterSpec) -> list[CheckResult]:
    """``/readyz`` of every API server (each control-plane host, dialled directly)."""
    context = load_kubeconfig(kubeconfig).ssl_context()
    results = []
    for host in spec.control_plane_hosts:
        url = f"{https_url(host.address, spec.api_port)}/readyz"
        try:
            with urllib.request.urlopen(url, context=context, timeout=10) as answer:  # noqa: S310
                body = answer.read(200).decode(errors="replace").strip()
                ok = answer.status == 200
        except (OSError, ValueError) as error:
            body, ok = f"{type(error).__name__}: {error}", False
        results.append(_check(f"API server on {host.name} ready (/readyz)", ok, body))
    return results


async def _all(kubeconfig: Path, spec: ClusterSpec, *, smoke: bool) -> list[CheckResult]:
    client = admin_client(kubeconfig, timeout=10.0)
    try:
        try:
            node_results, nodes = await _node_checks(client, spec)
        except (TimeoutError, OSError, api_errors.ApiError) as error:
            return [_check("API server reachable", False, f"{type(error).__name__}: {error}")]
        results = [_check("API server reachable", True, spec.api_server_url)]
        results += await asyncio.to_thread(_readyz, kubeconfig, spec)
        results += node_results
        results += await _leader_checks(client)
        if smoke:
            results += await _smoke(client, nodes)
        return results
    finally:
        await client.close()


def cluster_checks(kubeconfig: Path, spec: ClusterSpec, *, smoke: bool = True) -> list[CheckResult]:
    """Every cluster check (see the module docstring)."""
    if not kubeconfig.exists():
        return [_check("admin kubeconfig", False, f"{kubeconfig} is missing; run `berth apply`")]
    return asyncio.run(_all(kubeconfig, spec, smoke=smoke))
