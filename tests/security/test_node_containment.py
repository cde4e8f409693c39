"""Issue 13, points 5, 10 and 11 (node half): API data and image content cannot reach outside
their directory on the node.

The node code is called directly with hostile input, bypassing the API server's validation
(defence in depth: a compromised or buggy API server, or a pod created before validation
existed, must not let a pod write, chmod or mount outside its own directory as root).
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from berth.network.command import Completed
from berth.runtime.errors import NodeRuntimeError
from berth.runtime.sandbox import SandboxManager
from berth.runtime.spec import EmptyDir, FilesVolume, PodSpec, PodUID, Volume


class _RecordingHost:
    """Stands in for ``ip``/``mount``/``umount``: records argv, fakes netns files."""

    def __init__(self, netns_dir: Path) -> None:
        self.netns_dir = netns_dir
        self.calls: list[list[str]] = []

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        time_limit: float = 60.0,
    ) -> Completed:
        self.calls.append(list(argv))
        if argv[:3] == ["ip", "netns", "add"]:
            (self.netns_dir / argv[3]).touch()
        if argv[:3] == ["ip", "netns", "del"]:
            (self.netns_dir / argv[3]).unlink(missing_ok=True)
        return Completed(tuple(argv), 0, b"", b"")


Node = tuple[SandboxManager, _RecordingHost, Path]


@pytest.fixture
def node(tmp_path: Path) -> Node:
    """A sandbox manager whose state lives in ``tmp_path/node/state``; ``tmp_path/node`` also
    holds ``victim/`` (a directory the pod must never touch)."""
    base = tmp_path / "node"
    (base / "netns").mkdir(parents=True)
    victim = base / "victim"
    victim.mkdir(mode=0o700)
    os.chmod(victim, 0o700)
    host = _RecordingHost(base / "netns")
    manager = SandboxManager(
        state_dir=base / "state", network=None, runner=host, netns_dir=base / "netns"
    )
    return manager, host, victim


def _pod(*volumes: Volume, uid: str = "pod-1") -> PodSpec:
    return PodSpec(uid=PodUID(uid), namespace="default", name="evil", volumes=volumes)


# state/pods/<uid>/volumes/<name>: four levels up is the node dir holding victim/.
_OUT = "../../../../victim"


def test_configmap_volume_named_with_dotdot_writes_nothing_outside(node: Node) -> None:
    manager, _, victim = node
    pod = _pod(Volume(_OUT, FilesVolume("configMap", {"payload": b"* * * * * root sh -c x\n"})))
    with pytest.raises(NodeRuntimeError, match="volume name"):
        asyncio.run(manager.create(pod))
    assert list(victim.iterdir()) == [], "a file was written outside the pod's directory"


def test_emptydir_named_with_dotdot_does_not_chmod_a_host_directory(node: Node) -> None:
    manager, _, victim = node
    with pytest.raises(NodeRuntimeError, match="volume name"):
        asyncio.run(manager.create(_pod(Volume(_OUT, EmptyDir()))))
    assert stat.S_IMODE(victim.stat().st_mode) == 0o700, "a host directory was made 0777"


def test_secret_volume_named_with_dotdot_mounts_no_tmpfs_over_a_host_path(node: Node) -> None:
    manager, host, _ = node
    with pytest.raises(NodeRuntimeError, match="volume name"):
        asyncio.run(manager.create(_pod(Volume(_OUT, FilesVolume("secret", {"k": b"v"})))))
    mounts = [c for c in host.calls if c[:1] == ["mount"]]
    assert mounts == [], f"tmpfs mounted from a hostile volume name: {mounts}"


@pytest.mark.parametrize("name", ["..", ".", "a/b", "/etc", ""])
def test_volume_names_that_are_not_one_file_name_are_refused(node: Node, name: str) -> None:
    manager, _, victim = node
    with pytest.raises(NodeRuntimeError, match="volume name"):
        asyncio.run(manager.create(_pod(Volume(name, EmptyDir()))))
    assert stat.S_IMODE(victim.stat().st_mode) == 0o700


@pytest.mark.parametrize("item", ["../../../../../victim/x", "/abs", "a/../../x", ".."])
def test_item_paths_cannot_leave_the_volume(node: Node, item: str) -> None:
    manager, _, victim = node
    pod = _pod(Volume("conf", FilesVolume("configMap", {item: b"x"})))
    with pytest.raises(NodeRuntimeError):
        asyncio.run(manager.create(pod))
    assert list(victim.iterdir()) == []


def test_nested_item_paths_stay_inside_the_volume(node: Node) -> None:
    manager, _, _ = node
    pod = _pod(Volume("conf", FilesVolume("configMap", {"dir/sub/app.conf": b"x=1"})))
    asyncio.run(manager.create(pod))
    path = manager.volume_dir(pod.uid, "conf") / "dir/sub/app.conf"
    assert path.read_bytes() == b"x=1"


@pytest.mark.parametrize("uid", ["..", "../x", "a/b"])
def test_pod_uid_cannot_name_a_directory_outside_pods(node: Node, uid: str) -> None:
    manager, _, _ = node
    with pytest.raises(NodeRuntimeError, match="pod uid"):
        manager.pod_dir(PodUID(uid))
