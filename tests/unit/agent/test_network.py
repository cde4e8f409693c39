"""The agent's network loop: routes and service rules follow Nodes, Services and Endpoints
(commands faked; nothing touches this machine's network)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from berth.agent.config import AgentConfigError, load_config
from berth.agent.network import NodeNetwork
from berth.api.resources import ENDPOINTSLICES, NODES, SERVICES
from berth.machinery.clock import FakeClock
from berth.network import node as node_module
from berth.runtime.agent_runtime import _resolved_volumes
from tests.harness.fake_client import FakeClient
from tests.harness.fake_runner import FakeRunner
from tests.harness.slices import slice_from_endpoints

ADDRS = [
    {"ifname": "lo", "addr_info": [{"local": "127.0.0.1"}]},
    {"ifname": "host0", "addr_info": [{"local": "10.231.1.11"}]},
]


HOST = [(("ip", "-j", "route"), b"[]"), (("ip", "-j", "-4"), json.dumps(ADDRS).encode())]
"""``ip -j`` answers of a host with no berth routes yet (host0 carries the node address)."""


def host_runner() -> FakeRunner:
    return FakeRunner(HOST)


async def synced_network(
    api: FakeClient, clock: FakeClock, runner: FakeRunner, **options: Any
) -> NodeNetwork:
    """Node n1's network (10.231.1.11; pods 10.244.0.0/16, services 10.96.0.0/12) with its
    caches filled from ``api``, after one sync; its speaker sends no ARP."""
    net = NodeNetwork(
        api,
        clock,
        node="n1",
        node_address="10.231.1.11",
        cluster_cidr="10.244.0.0/16",
        service_cidr="10.96.0.0/12",
        runner=runner,
        **options,
    )
    net.speaker.announce = False
    for informer in (net.nodes, net.services, net.endpoints, net.slices):
        await informer.relist()
    await net.sync_once()
    return net


def _node(name: str, cidr: str, address: str) -> dict[str, object]:
    return {
        "metadata": {"name": name},
        "spec": {"podCIDR": cidr},
        "status": {"addresses": [{"type": "InternalIP", "address": address}]},
    }


def test_sync_routes_other_nodes_and_renders_services_from_endpoint_slices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(node_module, "enable_forwarding", lambda: False)

    async def body() -> None:
        clock = FakeClock()
        api = FakeClient(now=clock.now)
        api.seed(NODES, _node("n1", "10.244.0.0/24", "10.231.1.11"))
        api.seed(NODES, _node("n2", "10.244.1.0/24", "10.231.1.12"))
        api.seed(
            SERVICES,
            {
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {
                    "type": "NodePort",
                    "clusterIP": "10.96.0.20",
                    "ports": [{"name": "http", "port": 80, "nodePort": 30080}],
                },
            },
        )
        api.seed(
            ENDPOINTSLICES,
            slice_from_endpoints(
                {
                    "metadata": {"name": "web", "namespace": "default"},
                    "subsets": [
                        {
                            "addresses": [{"ip": "10.244.1.5"}],
                            "ports": [{"name": "http", "port": 8080}],
                        }
                    ],
                }
            ),
        )
        runner = host_runner()
        net = await synced_network(api, clock, runner)
        argvs = [" ".join(a) for a, _ in runner.calls]
        assert "ip route replace 10.244.1.0/24 via 10.231.1.12 proto 199" in argvs
        assert "ip route replace 10.96.0.0/12 dev host0 proto 199" in argvs
        assert not any("10.244.0.0/24" in a for a in argvs), "no route to its own pods"
        nft = [stdin for a, stdin in runner.calls if a[0] == "nft"]
        assert len(nft) == 1
        assert nft[0] is not None
        assert b"10.96.0.20" in nft[0]
        assert b"10.244.1.5" in nft[0]
        assert b"30080" in nft[0]
        calls = len(runner.calls)
        await net.sync_once()  # same objects: the ruleset is unchanged, nft does not run again
        assert "nft" not in [a[0] for a, _ in runner.calls[calls:]]

    asyncio.run(body())


def test_the_node_local_dns_address_gets_no_service_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """kube-dns has no endpoints: were it proxied, its address would be rejected on every node,
    where berth-dns answers on it locally."""
    monkeypatch.setattr(node_module, "enable_forwarding", lambda: False)

    async def body() -> None:
        clock = FakeClock()
        api = FakeClient(now=clock.now)
        api.seed(NODES, _node("n1", "10.244.0.0/24", "10.231.1.11"))
        for name, ip in (("kube-dns", "10.96.0.10"), ("other", "10.96.0.30")):
            api.seed(
                SERVICES,
                {
                    "metadata": {"name": name, "namespace": "kube-system"},
                    "spec": {"clusterIP": ip, "ports": [{"name": "dns", "port": 53}]},
                },
            )
        runner = host_runner()
        await synced_network(api, clock, runner, node_local_ips=frozenset({"10.96.0.10"}))
        (ruleset,) = [stdin for a, stdin in runner.calls if a[0] == "nft"]
        assert ruleset is not None
        assert b"10.96.0.30" in ruleset, "other Services without endpoints are still rejected"
        assert b"10.96.0.10" not in ruleset

    asyncio.run(body())


def test_resolved_volume_files_replace_api_references() -> None:
    volumes = [
        {"name": "cfg", "configMap": {"name": "app", "items": [{"key": "k", "path": "p"}]}},
        {"name": "tls", "secret": {"secretName": "certs", "defaultMode": 256}},
        {"name": "scratch", "emptyDir": {}},
    ]
    contents = {"cfg": {"p": b"v"}, "tls": {"tls.key": b"secret"}}
    out, files = _resolved_volumes(volumes, contents)
    assert files is not None
    assert out[0] == {"name": "cfg", "configMap": {"name": "cfg"}}  # items already applied
    assert out[1] == {"name": "tls", "secret": {"secretName": "tls", "defaultMode": 256}}
    assert out[2] == volumes[2]
    assert files("configMap", "cfg") == {"p": b"v"}
    assert files("secret", "tls") == {"tls.key": b"secret"}


def test_network_section_of_the_agent_config(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "kubeconfig: k.conf\nruntime: runc\nnodes: [{name: n1}]\n"
        "network: {clusterCIDR: 10.244.0.0/16, serviceCIDR: 10.96.0.0/12, clusterDNS: 10.96.0.10}\n"
    )
    config = load_config(path)
    assert config.network.cluster_cidr == "10.244.0.0/16"
    assert config.network.service_cidr == "10.96.0.0/12"
    assert config.network.cluster_dns == "10.96.0.10"
    path.write_text("kubeconfig: k.conf\nnodes: [{name: n1}]\nnetwork: {serviceCIDR: 10.96/99}\n")
    with pytest.raises(AgentConfigError, match=r"network.serviceCIDR"):
        load_config(path)
