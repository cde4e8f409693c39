"""The ``nodes`` phase: make every host's Node carry its roles, labels and taints (through the
API, so nothing restarts), and take hosts that left the spec out of the cluster.

Which labels and taints berth manages is recorded on each Node (annotations
``berth.dev/managed-labels`` and ``berth.dev/managed-taints``), so a label removed from the spec
is removed from the Node while labels and taints others set (the node lifecycle controller's
``node.kubernetes.io/*`` taints, an operator's ``kubectl label``) are left alone.

A host with both roles is schedulable; a control-plane-only host gets
``node-role.kubernetes.io/control-plane:NoSchedule``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from berth.api.resources import NODES, PODS
from berth.client import errors as api_errors
from berth.client.http import HttpClient
from berth.client.interface import evict
from provisioner.clusterapi import Retry, admin_client, admin_kubeconfig_path, until_reachable
from provisioner.errors import PhaseError
from provisioner.nodestate import (
    desired_nodes,
    node_patch,
)
from provisioner.phases.cluster.context import spec_of, state_of
from provisioner.phases.cluster.dns import ensure_dns_service
from provisioner.phases.cluster.ingressclass import ensure_ingress_class
from provisioner.phases.cluster.removal import (
    forget_host,
    record_hosts,
    recorded_hosts,
    remove_host,
)
from provisioner.workflow import PhaseData

REGISTER_TIMEOUT = 90.0
REQUEST_TIMEOUT = 30.0
"""Each request's own limit. The API servers were (re)started moments ago and this machine's
load is the operator's business: a node PATCH that takes more than admin_client's default 5 s
(it did, on a loaded CI machine, right after an HA control plane came up on etcd) is slow, not
lost."""
REACHABLE_WITHIN = 3 * REQUEST_TIMEOUT
"""How long a step of this phase is tried again while the API server cannot be reached: three
requests that each go unanswered for the whole :data:`REQUEST_TIMEOUT`, or a minute and a half
of refused connections (an API server restarting). Every step retried is idempotent."""

NODES_RETRY = Retry(within=REACHABLE_WITHIN)

Obj = dict[str, Any]


def admin_kubeconfig(data: PhaseData) -> Path:
    return admin_kubeconfig_path(state_of(data))


async def _nodes(client: HttpClient) -> dict[str, Obj]:
    listing = await client.list(NODES)
    return {n["metadata"]["name"]: n for n in listing.items}


async def _wait_registered(client: HttpClient, names: set[str], within: float) -> dict[str, Obj]:
    deadline = time.monotonic() + within
    while True:
        try:
            nodes = await _nodes(client)
        except (TimeoutError, OSError, api_errors.ApiError):
            nodes = {}
        missing = names - set(nodes)
        if not missing:
            return nodes
        if time.monotonic() > deadline:
            raise PhaseError(
                "nodes",
                f"node(s) {', '.join(sorted(missing))} did not register within {within:.0f}s",
                hint="look at `journalctl -u berth-agent` on those hosts "
                "(and berth-apiserver on the control plane)",
            )
        await asyncio.sleep(0.5)


def _daemon_pod(pod: Obj) -> bool:
    return any(o.get("kind") == "DaemonSet" for o in pod["metadata"].get("ownerReferences") or [])


async def drain(client: HttpClient, node: str, *, within: float) -> int:
    """Cordon ``node`` and evict its pods (DaemonSet pods are left); returns pods evicted."""
    await client.patch(NODES, node, {"spec": {"unschedulable": True}})
    pods = (await client.list(PODS, field_selector=f"spec.nodeName={node}")).items
    evicted = 0
    deadline = time.monotonic() + within
    for pod in pods:
        if _daemon_pod(pod):
            continue
        while True:
            try:
                await evict(
                    client, namespace=pod["metadata"]["namespace"], pod=pod["metadata"]["name"]
                )
                evicted += 1
            except api_errors.NotFound:
                pass
            except api_errors.TooManyRequests:
                # a PodDisruptionBudget says not now: retry until the drain's deadline,
                # then refuse to remove the node, as a first 429 did before
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(1.0)
                continue
            break
    while time.monotonic() < deadline:
        remaining = (await client.list(PODS, field_selector=f"spec.nodeName={node}")).items
        left = [p for p in remaining if not _daemon_pod(p)]
        if not left:
            break
        await asyncio.sleep(0.5)
    return evicted


async def _reconcile(
    data: PhaseData,
    report: Callable[[str], None],
    client: HttpClient | None,
    retry: Retry = NODES_RETRY,
) -> int:
    spec = spec_of(data, "nodes")
    wanted = desired_nodes(spec)
    removed = sorted(set(recorded_hosts(state_of(data))) - {h.name for h in spec.hosts})
    changes = 0
    if client is None:  # planning a cluster whose API is not up yet
        for want in wanted:
            report(f"node {want.name}: register, label {', '.join(sorted(want.labels))}")
            changes += 1
        for name in removed:
            report(f"host {name} left the spec: cordon, drain, delete its Node, clean the host")
            changes += 1
        return changes
    if data.dry_run:
        try:
            nodes = await _nodes(client)
        except (TimeoutError, OSError, api_errors.ApiError):
            nodes = {}
    else:
        nodes = await _wait_registered(client, {w.name for w in wanted}, REGISTER_TIMEOUT)
    for want in wanted:
        node = nodes.get(want.name)
        if node is None:
            report(f"node {want.name}: register, label {', '.join(sorted(want.labels))}")
            changes += 1
            continue
        patch = node_patch(node, want)
        if not patch.patch:
            continue
        if not data.dry_run:
            await until_reachable(partial(client.patch, NODES, want.name, patch.patch), retry)
        if patch.changes:
            report(f"node {want.name}: {'; '.join(patch.changes)}")
            changes += 1
    for name in removed:
        changes += 1
        if data.dry_run:
            report(f"host {name} left the spec: cordon, drain, delete its Node, clean the host")
            continue
        if name in nodes:
            evicted = await drain(client, name, within=spec.spec.upgrade.drain_timeout_seconds)
            with contextlib.suppress(api_errors.NotFound):
                await client.delete(NODES, name)
            report(f"node {name}: cordoned, {evicted} pod(s) evicted, Node deleted")
        if remove_host(data, name, report):
            forget_host(state_of(data), name)
    return changes


def nodes_after(data: PhaseData, report: Callable[[str], None]) -> int:
    """The ``after`` step of the ``nodes`` phase (see the module docstring)."""
    path = admin_kubeconfig(data)

    async def run() -> int:
        if not path.exists():
            return await _reconcile(data, report, None)
        client = admin_client(path, timeout=REQUEST_TIMEOUT)
        try:
            changes = await _reconcile(data, report, client)
            spec = spec_of(data, "nodes")
            changes += await until_reachable(
                lambda: ensure_dns_service(client, spec, dry_run=data.dry_run, report=report),
                NODES_RETRY,
            )
            return changes + await until_reachable(
                lambda: ensure_ingress_class(client, spec, dry_run=data.dry_run, report=report),
                NODES_RETRY,
            )
        finally:
            await client.close()

    changes = asyncio.run(run())
    if not data.dry_run:
        record_hosts(state_of(data), spec_of(data, "nodes"))
    return changes
