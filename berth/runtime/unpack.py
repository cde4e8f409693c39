"""Apply OCI layer tars to a root file system: whiteouts, and no way out of the root.

Safety rules (a layer is untrusted input):

* entry names are normalised; any ``..`` component is rejected outright;
* every path is resolved *inside* the root: symlinks met on the way (including absolute ones
  and ones climbing with ``..``) are followed as if the root were ``/``, so an entry can never
  be written through a symlink to a place outside the root;
* hard links may only point at files inside the root (resolved the same way);
* files are created with ``O_NOFOLLOW`` after removing whatever was at that name;
* device nodes are never created (skipped); whiteouts must name a plain file.

Whiteouts follow the OCI image spec: ``.wh.NAME`` deletes ``NAME`` from lower layers and
``.wh..wh..opq`` empties its directory of lower-layer content. Entries of the layer being
applied are never removed by its own whiteouts.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO, cast

from berth.runtime.digest import Digest
from berth.runtime.errors import UnsafeLayer

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
_MAX_SYMLINK_HOPS = 255
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


_OVERLAY_XATTRS = ("SCHILY.xattr.trusted.overlay.", "SCHILY.xattr.user.overlay.")


class _HashingReader(io.RawIOBase):
    """Hashes every byte read through it (the layer's diff id is over the uncompressed tar)."""

    def __init__(self, inner: BinaryIO) -> None:
        super().__init__()
        self._inner = inner
        self.sha = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.sha.update(data)
        return n

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def entry_parts(name: str) -> tuple[str, ...]:
    """Normalise a tar member name into path components; reject ``..`` anywhere."""
    parts = [p for p in PurePosixPath("/" + name).parts[1:] if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayer(f"layer entry {name!r} contains '..': refusing path traversal")
    return tuple(parts)


def whiteout_target(name: str, base: str) -> str:
    """What the whiteout entry ``base`` (``.wh.NAME``) deletes: ``NAME``, which must be a plain
    file name. ``.wh.`` (nothing), ``.wh..`` and ``.wh...`` (the directory itself or its
    parent) and other ``.wh..wh.`` names (reserved by the OCI image spec; only the opaque
    marker is defined) are refused: applied naively they delete the root or what is above it.
    """
    target = base[len(WHITEOUT_PREFIX) :]
    if target in ("", ".", "..") or target.startswith(WHITEOUT_PREFIX):
        raise UnsafeLayer(
            f"layer entry {name!r} is not a valid whiteout (.wh.<file name>, or .wh..wh..opq)"
        )
    return target


def resolve_in_root(root: Path, parts: tuple[str, ...], *, follow_last: bool = False) -> Path:
    """The real location of ``parts`` under ``root``, following symlinks as if chrooted.

    Every symlink on the way (and the last component when ``follow_last``) is resolved with
    ``root`` as ``/``; ``..`` never climbs above ``root``. The result is always inside ``root``.
    """
    resolved: list[str] = []
    pending = list(parts)
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        is_last = not pending
        if (follow_last or not is_last) and candidate.is_symlink():
            hops += 1
            if hops > _MAX_SYMLINK_HOPS:
                raise UnsafeLayer(f"too many symlinks resolving /{'/'.join(parts)}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            pending = [p for p in target.split("/") if p] + pending
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _open_layer(stream: BinaryIO) -> BinaryIO:
    head = stream.read(4)
    rest = cast(BinaryIO, _Prefixed(head, stream))
    if head.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=rest, mode="rb")  # type: ignore[return-value]
    if head.startswith(_ZSTD_MAGIC):
        raise UnsafeLayer("zstd-compressed layers are not supported (use gzip or plain tar)")
    return rest


class _Prefixed(io.RawIOBase):
    """A stream with some already-read bytes put back in front (for magic sniffing)."""

    def __init__(self, head: bytes, inner: BinaryIO) -> None:
        super().__init__()
        self._head = head
        self._inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


# An image's files, unpacked, may not exceed this (a few MiB of gzip can expand to any size).
MAX_UNPACKED_BYTES = 64 << 30
# Downloads and unpacking stop when they would leave less than this free on the file system
# (the node keeps working).
FREE_SPACE_RESERVE = 256 << 20


def free_bytes(directory: Path) -> int:
    """Bytes an unprivileged writer may still use on ``directory``'s file system."""
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


class UnpackBudget:
    """How many bytes of regular files an image's layers may still write: a bound on the
    total and on the free space left, so a compression bomb cannot fill the node's disk."""

    def __init__(self, max_bytes: int = MAX_UNPACKED_BYTES) -> None:
        self.max_bytes = max_bytes
        self.used = 0

    def spend(self, size: int, directory: Path, *, what: str) -> None:
        self.used += size
        if self.used > self.max_bytes:
            raise UnsafeLayer(
                f"layer entry {what!r}: the image unpacks to more than {self.max_bytes} bytes; "
                "refusing it (compression bomb?)"
            )
        if size + FREE_SPACE_RESERVE > free_bytes(directory):
            raise UnsafeLayer(
                f"layer entry {what!r} ({size} bytes) does not fit on the node's disk "
                f"(keeping {FREE_SPACE_RESERVE} bytes free); free disk space on the node"
            )


class LayerApplier:
    """Applies one layer to ``root``; see the module docstring for the rules."""

    def __init__(self, root: Path, *, budget: UnpackBudget | None = None) -> None:
        self.root = root
        self.budget = budget or UnpackBudget()
        self._as_root = os.geteuid() == 0
        self._created: set[tuple[str, ...]] = set()
        self._dir_times: list[tuple[Path, float]] = []

    def apply(self, stream: BinaryIO) -> Digest:
        """Apply the (optionally gzip-compressed) tar in ``stream``; returns its diff id."""
        reader = _HashingReader(_open_layer(stream))
        buffered = io.BufferedReader(reader, buffer_size=1 << 16)
        try:
            with tarfile.open(fileobj=buffered, mode="r|") as tar:
                for member in tar:
                    self._apply_member(tar, member)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            if isinstance(exc, UnsafeLayer):
                raise
            raise UnsafeLayer(f"layer is not a readable tar archive: {exc}") from exc
        buffered.read()  # tar stops at the end-of-archive marker; hash the padding too
        reader.drain()
        for path, mtime in reversed(self._dir_times):
            with contextlib.suppress(OSError):
                os.utime(path, (mtime, mtime), follow_symlinks=False)
        return Digest("sha256:" + reader.sha.hexdigest())

    def _apply_member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = entry_parts(member.name)
        if not parts:
            return  # the root directory itself
        base = parts[-1]
        parent_parts = parts[:-1]
        if base == OPAQUE_WHITEOUT:
            self._opaque(parent_parts)
            return
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout((*parent_parts, whiteout_target(member.name, base)))
            return
        parent = resolve_in_root(self.root, parent_parts, follow_last=True)
        if not parent.is_dir():
            # Directories are usually listed before their content, but tar does not promise it.
            parent.mkdir(parents=True, exist_ok=True)
        target = parent / base
        if member.isdir():
            if target.is_symlink() or (target.exists() and not target.is_dir()):
                _remove(target)
            target.mkdir(exist_ok=True)
        else:
            _remove(target)
            if member.isreg():
                self._write_file(tar, member, target)
            elif member.issym():
                os.symlink(member.linkname, target)
            elif member.islnk():
                source = resolve_in_root(self.root, entry_parts(member.linkname))
                if not source.is_file() or source.is_symlink():
                    raise UnsafeLayer(
                        f"hard link {member.name!r} -> {member.linkname!r}: "
                        "target is not a regular file inside the image"
                    )
                os.link(source, target, follow_symlinks=False)
            elif member.isfifo():
                os.mkfifo(target, member.mode & 0o7777)
            elif member.ischr() or member.isblk():
                # Never made: a device node in an image is a device node on the node's own
                # disk, readable by whoever reaches the snapshot (a layer naming the node's
                # /dev/sda 0666). Containers get their /dev from the runtime, not the image.
                return
            else:
                return  # sparse/unknown kinds: skip rather than guess
        self._created.add(parts)
        self._set_metadata(member, target)

    def _write_file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
        self.budget.spend(member.size, target.parent, what=member.name)
        src = tar.extractfile(member)
        if src is None:
            raise UnsafeLayer(f"layer entry {member.name!r} has no data")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)

    def _set_metadata(self, member: tarfile.TarInfo, target: Path) -> None:
        if member.islnk():
            return  # a hard link shares the inode (and so the metadata) of its target
        if self._as_root:
            with contextlib.suppress(OSError):
                os.lchown(target, member.uid, member.gid)
        if not member.issym():
            os.chmod(target, member.mode & 0o7777)
        if member.isdir():
            self._dir_times.append((target, float(member.mtime)))
        else:
            with contextlib.suppress(OSError, NotImplementedError):
                os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)
        for key, value in member.pax_headers.items():
            # never overlayfs' own attributes: a container's root is an overlay over the
            # snapshot, and an image must not forge its whiteouts, redirects or metacopies
            if key.startswith(_OVERLAY_XATTRS):
                continue
            if key.startswith("SCHILY.xattr.") and self._as_root:
                with contextlib.suppress(OSError):
                    os.setxattr(
                        target,
                        key[len("SCHILY.xattr.") :],
                        value.encode("utf-8", "surrogateescape"),
                        follow_symlinks=False,
                    )

    def _whiteout(self, parts: tuple[str, ...]) -> None:
        if parts in self._created:
            return
        parent = resolve_in_root(self.root, parts[:-1], follow_last=True)
        _remove(parent / parts[-1])

    def _opaque(self, dir_parts: tuple[str, ...]) -> None:
        directory = resolve_in_root(self.root, dir_parts, follow_last=True)
        if not directory.is_dir():
            return
        for child in directory.iterdir():
            if (*dir_parts, child.name) not in self._created:
                _remove(child)


def apply_layer(root: Path, stream: BinaryIO, *, budget: UnpackBudget | None = None) -> Digest:
    """Apply one layer tar (plain or gzip) from ``stream`` to ``root``; returns its diff id.
    ``budget`` bounds what the unpacked files may take (shared by the layers of an image)."""
    return LayerApplier(root, budget=budget).apply(stream)
