"""Per-host cgroups in every mounted hierarchy.

Without systemd on the machine, nspawn puts every container into ``payload/`` under its caller's
cgroup; two containers started from the same cgroup then share one, and units fail at random with
``219/CGROUP``. So each host's launcher first moves itself into
``<hierarchy>/berth-lab/<lab>/<host>`` in *every* hierarchy, then execs nspawn. That also gives
per-host accounting and a per-host freezer (the ``freeze`` fault).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from provisioner.errors import LabError

CGROUP_FS = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy."""

    mountpoint: Path
    version: int  # 1 or 2
    controllers: frozenset[str]


def hierarchies(mountinfo: str | None = None) -> list[Hierarchy]:
    """Every cgroup hierarchy mounted under /sys/fs/cgroup (from /proc/self/mountinfo)."""
    text = mountinfo if mountinfo is not None else Path("/proc/self/mountinfo").read_text()
    found: dict[str, Hierarchy] = {}
    for line in text.splitlines():
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        mountpoint, fstype, options = fields[4], tail[0], tail[2]
        if fstype not in ("cgroup", "cgroup2") or not mountpoint.startswith(str(CGROUP_FS)):
            continue
        # super options: controller names plus flags such as name=systemd or nsdelegate
        controllers = frozenset(o for o in options.split(",") if o not in ("rw", "ro"))
        found.setdefault(
            mountpoint, Hierarchy(Path(mountpoint), 2 if fstype == "cgroup2" else 1, controllers)
        )
    if not found:
        raise LabError("no cgroup hierarchy is mounted under /sys/fs/cgroup")
    return list(found.values())


def create(relpath: str) -> list[Path]:
    """Create ``relpath`` in every hierarchy; return the directories (one per hierarchy)."""
    made = []
    for hierarchy in hierarchies():
        path = hierarchy.mountpoint
        for part in Path(relpath).parts:
            parent, path = path, path / part
            if not path.is_dir():
                path.mkdir(exist_ok=True)
                if "cpuset" in hierarchy.controllers:
                    # A new v1 cpuset is empty; a process cannot join it until cpus/mems are set.
                    for knob in ("cpuset.cpus", "cpuset.mems"):
                        (path / knob).write_text((parent / knob).read_text())
        made.append(path)
    return made


def procs_files(relpath: str) -> list[Path]:
    """The ``cgroup.procs`` files a launcher writes itself into."""
    return [h.mountpoint / relpath / "cgroup.procs" for h in hierarchies()]


def pids(relpath: str) -> set[int]:
    """Every process in ``relpath`` or below it, in any hierarchy."""
    found: set[int] = set()
    for hierarchy in hierarchies():
        top = hierarchy.mountpoint / relpath
        if not top.is_dir():
            continue
        # os.walk, not Path.rglob: cgroups vanish while we walk (nspawn and the host's
        # systemd remove theirs as they die), and a vanished directory is simply skipped
        for dirpath, _dirs, _files in os.walk(top):
            try:
                found.update(int(p) for p in (Path(dirpath) / "cgroup.procs").read_text().split())
            except OSError:
                continue  # removed while walking
    return found


def kill_all(relpath: str) -> None:
    """SIGKILL whatever still runs in ``relpath`` (after nspawn is gone or stuck). On cgroup v2
    ``cgroup.kill`` kills the whole subtree at once, forks racing the kill included."""
    for hierarchy in hierarchies():
        if hierarchy.version == 2:
            with contextlib.suppress(OSError):  # gone already, or a kernel before 5.14
                (hierarchy.mountpoint / relpath / "cgroup.kill").write_text("1")
    for pid in pids(relpath):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _rmdir_tree(top: Path, *, keep_top: bool) -> None:
    """rmdir every directory below ``top`` (deepest first), and ``top`` unless ``keep_top``."""
    if not top.is_dir():
        return
    for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
        if keep_top and Path(dirpath) == top:
            continue
        _rmdir_cgroup(Path(dirpath))


def _rmdir_cgroup(path: Path, *, wait: float = 30.0) -> None:
    """rmdir one cgroup. EBUSY while the kernel still counts a killed process in it (it is
    released once the process is reaped, which a loaded machine delays): retry until ``wait``."""
    deadline = time.monotonic() + wait
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise LabError(f"cannot remove cgroup {path}: {exc.strerror}") from exc
            time.sleep(0.1)


def remove_children(relpath: str) -> None:
    """Remove the directories nspawn made below a host's cgroup (payload, supervisor)."""
    for hierarchy in hierarchies():
        _rmdir_tree(hierarchy.mountpoint / relpath, keep_top=True)


def remove(relpath: str) -> None:
    """Remove ``relpath`` and everything below it (nspawn's payload/supervisor dirs too) in every
    hierarchy, then the shared ``berth-lab`` parent if no other lab uses it."""
    for hierarchy in hierarchies():
        _rmdir_tree(hierarchy.mountpoint / relpath, keep_top=False)
        for parent in Path(relpath).parents:
            if str(parent) in (".", ""):
                break
            try:
                os.rmdir(hierarchy.mountpoint / parent)
            except OSError:
                break  # not empty (another lab) or already gone


def freezer_file(relpath: str) -> tuple[Path, str, str]:
    """The file that freezes ``relpath`` and its (frozen, thawed) values: v1 freezer if mounted,
    else the cgroup2 core freezer."""
    for hierarchy in hierarchies():
        if "freezer" in hierarchy.controllers:
            return hierarchy.mountpoint / relpath / "freezer.state", "FROZEN", "THAWED"
    for hierarchy in hierarchies():
        if hierarchy.version == 2:
            return hierarchy.mountpoint / relpath / "cgroup.freeze", "1", "0"
    raise LabError("no cgroup freezer available (neither v1 freezer nor cgroup2)")


def thaw_all(relpath: str) -> None:
    """Thaw every frozen cgroup at or below ``relpath`` (a frozen process ignores SIGKILL)."""
    for hierarchy in hierarchies():
        top = hierarchy.mountpoint / relpath
        if "freezer" in hierarchy.controllers:
            knob, thawed = "freezer.state", "THAWED"
        elif hierarchy.version == 2:
            knob, thawed = "cgroup.freeze", "0"
        else:
            continue
        for path in top.rglob(knob) if top.is_dir() else ():
            with contextlib.suppress(OSError):
                if path.read_text().strip() != thawed:
                    path.write_text(thawed)
