"""Pod startup latency and Service (ClusterIP) throughput with berth's node runtime on the lab.

Boots a 2-host lab, installs runc/CNI/nftables and berth's node packages, puts a busybox image
in a registry on the lab bridge and pulls it on both hosts (so "image present"), then:

1. **startup**: 30 pods (15 per host, both hosts at once), each = sandbox (netns + CNI ADD of
   lo and eth0, pod files, a ConfigMap volume) + bundle (rootfs hard-link copy, config.json) +
   ``runc create`` through the shim + ``runc start``, timed inside one runtime process per
   host. Peer, same hosts, same run: the bare floor — ``runc run -d`` of a ready-made bundle
   with no network and no volumes.
2. **throughput**, from host n1's network namespace to a pod on n2: small GETs per second and
   MB/s of a 1.9 MB file, through the ClusterIP (nftables DNAT, one endpoint) vs the pod IP.
3. **through the agent**, same hosts and image: ``berth apply``, agents switched to
   ``runtime: runc``, then a Deployment of 30 replicas (after a warm-up that pulls the image)
   timed from ``kubectl apply`` to every pod Ready, and its deletion to every pod gone — next
   to section 1's 30 pods started straight in the runtime (wall time, both hosts at once).

Run as root: ``.venv/bin/python bench/pods.py``. The machine blackholes the pod and service
CIDRs for the duration; all traffic stays on the lab bridge.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

# The lab helpers live with the lab tests (they are not part of the installed packages).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provisioner.lab import Lab
from tests.lab.workloads import (
    CLUSTER_CIDR,
    REMOTE_BERTH,
    SERVICE_CIDR,
    STATE_DIR,
    Node,
    Registry,
    blackhole_routes,
    build_busybox_layout,
    download_debs,
    require_machine_tools,
    setup_nodes,
    teardown_node,
    web_service,
)

PODS_PER_NODE = 15
CLUSTER_IP = "10.96.0.10"

STARTUP = """
import asyncio, json, os, shutil, subprocess, time
from berth.runtime.cli import _runtime, parser
from berth.runtime.k8s import pod_from_k8s

args = parser().parse_args(["--state-dir", "{state}", "--pod-cidr", "{cidr}",
                            "--insecure-registry", "{registry}", "status"])
rt = _runtime(args)
pods = json.loads({pods!r})

async def main():
    out = {{"berth": [], "runc": [], "sandbox": [], "create": [], "start": []}}
    for doc in pods:
        given = doc["files"]
        files = lambda kind, name: {{k: v.encode() for k, v in given[kind + "/" + name].items()}}
        pod, (container,) = pod_from_k8s(doc, files=files)
        t0 = time.monotonic()
        await rt.run_pod_sandbox(pod)
        t1 = time.monotonic()
        cid = await rt.create_container(pod, container)
        t2 = time.monotonic()
        await rt.start_container(cid)
        status = await rt.container_status(cid)
        t3 = time.monotonic()
        assert status.state == "running", status
        out["berth"].append(t3 - t0)
        out["sandbox"].append(t1 - t0)
        out["create"].append(t2 - t1)
        out["start"].append(t3 - t2)
    result = {{"containers": [cid]}}
    # the floor: runc run -d of a ready bundle (no netns, no volumes), same image
    first = result["containers"][0]
    cfg = json.load(open(rt.containers_dir / first / "config.json"))
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "network"]
    cfg["mounts"] = [m for m in cfg["mounts"] if m["type"] != "bind"]
    image = await rt.pull_image("{image}")
    snapshot = rt.images.rootfs_snapshot(image)
    base = "/var/lib/berth/bench-floor"
    shutil.rmtree(base, ignore_errors=True)
    for i in range({n}):
        bundle = f"{{base}}/b{{i}}"
        os.makedirs(bundle)
        subprocess.run(["cp", "-al", f"{{snapshot}}/.", f"{{bundle}}/rootfs"], check=True)
        cfg["root"]["path"] = f"{{bundle}}/rootfs"
        cfg["linux"]["cgroupsPath"] = f"/berth-floor/b{{i}}"
        json.dump(cfg, open(f"{{bundle}}/config.json", "w"))
        started = time.monotonic()
        subprocess.run(["runc", "--root", "/run/berth-floor", "run", "-d", "--bundle", bundle,
                        f"floor{{i}}"], check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out["runc"].append(time.monotonic() - started)
    for i in range({n}):
        subprocess.run(["runc", "--root", "/run/berth-floor", "delete", "--force", f"floor{{i}}"])
    shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(out))

asyncio.run(main())
"""

THROUGHPUT = """
import json, time, urllib.request
def rate(url, n):
    started = time.monotonic(); size = 0
    for _ in range(n):
        with urllib.request.urlopen(url, timeout=5) as r:
            size += len(r.read())
    took = time.monotonic() - started
    return {{"per_s": n / took, "mb_s": size / took / 1e6}}
out = {{}}
for label, base in (("direct", "http://{pod_ip}:8080"), ("clusterip", "http://{cluster_ip}")):
    rate(base + "/etc/hostname", 20)  # warm up (ARP, conntrack)
    out[label] = {{"small": rate(base + "/etc/hostname", {small}),
                  "big": rate(base + "/bin/busybox", {big})}}
print(json.dumps(out))
"""


def web_pod(name: str, image: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "bench", "uid": str(uuid.uuid4())},
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": image,
                    "command": ["/bin/httpd", "-f", "-p", "8080", "-h", "/"],
                    "securityContext": {"readOnlyRootFilesystem": True},
                    "volumeMounts": [{"name": "conf", "mountPath": "/conf"}],
                }
            ],
            "volumes": [{"name": "conf", "configMap": {"name": "conf"}}],
        },
        "files": {"configMap/conf": {"name": name}},
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def startup(node: Node, image: str) -> dict[str, list[float]]:
    pods = [web_pod(f"{node.name}-p{i}", image) for i in range(PODS_PER_NODE)]
    code = STARTUP.format(
        state=STATE_DIR, cidr=node.pod_cidr, registry=node.registry, image=image,
        pods=json.dumps(pods), n=PODS_PER_NODE,
    )  # fmt: skip
    result: dict[str, list[float]] = node.python(code, env=f"PYTHONPATH={REMOTE_BERTH}")
    return result


def through_agent(lab: Lab, work: Path) -> dict[str, float]:
    """Section 3: pods through API server, scheduler and agent (seconds), on the runc nodes
    `berth apply` installs, with berth's smoke image (preloaded on every node by apply)."""
    from provisioner.smoke_image import smoke_image  # noqa: PLC0415 - lab-only
    from tests.lab.test_cluster_workloads import (  # noqa: PLC0415 - lab-only helpers
        Cluster,
        _ready,
        _web,
        wait_for,
    )

    document: dict[str, Any] = yaml.safe_load(lab.spec_path.read_text())
    document["spec"]["ssh"]["identityFile"] = str(lab.key_path)
    document["spec"]["ssh"]["knownHostsFile"] = str(lab.known_hosts_path)
    document["spec"]["network"] = {"podCIDR": CLUSTER_CIDR, "serviceCIDR": SERVICE_CIDR}
    spec = work / "cluster.yaml"
    spec.write_text(yaml.safe_dump(document, sort_keys=False))
    image = smoke_image().reference
    c = Cluster(lab, work, spec, work / "state", image, {})
    try:
        applied = c.berth("apply", "-i", str(spec), "--yes")
        if applied.returncode != 0:
            tail = applied.stdout[-3000:] + applied.stderr[-2000:]
            raise SystemExit(f"berth apply failed: {tail}")
        objects = {o["kind"]: o for o in _web(image)}
        c.apply(objects["ConfigMap"])  # the replicas mount it
        deployment = objects["Deployment"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        del container["readinessProbe"]  # Ready = running, as section 1 measures

        def run(replicas: int) -> tuple[float, float]:
            deployment["spec"]["replicas"] = replicas
            started = time.monotonic()
            c.apply(deployment)

            def all_ready() -> bool:
                pods = c.pods("app=web")
                return len(pods) == replicas and all(_ready(p) for p in pods)

            wait_for(f"{replicas} ready", all_ready, timeout=300)
            up = time.monotonic() - started
            started = time.monotonic()
            c.kubectl("delete", "deployment", "web", "--wait=false")
            wait_for("pods gone", lambda: not c.pods("app=web"), timeout=300)
            return up, time.monotonic() - started

        run(len(lab.hosts))  # warm-up
        up, down = run(PODS_PER_NODE * len(lab.hosts))
        return {"up": up, "down": down}
    finally:
        c.berth("destroy", "-i", str(spec), "--yes")


def main() -> None:
    require_machine_tools()
    lab = Lab(f"benchpods{os.getpid()}")
    with tempfile.TemporaryDirectory() as tmp, blackhole_routes():
        registry: Registry | None = None
        nodes: list[Node] = []
        try:
            lab.up(2, replace=True)
            registry = Registry(lab.gateway, Path(tmp))
            layout = Path(tmp) / "layout"
            image = registry.push(layout, build_busybox_layout(layout), "bench/busybox:1")
            nodes = setup_nodes(lab, registry.host, download_debs(), ["n1", "n2"])
            for node in nodes:
                node.berth("pull", image)
            with ThreadPoolExecutor(max_workers=2) as pool:
                results = list(pool.map(lambda n: startup(n, image), nodes))
            berth = [t for r in results for t in r["berth"]]
            floor = [t for r in results for t in r["runc"]]

            n1, n2 = nodes
            target = n2.berth("status")["sandboxes"][0]["ip"]
            for node in nodes:
                node.berth("proxy", "--cluster-cidr", CLUSTER_CIDR, stdin=web_service([target]))
            tput = n1.python(
                THROUGHPUT.format(pod_ip=target, cluster_ip=CLUSTER_IP, small=500, big=40)
            )
            for node in nodes:
                teardown_node(node)
            agent = through_agent(lab, Path(tmp))
        finally:
            for node in nodes:
                teardown_node(node)
            if registry is not None:
                registry.stop()
            lab.down()

    ms = 1000
    print(f"pod startup, {len(berth)} pods on 2 lab hosts (image present), milliseconds")
    print(f"{'':34} {'p50':>8} {'p99':>8} {'mean':>8}")
    for label, values in (("berth (sandbox+CNI+bundle+runc)", berth), ("bare runc run -d", floor)):
        print(f"{label:34} {pct(values, 0.5) * ms:8.1f} {pct(values, 0.99) * ms:8.1f} "
              f"{statistics.mean(values) * ms:8.1f}")  # fmt: skip
    for phase, label in (
        ("sandbox", "  of which sandbox (netns+CNI)"),
        ("create", "  of which create (bundle+shim)"),
        ("start", "  of which start (+status)"),
    ):
        values = [t for r in results for t in r[phase]]
        print(f"{label:34} {pct(values, 0.5) * ms:8.1f} {pct(values, 0.99) * ms:8.1f} "
              f"{statistics.mean(values) * ms:8.1f}")  # fmt: skip
    print(f"ratio berth/bare runc: p50 {pct(berth, 0.5) / pct(floor, 0.5):.2f}x, "
          f"p99 {pct(berth, 0.99) / pct(floor, 0.99):.2f}x")  # fmt: skip
    print()
    print("throughput n1 -> pod on n2 (new TCP connection per request)")
    print(f"{'':12} {'GET/s (small)':>14} {'MB/s (1.9 MB file)':>20}")
    for label in ("direct", "clusterip"):
        row = tput[label]
        print(f"{label:12} {row['small']['per_s']:14.0f} {row['big']['mb_s']:20.1f}")
    direct, svc = tput["direct"], tput["clusterip"]
    print(f"ratio clusterip/direct: GET/s {svc['small']['per_s'] / direct['small']['per_s']:.2f}x, "
          f"MB/s {svc['big']['mb_s'] / direct['big']['mb_s']:.2f}x")  # fmt: skip
    print()
    # Section 1 starts 15 pods one after another on each host, both hosts at once.
    direct_wall = max(sum(r["berth"]) for r in results)
    print(f"{len(berth)} pods, wall time in seconds (image present)")
    print(f"{'runtime directly (section 1)':34} {direct_wall:8.2f}")
    print(f"{'kubectl apply -> all Ready (agent)':34} {agent['up']:8.2f}")
    print(f"{'kubectl delete -> all gone (agent)':34} {agent['down']:8.2f}")
    print(f"ratio agent/direct: {agent['up'] / direct_wall:.2f}x")


if __name__ == "__main__":
    main()
