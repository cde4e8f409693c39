"""The agent's NetworkPolicy loop: the node's table follows NetworkPolicies, Pods and
Namespaces (nft faked; nothing touches this machine's rules), and bridged traffic is made
visible to the forward hook."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from berth.agent.config import load_config
from berth.agent.netpolicy import NodeNetworkPolicies
from berth.api.resources import NAMESPACES, NETWORKPOLICIES, PODS
from berth.machinery.clock import FakeClock
from berth.machinery.objects import freeze
from berth.netpol.model import pod_from_k8s, policy_pod_fields
from berth.netpol.sync import PolicyEnforcer, render_from_objects
from tests.harness.fake_client import FakeClient
from tests.harness.fake_runner import FakeRunner


def _pod(name: str, ip: str, node: str, **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "a", "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c"}]},
        "status": {"podIP": ip, "phase": "Running"},
    }


async def _deny_ingress_in_a(api: FakeClient, runner: FakeRunner) -> None:
    """Create a deny-all-ingress policy in namespace ``a``; wait (up to 2 s) for the second
    nft table, the one the policy's event syncs."""
    await api.create(
        NETWORKPOLICIES,
        {
            "metadata": {"name": "deny", "namespace": "a"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
        },
        namespace="a",
    )
    for _ in range(200):
        if len(runner.stdins("nft")) == 2:
            break
        await asyncio.sleep(0.01)


def test_table_follows_policies_pods_and_namespaces(tmp_path: Path) -> None:
    async def body() -> None:
        clock = FakeClock()
        api = FakeClient(now=clock.now)
        api.seed(NAMESPACES, {"metadata": {"name": "a"}})
        api.seed(PODS, _pod("web", "10.244.1.2", "n1", app="web"))
        api.seed(PODS, _pod("far", "10.244.2.2", "n2", app="web"))
        runner = FakeRunner()
        bridge = tmp_path / "bridge-nf-call-iptables"
        bridge.write_text("0\n")
        enforcer = PolicyEnforcer(node="n1", runner=runner, bridge_nf=bridge)
        loop = NodeNetworkPolicies(api, clock, node="n1", enforcer=enforcer)
        task = asyncio.create_task(loop.run())
        try:
            for _ in range(200):
                if loop.syncs:
                    break
                await asyncio.sleep(0.01)
            assert bridge.read_text() == "1\n"
            assert len(runner.stdins("nft")) == 1
            assert b"table inet berth-netpol" in runner.stdins("nft")[0]
            assert b"delete table inet berth-netpol" in runner.stdins("nft")[0]
            assert b" : goto " not in runner.stdins("nft")[0]  # no policy: nobody isolated
            await _deny_ingress_in_a(api, runner)
            assert len(runner.stdins("nft")) == 2
            assert b"10.244.1.2 : goto" in runner.stdins("nft")[1]
            assert b"10.244.2.2" not in runner.stdins("nft")[1]  # another node's pod
            # a status change the rules do not read: no new sync
            syncs = loop.syncs
            pod = await api.get(PODS, "web", namespace="a")
            pod["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
            await api.update(PODS, pod)
            await asyncio.sleep(0.1)
            assert loop.syncs == syncs
            # a pod moving into the selection: re-rendered
            await api.create(PODS, _pod("new", "10.244.1.7", "n1"), namespace="a")
            for _ in range(200):
                if len(runner.stdins("nft")) == 3:
                    break
                await asyncio.sleep(0.01)
            assert b"10.244.1.7 : goto" in runner.stdins("nft")[2]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(body())


def _full_pod(**changes: Any) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "metadata": {
            "name": "web",
            "namespace": "a",
            "uid": "u1",
            "resourceVersion": "9",
            "labels": {"app": "web"},
            "annotations": {"note": "x"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-1", "uid": "r1"}],
        },
        "spec": {
            "nodeName": "n1",
            "volumes": [{"name": "cfg", "configMap": {"name": "web"}}],
            "containers": [
                {"name": "c", "image": "busybox", "env": [{"name": "A", "value": "1"}]},
                {
                    "name": "d",
                    "image": "busybox",
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                },
            ],
            "tolerations": [{"operator": "Exists"}],
        },
        "status": {
            "phase": "Running",
            "podIP": "10.244.1.2",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "c", "ready": True}],
        },
    }
    for path, value in changes.items():
        part, _, key = path.partition("__")
        pod[part][key] = value
    return pod


def test_the_pods_cache_keeps_only_what_the_rules_read() -> None:
    async def body() -> None:
        clock = FakeClock()
        api = FakeClient(now=clock.now)
        api.seed(PODS, _full_pod())
        loop = NodeNetworkPolicies(api, clock, node="n1", enforcer=PolicyEnforcer(node="n1"))
        task = asyncio.create_task(loop.pods.run())
        try:
            await asyncio.wait_for(loop.pods.wait_synced(), 60)
            (cached,) = loop.pods.list()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert set(cached["metadata"]) == {"name", "namespace", "uid", "resourceVersion", "labels"}
        assert set(cached["spec"]) == {"nodeName", "containers"}
        assert [dict(c) for c in cached["spec"]["containers"]] == [
            {},
            {"ports": ({"name": "http", "containerPort": 8080, "protocol": "TCP"},)},
        ]
        assert dict(cached["status"]) == {"phase": "Running", "podIP": "10.244.1.2"}

    asyncio.run(body())


def test_the_rules_see_the_same_pod_in_the_cached_part() -> None:
    variants = [
        _full_pod(),
        _full_pod(spec__hostNetwork=True),
        _full_pod(status__phase="Succeeded"),
        _full_pod(status__podIP=""),
        _full_pod(metadata__labels={}),
        _full_pod(spec__containers="not a list"),
    ]
    for pod in variants:
        assert pod_from_k8s(freeze(policy_pod_fields(pod))) == pod_from_k8s(pod)
    assert pod_from_k8s(_full_pod()) is not None


def test_policy_kubeconfig_is_read_and_resolved(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        "kubeconfig: agent.conf\nruntime: runc\nnodes: [{name: n1}]\n"
        "network: {clusterCIDR: 10.244.0.0/16, policyKubeconfig: proxy.conf}\n"
    )
    assert load_config(cfg).network.policy_kubeconfig == str(tmp_path / "proxy.conf")
    cfg.write_text("kubeconfig: agent.conf\nruntime: runc\nnodes: [{name: n1}]\n")
    assert load_config(cfg).network.policy_kubeconfig == ""


def test_without_br_netfilter_the_enforcer_says_so_and_carries_on(tmp_path: Path) -> None:
    no_modprobe = FakeRunner([(("modprobe",), FileNotFoundError("modprobe"))])
    enforcer = PolicyEnforcer(
        node="n1", runner=no_modprobe, bridge_nf=tmp_path / "absent" / "bridge-nf-call-iptables"
    )
    assert asyncio.run(enforcer.ensure_bridge_netfilter()) is False


def test_without_policies_pod_changes_cause_no_sync(tmp_path: Path) -> None:
    """With no NetworkPolicy the table holds no pod, so a burst of pods starting (each
    changing several times) re-renders nothing; the first policy then sees every pod."""
    pods = [_pod("web", "10.244.1.2", "n1", app="web"), _pod("db", "10.244.1.3", "n1")]
    assert render_from_objects([], pods, [], node="n1") == render_from_objects(
        [], [], [], node="n1"
    )

    async def body() -> None:
        clock = FakeClock()
        api = FakeClient(now=clock.now)
        api.seed(NAMESPACES, {"metadata": {"name": "a"}})
        runner = FakeRunner()
        bridge = tmp_path / "bridge-nf-call-iptables"
        enforcer = PolicyEnforcer(node="n1", runner=runner, bridge_nf=bridge)
        loop = NodeNetworkPolicies(api, clock, node="n1", enforcer=enforcer)
        task = asyncio.create_task(loop.run())
        try:
            for _ in range(200):
                if loop.syncs:
                    break
                await asyncio.sleep(0.01)
            assert loop.syncs == 1
            for i in range(5):
                pod = _pod(f"p{i}", "", "n1", app="web")
                created = await api.create(PODS, pod, namespace="a")
                created["status"]["podIP"] = f"10.244.1.{10 + i}"
                await api.update(PODS, created, subresource="status")
            await api.delete(PODS, "p0", namespace="a", grace_period_seconds=0)
            for _ in range(50):
                if len(loop.pods) == 4:
                    break
                await asyncio.sleep(0.01)
            assert len(loop.pods) == 4
            await asyncio.sleep(0.05)
            assert loop.syncs == 1
            await _deny_ingress_in_a(api, runner)
            table = runner.stdins("nft")[1]
            assert all(f"10.244.1.{10 + i} : goto".encode() in table for i in range(1, 5))
            assert b"10.244.1.10" not in table
            # with a policy in place, a pod's change does sync again
            syncs = loop.syncs
            await api.create(PODS, _pod("late", "10.244.1.20", "n1"), namespace="a")
            for _ in range(200):
                if loop.syncs > syncs:
                    break
                await asyncio.sleep(0.01)
            assert b"10.244.1.20 : goto" in runner.stdins("nft")[-1]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(body())
