"""What the node agent asks the runtime to run: pods (sandboxes) and their containers.

These are plain frozen values, already resolved by the agent: environment values are
literal (the agent resolves ``valueFrom``), ConfigMap/Secret volumes carry their file content.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NewType

PodUID = NewType("PodUID", str)
ContainerID = NewType("ContainerID", str)


@dataclass(frozen=True)
class Resources:
    """Requests and limits in kernel units. ``None`` means "not set"."""

    cpu_request_millis: int | None = None
    cpu_limit_millis: int | None = None
    memory_limit_bytes: int | None = None
    pids_limit: int | None = None


@dataclass(frozen=True)
class EmptyDir:
    """A per-pod scratch directory; ``medium="Memory"`` makes it a tmpfs."""

    medium: str = ""
    size_limit_bytes: int | None = None


@dataclass(frozen=True)
class HostPath:
    """A path on the node bind-mounted into the container."""

    path: str
    type: str = ""  # "", Directory, DirectoryOrCreate, File, FileOrCreate, Socket
    read_only: bool = False  # every mount read-only (a PersistentVolumeClaim's ``readOnly``)


@dataclass(frozen=True)
class FilesVolume:
    """A ConfigMap or Secret projected as files (``kind`` is ``configMap`` or ``secret``).

    Secrets land on a tmpfs (never on disk) with mode 0400 unless ``default_mode`` says
    otherwise; ConfigMaps default to 0644.
    """

    kind: str
    files: Mapping[str, bytes]
    default_mode: int | None = None

    @property
    def mode(self) -> int:
        if self.default_mode is not None:
            return self.default_mode
        return 0o400 if self.kind == "secret" else 0o644


VolumeSource = EmptyDir | HostPath | FilesVolume


@dataclass(frozen=True)
class Volume:
    name: str
    source: VolumeSource


@dataclass(frozen=True)
class VolumeMount:
    name: str
    mount_path: str
    read_only: bool = False
    sub_path: str = ""


@dataclass(frozen=True)
class PortMapping:
    """A ``hostPort`` (handled by the CNI portmap plugin)."""

    container_port: int
    host_port: int
    protocol: str = "tcp"
    host_ip: str = ""


@dataclass(frozen=True)
class ContainerSpec:
    """One container of a pod, in Kubernetes terms."""

    name: str
    image: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str = ""
    run_as_user: int | None = None
    run_as_group: int | None = None
    read_only_root_filesystem: bool = False
    allow_privilege_escalation: bool = True
    capabilities_add: tuple[str, ...] = ()
    capabilities_drop: tuple[str, ...] = ()
    resources: Resources = field(default_factory=Resources)
    volume_mounts: tuple[VolumeMount, ...] = ()
    ports: tuple[PortMapping, ...] = ()
    image_pull_policy: str = "IfNotPresent"
    # stdio kept for pods/attach (see berth.runtime.shim): a terminal, or an open stdin
    stdin: bool = False
    stdin_once: bool = False
    tty: bool = False
    # an ephemeral container's targetContainerName: it joins that container's pid namespace
    target_pid_namespace: str = ""


@dataclass(frozen=True)
class PodSpec:
    """The sandbox-level part of a pod."""

    uid: PodUID
    namespace: str
    name: str
    hostname: str = ""
    volumes: tuple[Volume, ...] = ()
    dns_nameservers: tuple[str, ...] = ()
    dns_searches: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ("ndots:5",)
    supplemental_groups: tuple[int, ...] = ()
    fs_group: int | None = None
    host_aliases: tuple[tuple[str, tuple[str, ...]], ...] = ()
    host_network: bool = False  # share the node's network (and UTS) namespace: no CNI

    @property
    def effective_hostname(self) -> str:
        return (self.hostname or self.name)[:63]
