"""The base disk image, kernel and initramfs QEMU lab hosts boot (``berth lab up --vm``).

Built once from the lab's cached Debian rootfs (:mod:`provisioner.lab.rootfs`) and cached under
``/var/cache/berth-lab/vm-<key>``: the rootfs plus Debian's cloud kernel
(``linux-image-*-cloud-amd64``, whose virtio drivers are modules), ``kmod`` and ``udev`` (a real
host loads modules on demand and has device units; a container never needed either), as an ext4
image every VM's copy-on-write qcow2 disk sits on.

The initramfs is our own: busybox-static plus the virtio modules, loaded in dependency order, then
the root mounted and switched to. It also applies a VM's *identity* on first boot: a small
read-only seed disk (``/dev/vdb``, one per VM) holds its hostname, machine-id, host key,
authorised key and address, copied into the root once, as cloud-init does from its datasource.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from provisioner.errors import LabError
from provisioner.lab.locks import file_lock
from provisioner.lab.rootfs import cache_dir
from provisioner.lab.system import remove_tree, require_root, require_tools, run

KERNEL_META = "linux-image-cloud-amd64"
EXTRA_PACKAGES = ("kmod", "udev")
"""Installed into the image from .debs of the machine's archive (the VM has no route out)."""
VIRTIO_MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "virtio_blk",
    "failover",
    "net_failover",
    "virtio_net",
)
"""What the cloud kernel needs before it can see its disk and NIC, in load order."""
DISK_SIZE = "6G"  # virtual size of the base image (sparse: ~0.5 GB used)
IMAGE_VERSION = 1  # bump when the customisation changes: older cached images are not reused
SEED_DIR = "etc/berth-lab"  # inside the VM: the applied identity (its address file lives here)

NET_UNIT = """\
[Unit]
Description=berth lab: this VM's address on the lab bridge (no gateway: nothing leaves the lab)
DefaultDependencies=no
After=systemd-udevd.service
Before=network.target ssh.service
Wants=network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'ip link set lo up; ip addr replace "$(cat /etc/berth-lab/address)" \
dev eth0 && ip link set eth0 up'

[Install]
WantedBy=multi-user.target
"""


@dataclass(frozen=True)
class ImagePlan:
    """Everything that decides a base image's content (and so its cache key)."""

    rootfs_key: str
    kernel_package: str  # e.g. linux-image-6.1.0-57-cloud-amd64
    kernel_version: str  # the package version, e.g. 6.1.192-3
    extra_packages: tuple[str, ...] = EXTRA_PACKAGES
    version: int = IMAGE_VERSION

    def key(self) -> str:
        """A short stable hash of the plan: the cache key."""
        blob = json.dumps(
            {
                "rootfs": self.rootfs_key,
                "kernel": [self.kernel_package, self.kernel_version],
                "extra": sorted(self.extra_packages),
                "version": self.version,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def kernel_release(self) -> str:
        """The kernel's ``uname -r`` (its /lib/modules directory): the package name's tail."""
        return self.kernel_package.removeprefix("linux-image-")


@dataclass(frozen=True)
class BaseImage:
    """A built base image: what :func:`provisioner.lab.qemu.qemu_argv` boots."""

    directory: Path

    @property
    def disk(self) -> Path:
        """The ext4 root filesystem (raw, sparse): the backing file of every VM's qcow2."""
        return self.directory / "disk.raw"

    @property
    def kernel(self) -> Path:
        """The cloud kernel (direct kernel boot: the image has no bootloader)."""
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        """Our initramfs (busybox, virtio modules, the seed step)."""
        return self.directory / "initrd.img"


def parse_kernel_dependency(apt_cache_show: str) -> str:
    """The versioned kernel package the ``linux-image-cloud-amd64`` meta package depends on."""
    for line in apt_cache_show.splitlines():
        if line.startswith("Depends:"):
            for item in line.removeprefix("Depends:").split(","):
                name = item.split("(")[0].strip()
                if name.startswith("linux-image-") and name.endswith("-cloud-amd64"):
                    return name
    raise LabError(
        f"cannot tell which kernel {KERNEL_META} depends on",
        hint="apt-get update (the machine's package lists may be missing)",
    )


def parse_version(apt_cache_show: str) -> str:
    """The ``Version:`` of the first stanza of ``apt-cache show``."""
    for line in apt_cache_show.splitlines():
        if line.startswith("Version:"):
            return line.removeprefix("Version:").strip()
    raise LabError("apt-cache show printed no Version")


def plan_image(rootfs_key: str) -> ImagePlan:
    """The plan for today's archive: the newest cloud kernel the machine's apt knows."""
    meta = run(["apt-cache", "show", "--no-all-versions", KERNEL_META], check=False)
    if not meta.strip():
        raise LabError(f"apt knows no package {KERNEL_META}", hint="apt-get update")
    package = parse_kernel_dependency(meta)
    version = parse_version(run(["apt-cache", "show", "--no-all-versions", package]))
    return ImagePlan(rootfs_key=rootfs_key, kernel_package=package, kernel_version=version)


def init_script(modules: Iterable[str] = VIRTIO_MODULES) -> str:
    """The initramfs' ``/init``: load the drivers, mount the root, apply the seed, switch."""
    loads = " ".join(modules)
    return f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in {loads}; do
  insmod /modules/$m.ko || echo "berth-initramfs: cannot load $m"
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
if ! mount -t ext4 -o rw /dev/vda /newroot; then
  echo "berth-initramfs: cannot mount /dev/vda"; sleep 5; poweroff -f
fi
if [ -b /dev/vdb ] && [ ! -e /newroot/{SEED_DIR}/applied ]; then
  mount -t ext4 -o ro /dev/vdb /seed && cp -a /seed/files/. /newroot/ && \\
    touch /newroot/{SEED_DIR}/applied && echo "berth-initramfs: identity applied"
  umount /seed
fi
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
"""


def cpio_newc(entries: Iterable[tuple[str, int, bytes]]) -> bytes:
    """An uncompressed ``newc`` cpio archive (the format the kernel unpacks as initramfs) of
    ``(path, mode, content)`` entries; directories have ``stat.S_IFDIR`` modes and no content."""
    out = io.BytesIO()

    def member(name: str, mode: int, data: bytes, ino: int) -> None:
        encoded = name.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(mode) else 1
        fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields))
        out.write(encoded)
        out.write(b"\0" * (-(110 + len(encoded)) % 4))
        out.write(data)
        out.write(b"\0" * (-len(data) % 4))

    ino = 1
    for path, mode, data in entries:
        member(path, mode, data, ino)
        ino += 1
    member("TRAILER!!!", 0, b"", 0)
    return out.getvalue()


def initramfs_entries(busybox: bytes, modules: dict[str, bytes]) -> list[tuple[str, int, bytes]]:
    """The initramfs' members: busybox, the ``/init`` script, the modules, empty mount points."""
    directory = stat.S_IFDIR | 0o755
    entries: list[tuple[str, int, bytes]] = [
        (d, directory, b"") for d in ("bin", "dev", "proc", "sys", "newroot", "seed", "modules")
    ]
    entries.append(("bin/busybox", stat.S_IFREG | 0o755, busybox))
    entries.append(("init", stat.S_IFREG | 0o755, init_script(modules).encode()))
    entries += [(f"modules/{n}.ko", stat.S_IFREG | 0o644, d) for n, d in modules.items()]
    return entries


def find_module(modules_dir: Path, name: str) -> Path:
    """The ``.ko`` file of module ``name`` below ``/lib/modules/<release>``."""
    found = sorted(modules_dir.rglob(f"{name}.ko"))
    if not found:
        raise LabError(f"the cloud kernel has no module {name}.ko under {modules_dir}")
    return found[0]


def ensure_base_image(rootfs: Path, *, cache: Path | None = None) -> tuple[BaseImage, bool]:
    """The cached base image over ``rootfs`` (built first if missing); and whether built now."""
    cache = cache or cache_dir()
    rootfs_key = rootfs.name.removeprefix("rootfs-")
    plan = plan_image(rootfs_key)
    target = BaseImage(cache / f"vm-{plan.key()}")
    marker = target.directory / "image.json"
    if marker.is_file():
        return target, False
    require_root()
    require_tools("busybox", "mkfs.ext4", "apt-get", "chroot")
    with file_lock(cache / ".vm-image.lock"):
        if marker.is_file():
            return target, False
        for stale in cache.glob(".vm-build-*"):
            remove_tree(stale)
        scratch = cache / f".vm-build-{plan.key()}-{os.getpid()}"
        try:
            _build(plan, rootfs, scratch)
            (scratch / "image.json").write_text(
                json.dumps({"key": plan.key(), **plan.__dict__}, default=list) + "\n"
            )
            scratch.rename(target.directory)
        finally:
            remove_tree(scratch)
    return target, True


def _build(plan: ImagePlan, rootfs: Path, scratch: Path) -> None:
    build_image(plan, rootfs, scratch)


def build_image(
    plan: ImagePlan,
    rootfs: Path,
    scratch: Path,
    *,
    customise: Callable[[Path], None] | None = None,
) -> None:
    """Build ``disk.raw``, ``vmlinuz`` and ``initrd.img`` into ``scratch``: the lab's image,
    then ``customise(tree)`` (e.g. the Vagrant box's layer) before the tree becomes ext4."""
    started = time.monotonic()
    tree, debs = scratch / "tree", scratch / "debs"
    debs.mkdir(parents=True)
    tree.mkdir()
    run(["cp", "-a", f"{rootfs}/.", f"{tree}/"])
    run(
        ["apt-get", "download", "-q", f"{plan.kernel_package}={plan.kernel_version}"],
        cwd=debs,
    )
    run(["apt-get", "download", "-q", *plan.extra_packages], cwd=debs)
    kernel_deb = next(debs.glob("linux-image-*.deb"))
    # Unpacked aside: tar would replace the tree's /lib -> usr/lib symlink with a directory.
    kernel = scratch / "kernel"
    run(["dpkg-deb", "-x", str(kernel_deb), str(kernel)])
    release = plan.kernel_release
    shutil.copy2(kernel / f"boot/vmlinuz-{release}", scratch / "vmlinuz")
    (tree / "usr/lib/modules").mkdir(parents=True, exist_ok=True)
    (kernel / "lib/modules" / release).rename(tree / "usr/lib/modules" / release)
    remove_tree(kernel)
    # kmod and udev the Debian way (maintainer scripts run in the tree; nothing starts: no init)
    inside = tree / "var/tmp/berth-debs"
    inside.mkdir(parents=True)
    extra = sorted(p for p in debs.glob("*.deb") if p != kernel_deb)
    for deb in extra:
        shutil.copy2(deb, inside / deb.name)
    run(["chroot", str(tree), "dpkg", "-i", *(f"/var/tmp/berth-debs/{d.name}" for d in extra)])
    shutil.rmtree(inside)
    run(["chroot", str(tree), "depmod", "-a", release])
    _customise(tree)
    if customise is not None:
        customise(tree)
    modules = tree / "lib/modules" / release
    (scratch / "initrd.img").write_bytes(
        cpio_newc(
            initramfs_entries(
                Path(shutil.which("busybox") or "/bin/busybox").read_bytes(),
                {m: find_module(modules, m).read_bytes() for m in VIRTIO_MODULES},
            )
        )
    )
    disk = scratch / "disk.raw"
    run(["mkfs.ext4", "-q", "-F", "-L", "berth-root", "-d", str(tree), str(disk), DISK_SIZE])
    remove_tree(tree)
    remove_tree(debs)
    (scratch / "build-seconds").write_text(f"{time.monotonic() - started:.1f}\n")


def _customise(tree: Path) -> None:
    """What a VM needs that a container gets from outside: its network set up by itself, a
    root filesystem entry, and no serial getty waiting on a terminal nobody opens."""
    system = tree / "etc/systemd/system"
    (system / "berth-lab-net.service").write_text(NET_UNIT)
    wants = system / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "berth-lab-net.service"
    if not link.is_symlink():
        link.symlink_to("/etc/systemd/system/berth-lab-net.service")
    (tree / "etc/fstab").write_text("LABEL=berth-root / ext4 defaults,errors=remount-ro 0 1\n")
    (tree / SEED_DIR).mkdir(parents=True, exist_ok=True)
    (tree / "boot").mkdir(exist_ok=True)


def write_seed(
    path: Path, *, hostname: str, address: str, files: dict[str, tuple[bytes, int]]
) -> None:
    """A VM's seed disk (small ext4): ``files`` (relative path -> (content, mode)) plus its
    hostname and address, copied into its root by the initramfs on first boot."""
    staging = path.with_name(path.name + ".d")
    remove_tree(staging)
    top = staging / "files"
    everything = {
        "etc/hostname": (f"{hostname}\n".encode(), 0o644),
        f"{SEED_DIR}/address": (f"{address}\n".encode(), 0o644),
        **files,
    }
    for relative, (content, mode) in everything.items():
        target = top / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        target.chmod(mode)
    for private in (top / "root", top / "root/.ssh"):
        if private.is_dir():
            private.chmod(0o700)
    path.unlink(missing_ok=True)
    run(["mkfs.ext4", "-q", "-F", "-d", str(staging), str(path), "4M"])
    remove_tree(staging)
