"""Reading files inside an untrusted tree (an image's root file system, a pod volume) without
ever leaving it.

An image is built by whoever pushed it: its ``/etc/passwd`` may be a symlink to
``/dev/zero`` (an unbounded read as root on the node), to a FIFO (a read that never
returns) or to ``/etc/shadow`` (a host file), and a path the node follows through the tree
with ordinary ``open()`` would follow those links *on the host*. Here every path is resolved
as if ``root`` were ``/`` (what ``openat2(RESOLVE_IN_ROOT)`` and Go's securejoin do):

* the walk holds a file descriptor per directory and opens each next element with
  ``O_NOFOLLOW`` relative to it, so a symlink swapped in mid-walk makes the open fail instead
  of being followed by the kernel;
* symlinks met on the way are read with ``readlinkat`` and re-resolved by the walk itself:
  an absolute target restarts from ``root``, ``..`` never climbs above ``root``;
* only regular files are read (checked before the open, so no device or FIFO is ever
  opened, and again on the open descriptor), and never more than ``limit`` bytes.

Pure Python on purpose (stdlib only, any kernel): the cost is one ``readlinkat`` and one
``openat`` per path element, negligible next to starting a container.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections import deque
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from berth.runtime.errors import NodeRuntimeError

MAX_SYMLINK_HOPS = 40  # Linux's MAXSYMLINKS
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeRootPath(NodeRuntimeError):
    """A path inside an untrusted tree is not what the node may read (not a regular file,
    too large, a loop of symlinks)."""


def _parts(path: str) -> list[str]:
    return [p for p in PurePosixPath("/" + path).parts[1:] if p not in ("", ".")]


@contextlib.contextmanager
def _walk(root: Path, path: str, *, follow_last: bool) -> Iterator[tuple[int, str]]:
    """Yield ``(directory fd, last element)`` for ``path`` resolved inside ``root``; the fd is
    open only within the ``with`` block. The last element is resolved too when
    ``follow_last`` (a symlink there is followed, inside ``root``)."""
    root_fd = os.open(root, _DIR_FLAGS)
    stack: list[int] = []  # descriptors of the directories below root, innermost last
    try:
        pending = deque(_parts(path))
        if not pending:
            raise UnsafeRootPath(f"{path!r} names the root directory itself, not a file")
        hops = 0
        while pending:
            part = pending.popleft()
            here = stack[-1] if stack else root_fd
            if part == "..":
                if stack:  # clamped at the root, like the kernel at "/"
                    os.close(stack.pop())
                continue
            last = not pending
            if last and not follow_last:
                yield here, part
                return
            try:
                target = os.readlink(part, dir_fd=here)
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOENT):
                    raise
                target = None
            if target is not None:
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise UnsafeRootPath(f"{path!r}: too many levels of symbolic links")
                if target.startswith("/"):
                    while stack:
                        os.close(stack.pop())
                pending.extendleft(reversed([p for p in target.split("/") if p not in ("", ".")]))
                if not pending:  # a link to the root itself
                    raise UnsafeRootPath(f"{path!r} resolves to the root directory, not a file")
                continue
            if last:
                yield here, part
                return
            # O_NOFOLLOW: if a symlink replaced this element since the readlink, fail.
            stack.append(os.open(part, _DIR_FLAGS, dir_fd=here))
        raise UnsafeRootPath(f"{path!r} resolves to a directory, not a file")
    finally:
        for fd in stack:
            os.close(fd)
        os.close(root_fd)


def read_file_in_root(root: Path, path: str, *, limit: int) -> bytes | None:
    """The content of ``path`` (e.g. ``/etc/passwd``) inside ``root``, resolved in the root;
    ``None`` when it does not exist. Raises :class:`UnsafeRootPath` when it is not a regular
    file or holds more than ``limit`` bytes."""
    where = f"{path} in the image"
    try:
        with _walk(root, path, follow_last=True) as (directory, name):
            before = os.stat(name, dir_fd=directory, follow_symlinks=False)
            if not stat.S_ISREG(before.st_mode):
                raise UnsafeRootPath(
                    f"{where} is not a regular file ({_kind(before.st_mode)}); refusing to read it"
                )
            if before.st_size > limit:
                raise UnsafeRootPath(f"{where} is larger than {limit} bytes; refusing to read it")
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
            fd = os.open(name, flags, dir_fd=directory)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None  # an element on the way is a file: the path does not exist
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeRootPath(f"{where}: a symlink appeared while resolving it") from None
        raise
    with os.fdopen(fd, "rb") as fh:
        opened = os.fstat(fh.fileno())
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (
            before.st_dev,
            before.st_ino,
        ):
            raise UnsafeRootPath(f"{where} changed while it was opened; refusing to read it")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise UnsafeRootPath(f"{where} is larger than {limit} bytes; refusing to read it")
    return data


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symlink"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def subpath_in_root(root: Path, path: str, *, mode: int = 0o755) -> Path:
    """The host path of ``path`` (a volumeMount ``subPath``) inside ``root`` (its volume),
    refusing any symlink on the way or at the end: a container can write into its volumes,
    and the node must not be tricked into bind-mounting a host directory. A missing last
    element is created as a directory, as the kubelet does; an existing one may be a
    directory or a regular file."""
    parts = _parts(path)
    if not parts:
        return root
    if ".." in parts:
        raise UnsafeRootPath(f"subPath {path!r} must not contain '..'")
    fd = os.open(root, _DIR_FLAGS)
    try:
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            try:
                info = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                os.mkdir(part, mode, dir_fd=fd)
                info = os.stat(part, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                raise UnsafeRootPath(
                    f"subPath {path!r}: {part!r} is a symlink; a subPath must be a plain path "
                    "inside its volume"
                )
            if last and (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
                break
            if not stat.S_ISDIR(info.st_mode):
                raise UnsafeRootPath(
                    f"subPath {path!r}: {part!r} is {_kind(info.st_mode)}, not a directory"
                )
            try:  # O_NOFOLLOW: a symlink swapped in since the stat fails here
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafeRootPath(
                        f"subPath {path!r}: {part!r} changed while it was resolved"
                    ) from None
                raise
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)
    return root.joinpath(*parts)
