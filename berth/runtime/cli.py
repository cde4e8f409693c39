"""``python3 -m berth.runtime``: drive the node runtime by hand (like ``crictl``), JSON out.

Every call is a fresh process with a fresh :class:`RuncRuntime`, i.e. exactly what the node
agent sees after a restart — handy for debugging and used by the lab tests::

    python3 -m berth.runtime --pod-cidr 10.244.1.0/24 pull 10.231.0.1:5000/lab/busybox:1.35
    python3 -m berth.runtime --pod-cidr 10.244.1.0/24 run-pod < pod.json
    python3 -m berth.runtime status
    python3 -m berth.runtime exec <container-id> -- wget -qO- http://10.244.2.2:8080/
    python3 -m berth.runtime remove-pod <uid>
    python3 -m berth.runtime routes --own-cidr 10.244.1.0/24 \\
        --peers '[["10.244.2.0/24", "10.231.0.12"]]'
    python3 -m berth.runtime proxy --cluster-cidr 10.244.0.0/16 < services.json
    python3 -m berth.runtime reset --purge    # node teardown (stop the agent first)

``run-pod`` reads a ``v1/Pod`` JSON document; ConfigMap/Secret volume content may be given in
a top-level ``"files": {"configMap/<name>": {"<key>": "<text>"}}`` object.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from berth.network.cni import CniInvoker
from berth.network.command import SubprocessRunner
from berth.network.node import sync_node_network
from berth.network.podnet import HostPort, PodNetwork, node_conflist, veth_bridge
from berth.network.routes import Peer
from berth.proxy.sync import ServiceProxy
from berth.runtime.images import ImageService
from berth.runtime.k8s import pod_from_k8s
from berth.runtime.registry import RegistryClient
from berth.runtime.reset import bridge_cidr, reset_node
from berth.runtime.runc import DEFAULT_RUNC_ROOT, DEFAULT_STATE_DIR, ContainerState, RuncRuntime
from berth.runtime.spec import ContainerID, PodUID
from berth.runtime.store import ContentStore


def _runtime(args: argparse.Namespace) -> RuncRuntime:
    state = Path(args.state_dir)
    images = ImageService(
        ContentStore(state / "images"),
        RegistryClient(insecure=frozenset(args.insecure_registry)),
    )
    runner = SubprocessRunner()
    network = None
    if args.pod_cidr:
        invoker = CniInvoker(runner, cache_dir=state / "cni-results")
        conflist = node_conflist(pod_cidr=args.pod_cidr)
        network = PodNetwork(invoker, conflist, in_process=veth_bridge(conflist))
    return RuncRuntime(
        images=images,
        network=network,
        state_dir=state,
        runc_root=Path(args.runc_root),
        runner=runner,
    )


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


async def _run_pod(rt: RuncRuntime, doc: dict[str, Any]) -> dict[str, Any]:
    provided = doc.get("files") or {}

    def files(kind: str, name: str) -> dict[str, bytes]:
        return {k: str(v).encode() for k, v in (provided.get(f"{kind}/{name}") or {}).items()}

    pod, containers = pod_from_k8s(doc, files=files)
    started = time.monotonic()
    ports = [
        HostPort(p.host_port, p.container_port, p.protocol, p.host_ip)
        for c in containers
        for p in c.ports
    ]
    sandbox = await rt.run_pod_sandbox(pod, ports)
    ids = []
    for container in containers:
        cid = await rt.create_container(pod, container)
        status = await rt.container_status(cid)
        if status.state == ContainerState.CREATED:
            await rt.start_container(cid)
        ids.append(cid)
    return {"ip": sandbox.ip, "containers": ids, "seconds": time.monotonic() - started}


async def _proxy(args: argparse.Namespace, doc: dict[str, Any]) -> dict[str, Any]:
    proxy = ServiceProxy(cluster_cidr=args.cluster_cidr)
    services, slices = doc.get("services") or [], doc.get("endpointSlices") or []
    return {"applied": await proxy.sync(services, slices)}


async def _main(args: argparse.Namespace) -> Any:
    if args.command == "routes":
        peers = [Peer(cidr, ip) for cidr, ip in json.loads(args.peers)]
        commands = await sync_node_network(
            SubprocessRunner(),
            own_pod_cidr=args.own_cidr,
            peers=peers,
            service_cidr=args.service_cidr,
            service_dev=args.dev,
        )
        return {"commands": commands}
    if args.command == "proxy":
        return await _proxy(args, json.load(sys.stdin))
    if args.command == "reset":
        runner = SubprocessRunner()
        if not args.pod_cidr:  # CNI DEL needs the network config: the bridge knows the range
            args.pod_cidr = await bridge_cidr(runner) or ""
        report = await reset_node(_runtime(args), runner, grace_seconds=args.grace)
        if args.purge:
            await asyncio.to_thread(shutil.rmtree, args.state_dir, True)
        return dataclasses.asdict(report)
    rt = _runtime(args)
    if args.command == "pull":
        started = time.monotonic()
        image = await rt.pull_image(args.reference, policy=args.policy)
        return {"imageId": image.image_id, "seconds": time.monotonic() - started}
    if args.command == "load":
        # Air-gapped nodes: an OCI archive (or layout) shipped by ``berth images load``.
        image = await asyncio.to_thread(
            rt.images.import_layout,
            Path(args.archive),
            ref_name=args.ref_name,
            as_reference=args.reference,
        )
        await rt.pull_image(args.reference, policy="Never")  # unpack the root file system
        return {"reference": args.reference, "imageId": image.image_id}
    if args.command == "run-pod":
        return await _run_pod(rt, json.load(sys.stdin))
    if args.command == "status":
        uid = PodUID(args.pod) if args.pod else None
        return {
            "sandboxes": _jsonable(rt.list_sandboxes()),
            "containers": _jsonable(await rt.list_containers(pod_uid=uid)),
        }
    if args.command == "exec":
        result = await rt.exec_in_container(
            ContainerID(args.id), args.argv, time_limit=args.timeout
        )
        return {
            "rc": result.returncode,
            "stdout": result.stdout.decode(errors="replace"),
            "stderr": result.stderr.decode(errors="replace"),
        }
    if args.command == "stop-pod":
        await rt.stop_pod_sandbox(PodUID(args.uid), grace_seconds=args.grace)
        return {"stopped": args.uid}
    if args.command == "remove-pod":
        await rt.remove_pod_sandbox(PodUID(args.uid), grace_seconds=args.grace)
        return {"removed": args.uid}
    if args.command == "check-pod":
        record = rt.sandboxes.record(PodUID(args.uid))
        network = rt.sandboxes.network
        if record is None or network is None:
            raise SystemExit(f"no sandbox {args.uid} with a pod network on this node")
        await network.check(sandbox_id=args.uid, netns=record.netns)
        return {"checked": args.uid}
    if args.command == "recover":
        return _jsonable(await rt.recover())
    if args.command == "rotate-logs":
        return {"rotated": [str(p) for p in rt.rotate_logs(max_bytes=args.max_bytes)]}
    raise SystemExit(f"unknown command {args.command}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m berth.runtime", description=__doc__.split("\n")[0])
    p.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR))
    p.add_argument("--runc-root", default=str(DEFAULT_RUNC_ROOT))
    p.add_argument("--pod-cidr", default="", help="this node's pod CIDR (enables CNI)")
    p.add_argument("--insecure-registry", action="append", default=[], help="host:port over HTTP")
    sub = p.add_subparsers(dest="command", required=True)
    pull = sub.add_parser("pull")
    pull.add_argument("reference")
    pull.add_argument("--policy", default="IfNotPresent")
    load = sub.add_parser("load", help="import an image from an OCI archive or layout")
    load.add_argument("archive")
    load.add_argument("--reference", required=True, help="the name pods use, e.g. app:1.0")
    load.add_argument("--ref-name", default=None, help="which index entry (ref.name annotation)")
    sub.add_parser("run-pod", help="v1/Pod JSON on stdin")
    status = sub.add_parser("status")
    status.add_argument("--pod", default="")
    ex = sub.add_parser("exec")
    ex.add_argument("id")
    ex.add_argument("--timeout", type=float, default=10.0)
    ex.add_argument("argv", nargs=argparse.REMAINDER)
    for name in ("stop-pod", "remove-pod"):
        cmd = sub.add_parser(name)
        cmd.add_argument("uid")
        cmd.add_argument("--grace", type=float, default=10.0)
    sub.add_parser("check-pod", help="CNI CHECK of the pod's eth0").add_argument("uid")
    sub.add_parser("recover")
    rot = sub.add_parser("rotate-logs")
    rot.add_argument("--max-bytes", type=int, default=10 << 20)
    routes = sub.add_parser("routes")
    routes.add_argument("--peers", required=True, help='JSON [["podCIDR", "nodeIP"], ...]')
    routes.add_argument("--own-cidr", required=True)
    routes.add_argument("--service-cidr", default=None)
    routes.add_argument("--dev", default=None)
    reset = sub.add_parser("reset", help="remove every pod, rule, route and the bridge (teardown)")
    reset.add_argument("--grace", type=float, default=2.0)
    reset.add_argument("--purge", action="store_true", help="also delete the state directory")
    proxy = sub.add_parser("proxy", help='{"services": [...], "endpointSlices": [...]} on stdin')
    proxy.add_argument("--cluster-cidr", default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "exec" and args.argv[:1] == ["--"]:
        args.argv = args.argv[1:]
    try:
        result = asyncio.run(_main(args))
    except Exception as exc:  # one reporter: the message, never a traceback
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), file=sys.stderr)
        return 1
    print(json.dumps(result, default=str))
    return 0
