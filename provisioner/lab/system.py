"""Running machine commands for the lab, and the preflight checks that explain what is missing."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from provisioner.errors import LabError

# Tools the lab calls, and the Debian package that provides each (for the hint).
TOOLS = {
    "systemd-nspawn": "systemd-container",
    "ip": "iproute2",
    "nft": "nftables",
    "mount": "mount",
    "umount": "mount",
}
INOTIFY_INSTANCES = 8192  # every booted systemd takes ~7 of root's shared budget (default 128)


def run(
    argv: Sequence[str],
    *,
    input_text: str | None = None,
    check: bool = True,
    cwd: Path | None = None,
) -> str:
    """Run ``argv`` and return its stdout; on failure raise :class:`LabError` naming the command."""
    try:
        proc = subprocess.run(
            list(argv), input=input_text, capture_output=True, text=True, check=False, cwd=cwd
        )
    except FileNotFoundError as exc:
        raise LabError(f"{argv[0]}: command not found", hint=_install_hint(argv[0])) from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise LabError(
            f"`{shlex.join(argv)}` failed (exit {proc.returncode}): {' / '.join(detail)}"
        )
    return proc.stdout


def _install_hint(tool: str) -> str:
    package = TOOLS.get(tool)
    if package:
        return f"install it: apt-get install {package} (or run `make setup`)"
    return "install it (or run `make setup`)"


def require_root() -> None:
    """The lab creates namespaces, bridges and mounts: only root can."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root", hint="run it as root (e.g. sudo berth lab up)")


def require_tools(*extra: str) -> None:
    """Fail early, naming every missing tool at once."""
    missing = [tool for tool in (*TOOLS, *extra) if shutil.which(tool) is None]
    if missing:
        hints = sorted({TOOLS.get(t, t) for t in missing})
        raise LabError(
            f"missing tool(s): {', '.join(missing)}",
            hint=f"apt-get install {' '.join(hints)} (or run `make setup`)",
        )


def require_kernel_features() -> None:
    """overlayfs and cgroups are the kernel features the lab cannot work without."""
    filesystems = Path("/proc/filesystems").read_text()
    if "overlay" not in filesystems.split():
        raise LabError(
            "the kernel has no overlayfs (needed for per-host writable layers)",
            hint="modprobe overlay, or use a kernel with CONFIG_OVERLAY_FS",
        )
    if not Path("/sys/fs/cgroup").is_dir() or not any(Path("/sys/fs/cgroup").iterdir()):
        raise LabError("no cgroup filesystem mounted at /sys/fs/cgroup")


def raise_inotify_limit() -> None:
    """Raise root's shared inotify budget so 20+ systemd instances all finish booting.

    The limit is machine-wide and other labs may rely on it at the same moment, so it is only
    ever raised, never put back.
    """
    knob = Path("/proc/sys/fs/inotify/max_user_instances")
    if int(knob.read_text()) < INOTIFY_INSTANCES:
        knob.write_text(f"{INOTIFY_INSTANCES}\n")


def ip_forward_enabled() -> bool:
    """Whether the machine routes between interfaces (the lab never turns this on)."""
    return Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"


def mounts_below(directory: Path) -> list[Path]:
    """Mount points at or below ``directory``, deepest first."""
    prefix = str(directory).rstrip("/") + "/"
    found = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if len(fields) > 4 and (fields[4] + "/").startswith(prefix):
            found.add(Path(fields[4]))
    return sorted(found, key=lambda p: -len(p.parts))


def remove_tree(directory: Path) -> None:
    """Delete ``directory``, first detaching anything mounted inside it (a killed debootstrap
    leaves /proc and /sys mounted in its target; deleting through those must never happen)."""
    for mountpoint in mounts_below(directory):
        run(["umount", "--lazy", str(mountpoint)], check=False)
    if mounts_below(directory):
        raise LabError(f"cannot unmount everything below {directory}; not deleting it")
    shutil.rmtree(directory, ignore_errors=True)
