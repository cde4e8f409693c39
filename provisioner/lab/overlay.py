"""Each host's private writable layer over the shared rootfs, its identity files, and its disk.

A host's root is an overlay on the machine, and the kernel refuses an overlay as the upper
layer of another: berth's runtime could not mount containers' roots as overlays there (it
copies them instead). So each host also gets a *disk*, a directory of its own on the machine's
file system bound at :data:`DISK` (a node's data disk), and its runtime's containers directory
is a symlink onto it, as a node with a dedicated disk for containers would have: the lab then
runs, and its tests exercise, the overlay roots real nodes use. Not a tmpfs: the disk lives as
long as the host's upper layer (until ``lab down``), so a host stopped and started again finds
its containers' bundles, as a rebooted node does. The symlink (not a mount at
``/var/lib/berth/...``) keeps ``berth destroy``'s removal of ``/var/lib/berth`` and its clean
check as on any host; once destroyed, a host installed again copies roots (no symlink).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from berth.runtime.mountinfo import mount_points
from provisioner.lab.keys import KeyPair
from provisioner.lab.rootfs import ETC_HOSTS
from provisioner.lab.system import run


@dataclass(frozen=True)
class HostDirs:
    """The directories of one host inside the lab directory."""

    base: Path

    @property
    def upper(self) -> Path:
        """Everything the host ever wrote (survives stop/start until ``lab down``)."""
        return self.base / "upper"

    @property
    def work(self) -> Path:
        """overlayfs' scratch directory."""
        return self.base / "work"

    @property
    def root(self) -> Path:
        """The merged tree nspawn boots."""
        return self.base / "root"

    @property
    def disk(self) -> Path:
        """The host's own directory on the machine's file system, bound at :data:`DISK`."""
        return self.base / "disk"

    @property
    def console_log(self) -> Path:
        """nspawn's and the host's console output."""
        return self.base / "console.log"


DISK = "/var/lib/berth-lab-disk"
"""Where a host sees its disk (:attr:`HostDirs.disk`)."""
RUNTIME_CONTAINERS = "var/lib/berth/runtime/containers"
"""The runtime's containers directory (berth.agent.config's state_dir + containers), in a
host's tree: a symlink to ``containers`` on the disk."""


def is_mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point on the machine."""
    return str(path) in mount_points()


def mount(rootfs: Path, dirs: HostDirs) -> None:
    """Mount ``rootfs`` (read-only lower layer) with the host's own upper layer at ``dirs.root``."""
    for path in (dirs.upper, dirs.work, dirs.root):
        path.mkdir(parents=True, exist_ok=True)
    dirs.disk.mkdir(mode=0o700, exist_ok=True)
    (dirs.disk / "containers").mkdir(mode=0o700, exist_ok=True)  # the symlink's target
    if not is_mounted(dirs.root):
        options = f"lowerdir={rootfs},upperdir={dirs.upper},workdir={dirs.work}"
        run(["mount", "-t", "overlay", "overlay", "-o", options, str(dirs.root)])


def unmount(path: Path) -> None:
    """Unmount ``path`` if mounted (lazily if something still holds it)."""
    if not is_mounted(path):
        return
    run(["umount", str(path)], check=False)
    if is_mounted(path):  # still busy: detach now, the kernel finishes when the last user exits
        run(["umount", "--lazy", str(path)])


def write_identity(
    root: Path,
    *,
    hostname: str,
    address: ipaddress.IPv4Address,
    host_key: KeyPair,
    authorized_key: str,
) -> None:
    """Give a host what a cloud VM gets on first boot: its name, a machine-id, its own SSH host key
    and the operator's key authorised for root."""
    etc = root / "etc"
    (etc / "hostname").write_text(f"{hostname}\n")
    (etc / "machine-id").write_text(f"{secrets.token_hex(16)}\n")
    (etc / "hosts").write_text(f"{ETC_HOSTS}{address}\t{hostname}\n")
    key_path = etc / "ssh/ssh_host_ed25519_key"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(host_key.private_openssh)
    key_path.with_name(key_path.name + ".pub").write_text(host_key.public_line + "\n")
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    authorized = ssh_dir / "authorized_keys"
    fd = os.open(authorized, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(authorized_key + "\n")


def link_runtime_disk(root: Path) -> None:
    """Point the host's runtime containers directory at its disk (see the module's doc)."""
    link = root / RUNTIME_CONTAINERS
    link.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(f"{DISK}/containers")


def read_host_key(root: Path) -> str:
    """The host's public host key line, read back from its own tree."""
    return (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().strip()
