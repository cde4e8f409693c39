"""A container's root file system as an overlayfs mount over the image's shared snapshot.

Per container (as containerd's overlayfs snapshotter does): ``lowerdir`` = the image's unpacked
snapshot (shared, never written), ``upperdir`` and ``workdir`` in the container's bundle,
merged at ``<bundle>/rootfs``. Making one is one mount(2), where ``cp -a`` of the snapshot was
a process copying every file (a large share of a node's CPU per pod start under a burst).

:func:`probe` finds out once (a real test mount where the bundles live, not a guess from
``/proc/filesystems``) whether this node can: an upper directory on an overlay file system is
refused by the kernel (a container host's or an nspawn host's root), and old kernels do not
know the options. Where it cannot, the runtime keeps copying.

Mount options: ``index=off`` (an index records the lower directory's identity in the upper:
a lower on an overlay itself, as in the lab, cannot give the file handles it needs, and a
kernel built with the index on by default would refuse or bind bundles to one snapshot
inode), ``xino=off`` (no reliance on spare inode-number bits: lower and upper may be on
different file systems, e.g. the snapshot on a host's overlay and the bundles on ext4, where
``xino`` may not fit). Not ``userxattr``: berth mounts as root in the initial user namespace,
and ``userxattr`` would make the kernel trust ``user.overlay.*`` attributes, which any file
owner (or an image layer's PAX headers) can set; the ``trusted.overlay.*`` ones need
``CAP_SYS_ADMIN``, and the layer unpacker refuses to write them from an image.

A bundle whose root is mounted is never removed through the mount: :func:`remove_bundle`
unmounts everything at or below the bundle (lazily when busy: the path is detached at once)
and checks nothing is left before it deletes a file.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import shutil
import stat
import tempfile
from pathlib import Path

from berth.runtime.mountinfo import mount_points

OPTIONS = "index=off,xino=off"
MNT_DETACH = 2
# Characters that would split or escape the overlay's option string (a path holding a comma
# could name a second upperdir): such a path is refused, never quoted.
_UNSAFE = frozenset(",:\\=") | frozenset(chr(c) for c in range(33)) | {"\x7f"}


class OverlayError(OSError):
    """An overlay mount or unmount failed, or a path is not fit for one."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check_path(path: Path, what: str) -> str:
    text = str(path)
    if not path.is_absolute() or any(ch in _UNSAFE for ch in text):
        raise OverlayError(
            errno.EINVAL,
            f"{what} {text!r} cannot be an overlay option: it must be an absolute path "
            "without ',', ':', '=', '\\', blanks or control characters",
        )
    return text


def _plain_dir(path: Path, what: str) -> None:
    """``path`` is a directory itself, not a symlink to one (mount(2) would follow it)."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise OverlayError(errno.ENOTDIR, f"{what} {path} is not a plain directory")


def mount(lower: Path, upper: Path, work: Path, target: Path) -> None:
    """Mount an overlay of ``lower`` (read-only) and ``upper`` (written) at ``target``."""
    for path, what in ((lower, "lowerdir"), (upper, "upperdir"), (work, "workdir"),
                       (target, "mount point")):  # fmt: skip
        _check_path(path, what)
        _plain_dir(path, what)
    options = f"lowerdir={lower},upperdir={upper},workdir={work},{OPTIONS}"
    if _libc().mount(b"overlay", os.fsencode(target), b"overlay", 0, options.encode()) != 0:
        err = ctypes.get_errno()
        raise OverlayError(err, f"mount -t overlay at {target}: {os.strerror(err)}")


def mounts_at_or_under(path: Path) -> list[Path]:
    """Mounts at ``path`` or below it, deepest first (a stack of mounts at one point: once per
    layer)."""
    real = os.path.realpath(path)
    prefix = real.rstrip("/") + "/"
    found = [p for p in mount_points() if p == real or p.startswith(prefix)]
    return [Path(p) for p in sorted(found, key=len, reverse=True)]


def unmount(target: Path) -> None:
    """Unmount ``target``; when it is busy (a process on the node holds a file in it), detach
    it (the path is free at once, the kernel lets the mount go with its last user)."""
    libc = _libc()
    path = os.fsencode(target)
    if libc.umount2(path, 0) == 0:
        return
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOENT):  # not (or no longer) a mount point
        return
    if err == errno.EBUSY and libc.umount2(path, MNT_DETACH) == 0:
        return
    err = ctypes.get_errno() if err == errno.EBUSY else err
    raise OverlayError(err, f"umount {target}: {os.strerror(err)}")


def unmount_all(directory: Path) -> None:
    """Unmount everything at or below ``directory``; raises if anything stays mounted."""
    for _ in range(16):  # mounts stacked at one point come off one per round
        mounted = mounts_at_or_under(directory)
        if not mounted:
            return
        for point in mounted:
            unmount(point)
    raise OverlayError(errno.EBUSY, f"{directory}: mounts left after unmounting: {mounted}")


def remove_bundle(bundle: Path) -> None:
    """Remove a container's bundle directory: its mounts first (the overlay root: deleting
    through it would write whiteouts, through a bind of the snapshot it would delete the
    image's files), then its files. Raises, removing nothing, when a mount cannot go."""
    unmount_all(bundle)
    shutil.rmtree(bundle, ignore_errors=True)


def prepare(snapshot: Path, bundle: Path) -> Path:
    """Make ``<bundle>/rootfs`` an overlay over ``snapshot``; returns the rootfs path.

    ``upper``, ``work`` and ``rootfs`` are made here with mkdir (which fails on anything
    already there, a symlink included) and checked again before the mount. The upper
    directory's root takes the snapshot root's owner and mode: the merged root shows the
    upper's, and a container user must be able to walk "/"."""
    _plain_dir(bundle, "bundle")
    upper, work, rootfs = bundle / "upper", bundle / "work", bundle / "rootfs"
    for path in (upper, work, rootfs):
        os.mkdir(path, 0o700)
    top = os.stat(snapshot)
    os.chown(upper, top.st_uid, top.st_gid)
    os.chmod(upper, stat.S_IMODE(top.st_mode))
    mount(snapshot, upper, work, rootfs)
    return rootfs


def probe(bundles: Path, lowers: Path) -> str | None:
    """Whether an overlay root can be made here: a real mount with an upper directory in
    ``bundles`` and a lower one in ``lowers`` (where the snapshots are), written through
    (a copy-up and a whiteout), then unmounted and removed. None when it works, else why not.
    Leftovers of a probe cut short (a crash) are unmounted and removed first."""
    lock = bundles / ".overlay-probe.lock"
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for old in sorted(bundles.glob(".overlay-probe-*")):
            with contextlib.suppress(OSError):
                remove_bundle(old)
        for old in sorted(lowers.glob(".overlay-probe-*")):
            shutil.rmtree(old, ignore_errors=True)
        top = Path(tempfile.mkdtemp(dir=bundles, prefix=".overlay-probe-"))
        lower = Path(tempfile.mkdtemp(dir=lowers, prefix=".overlay-probe-"))
        try:
            (lower / "kept").write_bytes(b"lower")
            (lower / "gone").write_bytes(b"lower")
            merged = prepare(lower, top)
            (merged / "kept").write_bytes(b"upper")  # copy-up
            (merged / "gone").unlink()  # a whiteout
            if (lower / "kept").read_bytes() != b"lower" or not (lower / "gone").exists():
                return "a write through the overlay reached its lower directory"
            if (merged / "gone").exists() or (merged / "kept").read_bytes() != b"upper":
                return "the overlay did not show its writes"
            return None
        except OSError as exc:
            return str(exc)
        finally:
            try:
                remove_bundle(top)
            finally:
                shutil.rmtree(lower, ignore_errors=True)
    finally:
        os.close(fd)
