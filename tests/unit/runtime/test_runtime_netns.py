"""The runtime's own network namespaces (no ``ip netns``, no CNI loopback plugin), on the
real kernel: a new namespace pinned at a path with ``lo`` up, gone without a trace after
deletion. Needs root, as the node agent does (the unit tests run as root)."""

from __future__ import annotations

import asyncio
import ctypes
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.runtime.netns import MNT_DETACH, KernelNamespaces


@pytest.fixture
def netns_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "netns"
    yield directory
    # the maker made the directory a (shared) mount point of its own, as ``ip netns`` does
    libc = ctypes.CDLL(None, use_errno=True)
    libc.umount2(str(directory).encode(), MNT_DETACH)


def _mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        return any(line.split()[4] == str(path) for line in info)


def _links_in(path: Path) -> str:
    argv = ["nsenter", f"--net={path}", "ip", "-o", "link", "show"]
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


def test_a_new_namespace_has_only_lo_and_it_is_up(netns_dir: Path) -> None:
    maker = KernelNamespaces()
    pinned = netns_dir / "berth-pod-1"
    asyncio.run(maker.add_netns(pinned))
    try:
        assert os.stat(pinned).st_ino != os.stat("/proc/self/ns/net").st_ino, "a new namespace"
        assert _mounted(pinned)
        links = _links_in(pinned).splitlines()
        assert len(links) == 1, links
        assert ": lo: <" in links[0]
        assert "UP" in links[0].split("<", 1)[1].split(">", 1)[0].split(","), links[0]
        with pytest.raises(FileExistsError):
            asyncio.run(maker.add_netns(pinned))
        assert _mounted(pinned), "a refused second add leaves the first namespace alone"
    finally:
        maker.delete_netns(pinned)
    assert not pinned.exists()
    assert not _mounted(pinned)
    maker.delete_netns(pinned)  # again: nothing there is not an error


def test_two_namespaces_are_distinct(netns_dir: Path) -> None:
    maker = KernelNamespaces()

    async def both() -> None:
        await asyncio.gather(maker.add_netns(netns_dir / "a"), maker.add_netns(netns_dir / "b"))

    asyncio.run(both())
    try:
        assert os.stat(netns_dir / "a").st_ino != os.stat(netns_dir / "b").st_ino
    finally:
        maker.delete_netns(netns_dir / "a")
        maker.delete_netns(netns_dir / "b")
    assert sorted(netns_dir.iterdir()) == []
