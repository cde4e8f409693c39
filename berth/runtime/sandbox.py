"""Pod sandboxes: a network namespace attached through CNI, plus the pod's files and volumes.

A sandbox owns, under ``<state>/pods/<uid>/``: ``sandbox.json`` (what was made, written before
the next step so teardown can always finish), ``hosts``/``hostname``/``resolv.conf`` (bind-
mounted into every container) and ``volumes/<name>/`` (emptyDir, configMap, secret on tmpfs).
The network namespace is ``/run/netns/berth-<uid>``. Teardown is idempotent and leaves no
namespace, veth, IP reservation, mount or directory behind. A sandbox whose namespace is gone
(the node rebooted: /run/netns is a tmpfs) is dead: not live, and :meth:`SandboxManager.create`
replaces it with a new one, keeping the pod's volumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from berth.network.command import Runner, check
from berth.network.podnet import HostPort, PodNetwork
from berth.runtime import timeline
from berth.runtime.bundle import SandboxPaths
from berth.runtime.durable import write_atomically
from berth.runtime.errors import SandboxError
from berth.runtime.mountinfo import mount_points
from berth.runtime.netns import KernelNamespaces, NamespaceMaker
from berth.runtime.safepath import check_element, child, relative_parts
from berth.runtime.spec import EmptyDir, FilesVolume, HostPath, PodSpec, PodUID

NETNS_DIR = Path("/run/netns")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")  # new at every boot of the kernel
_SAFE_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def netns_name(uid: PodUID) -> str:
    return f"berth-{uid}"


@dataclass
class SandboxRecord:
    """What a sandbox consists of; persisted as ``sandbox.json``."""

    uid: str
    namespace: str
    name: str
    netns: str
    ip: str | None = None
    ports: list[dict[str, object]] = field(default_factory=list)
    tmpfs: list[str] = field(default_factory=list)
    state: str = "creating"  # creating -> ready -> stopped
    boot_id: str = ""  # the kernel's boot it was made in ("": not known)
    extra: dict[str, object] = field(default_factory=dict)  # the caller's own bookkeeping

    @classmethod
    def load(cls, path: Path) -> SandboxRecord:
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path, *, durable: bool = True) -> None:
        """Replace the record atomically; ``durable`` (fsync'd, file and directory): a
        sandbox whose record a power cut lost or tore keeps its IP reservation (host-local
        keeps it on disk) with nothing left to release it, and a torn one stops the agent."""
        # dumps, not dump: json.dump always takes the pure-Python encoder. The fields are
        # JSON already: no dataclasses.asdict, whose deep copy of ``extra`` (the pod's spec)
        # cost more than the encoding.
        data = json.dumps({name: getattr(self, name) for name in _RECORD_FIELDS}).encode()
        write_atomically(path, data, durable=durable)


_RECORD_FIELDS = tuple(f.name for f in fields(SandboxRecord))


def render_hosts(
    ip: str | None, hostname: str, aliases: Sequence[tuple[str, Sequence[str]]]
) -> str:
    lines = [
        "# Kubernetes-managed hosts file (berth).",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
    ]
    if ip:
        lines.append(f"{ip}\t{hostname}")
    lines += [f"{addr}\t{' '.join(names)}" for addr, names in aliases]
    return "\n".join(lines) + "\n"


def render_resolv_conf(pod: PodSpec) -> str:
    lines = [f"nameserver {ns}" for ns in pod.dns_nameservers]
    if pod.dns_searches:
        lines.append("search " + " ".join(pod.dns_searches))
    if pod.dns_options and pod.dns_nameservers:
        lines.append("options " + " ".join(pod.dns_options))
    return "\n".join(lines) + ("\n" if lines else "")


def _write_file(path: Path, data: bytes, mode: int) -> None:
    write_atomically(path, data, mode=mode)


class SandboxManager:
    """Creates and removes pod sandboxes on this node."""

    def __init__(
        self,
        *,
        state_dir: Path,
        network: PodNetwork | None,
        runner: Runner,
        netns_dir: Path = NETNS_DIR,
        boot_id: str | None = None,
        namespaces: NamespaceMaker | None = None,
    ) -> None:
        self.pods_dir = state_dir / "pods"
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        self.network = network
        self.runner = runner
        self.netns_dir = netns_dir  # where namespaces are pinned (tests use a tmp dir)
        # netns + lo made in-process: ``ip netns add`` and the CNI loopback plugin were
        # three processes (~8 ms CPU) per pod start, two more per stop
        self.namespaces = KernelNamespaces() if namespaces is None else namespaces
        self.boot_id = _read_boot_id() if boot_id is None else boot_id

    def pod_dir(self, uid: PodUID) -> Path:
        if not _SAFE_KEY.fullmatch(uid):
            raise SandboxError(f"pod uid {uid!r} has characters unsafe for a path")
        return child(self.pods_dir, uid, what="pod uid")

    def volume_dir(self, uid: PodUID, volume: str) -> Path:
        """Where the (non-hostPath) volume named ``volume`` of pod ``uid`` lives; a name that
        would leave ``volumes/`` (``..``, ``a/b``) is refused, whatever the API accepted."""
        return child(self.pod_dir(uid) / "volumes", volume, what="volume name")

    def record(self, uid: PodUID) -> SandboxRecord | None:
        try:
            return SandboxRecord.load(self.pod_dir(uid) / "sandbox.json")
        except FileNotFoundError:
            return None

    def list_records(self) -> list[SandboxRecord]:
        out = []
        for path in sorted(self.pods_dir.glob("*/sandbox.json")):
            with contextlib.suppress(FileNotFoundError, ValueError):
                out.append(SandboxRecord.load(path))
        return out

    def paths(self, pod: PodSpec, record: SandboxRecord) -> SandboxPaths:
        pod_dir = self.pod_dir(pod.uid)
        return SandboxPaths(
            netns=Path(record.netns) if record.netns else None,
            etc_hosts=pod_dir / "hosts",
            etc_resolv_conf=pod_dir / "resolv.conf",
            etc_hostname=pod_dir / "hostname",
            volumes={
                v.name: self.volume_dir(pod.uid, v.name)
                for v in pod.volumes
                if not isinstance(v.source, HostPath)
            },
        )

    async def create(
        self,
        pod: PodSpec,
        ports: Sequence[HostPort] = (),
        *,
        requested_ip: str | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> SandboxRecord:
        """Make (or find) the sandbox for ``pod``: netns, CNI, /etc files, volumes."""
        pod_dir = self.pod_dir(pod.uid)
        for volume in pod.volumes:  # refuse before anything is made, not half-way through
            check_element(volume.name, what="volume name")
        existing = self.record(pod.uid)
        replacing = False  # a dead sandbox is replaced: the pod's volumes are kept
        if existing is not None and existing.state == "ready":
            if self.is_live(existing):
                return existing
            # Its network namespace is gone: /run/netns is a tmpfs, so after a reboot or a
            # power cut every sandbox of the node is dead. Like the kubelet, make the pod a
            # new one (new namespace, new address) but keep its volumes: an emptyDir's
            # content on disk survives a reboot.
            await self._teardown(pod.uid, keep_volumes=True)
            replacing = True
        elif existing is not None:
            # Half-made (the agent crashed mid-way) or stopped: plugins refuse a second ADD
            # for a live attachment, so tear down what is there and start clean.
            await self.remove(pod.uid)
        pod_dir.mkdir(parents=True, exist_ok=True)
        record = SandboxRecord(
            uid=pod.uid,
            namespace=pod.namespace,
            name=pod.name,
            netns="" if pod.host_network else str(self.netns_dir / netns_name(pod.uid)),
            ports=[p.as_capability() for p in ports],
            extra=dict(extra or {}),
            boot_id=self.boot_id,
        )
        # fsync'd in a thread: the disk's wait (ms) must not stall the event loop
        await asyncio.to_thread(record.save, pod_dir / "sandbox.json")
        try:
            if record.netns and not _exists(record.netns):
                await self.namespaces.add_netns(Path(record.netns))
            timeline.stamp(pod.uid, "netns")
            if self.network is not None and record.netns:
                address = await self.network.attach(
                    sandbox_id=pod.uid,
                    netns=record.netns,
                    namespace=pod.namespace,
                    name=pod.name,
                    ports=ports,
                    requested_ip=requested_ip,
                )
                record.ip = address.ip
            else:
                record.ip = requested_ip
            timeline.stamp(pod.uid, "cni")
            await self._prepare_files(pod, record)
            timeline.stamp(pod.uid, "sandbox")
        except Exception as exc:  # undo partial work whatever failed, then report
            await self._teardown(pod.uid, keep_volumes=replacing)
            if isinstance(exc, SandboxError):
                raise
            raise SandboxError(
                f"pod {pod.namespace}/{pod.name}: sandbox setup failed: {exc}"
            ) from exc
        record.state = "ready"
        await asyncio.to_thread(record.save, pod_dir / "sandbox.json")
        return record

    async def _prepare_files(self, pod: PodSpec, record: SandboxRecord) -> None:
        pod_dir = self.pod_dir(pod.uid)
        hostname = pod.effective_hostname
        _write_file(
            pod_dir / "hosts", render_hosts(record.ip, hostname, pod.host_aliases).encode(), 0o644
        )
        _write_file(pod_dir / "hostname", f"{hostname}\n".encode(), 0o644)
        _write_file(pod_dir / "resolv.conf", render_resolv_conf(pod).encode(), 0o644)
        volumes_dir = pod_dir / "volumes"
        volumes_dir.mkdir(exist_ok=True)
        for volume in pod.volumes:
            source = volume.source
            target = self.volume_dir(pod.uid, volume.name)
            if isinstance(source, HostPath):
                self._prepare_host_path(source)
                continue
            target.mkdir(exist_ok=True)
            needs_tmpfs = isinstance(source, FilesVolume) and source.kind == "secret"
            needs_tmpfs |= isinstance(source, EmptyDir) and source.medium == "Memory"
            if needs_tmpfs and str(target) not in record.tmpfs:
                options = "mode=0755,nosuid,nodev"
                if isinstance(source, EmptyDir) and source.size_limit_bytes:
                    options += f",size={source.size_limit_bytes}"
                # Recorded with the ready record only: a crash before it leaves a
                # "creating" record, whose teardown unmounts whatever is under the pod's
                # directory (_mounts_under), so no write of its own here.
                record.tmpfs.append(str(target))
                await check(
                    self.runner,
                    ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                    what=f"tmpfs for volume {volume.name}",
                )
            if isinstance(source, EmptyDir):
                # like the kubelet: any container user may write (setgid with an fsGroup)
                mode = 0o777 if pod.fs_group is None else 0o2777
                if pod.fs_group is not None:
                    os.chown(target, -1, pod.fs_group)
                os.chmod(target, mode)
            else:
                self._write_projected(target, source, pod.fs_group)

    def refresh_files(self, pod: PodSpec) -> None:
        """Rewrite the content of the pod's ConfigMap/Secret/projected volumes (renewed
        service-account tokens) the way :meth:`_prepare_files` wrote it; each file is
        replaced atomically, so a container never reads half a token."""
        for volume in pod.volumes:
            if isinstance(volume.source, FilesVolume):
                target = self.volume_dir(pod.uid, volume.name)
                if not target.is_dir():
                    raise SandboxError(f"volume {volume.name} of pod {pod.uid} was never set up")
                self._write_projected(target, volume.source, pod.fs_group)

    @staticmethod
    def _write_projected(target: Path, source: FilesVolume, fs_group: int | None) -> None:
        # Item paths may nest (``items: [{key: k, path: dir/file}]``) but never leave the
        # volume; ``target`` is fresh and only ever mounted read-only into containers, so no
        # symlink can have been planted under it.
        for key, data in sorted(source.files.items()):
            parts = relative_parts(key, what=f"{source.kind} item path")
            path = target.joinpath(*parts)
            for depth in range(1, len(parts)):
                directory = target.joinpath(*parts[:depth])
                if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
                    raise SandboxError(f"{source.kind} item path {key!r} clashes with a file")
                directory.mkdir(exist_ok=True)
            if path.is_symlink() or path.is_dir():
                raise SandboxError(f"{source.kind} item path {key!r} clashes with a directory")
            _write_file(path, data, source.mode)
            if fs_group is not None:
                os.chown(path, -1, fs_group)

    @staticmethod
    def _prepare_host_path(source: HostPath) -> None:
        path = Path(source.path)
        if source.type == "DirectoryOrCreate":
            path.mkdir(parents=True, exist_ok=True)
        elif source.type == "FileOrCreate":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(exist_ok=True)
        elif source.type == "Directory" and not path.is_dir():
            raise SandboxError(f"hostPath {path} is not an existing directory")
        elif source.type == "File" and not path.is_file():
            raise SandboxError(f"hostPath {path} is not an existing file")

    def is_live(self, record: SandboxRecord) -> bool:
        """Ready, made since the kernel booted, and its network namespace (if it has one)
        still exists. A node's reboot empties /run/netns (a tmpfs): every sandbox recorded
        before it is dead then, and its containers with it, whatever its record says. The
        boot id tells it for host-network pods too (no namespace); a container host (an
        nspawn lab host) shares its kernel's boot id: there the namespace tells."""
        if record.state != "ready":
            return False
        if record.boot_id and self.boot_id and record.boot_id != self.boot_id:
            return False
        return not record.netns or _exists(record.netns)

    async def stop_network(self, uid: PodUID) -> None:
        """CNI DEL (releases the IP and the veth); the namespace stays until :meth:`remove`.
        Once: a pod's teardown stops its sandbox, then removes it (which stops it too), and a
        second DEL is every plugin of both chains run again for nothing."""
        record = self.record(uid)
        if record is None or self.network is None or not record.netns:
            return
        if record.state == "stopped":
            return
        ports = [_host_port(p) for p in record.ports]
        # A namespace that is gone (node rebooted) is passed as "", as containerd does: the
        # plugins then release the address (IPAM) and host-side state (port mappings) and
        # skip the namespace's inside, instead of failing to enter it. The address must
        # not leak: host-local keeps its allocations on disk, across reboots.
        netns = record.netns if _exists(record.netns) else ""
        await self.network.detach(sandbox_id=uid, netns=netns, ports=ports, ip=record.ip)
        record.state = "stopped"
        # Not fsync'd: losing it to a power cut leaves "ready", whose sandbox is dead after
        # the reboot and torn down again (a second DEL is harmless); the directory goes next.
        record.save(self.pod_dir(uid) / "sandbox.json", durable=False)

    async def remove(self, uid: PodUID) -> None:
        """Tear everything down; safe to call repeatedly and after partial creation."""
        await self._teardown(uid, keep_volumes=False)

    async def _teardown(self, uid: PodUID, *, keep_volumes: bool) -> None:
        """Release the network, unmount, delete the namespace and the sandbox's files;
        ``keep_volumes`` keeps ``volumes/`` (the content of disk-backed emptyDirs) for a
        sandbox made anew for the same pod."""
        pod_dir = self.pod_dir(uid)
        record = self.record(uid)
        if record is not None:
            await self.stop_network(uid)
            for tmpfs in reversed(record.tmpfs):
                if _is_mountpoint(Path(tmpfs)):
                    await check(self.runner, ["umount", tmpfs], what="unmount volume")
        for leftover in _mounts_under(pod_dir):
            await check(self.runner, ["umount", "-l", str(leftover)], what="unmount leftover")
        pinned = self.netns_dir / netns_name(uid)
        if _exists(str(pinned)):
            try:
                self.namespaces.delete_netns(pinned)
            except OSError as exc:
                raise SandboxError(f"pod {uid}: delete netns: {exc}") from exc
        if not keep_volumes:
            shutil.rmtree(pod_dir, ignore_errors=True)
            return
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(pod_dir):
                if entry.name == "volumes":
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)


def _read_boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def _exists(path: str) -> bool:
    return os.path.exists(path)


def _host_port(doc: Mapping[str, object]) -> HostPort:
    return HostPort(
        host_port=int(str(doc["hostPort"])),
        container_port=int(str(doc["containerPort"])),
        protocol=str(doc.get("protocol", "tcp")),
        host_ip=str(doc.get("hostIP", "")),
    )


def _is_mountpoint(path: Path) -> bool:
    return str(path) in set(mount_points())


def _mounts_under(directory: Path) -> list[Path]:
    prefix = str(directory) + "/"
    points = set(mount_points())
    return sorted((Path(p) for p in points if p.startswith(prefix)), reverse=True)
