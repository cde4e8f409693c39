"""Named network namespaces made and removed by the runtime itself, with ``lo`` up.

What ``ip netns add NAME`` plus the CNI ``loopback`` plugin did, in three processes per pod
start (and ``ip netns del`` plus loopback DEL, two more per pod stop), done here with a few
system calls: the namespace is a new one pinned by a bind mount of the creating thread's
``/proc/thread-self/ns/net`` onto ``<dir>/NAME``, the directory being a shared mount so the
pin shows in other mount namespaces too (as ``ip`` sets it up). Removal is a lazy unmount of
the pin and its unlink; the kernel frees the namespace (and its ``lo``) once nothing else
holds it. The pod's own network (eth0, its address, host ports) stays with the CNI plugins.

``unshare(2)`` moves only the calling thread, so the work runs in a thread started for that
one namespace and ended right after it (a pooled thread would carry the pod's namespace into
unrelated work), as :mod:`berth.runtime.netns_connect` does for its dials.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import functools
import os
import socket
import struct
import threading
from pathlib import Path
from typing import Protocol

from berth.runtime.mountinfo import mount_points

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 2
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
_IFREQ = struct.Struct("16sH14x")  # struct ifreq: the name, then ifr_flags in the union


class NamespaceMaker(Protocol):
    """Makes and removes the network namespace pinned at a path (a fake in unit tests)."""

    async def add_netns(self, path: Path) -> None: ...

    def delete_netns(self, path: Path) -> None: ...


@functools.cache
def _c() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, what: str) -> None:
    fs = fstype.encode() if fstype is not None else None
    _check(_c().mount(source.encode(), target.encode(), fs, flags, None), what)


def _mountpoints() -> set[str]:
    return set(mount_points())


def ensure_shared_dir(directory: Path) -> None:
    """``directory`` exists and is a shared mount (``ip netns`` does the same on first use):
    a namespace pinned under it then shows in mount namespaces made afterwards as well."""
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    if str(directory) not in _mountpoints():
        _mount(str(directory), str(directory), None, MS_BIND | MS_REC, f"bind {directory}")
    _mount("none", str(directory), None, MS_SHARED | MS_REC, f"make {directory} shared")


def set_link_up(name: str = "lo") -> None:
    """Set link ``name`` of the calling thread's network namespace up."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = _IFREQ.pack(name.encode(), 0)
        (_, flags) = _IFREQ.unpack(fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, request))
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, _IFREQ.pack(name.encode(), flags | IFF_UP))


def _pin_new_netns(path: Path) -> None:
    """In the calling (throwaway) thread: a new network namespace, ``lo`` up, pinned at
    ``path`` (an existing empty file)."""
    _check(_c().unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
    set_link_up("lo")
    _mount("/proc/thread-self/ns/net", str(path), "none", MS_BIND, f"pin netns at {path}")


class KernelNamespaces:
    """The real :class:`NamespaceMaker`."""

    def __init__(self) -> None:
        self._shared: set[Path] = set()
        self._lock = threading.Lock()

    async def add_netns(self, path: Path) -> None:
        """Make the namespace pinned at ``path`` (refused if something is there already)."""
        with self._lock:
            if path.parent not in self._shared:
                ensure_shared_dir(path.parent)
                self._shared.add(path.parent)
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0))
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def work() -> None:
            try:
                _pin_new_netns(path)
            except BaseException as exc:  # handed to the waiting coroutine
                loop.call_soon_threadsafe(_settle, done, exc)
                return
            loop.call_soon_threadsafe(_settle, done, None)

        threading.Thread(target=work, name=f"netns-{path.name}", daemon=True).start()
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            # the thread still finishes what it started: unpin only after it has
            with contextlib.suppress(Exception):
                await done
            self.delete_netns(path)
            raise
        except Exception:
            self.delete_netns(path)
            raise

    def delete_netns(self, path: Path) -> None:
        """Unpin and unlink ``path``; nothing there is not an error."""
        if _c().umount2(str(path).encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err not in (errno.EINVAL, errno.ENOENT):  # not a mount point / no file
                raise OSError(err, f"unmount netns {path}: {os.strerror(err)}")
        path.unlink(missing_ok=True)


def _settle(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if fut.cancelled():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc if isinstance(exc, OSError) else OSError(str(exc)))
