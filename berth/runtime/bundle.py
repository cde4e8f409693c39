"""OCI runtime bundle ``config.json`` from a container spec, its image and its pod sandbox.

:func:`render_config` is pure: every host fact it needs (rootfs path, netns path, where the
pod's volumes and /etc files live, which cgroup controllers work) comes in as arguments, so
golden tests pin the whole document.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from berth.runtime.errors import ContainerError
from berth.runtime.manifest import ImageConfig
from berth.runtime.spec import ContainerSpec, FilesVolume, HostPath, PodSpec, Volume

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Docker's default capability set (what a Kubernetes container gets unless it adds/drops).
DEFAULT_CAPABILITIES = (
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
)
MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/firmware",
)
READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)
CPU_PERIOD_US = 100_000
MIN_CPU_SHARES = 2


@dataclass(frozen=True)
class SandboxPaths:
    """Host locations the pod sandbox provides to each of its containers."""

    netns: Path | None  # None = host network
    etc_hosts: Path
    etc_resolv_conf: Path
    etc_hostname: Path
    volumes: Mapping[str, Path]  # volume name -> host directory holding its content


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()


def _parse_db(text: str, min_fields: int) -> list[list[str]]:
    return [
        fields
        for line in text.splitlines()
        if line and not line.startswith("#") and len(fields := line.split(":")) >= min_fields
    ]


def resolve_user(
    *,
    spec_uid: int | None,
    spec_gid: int | None,
    image_user: str,
    passwd: str,
    group: str,
    extra_gids: Sequence[int] = (),
) -> User:
    """Pick uid/gid like the kubelet + containerd: securityContext first, then the image's
    ``User`` (``name``, ``uid``, ``name:group`` or ``uid:gid``) looked up in the image's
    /etc/passwd and /etc/group."""
    users = _parse_db(passwd, 4)
    groups = _parse_db(group, 3)
    user_part, _, group_part = image_user.partition(":")
    uid, gid = 0, 0
    if spec_uid is not None:
        uid = spec_uid
        gid = next((int(u[3]) for u in users if u[2] == str(uid) and u[3].isdigit()), 0)
    elif user_part:
        if user_part.isdigit():
            uid = int(user_part)
            gid = next((int(u[3]) for u in users if u[2] == user_part and u[3].isdigit()), 0)
        else:
            row = next((u for u in users if u[0] == user_part), None)
            if row is None:
                raise ContainerError(f"image user {user_part!r} is not in the image's /etc/passwd")
            uid, gid = int(row[2]), int(row[3])
    if spec_gid is not None:
        gid = spec_gid
    elif group_part and spec_uid is None:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            grp = next((g for g in groups if g[0] == group_part), None)
            if grp is None:
                raise ContainerError(f"image group {group_part!r} is not in the image's /etc/group")
            gid = int(grp[2])
    name = next((u[0] for u in users if u[2] == str(uid)), None)
    member_of = [
        int(g[2])
        for g in groups
        if name is not None and name in g[3].split(",") and g[2].isdigit() and int(g[2]) != gid
    ]
    extra = tuple(dict.fromkeys([*member_of, *extra_gids]))
    return User(uid=uid, gid=gid, additional_gids=tuple(g for g in extra if g != gid))


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known names are replaced, unknown ones stay verbatim,
    ``$$`` escapes a dollar."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR_REF.sub(sub, text)


def build_env(container: ContainerSpec, image: ImageConfig, hostname: str) -> list[str]:
    """Image env, then ``HOSTNAME``, then the container's env (later names win, in order),
    each container value expanded against the ones before it."""
    merged: dict[str, str] = {}
    for item in image.env or (DEFAULT_PATH,):
        key, _, value = item.partition("=")
        merged[key] = value
    merged.setdefault("PATH", DEFAULT_PATH.split("=", 1)[1])
    merged["HOSTNAME"] = hostname
    for key, value in container.env:
        merged[key] = expand(value, merged)
    return [f"{k}={v}" for k, v in merged.items()]


def build_args(container: ContainerSpec, image: ImageConfig, env: Sequence[str]) -> list[str]:
    """Kubernetes rules: ``command`` replaces the image Entrypoint *and* drops its Cmd;
    ``args`` replaces Cmd."""
    if container.command:
        argv = [*container.command, *container.args]
    elif container.args:
        argv = [*image.entrypoint, *container.args]
    else:
        argv = [*image.entrypoint, *image.cmd]
    if not argv:
        raise ContainerError(
            f"container {container.name!r}: no command: the image has no Entrypoint/Cmd and "
            "the pod sets no command/args"
        )
    values = dict(item.split("=", 1) for item in env)
    return [expand(a, values) for a in argv]


def _capabilities(container: ContainerSpec) -> list[str]:
    def norm(cap: str) -> str:
        cap = cap.upper()
        return cap if cap.startswith("CAP_") else f"CAP_{cap}"

    drop = {norm(c) for c in container.capabilities_drop}
    caps = [c for c in DEFAULT_CAPABILITIES if "CAP_ALL" not in drop and c not in drop]
    caps += [norm(c) for c in container.capabilities_add if norm(c) not in caps]
    return sorted(caps)


def _default_mounts() -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
    ]


def _bind(source: Path | str, destination: str, *, read_only: bool) -> dict[str, Any]:
    options = ["rbind", "rprivate", "nosuid", "nodev"]
    options.append("ro" if read_only else "rw")
    return {"destination": destination, "type": "bind", "source": str(source), "options": options}


def _safe_subpath(sub_path: str, mount_path: str) -> str:
    parts = PurePosixPath(sub_path).parts
    if sub_path.startswith("/") or ".." in parts:
        raise ContainerError(
            f"volumeMount {mount_path}: subPath {sub_path!r} must be relative, no '..'"
        )
    return str(PurePosixPath(*parts)) if parts else ""


def _contained_subpath(base: Path, sub: str, mount_path: str) -> Path:
    """``base/sub`` with symlinks resolved, refused when it leaves ``base``: a volume's content
    is written by containers (a persistent one by earlier pods), and a symlink planted there
    must not make a later ``subPath`` mount a host directory. Made when missing, as the
    kubelet does."""
    root = Path(os.path.realpath(base))
    target = Path(os.path.realpath(base / sub))
    if target != root and root not in target.parents:
        raise ContainerError(
            f"volumeMount {mount_path}: subPath {sub!r} resolves outside its volume"
        )
    if not target.exists():
        target.mkdir(mode=0o755, parents=True, exist_ok=True)
        if Path(os.path.realpath(target)) != target:  # raced with a symlink
            raise ContainerError(
                f"volumeMount {mount_path}: subPath {sub!r} resolves outside its volume"
            )
    return target


def volume_mounts(
    container: ContainerSpec, volumes: Sequence[Volume], paths: SandboxPaths
) -> list[dict[str, Any]]:
    """Bind mounts for the container's ``volumeMounts`` (the content is prepared per pod)."""
    by_name = {v.name: v for v in volumes}
    mounts = []
    for vm in container.volume_mounts:
        volume = by_name.get(vm.name)
        if volume is None:
            raise ContainerError(
                f"container {container.name!r}: volumeMount {vm.mount_path} names unknown "
                f"volume {vm.name!r}"
            )
        if not vm.mount_path.startswith("/"):
            raise ContainerError(f"volumeMount {vm.mount_path!r} must be an absolute path")
        if ".." in PurePosixPath(vm.mount_path).parts:  # runc resolves in root; be plain anyway
            raise ContainerError(f"volumeMount {vm.mount_path!r} must not contain '..'")
        if isinstance(volume.source, HostPath):
            base: Path = Path(volume.source.path)
        else:
            base = paths.volumes[vm.name]
        sub = _safe_subpath(vm.sub_path, vm.mount_path)
        source = _contained_subpath(base, sub, vm.mount_path) if sub else base
        read_only = (
            vm.read_only
            or isinstance(volume.source, FilesVolume)
            or (isinstance(volume.source, HostPath) and volume.source.read_only)
        )
        mounts.append(_bind(source, vm.mount_path, read_only=read_only))
    return mounts


def _resources(container: ContainerSpec, enforce: frozenset[str]) -> dict[str, Any]:
    res = container.resources
    out: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if "memory" in enforce and res.memory_limit_bytes is not None:
        out["memory"] = {"limit": res.memory_limit_bytes}
    cpu: dict[str, int] = {}
    if "cpu" in enforce:
        if res.cpu_request_millis is not None:
            cpu["shares"] = max(MIN_CPU_SHARES, res.cpu_request_millis * 1024 // 1000)
        if res.cpu_limit_millis is not None:
            cpu["quota"] = res.cpu_limit_millis * CPU_PERIOD_US // 1000
            cpu["period"] = CPU_PERIOD_US
    if cpu:
        out["cpu"] = cpu
    if "pids" in enforce and res.pids_limit is not None:
        out["pids"] = {"limit": res.pids_limit}
    return out


def unenforced_limits(container: ContainerSpec, enforce: frozenset[str]) -> list[str]:
    """Names of requested limits this node cannot enforce (reported, not fatal)."""
    res = container.resources
    wanted = {
        "memory": res.memory_limit_bytes is not None,
        "cpu": res.cpu_limit_millis is not None or res.cpu_request_millis is not None,
        "pids": res.pids_limit is not None,
    }
    return sorted(k for k, v in wanted.items() if v and k not in enforce)


_DEVICES = [
    # The default set every container gets (null, zero, full, random, urandom, tty, ptmx).
    (1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2),
]  # fmt: skip


def render_config(
    *,
    pod: PodSpec,
    container: ContainerSpec,
    image: ImageConfig,
    user: User,
    rootfs: Path,
    paths: SandboxPaths,
    cgroups_path: str,
    enforce: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The complete ``config.json`` for one container (OCI runtime spec 1.0.2)."""
    hostname = pod.effective_hostname
    env = build_env(container, image, hostname)
    caps = _capabilities(container)
    pid_ns = {"type": "pid"}
    if container.target_pid_namespace:  # an ephemeral container sharing its target's
        pid_ns["path"] = container.target_pid_namespace
    namespaces: list[dict[str, str]] = [pid_ns, {"type": "ipc"}]
    if paths.netns is not None:  # a host-network pod also keeps the node's hostname
        namespaces.append({"type": "uts"})
    namespaces.append({"type": "mount"})
    if paths.netns is not None:
        namespaces.append({"type": "network", "path": str(paths.netns)})
    mounts = _default_mounts()
    mounts += [
        _bind(paths.etc_hosts, "/etc/hosts", read_only=True),
        _bind(paths.etc_hostname, "/etc/hostname", read_only=True),
        _bind(paths.etc_resolv_conf, "/etc/resolv.conf", read_only=True),
    ]
    mounts += volume_mounts(container, pod.volumes, paths)
    resources = _resources(container, enforce)
    resources["devices"] += [
        {"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"}
        for major, minor in _DEVICES
    ]
    config: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": container.tty,
            "user": {
                "uid": user.uid,
                "gid": user.gid,
                **({"additionalGids": list(user.additional_gids)} if user.additional_gids else {}),
            },
            "args": build_args(container, image, env),
            "env": env,
            "cwd": container.working_dir or image.working_dir or "/",
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": not container.allow_privilege_escalation,
        },
        "root": {"path": str(rootfs), "readonly": container.read_only_root_filesystem},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": resources,
            "namespaces": namespaces,
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
    if paths.netns is None:
        del config["hostname"]  # runc refuses a hostname without a private UTS namespace
    return config
