"""Pod sandboxes with a fake command runner: files, volumes, records, idempotence, teardown."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import cast

import pytest

from berth.network.podnet import PodAddress, PodNetwork
from berth.runtime.errors import SandboxError
from berth.runtime.sandbox import SandboxManager
from berth.runtime.spec import EmptyDir, FilesVolume, HostPath, PodSpec, PodUID, Volume
from tests.unit.runtime.helpers import FakeNetnsHost


def _manager(tmp_path: Path) -> tuple[SandboxManager, FakeNetnsHost]:
    netns = tmp_path / "netns"
    netns.mkdir()
    host = FakeNetnsHost(netns)
    return SandboxManager(state_dir=tmp_path / "state", network=None, runner=host,
                          netns_dir=netns, namespaces=host), host  # fmt: skip


POD = PodSpec(
    uid=PodUID("pod-1"),
    namespace="default",
    name="web",
    dns_nameservers=("10.96.0.10",),
    fs_group=2000,
    volumes=(
        Volume("conf", FilesVolume("configMap", {"app.conf": b"x=1\n"})),
        Volume("token", FilesVolume("secret", {"token": b"s3cr3t"})),
        Volume("scratch", EmptyDir()),
        Volume("ram", EmptyDir(medium="Memory", size_limit_bytes=1 << 20)),
    ),
)


def test_create_writes_files_and_volumes_and_is_idempotent(tmp_path: Path) -> None:
    manager, host = _manager(tmp_path)
    record = asyncio.run(manager.create(POD, requested_ip="10.244.1.9"))
    assert (record.state, record.ip) == ("ready", "10.244.1.9")
    pod_dir = manager.pod_dir(POD.uid)
    assert "10.244.1.9\tweb" in (pod_dir / "hosts").read_text()
    assert (pod_dir / "hostname").read_text() == "web\n"
    assert (pod_dir / "resolv.conf").read_text().startswith("nameserver 10.96.0.10\n")
    token = pod_dir / "volumes/token/token"
    assert token.read_bytes() == b"s3cr3t"
    assert stat.S_IMODE(token.stat().st_mode) == 0o400
    assert token.stat().st_gid == 2000, "fsGroup owns projected files"
    conf = pod_dir / "volumes/conf/app.conf"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o644
    scratch = (pod_dir / "volumes/scratch").stat()
    assert (stat.S_IMODE(scratch.st_mode), scratch.st_gid) == (0o2777, 2000)
    mounts = [c for c in host.calls if c[0] == "mount"]
    assert mounts == [
        ["mount", "-t", "tmpfs", "-o", "mode=0755,nosuid,nodev", "tmpfs",
         str(pod_dir / "volumes/token")],
        ["mount", "-t", "tmpfs", "-o", "mode=0755,nosuid,nodev,size=1048576", "tmpfs",
         str(pod_dir / "volumes/ram")],
    ], "secrets and Memory emptyDirs live on tmpfs"  # fmt: skip
    calls = len(host.calls)
    again = asyncio.run(manager.create(POD))
    assert again == record
    assert len(host.calls) == calls, "a ready sandbox is found, not made twice"


def test_remove_deletes_netns_and_directory_and_repeats_safely(tmp_path: Path) -> None:
    manager, host = _manager(tmp_path)
    asyncio.run(manager.create(POD))
    asyncio.run(manager.remove(POD.uid))
    assert ["netns", "del", "berth-pod-1"] in host.calls
    assert not manager.pod_dir(POD.uid).exists()
    assert list(host.netns_dir.iterdir()) == []
    asyncio.run(manager.remove(POD.uid))
    assert manager.record(POD.uid) is None


def test_failed_setup_is_undone(tmp_path: Path) -> None:
    manager, host = _manager(tmp_path)
    bad = PodSpec(uid=PodUID("pod-2"), namespace="d", name="p",
                  volumes=(Volume("c", FilesVolume("configMap", {"../x": b""})),))  # fmt: skip
    with pytest.raises(SandboxError, match=r"must not contain '\.\.'"):
        asyncio.run(manager.create(bad))
    assert not manager.pod_dir(bad.uid).exists()
    assert list(host.netns_dir.iterdir()) == []


def test_host_path_types(tmp_path: Path) -> None:
    manager, _ = _manager(tmp_path)
    made = tmp_path / "made/dir"
    pod = PodSpec(uid=PodUID("pod-3"), namespace="d", name="p", volumes=(
        Volume("a", HostPath(str(made), "DirectoryOrCreate")),
        Volume("b", HostPath(str(tmp_path / "f/file"), "FileOrCreate")),
    ))  # fmt: skip
    asyncio.run(manager.create(pod))
    assert made.is_dir()
    assert (tmp_path / "f/file").is_file()
    absent = Volume("a", HostPath(str(tmp_path / "nope"), "Directory"))
    missing = PodSpec(uid=PodUID("pod-4"), namespace="d", name="p", volumes=(absent,))
    with pytest.raises(SandboxError, match="not an existing directory"):
        asyncio.run(manager.create(missing))


def test_unsafe_pod_uid_is_refused(tmp_path: Path) -> None:
    manager, _ = _manager(tmp_path)
    with pytest.raises(SandboxError, match="unsafe"):
        manager.pod_dir(PodUID("../../etc"))


def test_host_network_pod_gets_no_netns_and_no_cni(tmp_path: Path) -> None:
    manager, host = _manager(tmp_path)
    pod = PodSpec(uid=PodUID("pod-5"), namespace="d", name="p", host_network=True)
    record = asyncio.run(manager.create(pod, requested_ip="10.231.0.11"))
    assert (record.netns, record.ip, record.state) == ("", "10.231.0.11", "ready")
    assert host.calls == []
    assert manager.paths(pod, record).netns is None
    assert asyncio.run(manager.create(pod)) == record
    asyncio.run(manager.remove(pod.uid))
    assert host.calls == []


def test_a_half_made_sandbox_is_torn_down_and_recreated(tmp_path: Path) -> None:
    manager, host = _manager(tmp_path)
    record = asyncio.run(manager.create(POD))
    record.state = "creating"  # as if the agent died before finishing
    record.save(manager.pod_dir(POD.uid) / "sandbox.json")
    host.calls.clear()
    again = asyncio.run(manager.create(POD))
    assert again.state == "ready"
    netns_calls = [c[:2] for c in host.calls if c[0] == "netns"]
    assert netns_calls == [["netns", "del"], ["netns", "add"]]


class CountingNetwork:
    """A pod network that hands out one address and counts its DELs."""

    def __init__(self) -> None:
        self.detached: list[str] = []

    async def attach(self, *, sandbox_id: str, **_kw: object) -> PodAddress:
        return PodAddress(ip="10.244.1.9", gateway="10.244.1.1")

    async def detach(self, *, sandbox_id: str, **_kw: object) -> None:
        self.detached.append(sandbox_id)


def test_a_pods_teardown_deletes_its_network_once(tmp_path: Path) -> None:
    """stop then remove (what the runtime's pod teardown does): one CNI DEL, not two; a
    sandbox made ready again is detached again."""
    manager, _host = _manager(tmp_path)
    network = CountingNetwork()
    manager.network = cast(PodNetwork, network)
    asyncio.run(manager.create(POD))
    asyncio.run(manager.stop_network(POD.uid))
    asyncio.run(manager.remove(POD.uid))
    assert network.detached == [POD.uid]
    asyncio.run(manager.create(POD))
    asyncio.run(manager.remove(POD.uid))
    assert network.detached == [POD.uid, POD.uid]


class RecordingNetwork:
    """A pod network handing out a new address per ADD, recording DELs (sandbox, netns)."""

    def __init__(self) -> None:
        self.added = 0
        self.detached: list[tuple[str, str]] = []

    async def attach(self, *, sandbox_id: str, **_kw: object) -> PodAddress:
        self.added += 1
        return PodAddress(ip=f"10.244.1.{8 + self.added}", gateway="10.244.1.1")

    async def detach(self, *, sandbox_id: str, netns: str, **_kw: object) -> None:
        self.detached.append((sandbox_id, netns))


def _reboot(host: FakeNetnsHost) -> None:
    """What a reboot leaves of the sandboxes: /run/netns (a tmpfs) empty, state on disk."""
    for path in host.netns_dir.iterdir():
        path.unlink()


def test_a_sandbox_whose_netns_is_gone_is_replaced_keeping_its_volumes(tmp_path: Path) -> None:
    """After a reboot the recorded sandbox is dead: not live; creating it again tears it down
    (CNI DEL without the gone namespace: the address is released) and makes a new one with
    a new address, and an emptyDir's content on disk is still there."""
    manager, host = _manager(tmp_path)
    network = RecordingNetwork()
    manager.network = cast(PodNetwork, network)
    first = asyncio.run(manager.create(POD))
    assert manager.is_live(first)
    kept = manager.volume_dir(POD.uid, "scratch") / "data.txt"
    kept.write_text("written before the reboot")
    _reboot(host)
    dead = manager.record(POD.uid)
    assert dead is not None
    assert dead.state == "ready"
    assert not manager.is_live(dead), "its namespace is gone"
    host.calls.clear()
    again = asyncio.run(manager.create(POD))
    assert again.state == "ready"
    assert manager.is_live(again)
    assert network.detached == [(POD.uid, "")], "DEL once, without the gone namespace"
    assert (first.ip, again.ip) == ("10.244.1.9", "10.244.1.10")
    assert ["netns", "add", "berth-pod-1"] in host.calls
    assert (host.netns_dir / "berth-pod-1").exists()
    assert kept.read_text() == "written before the reboot"
    token = manager.volume_dir(POD.uid, "token") / "token"
    assert token.read_bytes() == b"s3cr3t", "projected files are written again"
    pod_dir = manager.pod_dir(POD.uid)
    assert "10.244.1.10\tweb" in (pod_dir / "hosts").read_text()
    assert asyncio.run(manager.create(POD)) == again, "the new one is found, not remade"
    asyncio.run(manager.remove(POD.uid))
    assert not pod_dir.exists(), "removing the pod removes its volumes"


def test_removing_a_dead_sandbox_releases_its_address_without_the_namespace(
    tmp_path: Path,
) -> None:
    """A pod deleted while its node was down: its sandbox's teardown after the reboot does
    not try to enter (or delete) the gone namespace, and releases the address."""
    manager, host = _manager(tmp_path)
    network = RecordingNetwork()
    manager.network = cast(PodNetwork, network)
    asyncio.run(manager.create(POD))
    _reboot(host)
    host.calls.clear()
    asyncio.run(manager.remove(POD.uid))
    assert network.detached == [(POD.uid, "")]
    assert [c for c in host.calls if c[0] == "ip"] == []
    assert not manager.pod_dir(POD.uid).exists()


def test_a_failed_replacement_keeps_the_volumes(tmp_path: Path) -> None:
    """Remaking a dead sandbox may fail (CNI ADD refused): what was made is undone, the
    emptyDir content stays for the next try."""
    manager, host = _manager(tmp_path)
    asyncio.run(manager.create(POD))
    kept = manager.volume_dir(POD.uid, "scratch") / "data.txt"
    kept.write_text("keep me")
    _reboot(host)

    class Refusing(RecordingNetwork):
        async def attach(self, *, sandbox_id: str, **_kw: object) -> PodAddress:
            raise SandboxError("no address left")

    manager.network = cast(PodNetwork, Refusing())
    with pytest.raises(SandboxError, match="no address left"):
        asyncio.run(manager.create(POD))
    assert manager.record(POD.uid) is None
    assert kept.read_text() == "keep me"
    assert list(host.netns_dir.iterdir()) == []
    manager.network = cast(PodNetwork, RecordingNetwork())
    assert asyncio.run(manager.create(POD)).state == "ready"
    assert kept.read_text() == "keep me"


def test_a_sandbox_made_before_the_kernel_booted_again_is_dead(tmp_path: Path) -> None:
    """The boot id tells a reboot for a host-network pod (no namespace to go missing): its
    sandbox is replaced, its emptyDir content kept; a record without a boot id (made by an
    older agent) is judged by its namespace alone."""
    netns = tmp_path / "netns"
    netns.mkdir()
    host = FakeNetnsHost(netns)
    state = tmp_path / "state"
    before = SandboxManager(state_dir=state, network=None, runner=host, netns_dir=netns,
                            boot_id="boot-1", namespaces=host)  # fmt: skip
    pod = PodSpec(uid=PodUID("pod-6"), namespace="d", name="p", host_network=True,
                  volumes=(Volume("scratch", EmptyDir()),))  # fmt: skip
    first = asyncio.run(before.create(pod, requested_ip="10.231.0.11"))
    assert first.boot_id == "boot-1"
    kept = before.volume_dir(pod.uid, "scratch") / "f"
    kept.write_text("kept")
    after = SandboxManager(state_dir=state, network=None, runner=host, netns_dir=netns,
                           boot_id="boot-2", namespaces=host)  # fmt: skip
    assert before.is_live(first)
    assert not after.is_live(first)
    again = asyncio.run(after.create(pod, requested_ip="10.231.0.11"))
    assert (again.boot_id, again.state) == ("boot-2", "ready")
    assert after.is_live(again)
    assert kept.read_text() == "kept"
    unknown = SandboxManager(state_dir=state, network=None, runner=host, netns_dir=netns,
                             boot_id="", namespaces=host)  # fmt: skip
    assert unknown.is_live(again)
    again.boot_id = ""
    assert after.is_live(again), "an older record: its namespace alone decides"
