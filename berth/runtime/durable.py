"""Records that must survive a power cut whole: temp file, fsync, rename, fsync the directory.

A rename alone is atomic against a crash of the process, not of the machine: the new name
can reach the disk before the data (ext4 flushes early only for a rename over an existing
file), leaving an empty or torn record under the real name after a power cut, or the old
one, or none. The runtime's records of what exists on the node (a sandbox and its network
attachment, a container, a verified blob, an image) must say either the old thing or the new
thing after a reboot, or the agent acts on a record that lies (issue 23's VM test lost a
container record that way).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make the directory's entries (a rename into it) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(
    path: Path, data: bytes, *, mode: int | None = None, durable: bool = False
) -> None:
    """Replace ``path`` with ``data`` atomically (temp file + rename: a reader sees the old
    file or the new one, never a torn one); ``durable`` also fsyncs the file and then the
    directory (see the module docstring); ``mode``: the file's permission bits (else
    mkstemp's 0600)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            if mode is not None:
                os.fchmod(out.fileno(), mode)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def write_durably(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically and durably (see the module docstring)."""
    write_atomically(path, data, mode=mode, durable=True)
