"""What a pod's eth0 costs: CNI ADD and DEL through the plugins vs in-process, CPU and wall,
serially and as a burst, and how much of a plugin run is its process start.

Runs in a network namespace of its own (re-executed under ``unshare --net``; the machine's
network is not touched) with the real plugins from /usr/lib/cni and berth's conflist, its
IPAM directory in a temporary directory:

* **process start**: ``bridge`` asked for ``VERSION`` (a Go process started and ended,
  no work), run N times;
* **plugins**, **in-process**: N pods' ADD one after another then DEL one after another,
  then N ADDs at once (``asyncio.gather``, as the agent's pod workers) then N DELs at once.
  Per operation: wall p50/p99; per pod: CPU of this process (in-process work, our threads)
  plus its waited-for children (plugins), from ``getrusage``.

The node's first pod (which makes the bridge) is made by the plugins before either is
timed. Run as root: ``.venv/bin/python bench/cni_cost.py [--pods 30] [--rounds 3]``.

On 2026-12-07 (2 cores, load 30-33, not quiet: ratios only), 30 pods, median of 3: CPU per
pod ADD 22-29 ms through the plugins (of which ~8-11 ms the two process starts, a bare
``bridge`` start being 4-6 ms) vs 4 ms in-process; DEL 18-25 vs 1.6-2.4 ms. The in-process
DEL's wall (~20 ms serially) is the kernel unregistering the veth (an RCU wait), as it is
inside the plugin's.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from berth.network.cni import CniInvoker
from berth.network.command import SubprocessRunner, host_env, use_pidfd_child_watcher
from berth.network.podnet import PodNetwork, node_conflist, veth_bridge
from berth.runtime.netns import MNT_DETACH, KernelNamespaces

PLUGINS = Path("/usr/lib/cni")


def cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def timed(op: Callable[[], Awaitable[Any]], out: list[float]) -> None:
    start = time.monotonic()
    await op()
    out.append(time.monotonic() - start)


async def phase(ops: list[Callable[[], Awaitable[Any]]], *, burst: bool) -> dict[str, float]:
    walls: list[float] = []
    c0, t0 = cpu(), time.monotonic()
    if burst:
        await asyncio.gather(*(timed(op, walls) for op in ops))
    else:
        for op in ops:
            await timed(op, walls)
    return {
        "p50_ms": pct(walls, 0.5) * 1000,
        "p99_ms": pct(walls, 0.99) * 1000,
        "cpu_ms_per_pod": (cpu() - c0) / len(ops) * 1000,
        "total_s": time.monotonic() - t0,
    }


async def process_start(n: int) -> dict[str, float]:
    runner = SubprocessRunner()
    env = host_env(CNI_COMMAND="VERSION", CNI_PATH=str(PLUGINS))
    stdin = json.dumps({"cniVersion": "1.0.0"}).encode()

    async def version() -> None:
        result = await runner.run([str(PLUGINS / "bridge")], stdin=stdin, env=env)
        assert result.ok, result.describe()

    return await phase([version] * n, burst=False)


async def measure(pods: int, work: Path) -> dict[str, Any]:
    use_pidfd_child_watcher()  # as the agent does
    maker = KernelNamespaces()
    nsdir = work / "netns"
    conflist = node_conflist(pod_cidr="10.244.1.0/24")
    conflist["plugins"][0]["ipam"]["dataDir"] = str(work / "ipam")
    invoker = CniInvoker(SubprocessRunner(), plugin_dirs=[PLUGINS], cache_dir=work / "cache")
    nets = {
        "plugins": PodNetwork(invoker, conflist),
        "in-process": PodNetwork(invoker, conflist, in_process=veth_bridge(conflist)),
    }
    first = nsdir / "first"
    await maker.add_netns(first)
    await nets["plugins"].attach(sandbox_id="first", netns=str(first), namespace="b", name="f")
    names = [f"pod{i}" for i in range(pods)]
    for name in names:
        await maker.add_netns(nsdir / name)
    out: dict[str, Any] = {"process start (bridge VERSION)": await process_start(pods)}
    for label, net in nets.items():
        for burst in (False, True):

            def add(name: str, net: PodNetwork = net) -> Callable[[], Awaitable[Any]]:
                return lambda: net.attach(
                    sandbox_id=name, netns=str(nsdir / name), namespace="b", name=name
                )

            def delete(name: str, net: PodNetwork = net) -> Callable[[], Awaitable[Any]]:
                return lambda: net.detach(sandbox_id=name, netns=str(nsdir / name))

            how = "burst" if burst else "serial"
            out[f"{label} ADD {how}"] = await phase([add(n) for n in names], burst=burst)
            out[f"{label} DEL {how}"] = await phase([delete(n) for n in names], burst=burst)
    await nets["plugins"].detach(sandbox_id="first", netns=str(first))
    for name in [*names, "first"]:
        maker.delete_netns(nsdir / name)
    ctypes.CDLL(None, use_errno=True).umount2(str(nsdir).encode(), MNT_DETACH)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pods", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.inner:
        argv = [sys.executable, *sys.argv, "--inner"]
        rounds = []
        for _ in range(args.rounds):
            done = subprocess.run(
                ["unshare", "--net", "--mount", "--propagation", "private", *argv],
                check=True,
                capture_output=True,
                text=True,
            )
            rounds.append(json.loads(done.stdout))
        print(f"CNI eth0 cost, {args.pods} pods, median of {args.rounds} rounds "
              f"(load {os.getloadavg()[0]:.2f})")  # fmt: skip
        print(f"{'':34} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/pod':>11} {'total s':>8}")
        for key in rounds[0]:
            row = {f: statistics.median(r[key][f] for r in rounds) for f in rounds[0][key]}
            print(f"{key:34} {row['p50_ms']:8.1f} {row['p99_ms']:8.1f} "
                  f"{row['cpu_ms_per_pod']:11.2f} {row['total_s']:8.2f}")  # fmt: skip
        return
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(asyncio.run(measure(args.pods, Path(tmp)))))


if __name__ == "__main__":
    main()
