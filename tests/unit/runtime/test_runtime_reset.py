"""Node teardown (``python3 -m berth.runtime reset``): node-wide pieces removed, commands
faked (nothing touches this machine)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from berth.network.command import Completed
from berth.runtime.images import ImageService
from berth.runtime.reset import bridge_cidr, reset_node
from berth.runtime.runc import RuncRuntime
from berth.runtime.store import ContentStore

ROUTES = [
    {"dst": "10.244.2.0/24", "gateway": "10.231.1.12"},
    {"dst": "10.96.0.0/12", "dev": "eth0"},
]
CNI0 = [{"ifname": "cni0", "addr_info": [{"local": "10.244.1.1", "prefixlen": 24}]}]


class Host:
    """A host with two berth routes and a bridge; later calls see them gone."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.scripts: list[str] = []  # what nft -f read
        self.bridge = True
        self.lb_address = True  # 10.231.1.200/32, held for a LoadBalancer Service

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        time_limit: float = 60.0,
    ) -> Completed:
        argv = list(argv)
        self.calls.append(argv)
        if stdin is not None:
            self.scripts.append(stdin.decode())
        out, rc = b"", 0
        if argv[:5] == ["ip", "-o", "-4", "addr", "show"]:
            out = b"2: eth0    inet 10.231.1.11/24 brd 10.231.1.255 scope global eth0\n"
            if self.lb_address:
                out += b"2: eth0    inet 10.231.1.200/32 scope global eth0\n"
        elif argv[:3] == ["ip", "addr", "del"]:
            self.lb_address = False
        elif argv[:3] == ["ip", "-j", "route"]:
            done = any(c[:3] == ["ip", "route", "del"] for c in self.calls[:-1])
            out = b"[]" if done else json.dumps(ROUTES).encode()
        elif argv[:4] == ["ip", "-j", "-4", "addr"]:
            out, rc = (json.dumps(CNI0).encode(), 0) if self.bridge else (b"", 1)
        elif argv[:3] == ["ip", "link", "show"]:
            rc = 0 if self.bridge else 1
        elif argv[:3] == ["ip", "link", "del"]:
            self.bridge = False
        elif "list" in argv:
            out = b"[]"
        return Completed(tuple(argv), rc, out, b"")


def _runtime(tmp_path: Path, host: Host) -> RuncRuntime:
    return RuncRuntime(
        images=ImageService(ContentStore(tmp_path / "images")),
        network=None,
        state_dir=tmp_path / "state",
        runc_root=tmp_path / "runc",
        runner=host,
        enforce=frozenset(),
    )


def test_reset_removes_table_routes_and_bridge_then_finds_nothing(tmp_path: Path) -> None:
    host = Host()
    rt = _runtime(tmp_path, host)
    assert asyncio.run(bridge_cidr(host)) == "10.244.1.0/24"
    lb_state = tmp_path / "lb-addresses"
    lb_state.write_text("10.231.1.200\n")
    report = asyncio.run(reset_node(rt, host, lb_state=lb_state))
    assert report.routes == 2
    assert report.bridge is True
    assert report.pods == []
    commands = [" ".join(c) for c in host.calls]
    assert "ip route del 10.244.2.0/24 via 10.231.1.12 proto 199" in commands
    assert "ip route del 10.96.0.0/12 dev eth0 proto 199" in commands
    assert "ip link del dev cni0" in commands
    assert any(c == "nft -f -" for c in commands)
    # the service proxy's and the NetworkPolicies' tables, each dropped whole
    assert "add table ip berth\ndelete table ip berth\n" in host.scripts
    assert "add table inet berth-netpol\ndelete table inet berth-netpol\n" in host.scripts
    assert "ip addr del 10.231.1.200/32 dev eth0" in commands
    assert lb_state.read_text() == ""
    again = asyncio.run(reset_node(rt, host, lb_state=lb_state))
    assert (again.routes, again.bridge) == (0, False)
    assert asyncio.run(bridge_cidr(host)) is None


def test_the_names_reset_drops_are_those_the_agents_loops_make() -> None:
    """The node runtime is stdlib-only, so it names the NetworkPolicy table and the speaker's
    record itself: they must stay those of berth.netpol and berth.agent.lbspeaker."""
    from berth.agent import lbspeaker  # noqa: PLC0415
    from berth.netpol import render  # noqa: PLC0415
    from berth.runtime import reset  # noqa: PLC0415

    assert (
        f"add table {render.FAMILY} {render.TABLE}\ndelete table {render.FAMILY} {render.TABLE}\n"
        == reset.NETPOL_DROP
    )
    assert reset.SPEAKER_STATE == lbspeaker.STATE_PATH
