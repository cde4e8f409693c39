"""Remove everything berth's node runtime and network made on this host (node teardown).

Order matters: the shim zygotes first, then pods (containers stopped, CNI DEL releases each
IP and veth, netns, mounts and files removed), then runc containers no sandbox owns and any
container root still mounted, then the node-wide pieces (the service proxy's and the
NetworkPolicies' nftables tables, the LoadBalancer addresses this node held, host-gw routes,
the pod bridge). Idempotent: a second
run finds nothing and changes nothing. The agent must be stopped first, or it recreates pods.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path

from berth.network.command import Runner
from berth.network.podnet import BRIDGE
from berth.network.routes import RouteSync
from berth.proxy.sync import ServiceProxy
from berth.runtime import overlay
from berth.runtime.runc import RuncRuntime
from berth.runtime.shimzygote import directory_of, stop_zygotes
from berth.runtime.spec import PodUID

# The node runtime ships stdlib-only (it runs before and after the rest of berth): the names
# of what the agent's other loops made are written here, and a test keeps them equal to theirs.
NETPOL_DROP = "add table inet berth-netpol\ndelete table inet berth-netpol\n"
"""Drops :mod:`berth.netpol`'s table whole (``add`` first: no error when it is gone)."""
SPEAKER_STATE = Path("/run/berth/lb-addresses")
"""Where :mod:`berth.agent.lbspeaker` records the LoadBalancer addresses this node holds."""


async def drop_lb_addresses(runner: Runner, state: Path) -> list[str]:
    """Remove the /32 LoadBalancer addresses the speaker recorded (nothing else: an address
    the node had before berth is never in that record); returns those removed."""
    recorded = _recorded(state)
    if not recorded:
        return []
    listing = await runner.run(["ip", "-o", "-4", "addr", "show"])
    removed = []
    for line in (listing.stdout or b"").decode().splitlines():
        words = line.split()
        if "inet" not in words or len(words) < 2:
            continue
        address, _, prefix = words[words.index("inet") + 1].partition("/")
        if prefix == "32" and address in recorded:
            await runner.run(["ip", "addr", "del", f"{address}/32", "dev", words[1]])
            removed.append(address)
    _forget(state)
    return removed


def _recorded(state: Path) -> set[str]:
    try:
        text = state.read_text()[:65536]  # a few addresses; bounded all the same
    except OSError:
        return set()
    return {line.strip() for line in text.splitlines() if line.strip()}


def _forget(state: Path) -> None:
    state.write_text("")


@dataclass
class ResetReport:
    pods: list[str] = field(default_factory=list)  # sandbox uids removed
    containers: list[str] = field(default_factory=list)  # containers no sandbox owned
    zygotes: list[int] = field(default_factory=list)  # shim zygotes killed (their pids)
    routes: int = 0  # host-gw / service routes deleted
    bridge: bool = False  # the pod bridge was deleted


async def bridge_cidr(runner: Runner, bridge: str = BRIDGE) -> str | None:
    """The pod CIDR the bridge serves (its gateway address's network), if the bridge exists."""
    result = await runner.run(["ip", "-j", "-4", "addr", "show", "dev", bridge])
    if not result.ok:
        return None
    for link in json.loads(result.stdout or b"[]"):
        for info in link.get("addr_info") or []:
            if info.get("local") and info.get("prefixlen") is not None:
                iface = ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}")
                return str(iface.network)
    return None


async def reset_node(
    rt: RuncRuntime,
    runner: Runner,
    *,
    grace_seconds: float = 2.0,
    bridge: str = BRIDGE,
    lb_state: Path = SPEAKER_STATE,
) -> ResetReport:
    report = ResetReport()
    # first: a zygote left serving would fork shims for nobody, and keeps the stopped agent's
    # unit loaded (it lives in its control group)
    report.zygotes = await asyncio.to_thread(stop_zygotes, directory_of(rt.runc_root))
    for record in rt.sandboxes.list_records():
        await rt.remove_pod_sandbox(PodUID(record.uid), grace_seconds=grace_seconds)
        report.pods.append(record.uid)
    for status in await rt.list_containers():
        await rt.remove_container(status.id)
        report.containers.append(status.id)
    for state in await rt.runc_list():
        if str(state.get("bundle", "")).startswith(str(rt.containers_dir)):
            await rt.runner.run([rt.runc, "--root", str(rt.runc_root), "delete", "--force",
                                 str(state["id"])])  # fmt: skip
            report.containers.append(str(state["id"]))
    # container roots still mounted (a bundle a crashed create left without its meta.json):
    # never removed, nor purged, through the mount
    await asyncio.to_thread(overlay.unmount_all, rt.containers_dir)
    await ServiceProxy(cluster_cidr=None, runner=runner).remove()
    await runner.run(["nft", "-f", "-"], stdin=NETPOL_DROP.encode())
    await drop_lb_addresses(runner, lb_state)
    report.routes = len(await RouteSync(runner).sync(set()))
    if (await runner.run(["ip", "link", "show", "dev", bridge])).ok:
        await runner.run(["ip", "link", "del", "dev", bridge])
        report.bridge = True
    return report
