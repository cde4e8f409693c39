"""Pod addresses allocated as the CNI ``host-local`` IPAM plugin does, on its files.

The store is host-local's (containernetworking-plugins' disk backend), so pods made by the
plugin and pods made here share one pool, either may release the other's addresses, and an
agent rolled back to the plugins finds every address still accounted for:

* ``<dataDir>/<network>/`` holds one file per allocated address, named by the address
  (``10.244.1.7``) and containing ``<container id>\\r\\n<ifname>`` (an older format held the
  id alone: still released);
* ``last_reserved_ip.0`` the last address handed out (the next search starts after it:
  round-robin, so a released address is not reused at once);
* every change happens under ``flock(LOCK_EX)`` on ``<dataDir>/<network>/lock``, the lock
  the plugin takes too.

The range is the subnet's first to last host address, the gateway skipped, one range set
(``0``): what :func:`berth.network.podnet.node_conflist` configures.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import re
from collections.abc import Iterator
from pathlib import Path

LINE_BREAK = "\r\n"
LAST_RESERVED = "last_reserved_ip.0"
_ID = re.compile(r"^[-._a-zA-Z0-9]{1,200}$")


class IpamError(Exception):
    """No address could be allocated (pool exhausted, requested address taken, bad input)."""


def check_id(container_id: str, ifname: str) -> None:
    """The owner written into an address file: one line each, no path or line breaks."""
    if not _ID.fullmatch(container_id):
        raise IpamError(f"container id {container_id!r} is not a safe IPAM owner")
    if not _ID.fullmatch(ifname):
        raise IpamError(f"interface name {ifname!r} is not a safe IPAM owner")


class HostLocalStore:
    """One network's allocations in host-local's directory."""

    def __init__(self, data_dir: Path, network: str, subnet: str, gateway: str) -> None:
        if not _ID.fullmatch(network) or network in (".", ".."):
            raise IpamError(f"network name {network!r} is not a safe directory name")
        self.dir = data_dir / network
        self.subnet = ipaddress.IPv4Network(subnet, strict=True)
        self.gateway = ipaddress.IPv4Address(gateway)
        if self.subnet.num_addresses < 4:
            raise IpamError(f"subnet {subnet} has no room for pods")
        self.first = self.subnet.network_address + 1
        self.last = self.subnet.broadcast_address - 1

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _in_range(self, ip: ipaddress.IPv4Address) -> bool:
        return self.first <= ip <= self.last

    def _owner_files(self) -> Iterator[tuple[str, str]]:
        """(file name, content stripped) of every allocation file (not lock/last-reserved)."""
        with os.scandir(self.dir) as entries:
            for entry in entries:
                if entry.name == "lock" or entry.name.startswith("last_reserved_ip"):
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    yield entry.name, _read(Path(entry.path))

    def _last_reserved(self) -> ipaddress.IPv4Address | None:
        try:
            text = (self.dir / LAST_RESERVED).read_text(encoding="ascii").strip()
            ip = ipaddress.IPv4Address(text)
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        return ip if self._in_range(ip) else None

    def _candidates(self) -> Iterator[ipaddress.IPv4Address]:
        """host-local's order: after the last reserved address, wrapping round once, the
        gateway skipped."""
        span = int(self.last) - int(self.first) + 1
        last = self._last_reserved()
        start = (int(last) - int(self.first) + 1) % span if last is not None else 0
        for step in range(span):
            ip = ipaddress.IPv4Address(int(self.first) + (start + step) % span)
            if ip != self.gateway:
                yield ip

    def _reserve(self, ip: ipaddress.IPv4Address, owner: str) -> bool:
        """Create the address's file with ``owner`` in it, atomically and only if absent:
        the content is written to a temporary file first and hard-linked to the name
        (``link`` fails if the name exists), so no reader sees an empty allocation."""
        tmp = self.dir / f".berth-tmp-{os.getpid()}-{ip}"
        _write_new(tmp, owner.encode())
        try:
            os.link(tmp, self.dir / str(ip))
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        last = self.dir / f".berth-tmp-{os.getpid()}-last"
        _write_new(last, str(ip).encode())
        os.replace(last, self.dir / LAST_RESERVED)
        return True

    def allocate(self, container_id: str, ifname: str, requested: str | None = None) -> str:
        """An address for ``container_id``/``ifname``: ``requested`` exactly, or the next
        free one. Refused, like the plugin, if the owner already holds one."""
        check_id(container_id, ifname)
        owner = container_id + LINE_BREAK + ifname
        with self.locked():
            if requested is not None:
                try:
                    ip = ipaddress.IPv4Address(requested)
                except ValueError as exc:
                    raise IpamError(f"requested IP {requested!r} is not an IPv4 address") from exc
                if not self._in_range(ip) or ip == self.gateway:
                    raise IpamError(f"requested IP {ip} is not available in range {self.subnet}")
                if not self._reserve(ip, owner):
                    raise IpamError(f"requested IP {ip} is already allocated")
                return str(ip)
            for name, content in self._owner_files():
                if content == owner:
                    raise IpamError(
                        f"{name} has been allocated to {container_id}, "
                        "duplicate allocation is not allowed"
                    )
            for ip in self._candidates():
                if self._reserve(ip, owner):
                    return str(ip)
        raise IpamError(f"no IP addresses available in range {self.subnet}")

    def release(self, container_id: str, ifname: str, hint: str | None = None) -> bool:
        """Release what ``container_id``/``ifname`` holds (either file format); ``hint`` is
        the address it is believed to hold (checked, then the directory is searched as the
        plugin does). True if something was released; releasing twice is not an error."""
        check_id(container_id, ifname)
        owner = container_id + LINE_BREAK + ifname
        if not self.dir.is_dir():
            return False
        with self.locked():
            if hint is not None:
                with contextlib.suppress(ValueError):
                    path = self.dir / str(ipaddress.IPv4Address(hint))
                    with contextlib.suppress(OSError, UnicodeDecodeError):
                        if _read(path) == owner:
                            path.unlink()
                            return True
            found = [name for name, content in self._owner_files() if content == owner]
            if not found:  # the plugin's older format: the id alone
                found = [n for n, content in self._owner_files() if content == container_id]
            for name in found:
                with contextlib.suppress(FileNotFoundError):
                    (self.dir / name).unlink()
            return bool(found)

    def owner_of(self, ip: str) -> str | None:
        """The owner (``id\r\nifname``) in ``ip``'s allocation file, if any."""
        try:
            return _read(self.dir / str(ipaddress.IPv4Address(ip)))
        except (OSError, ValueError, UnicodeDecodeError):
            return None


def _write_new(path: Path, data: bytes) -> None:
    """``data`` in a new file at ``path`` (whatever was there removed first: a crash's
    leftover, never followed if it is a symlink)."""
    path.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _read(path: Path) -> str:
    """A file's content, stripped as the plugin strips it; bytes, not text mode: text mode
    would turn the owner's ``\r\n`` into ``\n``."""
    return path.read_bytes().decode("utf-8").strip()
