"""Which resource limits this node can actually enforce (so limits are best-effort, not fatal).

On a cgroup2 host a limit works only when its controller is listed in the root's
``cgroup.controllers`` (a nested host often has none delegated); on a cgroup v1 host the
controller's hierarchy must be mounted read-write. runc fails the whole container when asked
for a limit it cannot apply, so the bundle leaves such limits out and the status says so.
"""

from __future__ import annotations

from pathlib import Path

WANTED = ("memory", "cpu", "pids")


def _mount_options(mountinfo: str) -> dict[str, set[str]]:
    """Mount point -> its per-mount options (field 6 of /proc/self/mountinfo)."""
    out: dict[str, set[str]] = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 5:
            out[fields[4]] = set(fields[5].split(","))
    return out


def enforceable_controllers(
    cgroup_root: Path = Path("/sys/fs/cgroup"), mountinfo: str | None = None
) -> frozenset[str]:
    """The subset of memory/cpu/pids limits that runc can apply on this host."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    options = _mount_options(mountinfo)
    unified = cgroup_root / "cgroup.controllers"
    if unified.is_file():
        available = set(unified.read_text().split())
        writable = "ro" not in options.get(str(cgroup_root), set())
        return frozenset(c for c in WANTED if c in available and writable)
    found = set()
    for controller in WANTED:
        mount = cgroup_root / controller
        if not mount.is_dir():
            # cpu is often co-mounted as "cpu,cpuacct" with a symlink named "cpu"
            continue
        real = str(mount.resolve())
        if "ro" not in options.get(real, options.get(str(mount), set())):
            found.add(controller)
    return frozenset(found)


CGROUP_PARENT = "berth"


def pod_cgroup_dirs(pod_uid: str, cgroup_root: Path = Path("/sys/fs/cgroup")) -> list[Path]:
    """The pod's parent cgroup in every hierarchy (runc removes only the container leaves)."""
    candidates = [cgroup_root / CGROUP_PARENT / pod_uid]
    candidates += sorted(cgroup_root.glob(f"*/{CGROUP_PARENT}/{pod_uid}"))
    return [p for p in candidates if p.is_dir()]


def remove_pod_cgroups(pod_uid: str, cgroup_root: Path = Path("/sys/fs/cgroup")) -> list[str]:
    """``rmdir`` the pod's (now empty) cgroups; returns the ones that could not be removed."""
    stuck = []
    for path in pod_cgroup_dirs(pod_uid, cgroup_root):
        try:
            path.rmdir()
        except OSError as exc:
            stuck.append(f"{path}: {exc.strerror}")
    return stuck
