"""Pinned host keys in OpenSSH ``known_hosts`` format.

A host is looked up by ``[address]:port`` (or bare ``address`` on port 22) and by its spec name.
Hashed entries (``|1|…``) written by ``ssh`` are understood. New pins are appended under a lock so
parallel connections pinning different hosts never lose a line.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from pathlib import Path

from provisioner.sshlib import paramiko


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style ``SHA256:…`` fingerprint (what ``ssh-keygen -lf`` prints)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def host_entry(address: str, port: int) -> str:
    """The known_hosts host field for an address and port."""
    return address if port == 22 else f"[{address}]:{port}"


_lock = threading.Lock()

_Signature = tuple[int, int, int, int]
"""What identifies one version of a file: device, inode, size, modification time (ns)."""
_shared: dict[Path, tuple[_Signature, KnownHosts]] = {}


def _signature(path: Path) -> _Signature | None:
    try:
        st = path.stat()
    except OSError:  # missing, or not reachable: read (or not) as without sharing
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class KnownHosts:
    """The pinned keys of one known_hosts file (which may not exist yet)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._keys = paramiko.HostKeys()
        if path is not None and path.exists():
            self._keys.load(str(path))

    @classmethod
    def shared(cls, path: Path | None) -> KnownHosts:
        """The pins of ``path`` as read by an earlier call while the file is unchanged, else
        read now. Connecting to 20 hosts read the cluster's known_hosts file 20 times, parsing
        every host's keys each time: a tenth of a no-op apply's CPU. A changed file (a pin
        appended, by this process or another) is read again, so nothing stale is trusted."""
        if path is None:
            return cls(None)
        with _lock:
            signature = _signature(path)
            cached = _shared.get(path)
            if signature is not None and cached is not None and cached[0] == signature:
                return cached[1]
            known = cls(path)
            if signature is not None:
                _shared[path] = (signature, known)
            return known

    def pinned(self, names: list[str], key_type: str) -> paramiko.PKey | None:
        """The key pinned for any of ``names`` with ``key_type``, if any."""
        with _lock:  # shared: another connection may be pinning into it
            for name in names:
                entry = self._keys.lookup(name)
                if entry is not None and key_type in entry:
                    return entry[key_type]
        return None

    def pinned_any(self, names: list[str]) -> list[paramiko.PKey]:
        """Every key pinned for any of ``names`` (any type)."""
        found: list[paramiko.PKey] = []
        with _lock:
            for name in names:
                entry = self._keys.lookup(name)
                if entry is not None:
                    found.extend(entry[k] for k in entry)
        return found

    def pin(self, name: str, key: paramiko.PKey) -> None:
        """Append a pin for ``name`` (already formatted with :func:`host_entry`)."""
        if self.path is None:
            raise ValueError("no known_hosts file to pin into")
        line = f"{name} {key.get_name()} {key.get_base64()}\n"
        with _lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as handle:
                handle.write(line)
            self._keys.add(name, key.get_name(), key)
