"""A container's own root file system: a copy of its image's shared snapshot, made in-process.

What ``cp -a`` did (ownership, permission bits with setuid/setgid/sticky, extended
attributes such as file capabilities, access and modification times, symlinks, fifos and
hard links inside the tree), without its process and with fewer system calls: the
snapshot's listing (every entry's kind, mode, owner, times, link target, xattrs) is read
once and kept (:class:`SnapshotListing`), so a copy only *writes* — per symlink a
``symlink`` and a ``utime`` where ``cp -a`` also ran ``readlink``, ``lstat``, two
``llistxattr`` and an ``lchown``. Each inode written is a journal update on the node's disk,
which a pod burst shares with everything else (``cp -a``'s ``symlinkat`` took 0.5 ms each
on a busy lab disk, ~0.02 ms on a quiet one).

``hardlink=True`` (a read-only root) makes directories and hard-links everything else to
the snapshot, as ``cp -al`` did: safe only when the container cannot write its root (a
writable root could modify the snapshot's shared inodes, and so every other container's).

Containment: the listing is read with ``lstat``/``scandir`` and never follows a symlink;
every entry's parent directories are real directories in the snapshot (a symlink is never
descended into), created as directories in the copy before their children, and every entry
is created with ``O_EXCL``/``O_NOFOLLOW`` semantics (``mkdir``, ``symlink``, ``mknod``
fail on an existing name): a symlink of the image cannot redirect a later write onto the
host. Device nodes are never made (the unpacker never creates them; see
:mod:`berth.runtime.unpack`); sockets neither (nothing can listen on a copied one).
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

DIR, FILE, SYMLINK, FIFO, HARDLINK = range(5)
CACHE_ENTRIES = 20_000
"""Listings kept, in entries over all snapshots (~250 bytes each): the agent's memory is
bounded (a snapshot larger than this is read again per copy instead of being kept)."""
_COPY_CHUNK = 1 << 30


class CopyError(Exception):
    """The copy failed (the message names the entry)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One name in the snapshot. ``target``: a symlink's content, or for ``HARDLINK`` the
    relative path of the first name of the same inode (copied before it)."""

    path: str
    kind: int
    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int
    target: str = ""
    xattrs: tuple[tuple[str, bytes], ...] = ()


def _xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:  # a file system without xattrs
        return ()
    found = []
    for name in names:
        try:
            found.append((name, os.getxattr(path, name, follow_symlinks=False)))
        except OSError:
            continue
    return tuple(found)


def list_snapshot(root: Path) -> list[Entry]:
    """Every entry under ``root`` (``root`` itself first, as ""), parents before children;
    directories are never left through a symlink."""
    top = os.lstat(root)
    if not stat.S_ISDIR(top.st_mode):
        raise CopyError(f"{root} is not a directory")
    entries = [_entry("", top, "", _xattrs(str(root)))]
    first_name: dict[tuple[int, int], str] = {}
    pending = [""]
    while pending:
        relative = pending.pop()
        directory = os.path.join(root, relative) if relative else str(root)
        with os.scandir(directory) as listing:
            children = sorted(listing, key=lambda e: e.name)
        for child in children:
            path = os.path.join(relative, child.name) if relative else child.name
            st = child.stat(follow_symlinks=False)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                entries.append(_entry(path, st, "", _xattrs(child.path)))
                pending.append(path)
                continue
            if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode) or stat.S_ISFIFO(mode)):
                continue  # device nodes and sockets are never copied (module docstring)
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in first_name:
                    entries.append(Entry(path, HARDLINK, 0, 0, 0, 0, 0, first_name[key]))
                    continue
                first_name[key] = path
            target = os.readlink(child.path) if stat.S_ISLNK(mode) else ""
            entries.append(_entry(path, st, target, _xattrs(child.path)))
    return entries


def _entry(
    path: str, st: os.stat_result, target: str, xattrs: tuple[tuple[str, bytes], ...]
) -> Entry:
    mode = st.st_mode
    kind = (
        DIR
        if stat.S_ISDIR(mode)
        else SYMLINK
        if stat.S_ISLNK(mode)
        else FIFO
        if stat.S_ISFIFO(mode)
        else FILE
    )
    return Entry(
        path,
        kind,
        stat.S_IMODE(mode),
        st.st_uid,
        st.st_gid,
        st.st_atime_ns,
        st.st_mtime_ns,
        target,
        xattrs,
    )


class SnapshotListing:
    """Listings of snapshots by path, read once (bounded: :data:`CACHE_ENTRIES`). A
    snapshot is immutable once unpacked (renamed into place whole, removed whole by a
    prune): a listing is reused while the snapshot directory is the same inode with the
    same modification time, else read again."""

    def __init__(self, limit: int = CACHE_ENTRIES) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._kept: OrderedDict[str, tuple[tuple[int, int, int], list[Entry]]] = OrderedDict()
        self._size = 0

    def get(self, root: Path) -> list[Entry]:
        st = os.lstat(root)
        identity = (st.st_dev, st.st_ino, st.st_mtime_ns)
        key = str(root)
        with self._lock:
            known = self._kept.get(key)
            if known is not None and known[0] == identity:
                self._kept.move_to_end(key)
                return known[1]
        entries = list_snapshot(root)
        if len(entries) > self.limit:
            return entries
        with self._lock:
            old = self._kept.pop(key, None)
            if old is not None:
                self._size -= len(old[1])
            self._kept[key] = (identity, entries)
            self._size += len(entries)
            while self._size > self.limit:
                _, (_, dropped) = self._kept.popitem(last=False)
                self._size -= len(dropped)
        return entries

    def forget(self) -> None:
        with self._lock:
            self._kept.clear()
            self._size = 0


def _umask() -> int:
    """The process's umask, read without changing it (``os.umask`` sets it for every thread)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def copy_root(source: Path, target: Path, entries: list[Entry], *, hardlink: bool) -> None:
    """Copy the snapshot ``source`` (listed as ``entries``) into the new directory ``target``
    (it must not exist; its parent must). Raises :class:`CopyError` naming the entry."""
    umask = _umask()
    owner = (os.geteuid(), os.getegid())
    src, dst = str(source), str(target)
    directories: list[Entry] = []
    for entry in entries:
        to = os.path.join(dst, entry.path) if entry.path else dst
        try:
            if entry.kind == DIR:
                # 0700 until its children are in (a read-only directory would refuse them
                # to a non-root caller); its own mode and times are set last.
                os.mkdir(to, 0o700)
                _own(to, entry, owner)
                directories.append(entry)
            elif hardlink or entry.kind == HARDLINK:
                origin = entry.target if entry.kind == HARDLINK else entry.path
                base = dst if entry.kind == HARDLINK else src
                os.link(os.path.join(base, origin), to, follow_symlinks=False)
            elif entry.kind == SYMLINK:
                os.symlink(entry.target, to)
                _own(to, entry, owner)
                _finish(to, entry, None)
            elif entry.kind == FIFO:
                os.mkfifo(to, 0o600)
                _own(to, entry, owner)
                os.chmod(to, entry.mode)  # made just now: not a symlink
                _finish(to, entry, None)
            else:
                _copy_file(os.path.join(src, entry.path), to, entry, owner, umask)
        except OSError as exc:
            raise CopyError(f"{entry.path or '.'}: {exc.strerror or exc}") from None
    for entry in reversed(directories):  # children first: their mtimes are final then
        to = os.path.join(dst, entry.path) if entry.path else dst
        try:
            os.chmod(to, entry.mode)  # made by the loop above: a directory, not a symlink
            _finish(to, entry, None)
        except OSError as exc:
            raise CopyError(f"{entry.path or '.'}: {exc.strerror or exc}") from None


def _own(path: str, entry: Entry, owner: tuple[int, int]) -> None:
    """The entry's owner, when it is not the one a new inode gets already (a directory of
    the copy is never setgid while its children are made: they get our gid)."""
    if (entry.uid, entry.gid) != owner:
        try:
            os.chown(path, entry.uid, entry.gid, follow_symlinks=False)
        except PermissionError:
            if os.geteuid() == 0:
                raise
            # as cp -a: a non-root caller keeps the copy as its own


def _finish(path: str, entry: Entry, fd: int | None) -> None:
    """Extended attributes (after the owner: a chown drops file capabilities), then times.
    An attribute the target refuses is dropped, as ``cp -a`` did."""
    for name, value in entry.xattrs:
        try:
            if fd is not None:
                os.setxattr(fd, name, value)
            else:
                os.setxattr(path, name, value, follow_symlinks=False)
        except OSError:
            continue
    times = (entry.atime_ns, entry.mtime_ns)
    if fd is not None:
        os.utime(fd, ns=times)
    else:
        os.utime(path, ns=times, follow_symlinks=False)


def _copy_file(source: str, target: str, entry: Entry, owner: tuple[int, int], umask: int) -> None:
    created = entry.mode & 0o777
    src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dst = os.open(
            target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, created
        )
        try:
            _copy_data(src, dst)
            changed_owner = (entry.uid, entry.gid) != owner
            if changed_owner:
                try:
                    os.fchown(dst, entry.uid, entry.gid)
                except PermissionError:
                    if os.geteuid() == 0:
                        raise
            # chown drops setuid/setgid: the mode goes after it, and only when what open()
            # made (the umask applied) is not the entry's mode already
            if entry.mode != created & ~umask or (changed_owner and entry.mode & 0o6000):
                os.fchmod(dst, entry.mode)
            _finish(target, entry, dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _copy_data(src: int, dst: int) -> None:
    """In the kernel: copy_file_range, else sendfile (a file system or kernel without it)."""
    try:
        while os.copy_file_range(src, dst, _COPY_CHUNK):
            pass
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    # nothing was written by a copy_file_range that failed with these: start over
    os.lseek(src, 0, os.SEEK_SET)
    os.lseek(dst, 0, os.SEEK_SET)
    os.ftruncate(dst, 0)
    offset = 0
    while sent := os.sendfile(dst, src, offset, _COPY_CHUNK):
        offset += sent
