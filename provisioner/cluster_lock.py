"""The cluster lock: one mutating berth run per cluster at a time.

The lock is the file ``<state>/lock``. Holding it means two things at once:

* an exclusive ``flock`` on that file: the kernel frees it when the holder exits, however it
  exits, and a second process on the same machine cannot take it while the holder lives;
* a *record* in the file, written once the flock is held and emptied on release: who holds it
  (lock id, pid, user, machine, command, since), so a refused run can name the holder.

A record left behind (the holder was killed) is judged by where it was written. On this machine
the flock is the truth: if we got the flock, the recorded process is gone, and the lock is taken
over (and said so). A record from another machine (a state directory on a shared filesystem,
where ``flock`` may not reach across machines) cannot be judged from here: the run is refused,
and the message says how to break the lock once the user knows that run is over
(``berth state unlock -i SPEC LOCK_ID``, Terraform's ``force-unlock``: the id makes sure the lock
broken is the one the user looked at).

Within one process the lock is re-entrant per state directory: the CLI takes it for the whole
run, and the phases that take it again (pki, etcd) nest inside. Different processes always
exclude each other.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import getpass
import json
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from provisioner.errors import StateError

POLL_SECONDS = 0.2
"""How often a waiting run retries the lock (``flock`` has no timeout of its own)."""
_RECORD_GRACE = 2.0
"""Seconds a refused run waits for the holder's record: the holder writes it just after it got
the flock, so a run that collides at that instant may see the file still empty."""


def _machine_id() -> str:
    """This machine's identity: systemd's machine-id, else the host name."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        with contextlib.suppress(OSError):
            value = Path(path).read_text().strip()
            if value:
                return value
    return socket.gethostname()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no $USER (a bare container)
        return f"uid {os.getuid()}"


def format_duration(seconds: float) -> str:
    """``300`` → ``5m``, ``90`` → ``90s``, ``3600`` → ``1h``."""
    whole = round(seconds)
    for unit, size in (("h", 3600), ("m", 60)):
        if whole >= size and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def parse_duration(text: str) -> float:
    """``30s``, ``5m``, ``1h``, ``1h30m`` or plain seconds (``90``); ``ValueError`` otherwise."""
    value = text.strip().lower()
    if not value:
        raise ValueError("empty duration")
    if value.replace(".", "", 1).isdigit():
        return float(value)
    total = 0.0
    number = ""
    for char in value:
        if char.isdigit() or char == ".":
            number += char
        elif char in "hms" and number:
            total += float(number) * {"h": 3600, "m": 60, "s": 1}[char]
            number = ""
        else:
            raise ValueError(f"not a duration: {text!r} (write e.g. 30s, 5m, 1h)")
    if number:
        raise ValueError(f"not a duration: {text!r} (a number needs a unit: s, m or h)")
    return total


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or held) a cluster lock, as recorded in the lock file."""

    id: str
    pid: int
    user: str
    machine: str
    machine_id: str
    command: str
    since: str

    @classmethod
    def me(cls, command: str) -> LockHolder:
        return cls(
            id=secrets.token_hex(8),
            pid=os.getpid(),
            user=_user(),
            machine=socket.gethostname(),
            machine_id=_machine_id(),
            command=command,
            since=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )

    @classmethod
    def parse(cls, data: bytes) -> LockHolder | None:
        """The record in ``data``; ``None`` for an empty file or one no berth wrote."""
        try:
            raw = json.loads(data or b"null")
        except ValueError:
            return None
        if not isinstance(raw, dict) or not isinstance(raw.get("pid"), int):
            return None
        return cls(
            id=str(raw.get("id", "")),
            pid=raw["pid"],
            user=str(raw.get("user", "?")),
            machine=str(raw.get("machine", "?")),
            machine_id=str(raw.get("machine_id", "")),
            command=str(raw.get("command", "?")),
            since=str(raw.get("since", "?")),
        )

    def encode(self) -> bytes:
        return (json.dumps(asdict(self)) + "\n").encode()

    @property
    def on_this_machine(self) -> bool:
        return self.machine_id == _machine_id()

    def describe(self) -> str:
        """``pid 812 of alice on build-1, `berth apply -i c.yaml`, since 2026-…, lock id …``"""
        return (
            f"pid {self.pid} of {self.user} on {self.machine}, `{self.command}`, "
            f"since {self.since}, lock id {self.id or '?'}"
        )


class ClusterLockedError(StateError):
    """Another berth run holds the cluster (exit 9); ``holder`` names it when known."""

    def __init__(self, message: str, holder: LockHolder | None, *, hint: str) -> None:
        super().__init__(message, hint=hint)
        self.holder = holder


@dataclass
class _Held:
    fd: int
    depth: int
    holder: LockHolder


_held: dict[Path, _Held] = {}
_held_guard = threading.Lock()


def _read(fd: int) -> LockHolder | None:
    try:
        return LockHolder.parse(os.pread(fd, 4096, 0))
    except OSError:
        return None


def _unlock_hint(spec: str | None, holder: LockHolder) -> str:
    where = f"-i {spec}" if spec else "-i SPEC"
    return f"berth state unlock {where} {holder.id}"


def current_holder(lock_path: Path) -> LockHolder | None:
    """The record in ``lock_path`` (a holder that may or may not still run), if any."""
    try:
        return LockHolder.parse(lock_path.read_bytes())
    except OSError:
        return None


class ClusterLock:
    """The lock of one cluster state directory (see the module docstring)."""

    def __init__(self, root: Path, *, spec: str | None = None) -> None:
        self.root = root
        self.path = root / "lock"
        self.spec = spec  # named in the unlock hint

    @contextlib.contextmanager
    def hold(
        self,
        command: str | None = None,
        *,
        wait: float | None = None,
        say: Callable[[str], None] | None = None,
    ) -> Iterator[LockHolder]:
        """Hold the lock for the ``with`` block; ``command`` is recorded (default: this
        process's command line). Refused at once (:class:`ClusterLockedError`) when another run
        holds it, or after ``wait`` seconds of waiting; ``say`` hears that it waits, and any
        takeover of a dead holder's lock."""
        key = self.root.resolve()
        with _held_guard:
            mine = _held.get(key)
            if mine is not None:
                mine.depth += 1
        if mine is not None:
            try:
                yield mine.holder
            finally:
                with _held_guard:
                    mine.depth -= 1
            return
        me = LockHolder.me(command or " ".join(["berth", *sys.argv[1:]]))
        fd = self._acquire(me, wait=wait, say=say or (lambda _line: None))
        held = _Held(fd, 1, me)
        with _held_guard:
            _held[key] = held
        try:
            yield me
        finally:
            with _held_guard:
                del _held[key]
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # an empty record: released cleanly, nothing to take over
            os.close(fd)  # closing frees the flock

    def _acquire(self, me: LockHolder, *, wait: float | None, say: Callable[[str], None]) -> int:
        deadline = None if wait is None else time.monotonic() + wait
        announced = False
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._holder_of_busy(fd)
                os.close(fd)
                error = self._busy(holder)
            else:
                previous = _read(fd)
                if previous is None or previous.on_this_machine:
                    if previous is not None:
                        say(
                            f"taking over the cluster lock left by {previous.describe()}: "
                            f"that process is gone"
                        )
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, me.encode(), 0)
                    os.fsync(fd)
                    return fd
                os.close(fd)  # frees the flock: the remote record still stands
                error = self._remote(previous)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is None or remaining <= 0:
                raise error
            if not announced:
                say(
                    f"waiting up to {format_duration(remaining)} for the cluster lock: "
                    f"{error.message}"
                )
                announced = True
            time.sleep(min(POLL_SECONDS, remaining))

    def _holder_of_busy(self, fd: int) -> LockHolder | None:
        deadline = time.monotonic() + _RECORD_GRACE
        while True:
            holder = _read(fd)
            if holder is not None or time.monotonic() >= deadline:
                return holder
            time.sleep(0.05)  # the holder writes its record right after taking the flock

    def _busy(self, holder: LockHolder | None) -> ClusterLockedError:
        who = holder.describe() if holder else "holder unknown"
        return ClusterLockedError(
            f"cluster state {self.root} is in use by another berth run ({who})",
            holder,
            hint="wait for that run to finish (or pass --wait-lock 10m to wait for it); the lock "
            "frees itself when that run exits",
        )

    def _remote(self, holder: LockHolder) -> ClusterLockedError:
        return ClusterLockedError(
            f"cluster state {self.root} is locked by a berth run on another machine "
            f"({holder.describe()}); berth cannot tell from here whether it still runs",
            holder,
            hint=f"if that run is over (its machine crashed or it was killed), break the lock: "
            f"{_unlock_hint(self.spec, holder)}",
        )

    def break_lock(self, lock_id: str) -> LockHolder:
        """Remove the lock record ``lock_id`` left by a run that is over (``berth state
        unlock``); refuses while a process on this machine holds it, and when the lock's id
        differs (someone else holds it now)."""
        if not self.path.exists():
            raise StateError(f"cluster state {self.root} is not locked")
        fd = os.open(self.path, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._holder_of_busy(fd)
                raise StateError(
                    f"cluster state {self.root} is held by a running berth run "
                    f"({holder.describe() if holder else 'holder unknown'}); it was not unlocked",
                    hint="wait for it, or stop that process; its lock frees itself when it exits",
                ) from None
            holder = _read(fd)
            if holder is None:
                raise StateError(f"cluster state {self.root} is not locked")
            if holder.id != lock_id:
                raise StateError(
                    f"cluster state {self.root} is locked with id {holder.id} "
                    f"({holder.describe()}), not {lock_id}; it was not unlocked",
                    hint="check who holds it now; to break that lock, pass its id",
                )
            os.ftruncate(fd, 0)
            return holder
        finally:
            os.close(fd)
