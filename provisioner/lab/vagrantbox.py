"""A Vagrant box for vagrant-libvirt built from the VM lab's base image (``berth lab box``).

The box is the lab's image (:mod:`provisioner.lab.vmimage`: the lab's Debian rootfs, Debian's
cloud kernel, our busybox initramfs) plus what Vagrant expects of a box and the lab never needed:

* a ``vagrant`` user with password-less sudo (``sudo`` installed from the machine's archive, as
  the image's other extra packages) whose SSH key is the box's own key pair: the private half
  ships in the box and the box's ``Vagrantfile`` names it (no well-known insecure key);
* DHCP on every NIC through systemd-networkd (vagrant-libvirt's management network hands out
  the address Vagrant connects to; ``private_network`` entries get their own networkd files
  from Vagrant, which sort first and so win for their NIC), with the MAC as DHCP client id;
* a fresh machine-id and fresh SSH host keys per machine, made at first boot (a box is copied
  to every machine: nothing in it may be machine-specific);
* a clock kept in step with QEMU's RTC (no time server is reachable), and no TSC clocksource
  (emulated, it runs fast under load);
* no lab address unit (the lab's seed disk never exists under Vagrant).

The disk has no bootloader, so the box's ``Vagrantfile`` boots the kernel and initramfs shipped
beside it directly (vagrant-libvirt's ``kernel``/``initrd``/``cmd_line``), and picks QEMU's TCG
(``driver = "qemu"``) unless ``BERTH_LIBVIRT_DRIVER=kvm`` says the machine's KVM works. The
result is a plain ``.box`` (tar) file: ``vagrant box add --name berth/bookworm FILE``.
Nothing is downloaded except the .debs apt fetches from the machine's configured archive.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from provisioner.lab.locks import file_lock
from provisioner.lab.rootfs import cache_dir
from provisioner.lab.system import remove_tree, require_root, require_tools, run
from provisioner.lab.vmimage import DISK_SIZE, EXTRA_PACKAGES, ImagePlan, build_image, plan_image

BOX_NAME = "berth/bookworm"
BOX_PACKAGES = (*EXTRA_PACKAGES, "sudo")
BOX_VERSION = 3  # bump when the box layer changes: older cached boxes are not reused
# tsc=unstable: under TCG on a loaded machine the emulated TSC ran minutes fast before the
# kernel's watchdog gave up on it (w1 was +319 s after a `vagrant up` at load 45: preflight's
# clock check refused the cluster); HPET follows QEMU's clock, which follows the machine's.
BOX_CMDLINE = "console=ttyS0 root=/dev/vda rw net.ifnames=0 panic=10 tsc=unstable"
KEY_NAME = "vagrant_key"  # the box's private key, beside its Vagrantfile

DHCP_NETWORK = """\
# berth box: every NIC without a more specific file (Vagrant's 50-vagrant-*) asks DHCP
[Match]
Name=eth*

[Network]
DHCP=ipv4

[DHCPv4]
ClientIdentifier=mac
"""

HOST_KEYS_UNIT = """\
[Unit]
Description=berth box: this machine's own SSH host keys (the box ships none)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
"""

# The machines have no time server to ask (no route out); QEMU's RTC follows this machine's
# clock, so a timer sets the system clock from it, as NTP would keep a real host in step.
CLOCK_SERVICE = """\
[Unit]
Description=berth box: set the clock from the RTC (QEMU's RTC follows the host's clock)

[Service]
Type=oneshot
ExecStart=/usr/sbin/hwclock --hctosys --utc
"""

CLOCK_TIMER = """\
[Unit]
Description=berth box: keep the clock in step with the RTC

[Timer]
OnBootSec=5s
OnUnitActiveSec=60s
AccuracySec=5s

[Install]
WantedBy=timers.target
"""

BOX_VAGRANTFILE = f"""\
# -*- mode: ruby -*-
# berth's box (built by `berth lab box`): Debian 12 from berth's lab image. The disk has no
# bootloader: libvirt boots the kernel and initramfs beside this file directly.
BOX_DIR = File.dirname(File.expand_path(__FILE__))

Vagrant.configure("2") do |config|
  config.vm.box_check_update = false
  config.vm.boot_timeout = 1200  # TCG on a loaded machine: Vagrant's 300 s is not enough
  config.ssh.username = "vagrant"
  config.ssh.private_key_path = File.join(BOX_DIR, "{KEY_NAME}")
  config.vm.provider :libvirt do |lv|
    # TCG unless the operator knows this machine's KVM works (BERTH_LIBVIRT_DRIVER=kvm)
    lv.driver = ENV.fetch("BERTH_LIBVIRT_DRIVER", "qemu")
    lv.cpu_mode = "custom"
    lv.cpu_model = "qemu64"
    lv.kernel = File.join(BOX_DIR, "vmlinuz")
    lv.initrd = File.join(BOX_DIR, "initrd.img")
    lv.cmd_line = "{BOX_CMDLINE}"
    lv.disk_bus = "virtio"
    lv.graphics_type = "none"
    lv.video_type = "none"
  end
end
"""

BOX_FILES = ("metadata.json", "Vagrantfile", "box.img", "vmlinuz", "initrd.img", KEY_NAME)


@dataclass(frozen=True)
class BoxResult:
    """A built (or cached) box file."""

    path: Path
    built: bool
    seconds: float


def metadata(virtual_size_gb: int) -> str:
    """The box's ``metadata.json`` (vagrant-libvirt's box format v1)."""
    return json.dumps({"provider": "libvirt", "format": "qcow2", "virtual_size": virtual_size_gb})


def customise_for_vagrant(tree: Path, public_key: str) -> None:
    """The box layer over the lab image's tree (see the module docstring)."""
    system = tree / "etc/systemd/system"
    (system / "multi-user.target.wants/berth-lab-net.service").unlink(missing_ok=True)
    (system / "berth-lab-net.service").unlink(missing_ok=True)
    network = tree / "etc/systemd/network"
    network.mkdir(parents=True, exist_ok=True)
    (network / "90-berth-box-dhcp.network").write_text(DHCP_NETWORK)
    (system / "berth-box-hostkeys.service").write_text(HOST_KEYS_UNIT)
    (system / "berth-box-clock.service").write_text(CLOCK_SERVICE)
    (system / "berth-box-clock.timer").write_text(CLOCK_TIMER)
    for key in (tree / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (tree / "etc/machine-id").write_text("")  # empty: systemd makes one per machine at boot
    (tree / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    run(["chroot", str(tree), "systemctl", "enable", "-q", "systemd-networkd.service"])
    run(["chroot", str(tree), "systemctl", "enable", "-q", "berth-box-hostkeys.service"])
    run(["chroot", str(tree), "systemctl", "enable", "-q", "berth-box-clock.timer"])
    run(["chroot", str(tree), "useradd", "--create-home", "--shell", "/bin/bash", "vagrant"])
    run(["chroot", str(tree), "usermod", "-p", "*", "vagrant"])  # no password, not locked
    sudoers = tree / "etc/sudoers.d/vagrant"
    sudoers.write_text("vagrant ALL=(ALL) NOPASSWD: ALL\n")
    sudoers.chmod(0o440)
    ssh = tree / "home/vagrant/.ssh"
    ssh.mkdir(mode=0o700)
    (ssh / "authorized_keys").write_text(public_key.strip() + "\n")
    (ssh / "authorized_keys").chmod(0o600)
    run(["chroot", str(tree), "chown", "-R", "vagrant:vagrant", "/home/vagrant/.ssh"])


def box_key(rootfs_key: str, image_key: str) -> str:
    """The cache key of a box: its image's plan and the box layer's version."""
    blob = json.dumps({"rootfs": rootfs_key, "image": image_key, "box": BOX_VERSION})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def ensure_box(rootfs: Path, *, cache: Path | None = None) -> BoxResult:
    """The cached box over ``rootfs`` (built first if missing): ``<cache>/box-<key>/berth.box``."""
    started = time.monotonic()
    cache = cache or cache_dir()
    rootfs_key = rootfs.name.removeprefix("rootfs-")
    plan = replace(plan_image(rootfs_key), extra_packages=BOX_PACKAGES)
    directory = cache / f"box-{box_key(rootfs_key, plan.key())}"
    box = directory / "berth.box"
    if box.is_file():
        return BoxResult(box, built=False, seconds=time.monotonic() - started)
    require_root()
    require_tools("busybox", "mkfs.ext4", "apt-get", "chroot", "qemu-img", "ssh-keygen", "tar")
    with file_lock(cache / ".vm-box.lock"):
        if box.is_file():
            return BoxResult(box, built=False, seconds=time.monotonic() - started)
        for stale in cache.glob(".box-build-*"):
            remove_tree(stale)
        scratch = cache / f".box-build-{os.getpid()}"
        try:
            _build_box(plan, rootfs, scratch)
            scratch.rename(directory)
        finally:
            remove_tree(scratch)
    return BoxResult(box, built=True, seconds=time.monotonic() - started)


def _build_box(plan: ImagePlan, rootfs: Path, scratch: Path) -> None:
    scratch.mkdir(parents=True)
    content = scratch / "content"
    content.mkdir()
    key = content / KEY_NAME
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "berth-box", "-f", str(key)])
    public_key = key.with_suffix(".pub").read_text()
    key.with_suffix(".pub").unlink()
    image = scratch / "image"
    build_image(plan, rootfs, image, customise=lambda tree: customise_for_vagrant(tree, public_key))
    run(["qemu-img", "convert", "-O", "qcow2", str(image / "disk.raw"), str(content / "box.img")])
    shutil.move(image / "vmlinuz", content / "vmlinuz")
    shutil.move(image / "initrd.img", content / "initrd.img")
    remove_tree(image)
    (content / "Vagrantfile").write_text(BOX_VAGRANTFILE)
    (content / "metadata.json").write_text(metadata(int(DISK_SIZE.removesuffix("G"))) + "\n")
    run(["tar", "-cf", str(scratch / "berth.box"), "-C", str(content), *BOX_FILES])
    remove_tree(content)
