"""CNI invocation against fake plugins: environment, stdin, chaining, caching, errors."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from berth.network.cni import Attachment, CniError, CniInvoker
from berth.network.command import SubprocessRunner
from berth.network.podnet import HostPort, PodNetwork, node_conflist
from berth.network.vethbridge import VethBridge

# A fake plugin: records its environment and stdin, answers like a CNI plugin would.
FAKE_PLUGIN = """#!{python}
import json, os, sys
conf = json.load(sys.stdin)
name = os.path.basename(sys.argv[0])
keys = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")
with open(os.environ["CNI_PATH"].split(":")[0] + "/calls.jsonl", "a") as log:
    log.write(json.dumps({{"plugin": name, "env": {{k: os.environ.get(k) for k in keys}},
                          "stdin": conf}}) + "\\n")
if conf.get("failWith") and conf["failWith"] == os.environ["CNI_COMMAND"]:
    print(json.dumps({{"cniVersion": "1.0.0", "code": 7, "msg": "boom", "details": "fake"}}))
    sys.exit(1)
if os.environ["CNI_COMMAND"] == "ADD":
    prev = conf.get("prevResult") or {{"cniVersion": conf["cniVersion"], "interfaces": [],
                                       "ips": []}}
    if name == "bridge":
        prev["ips"].append({{"address": "10.244.1.7/24", "gateway": "10.244.1.1"}})
    prev.setdefault("seenBy", []).append(name)
    print(json.dumps(prev))
"""


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    d = tmp_path / "cni-bin"
    d.mkdir()
    for name in ("bridge", "portmap", "loopback"):
        p = d / name
        p.write_text(FAKE_PLUGIN.format(python=sys.executable))
        p.chmod(0o755)
    return d


def _calls(plugins: Path) -> list[dict[str, Any]]:
    path = plugins / "calls.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _invoker(plugins: Path, tmp_path: Path) -> CniInvoker:
    return CniInvoker(SubprocessRunner(), plugin_dirs=[plugins], cache_dir=tmp_path / "cache")


ATT = Attachment(
    container_id="pod-1",
    netns="/run/netns/berth-pod-1",
    ifname="eth0",
    args={"K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": "web"},
    capability_args={"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
)


def test_add_passes_env_and_chains_prev_result(plugins: Path, tmp_path: Path) -> None:
    conflist = node_conflist(pod_cidr="10.244.1.0/24")
    result = asyncio.run(_invoker(plugins, tmp_path).add(conflist, ATT))
    assert result["seenBy"] == ["bridge", "portmap"]
    calls = _calls(plugins)
    assert [c["plugin"] for c in calls] == ["bridge", "portmap"]
    env = calls[0]["env"]
    assert env == {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "pod-1",
        "CNI_NETNS": "/run/netns/berth-pod-1",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
        "CNI_PATH": str(plugins),
    }
    bridge_in, portmap_in = calls[0]["stdin"], calls[1]["stdin"]
    assert bridge_in["name"] == "berth"
    assert bridge_in["cniVersion"] == "1.0.0"
    assert "prevResult" not in bridge_in
    assert "runtimeConfig" not in bridge_in, "bridge declares no capabilities"
    assert bridge_in["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24", "gateway": "10.244.1.1"}]]
    assert portmap_in["prevResult"]["ips"][0]["address"] == "10.244.1.7/24"
    assert portmap_in["runtimeConfig"] == {"portMappings": ATT.capability_args["portMappings"]}


def test_del_runs_in_reverse_with_cached_result_and_drops_cache(
    plugins: Path, tmp_path: Path
) -> None:
    conflist = node_conflist(pod_cidr="10.244.1.0/24")
    invoker = _invoker(plugins, tmp_path)
    asyncio.run(invoker.add(conflist, ATT))
    assert invoker.cached_result("berth", ATT) is not None
    asyncio.run(invoker.check(conflist, ATT))
    asyncio.run(invoker.delete(conflist, ATT))
    calls = _calls(plugins)[2:]
    assert [(c["plugin"], c["env"]["CNI_COMMAND"]) for c in calls] == [
        ("bridge", "CHECK"),
        ("portmap", "CHECK"),
        ("portmap", "DEL"),
        ("bridge", "DEL"),
    ]
    assert all(c["stdin"]["prevResult"]["seenBy"] == ["bridge", "portmap"] for c in calls)
    assert invoker.cached_result("berth", ATT) is None
    asyncio.run(invoker.delete(conflist, ATT))  # repeated DEL: no prevResult, still fine
    assert "prevResult" not in _calls(plugins)[-1]["stdin"]


def test_check_without_add_is_a_clear_error(plugins: Path, tmp_path: Path) -> None:
    conflist = node_conflist(pod_cidr="10.244.1.0/24")
    with pytest.raises(CniError, match="no cached ADD result"):
        asyncio.run(_invoker(plugins, tmp_path).check(conflist, ATT))


def test_plugin_errors_carry_code_and_message(plugins: Path, tmp_path: Path) -> None:
    conflist = node_conflist(pod_cidr="10.244.1.0/24")
    conflist["plugins"][1]["failWith"] = "ADD"
    with pytest.raises(
        CniError, match=r"ADD via plugin 'portmap' failed \(code 7\): boom \(fake\)"
    ):
        asyncio.run(_invoker(plugins, tmp_path).add(conflist, ATT))


def test_missing_plugin_names_the_search_path(plugins: Path, tmp_path: Path) -> None:
    conflist = {"cniVersion": "1.0.0", "name": "x", "plugins": [{"type": "flannel"}]}
    with pytest.raises(CniError, match=r"not found in CNI_PATH .*containernetworking-plugins"):
        asyncio.run(_invoker(plugins, tmp_path).add(conflist, ATT))
    with pytest.raises(CniError, match="invalid plugin type"):
        _invoker(plugins, tmp_path).find_plugin("../bridge")


def test_pod_network_attach_adds_eth0_only_and_cleans_up_on_failure(
    plugins: Path, tmp_path: Path
) -> None:
    conflist = node_conflist(pod_cidr="10.244.1.0/24")
    net = PodNetwork(_invoker(plugins, tmp_path), conflist)
    addr = asyncio.run(
        net.attach(
            sandbox_id="s1",
            netns="/run/netns/s1",
            namespace="ns",
            name="p",
            ports=[HostPort(host_port=30001, container_port=80)],
        )
    )
    assert (addr.ip, addr.gateway) == ("10.244.1.7", "10.244.1.1")
    calls = _calls(plugins)
    # a chain, in order; lo is the runtime's own (berth.runtime.netns), no loopback plugin
    assert [(c["plugin"], c["env"]["CNI_IFNAME"]) for c in calls] == [
        ("bridge", "eth0"),
        ("portmap", "eth0"),
    ]
    assert "K8S_POD_INFRA_CONTAINER_ID=s1" in calls[0]["env"]["CNI_ARGS"]

    conflist["plugins"][0]["failWith"] = "ADD"
    failing = PodNetwork(_invoker(plugins, tmp_path), conflist)
    with pytest.raises(CniError):
        asyncio.run(
            failing.attach(
                sandbox_id="s2",
                netns="/run/netns/s2",
                namespace="n",
                name="q",
                ports=[HostPort(host_port=30003, container_port=80)],
            )
        )
    after = [(c["plugin"], c["env"]["CNI_COMMAND"]) for c in _calls(plugins)[2:]]
    assert after == [
        ("bridge", "ADD"),
        ("portmap", "DEL"),
        ("bridge", "DEL"),
    ], "a failed ADD is undone with DEL, the chain in reverse"


def test_pod_network_detach_drops_an_older_versions_loopback_cache(
    plugins: Path, tmp_path: Path
) -> None:
    """A pod started before lo left CNI has the loopback plugin's cached ADD result; its
    DEL (after the upgrade) leaves no cache file behind, and runs no loopback plugin."""
    invoker = _invoker(plugins, tmp_path)
    net = PodNetwork(invoker, node_conflist(pod_cidr="10.244.1.0/24"))
    asyncio.run(net.attach(sandbox_id="s1", netns="/run/netns/s1", namespace="ns", name="p"))
    old_lo = invoker.cache_dir / "berth-lo-s1-lo"
    old_lo.write_text('{"cniVersion": "1.0.0", "ips": []}')
    asyncio.run(net.detach(sandbox_id="s1", netns="/run/netns/s1"))
    assert sorted(p.name for p in invoker.cache_dir.iterdir()) == []
    assert "loopback" not in {c["plugin"] for c in _calls(plugins)}


def test_pod_network_runs_portmap_only_for_pods_with_host_ports(
    plugins: Path, tmp_path: Path
) -> None:
    net = PodNetwork(_invoker(plugins, tmp_path), node_conflist(pod_cidr="10.244.1.0/24"))
    asyncio.run(net.attach(sandbox_id="s1", netns="/run/netns/s1", namespace="ns", name="p"))
    asyncio.run(net.detach(sandbox_id="s1", netns="/run/netns/s1"))
    ran = sorted((c["plugin"], c["env"]["CNI_COMMAND"]) for c in _calls(plugins))
    assert ran == [("bridge", "ADD"), ("bridge", "DEL")]

    ports = [HostPort(host_port=30002, container_port=80)]
    asyncio.run(
        net.attach(sandbox_id="s2", netns="/run/netns/s2", namespace="ns", name="q", ports=ports)
    )
    asyncio.run(net.detach(sandbox_id="s2", netns="/run/netns/s2", ports=ports))
    eth0 = [
        (c["plugin"], c["env"]["CNI_COMMAND"])
        for c in _calls(plugins)[2:]
        if c["env"]["CNI_IFNAME"] == "eth0"
    ]
    assert eth0 == [("bridge", "ADD"), ("portmap", "ADD"), ("portmap", "DEL"), ("bridge", "DEL")]


class RecordingVeth:
    """Stands in for the in-process eth0 (:class:`VethBridge`): records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def add(self, container_id: str, netns: str, requested_ip: str | None = None) -> dict[str, Any]:
        self.calls.append(("ADD", container_id))
        return {
            "cniVersion": "1.0.0",
            "ips": [{"address": "10.244.1.9/24", "gateway": "10.244.1.1"}],
        }

    def delete(self, container_id: str, netns: str, ip_hint: str | None = None) -> None:
        self.calls.append(("DEL", container_id))


def test_host_port_pods_go_through_the_plugins_and_the_rest_in_process(
    plugins: Path, tmp_path: Path
) -> None:
    veth = RecordingVeth()
    invoker = _invoker(plugins, tmp_path)
    conflist = node_conflist(pod_cidr="10.244.1.0/24")
    net = PodNetwork(invoker, conflist, in_process=cast(VethBridge, veth))
    ports = [HostPort(host_port=30002, container_port=80)]
    for uid, pod_ports in (("plain", []), ("hostport", ports)):
        asyncio.run(
            net.attach(sandbox_id=uid, netns=f"/n/{uid}", namespace="n", name=uid, ports=pod_ports)
        )
    assert veth.calls == [("ADD", "plain")]
    assert [(c["plugin"], c["env"]["CNI_CONTAINERID"]) for c in _calls(plugins)] == [
        ("bridge", "hostport"),
        ("portmap", "hostport"),
    ]
    # the in-process ADD's result is cached as the plugins' is (their CHECK and DEL read it)
    assert invoker.cached_result("berth", Attachment("plain", "/n/plain", "eth0")) == {
        "cniVersion": "1.0.0",
        "ips": [{"address": "10.244.1.9/24", "gateway": "10.244.1.1"}],
    }
    for uid, pod_ports in (("plain", []), ("hostport", ports)):
        asyncio.run(net.detach(sandbox_id=uid, netns=f"/n/{uid}", ports=pod_ports))
    assert veth.calls == [("ADD", "plain"), ("DEL", "plain")]
    assert sorted(invoker.cache_dir.iterdir()) == []
