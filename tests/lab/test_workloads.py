"""berth's node runtime on lab hosts: images, runc pods, CNI pod network, nftables Services.

One module-wide setup (the ``cluster`` fixture): a docker-registry on the lab bridge holding a
busybox image built offline, runc/CNI/nftables .debs installed on n1..n3, berth's node packages
shipped, host-gw routes synced, and two web pods (A on n1, B on n2) behind a NodePort Service
rendered into berth's nft table on every host. The machine blackholes the pod and service CIDRs
meanwhile. Every host call goes through ``python3 -m berth.runtime`` — a fresh runtime process
each time, i.e. the situation of a restarted node agent.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.lab.conftest import LabFactory
from tests.lab.workloads import (
    CLUSTER_CIDR,
    HTTP_COUNTER,
    REMOTE_BERTH,
    STATE_DIR,
    Node,
    Registry,
    blackhole_routes,
    build_busybox_layout,
    count_responders,
    download_debs,
    require_machine_tools,
    setup_nodes,
    teardown_node,
    web_pod,
    web_service,
)

pytestmark = pytest.mark.lab
CLUSTER_IP = "10.96.0.10"
STICKY_IP = "10.96.0.11"


@dataclass
class Cluster:
    nodes: dict[str, Node]
    image: str
    pods: dict[str, dict[str, Any]]  # "a"/"b" -> {"node", "uid", "ip", "containers", "doc"}

    def apply_service(self, endpoint_ips: list[str]) -> None:
        """``web`` (NodePort) and ``sticky`` (ClientIP affinity) over the same endpoints."""
        doc = web_service(endpoint_ips)
        sticky = web_service(
            endpoint_ips, name="sticky", cluster_ip=STICKY_IP, node_port=None, affinity=True
        )
        doc["services"] += sticky["services"]
        doc["endpointSlices"] += sticky["endpointSlices"]
        for node in self.nodes.values():
            node.berth("proxy", "--cluster-cidr", CLUSTER_CIDR, stdin=doc)


@pytest.fixture(scope="module")
def cluster(lab_factory: LabFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_machine_tools()
    # A lab of our own: installing runc/CNI/nftables and flipping ip_forward on hosts must not
    # leak into other modules' expectations of the shared lab.
    lab = lab_factory(3)
    work = tmp_path_factory.mktemp("workloads")
    with blackhole_routes():
        registry = Registry(lab.gateway, work)
        nodes: list[Node] = []
        try:
            layout = work / "layout"
            ref = build_busybox_layout(layout)
            image = registry.push(layout, ref, "lab/busybox:1.35")
            nodes = setup_nodes(lab, registry.host, download_debs(), ["n1", "n2", "n3"])
            by_name = {n.name: n for n in nodes}
            for name in ("n1", "n2"):
                by_name[name].berth("pull", image)
            pods = {}
            for key, host in (("a", "n1"), ("b", "n2")):
                uid = str(uuid.uuid4())
                doc = web_pod(f"web-{key}", image, uid=uid, text=f"pod-{key}")
                result = by_name[host].berth("run-pod", stdin=doc)
                pods[key] = {"node": by_name[host], "uid": uid, "doc": doc, **result}
            c = Cluster(nodes=by_name, image=image, pods=pods)
            c.apply_service([pods["a"]["ip"], pods["b"]["ip"]])
            yield c
        finally:
            for node in nodes:
                teardown_node(node)
            registry.stop()


def _exec(node: Node, cid: str, *argv: str) -> dict[str, Any]:
    result: dict[str, Any] = node.berth("exec", cid, "--", *argv)
    return result


def test_pods_on_two_hosts_reach_each_other_by_pod_ip(cluster: Cluster) -> None:
    a, b = cluster.pods["a"], cluster.pods["b"]
    assert a["ip"].startswith("10.244.1.")
    assert b["ip"].startswith("10.244.2.")
    for src, dst in ((a, b), (b, a)):
        # (Debian's busybox-static wget segfaults with -T; the timeout applet bounds it instead)
        out = _exec(src["node"], src["containers"][0], "timeout", "3", "wget", "-qO-",
                    f"http://{dst['ip']}:8080/")  # fmt: skip
        assert out["rc"] == 0, out
        assert out["stdout"].strip() == ("pod-b" if dst is b else "pod-a")


def test_container_roots_are_overlays_whose_writes_never_reach_the_image(
    cluster: Cluster,
) -> None:
    """A lab host's runtime keeps its bundles on the host's disk (provisioner.lab.overlay), so
    a container's root is an overlay mount over the image's snapshot, as on a real node; what
    the container writes lands in its bundle's upper directory, never in the snapshot."""
    a = cluster.pods["a"]
    node: Node = a["node"]
    cid = a["containers"][0]
    found = node.ssh(f"findmnt -n -o FSTYPE,OPTIONS {STATE_DIR}/containers/{cid}/rootfs")
    fstype, _, options = found.stdout.decode().strip().partition(" ")
    assert fstype == "overlay", found
    opts = dict(o.partition("=")[::2] for o in options.split(","))
    assert opts["lowerdir"].startswith(f"{STATE_DIR}/images/snapshots/"), opts
    assert opts.get("index", "off") == "off"  # shown only when not the kernel's default
    snapshot = opts["lowerdir"]
    # the pod's root is read-only (readOnlyRootFilesystem): runc remounted the overlay so
    out = _exec(node, cid, "sh", "-c", "echo a-was-here >> /etc/group")
    assert "Read-only file system" in out["stderr"], out
    # a write through the overlay on the host (as the container's would be) stays in the upper
    node.ssh(f"echo a-was-here >> {STATE_DIR}/containers/{cid}/rootfs/etc/group")
    left = node.ssh(
        f"grep -c a-was-here {snapshot}/etc/group; "
        f"grep -c a-was-here {STATE_DIR}/containers/{cid}/upper/etc/group",
        check=False,
    )
    assert left.stdout.decode().split() == ["0", "1"], left


def test_cni_check_confirms_the_pod_attachment(cluster: Cluster) -> None:
    a = cluster.pods["a"]
    assert a["node"].berth("check-pod", a["uid"]) == {"checked": a["uid"]}
    a["node"].ssh(f"ip -n berth-{a['uid']} addr flush dev eth0")  # break it on purpose ...
    broken = a["node"].berth("check-pod", a["uid"], check=False)
    assert "CNI CHECK via plugin 'bridge' failed" in broken["error"], broken
    a["node"].ssh(
        f"ip -n berth-{a['uid']} addr add {a['ip']}/24 dev eth0 && "
        f"ip -n berth-{a['uid']} route add default via 10.244.1.1"
    )  # ... and mend it
    assert a["node"].berth("check-pod", a["uid"]) == {"checked": a["uid"]}


def test_limits_the_lab_cannot_enforce_are_reported_not_fatal(cluster: Cluster) -> None:
    status = cluster.nodes["n1"].berth("status", "--pod", cluster.pods["a"]["uid"])
    (container,) = status["containers"]
    assert container["state"] == "running"
    # The lab's hosts run cgroup2 without delegated controllers: the memory limit cannot be
    # applied there, so the pod runs anyway and says why the limit is missing.
    assert container["warnings"] == [
        "memory limit not enforced: this node's cgroups do not offer that controller"
    ]


def test_cluster_ip_reaches_both_pods_from_every_host(cluster: Cluster) -> None:
    for node in cluster.nodes.values():
        counts = node.python(HTTP_COUNTER.format(n=40, url=f"http://{CLUSTER_IP}/"))
        assert set(counts) == {"pod-a", "pod-b"}, (node.name, counts)


def test_client_ip_affinity_pins_each_client_to_one_backend(cluster: Cluster) -> None:
    seen = set()
    for node in cluster.nodes.values():
        counts = node.python(HTTP_COUNTER.format(n=20, url=f"http://{STICKY_IP}/"))
        assert len(counts) == 1, (node.name, counts)
        assert set(counts) <= {"pod-a", "pod-b"}
        seen |= set(counts)
    assert seen, "every client got answers"


def test_pod_reaches_its_own_service_hairpin(cluster: Cluster) -> None:
    a = cluster.pods["a"]
    loop = f"for i in $(seq 30); do timeout 2 wget -qO- http://{CLUSTER_IP}/ || echo FAIL; done"
    out = _exec(a["node"], a["containers"][0], "sh", "-c", loop)
    lines = out["stdout"].split()
    assert "FAIL" not in lines, out
    assert set(lines) == {"pod-a", "pod-b"}, "both backends, including pod A itself"


def test_node_port_reachable_from_the_machine(cluster: Cluster) -> None:
    for name in ("n1", "n3"):  # a host with a backend, and one without
        counts = count_responders(f"http://{cluster.nodes[name].address}:30080/", 40)
        assert set(counts) == {"pod-a", "pod-b"}, (name, counts)


def test_killing_the_container_process_is_detected_with_its_exit_code(cluster: Cluster) -> None:
    node = cluster.nodes["n2"]
    uid = str(uuid.uuid4())
    doc = web_pod("victim", cluster.image, uid=uid, text="v", command=["/bin/sleep", "3600"])
    (cid,) = node.berth("run-pod", stdin=doc)["containers"]
    status = node.berth("status", "--pod", uid)["containers"][0]
    assert status["state"] == "running"
    node.ssh(f"kill -KILL {status['pid']}")
    deadline = time.monotonic() + 60  # each status is an ssh + python3 start on a loaded host
    while status["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
        status = node.berth("status", "--pod", uid)["containers"][0]
    assert (status["state"], status["exit_code"], status["signal"]) == ("exited", 137, "SIGKILL")
    assert status["id"] == cid
    node.berth("remove-pod", uid)


def test_restarted_agent_finds_the_running_container_instead_of_duplicating(
    cluster: Cluster,
) -> None:
    a = cluster.pods["a"]
    node: Node = a["node"]
    before = node.berth("status", "--pod", a["uid"])["containers"]
    recovered = node.berth("recover")
    found = [c for c in recovered["containers"] if c["pod_uid"] == a["uid"]]
    assert [(c["id"], c["state"]) for c in found] == [(a["containers"][0], "running")]
    again = node.berth("run-pod", stdin=a["doc"])  # the agent re-syncs the same pod
    assert again["containers"] == a["containers"]
    assert again["ip"] == a["ip"]
    after = node.berth("status", "--pod", a["uid"])["containers"]
    assert [(c["id"], c["pid"]) for c in after] == [(c["id"], c["pid"]) for c in before]
    listed = node.ssh("runc --root /run/berth/runc list -q").stdout.decode().split()
    assert sum(1 for cid in listed if cid.startswith(a["uid"])) == 1


def test_deleting_a_pod_leaves_nothing_behind(cluster: Cluster) -> None:
    b = cluster.pods["b"]
    node: Node = b["node"]
    cluster.apply_service([cluster.pods["a"]["ip"]])  # endpoint B goes away first
    node.berth("remove-pod", b["uid"], "--grace", "2")
    checks = {
        "runc": f"runc --root /run/berth/runc list -q | grep -c {b['uid']} || true",
        "netns": f"ip netns list | grep -c berth-{b['uid']} || true",
        "veth": "ip -o link show master cni0 2>/dev/null | grep -c veth || true",
        "ipam": f"ls /var/lib/cni/networks/berth/ | grep -cx {b['ip']} || true",
        "cni cache": f"ls /var/lib/berth/runtime/cni-results | grep -c {b['uid']} || true",
        "nft": f"nft list table ip berth | grep -c {b['ip']} || true",
        "pod dir": f"ls /var/lib/berth/runtime/pods | grep -c {b['uid']} || true",
        "cgroup": f"find /sys/fs/cgroup -maxdepth 3 -name {b['uid']} | grep -c . || true",
        "mounts": f"grep -c {b['uid']} /proc/self/mountinfo || true",
    }
    leftovers = {k: node.ssh(cmd).stdout.decode().strip() for k, cmd in checks.items()}
    assert leftovers == dict.fromkeys(checks, "0")
    # ... and the Service now only reaches pod A, from every host
    counts = cluster.nodes["n3"].python(HTTP_COUNTER.format(n=10, url=f"http://{CLUSTER_IP}/"))
    assert counts == {"pod-a": 10}


AGENT_SCRIPT = """
import asyncio, json
from berth.agent.runtime import ContainerConfig, SandboxConfig
from berth.runtime.agent_runtime import RuncAgentRuntime
from berth.runtime.cli import _runtime, parser

args = parser().parse_args(["--state-dir", "{state}", "--pod-cidr", "{cidr}",
                            "--insecure-registry", "{registry}", "status"])
agent = RuncAgentRuntime(_runtime(args), cluster_dns="10.96.0.10",
                         files=lambda kind, name: {{"greeting": b"hello from " + name.encode()}})
spec = {{"name": "web", "image": "{image}", "ports": [{{"name": "http", "containerPort": 8080}}],
        "volumeMounts": [{{"name": "cfg", "mountPath": "/cfg"}}]}}
pod_spec = {{"volumes": [{{"name": "cfg", "configMap": {{"name": "web-cfg"}}}}],
            "hostAliases": [{{"ip": "10.0.0.9", "hostnames": ["db"]}}]}}

async def main():
    out = {{}}
    sid = await agent.create_sandbox(SandboxConfig(namespace="default", name="agent-pod",
        uid="{uid}", node="n1", pod_ip="{ip}", labels={{"app": "agent"}}, spec=pod_spec))
    cid = await agent.start_container(sid, ContainerConfig(name="web", image="{image}",
        command=("/bin/httpd", "-f", "-v", "-p", "8080", "-h", "/"), spec=spec), attempt=0)
    again = await agent.start_container(sid, ContainerConfig(name="web", image="{image}",
        command=("/bin/httpd", "-f", "-v", "-p", "8080", "-h", "/"), spec=spec), attempt=0)
    out["same_id"] = again == cid
    probe = lambda p: agent.probe(cid, "readiness", p, pod_ip="{ip}")
    # httpd listens a moment after its start: wait for the port (it was a fixed 0.3 s, not
    # always enough on a loaded host); a bare TCP connect leaves nothing in httpd's log
    for _ in range(600):
        if await probe({{"tcpSocket": {{"port": 8080}}}}):
            break
        await asyncio.sleep(0.1)
    out["http"] = await probe({{"httpGet": {{"port": "http", "path": "/etc/passwd"}}}})
    out["http_404"] = await probe({{"httpGet": {{"port": 8080, "path": "/nope"}}}})
    out["tcp"] = await probe({{"tcpSocket": {{"port": 8080}}}})
    out["tcp_closed"] = await probe({{"tcpSocket": {{"port": 9}}}})
    out["exec"] = await probe({{"exec": {{"command": ["cat", "/etc/passwd"]}}}})
    out["exec_fail"] = await probe({{"exec": {{"command": ["false"]}}}})
    out["logs"] = b"".join([c async for c in agent.logs(cid)]).decode()
    run = lambda *argv: agent.rt.exec_in_container(cid, argv)
    out["configmap"] = (await run("cat", "/cfg/greeting")).stdout.decode()
    out["resolv"] = (await run("cat", "/etc/resolv.conf")).stdout.decode().splitlines()
    out["hosts"] = (await run("grep", "db", "/etc/hosts")).stdout.decode().split()
    (sb,) = [s for s in await agent.list_sandboxes() if s.id == sid]
    out["ip"] = sb.config.pod_ip
    out["labels"] = dict(sb.config.labels)
    out["phases"] = [c.phase for c in sb.containers]
    await agent.stop_container(cid, grace_seconds=2)
    out["stopped"] = (await agent.container_status(cid)).phase
    await agent.remove_sandbox(sid)
    out["left"] = [s.id for s in await agent.list_sandboxes() if s.id == sid]
    print(json.dumps(out))

asyncio.run(main())
"""


def test_agent_protocol_adapter_runs_a_pod_with_the_agents_ip_and_probes(
    cluster: Cluster,
) -> None:
    node = cluster.nodes["n1"]
    code = AGENT_SCRIPT.format(
        state=STATE_DIR, cidr=node.pod_cidr, registry=node.registry, image=cluster.image,
        uid=str(uuid.uuid4()), ip="10.244.1.77",
    )  # fmt: skip
    out = node.python(code, env=f"PYTHONPATH={REMOTE_BERTH}")
    logs = out.pop("logs")
    assert out == {
        "same_id": True,
        "http": True,
        "http_404": False,
        "tcp": True,
        "tcp_closed": False,
        "exec": True,
        "exec_fail": False,
        "configmap": "hello from web-cfg",
        "resolv": [
            "nameserver 10.96.0.10",
            "search default.svc.cluster.local svc.cluster.local cluster.local",
            "options ndots:5",
        ],
        "hosts": ["10.0.0.9", "db"],
        "ip": "10.244.1.77",
        "labels": {"app": "agent"},
        "phases": ["running"],
        "stopped": "exited",
        "left": [],
    }
    # httpd -v logged both HTTP probes, coming from the node (the pod network's gateway)
    assert logs.splitlines() == [
        line for line in logs.splitlines() if line.startswith("[::ffff:10.244.1.1]:")
    ]
    assert [line.rsplit(" ", 1)[1] for line in logs.splitlines()] == [
        "response:200",
        "response:404",
    ]


def test_image_store_on_the_host_is_content_addressed(cluster: Cluster) -> None:
    node = cluster.nodes["n1"]
    listing = node.ssh("ls /var/lib/berth/runtime/images/blobs/sha256").stdout.decode().split()
    assert len(listing) == 3, "manifest + config + one layer, stored once"
    for name in listing:
        digest = node.ssh(f"sha256sum /var/lib/berth/runtime/images/blobs/sha256/{name}")
        assert digest.stdout.decode().split()[0] == name
