"""Connections kept open between berth runs: a per-user multiplexer, like OpenSSH's
ControlMaster/ControlPersist.

Opening an SSH connection costs a TCP and key exchange, a public-key signature, and on the host
a new sshd (about 28 ms of its CPU); a no-op ``berth apply`` on 20 hosts spends most of its time
there. With persistence on (the default of ``apply``, ``plan`` and ``verify``), the first run
starts a multiplexer process for this user (``python -m provisioner.connectors.mux DIR``) that
opens and verifies the SSH connections (:class:`~provisioner.connectors.ssh.SSHConnector`,
host keys checked exactly as without it) and keeps each open until it has been unused for the
persistence time (``--persist``, ``BERTH_SSH_PERSIST``; 60 s by default). Later runs reach it
over a Unix socket and their commands and files travel over the connections it holds: they need
neither a handshake nor paramiko.

Who may use it:

* the socket lives in a directory of its own (``$XDG_RUNTIME_DIR/berth-mux-TAG``, else
  ``/tmp/berth-mux-UID-TAG``, TAG naming this installation: another checkout or release has a
  multiplexer of its own; ``BERTH_MUX_DIR`` overrides) that must be a real directory (not a
  symbolic link) owned by this user with mode 0700, and the socket itself must be a socket (not a
  link) owned by this user with mode 0600; anything else is refused and berth connects directly
  (saying why on stderr);
* both ends check the other's user id with ``SO_PEERCRED``: the multiplexer drops a client of
  another uid, and a client refuses a multiplexer of another uid;
* a kept connection is used only for the very same target: name, address, port, user, identity
  file (path and content), known_hosts file, host-key policy, timeouts and jump host must all be
  equal, and before each reuse its host keys are checked again against the pins as they are now
  (:meth:`~provisioner.connectors.ssh.SSHConnector.check_pins`): after a removed or changed pin,
  or under a stricter policy, it is closed instead, and a new connection is made and checked
  as without the multiplexer (refused, or accepted if the pins now name the new host's key).

Failures: a multiplexer that cannot be reached or started (a stale socket is replaced; two
runs starting one at once end with one, the other says ``busy`` and both use it) means a direct
connection. One that goes away mid-run turns into direct connections for what follows; a
command in flight then fails with a :class:`~provisioner.errors.ConnectError` naming the host
(it may or may not have run, as with a lost SSH connection), and an upload or download in flight
is retried directly (both are idempotent). A host that died while its connection was kept is
noticed by the connection's liveness monitor, which keeps running in the multiplexer: the next
run reconnects (and fails like a direct connect if the host is still gone).

The protocol is private to one berth release: frames of a JSON header and a binary payload
(stdin, file contents); a multiplexer of another protocol version is not used.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import json
import os
import select
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner.commands import Shell
from provisioner.connectors.base import (
    COMMAND_TIMEOUT,
    CommandResult,
    Connector,
    HostKeyPolicy,
    HostName,
    HostTarget,
    JumpHost,
    render,
)
from provisioner.errors import ConnectError, OperationError, ProvisionerError

if TYPE_CHECKING:
    from provisioner.connectors.ssh import SSHConnector

PROTOCOL = 1
"""Bumped whenever a frame changes: client and multiplexer must speak the same one."""
DEFAULT_PERSIST = 60.0
"""Seconds a connection stays open after its last use, unless told otherwise."""
PERSIST_ENV = "BERTH_SSH_PERSIST"
"""Seconds to keep connections (``0``, ``off`` or ``no``: do not use the multiplexer)."""
DIR_ENV = "BERTH_MUX_DIR"
"""The multiplexer's directory, instead of the per-user default."""
SOCKET_NAME = "sock"
LOCK_NAME = "lock"
PID_NAME = "pid"
LOG_NAME = "mux.log"
START_TIMEOUT = 15.0
"""Seconds a run waits for a multiplexer it started to listen."""
CONTROL_TIMEOUT = 60.0
"""Seconds any exchange with the multiplexer may take beyond the remote work's own bound."""
_REAP = 1.0
_FRAME = struct.Struct("!IQ")
_PEERCRED = struct.Struct("3i")


class MuxUnsafe(Exception):
    """The multiplexer's directory or socket fails a rule that keeps other users out."""


class MuxUnavailable(Exception):
    """No multiplexer can be reached or started (berth then connects directly)."""


# -- settings -----------------------------------------------------------------------------------


def persist_from_env(value: str | None = None) -> float:
    """Seconds to keep connections, from ``BERTH_SSH_PERSIST`` (0: off)."""
    raw = os.environ.get(PERSIST_ENV, "") if value is None else value
    raw = raw.strip().lower()
    if raw == "":
        return DEFAULT_PERSIST
    if raw in ("0", "off", "no", "false"):
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 86400:
        raise ProvisionerError(
            f"{PERSIST_ENV}={raw!r} is not a number of seconds between 0 and 86400",
            hint=f"e.g. {PERSIST_ENV}=60, or {PERSIST_ENV}=0 to connect directly every run",
        )
    return seconds


def _install_tag() -> str:
    """This berth's installation (where its code is, and this file's version of it): each has a
    multiplexer of its own, so one never serves a run of another checkout or release."""
    here = Path(__file__).resolve()
    st = here.stat()
    where = f"{here}\0{st.st_mtime_ns}\0{st.st_size}\0{PROTOCOL}"
    return hashlib.sha256(where.encode()).hexdigest()[:12]


def default_dir() -> Path:
    """The multiplexer's directory for this user and installation (module docstring)."""
    override = os.environ.get(DIR_ENV)
    if override:
        return Path(override)
    uid = os.geteuid()
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime.startswith("/"):
        with contextlib.suppress(OSError):
            st = os.lstat(runtime)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == uid:
                return Path(runtime) / f"berth-mux-{_install_tag()}"
    return Path(tempfile.gettempdir()) / f"berth-mux-{uid}-{_install_tag()}"


# -- the rules that keep other users out ---------------------------------------------------------


def secure_dir(path: Path, *, create: bool = False) -> None:
    """Raise :class:`MuxUnsafe` unless ``path`` is a directory (not a link) owned by this user
    that nobody else may enter (mode 0700); with ``create``, make it first if missing."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
    # FileNotFoundError: no directory, so no multiplexer either
    _check_private(path, stat.S_ISDIR, "a directory", "0700")


def check_socket(path: Path) -> None:
    """Raise :class:`MuxUnsafe` unless ``path`` is a socket (not a link) owned by this user with
    mode 0600; :class:`FileNotFoundError` when there is none (no multiplexer)."""
    _check_private(path, stat.S_ISSOCK, "a socket", "0600")


def _check_private(path: Path, is_kind: Callable[[int], bool], kind: str, mode: str) -> None:
    """``path`` itself (never a link's target) is ``kind``, ours, and closed to group/others."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise MuxUnsafe(f"{path} is a symbolic link")
    if not is_kind(st.st_mode):
        raise MuxUnsafe(f"{path} is not {kind}")
    if st.st_uid != os.geteuid():
        raise MuxUnsafe(f"{path} belongs to uid {st.st_uid}, not {os.geteuid()}")
    if st.st_mode & 0o077:
        raise MuxUnsafe(f"{path} has mode {stat.S_IMODE(st.st_mode):04o}, not {mode}")


def peer_uid(sock: socket.socket) -> int:
    """The user id of the process at the other end of a Unix socket (``SO_PEERCRED``)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    _pid, uid, _gid = _PEERCRED.unpack(raw)
    return int(uid)


# -- frames -------------------------------------------------------------------------------------


def send_frame(sock: socket.socket, header: dict[str, Any], payload: bytes = b"") -> None:
    head = json.dumps(header).encode()
    sock.sendall(_FRAME.pack(len(head), len(payload)) + head)
    if payload:
        sock.sendall(payload)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], min(size - got, 1 << 20))
        if not n:
            raise EOFError("the other end closed the connection")
        got += n
    return bytes(buf)


def recv_frame(sock: socket.socket) -> tuple[dict[str, Any], bytes]:
    head_size, payload_size = _FRAME.unpack(_recv_exact(sock, _FRAME.size))
    if head_size > 1 << 26:
        raise ValueError(f"frame header of {head_size} bytes")
    header = json.loads(_recv_exact(sock, head_size))
    if not isinstance(header, dict):
        raise ValueError("frame header is not an object")
    payload = _recv_exact(sock, payload_size) if payload_size else b""
    return header, payload


def _abs(path: Path | None) -> str | None:
    """A path as the multiplexer must see it: absolute (it runs in ``/``, not the run's cwd)."""
    return None if path is None else os.path.abspath(path)


def _target_json(target: HostTarget) -> dict[str, Any]:
    jump = target.jump
    return {
        "name": str(target.name),
        "address": target.address,
        "port": target.port,
        "user": target.user,
        "identity_file": _abs(target.identity_file),
        "known_hosts": _abs(target.known_hosts),
        "host_key_policy": str(target.host_key_policy),
        "connect_timeout": target.connect_timeout,
        "retries": target.retries,
        "jump": None
        if jump is None
        else {
            "address": jump.address,
            "port": jump.port,
            "user": jump.user,
            "identity_file": _abs(jump.identity_file),
        },
    }


def _target_from_json(raw: dict[str, Any]) -> HostTarget:
    def path(value: object) -> Path | None:
        return None if value is None else Path(str(value))

    jump = raw.get("jump")
    return HostTarget(
        name=HostName(str(raw["name"])),
        address=str(raw["address"]),
        port=int(raw["port"]),
        user=str(raw["user"]),
        identity_file=path(raw.get("identity_file")),
        known_hosts=path(raw.get("known_hosts")),
        host_key_policy=HostKeyPolicy(raw["host_key_policy"]),
        connect_timeout=float(raw["connect_timeout"]),
        retries=int(raw["retries"]),
        jump=None
        if jump is None
        else JumpHost(
            address=str(jump["address"]),
            port=int(jump["port"]),
            user=str(jump["user"]),
            identity_file=path(jump.get("identity_file")),
        ),
    )


def _digest(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as error:  # the connect reports it properly
        return f"unreadable: {error.errno}"


def target_key(target: HostTarget) -> str:
    """What a kept connection must match to be reused: the whole target (roles aside), with the
    content of the identity files (a replaced key is another identity)."""
    described = _target_json(target)
    described["identity_digest"] = _digest(target.identity_file)
    if target.jump is not None:
        described["jump"]["identity_digest"] = _digest(
            target.jump.identity_file or target.identity_file
        )
    return json.dumps(described, sort_keys=True)


_ERRORS: dict[str, type[ProvisionerError]] = {
    "ConnectError": ConnectError,
    "OperationError": OperationError,
    "ProvisionerError": ProvisionerError,
}


def _error_json(error: BaseException) -> dict[str, Any]:
    if isinstance(error, FileNotFoundError):
        return {"kind": "FileNotFoundError", "message": str(error)}
    if isinstance(error, ProvisionerError):
        kind = "ProvisionerError"
        if isinstance(error, ConnectError):
            kind = "ConnectError"
        elif isinstance(error, OperationError):
            kind = "OperationError"
        return {"kind": kind, "message": error.message, "hint": error.hint}
    return {"kind": "internal", "message": f"{type(error).__name__}: {error}"}


def _raise_error(raw: dict[str, Any], host: str) -> None:
    kind = str(raw.get("kind", "internal"))
    message = str(raw.get("message", ""))
    if kind == "FileNotFoundError":
        raise FileNotFoundError(message)
    cls = _ERRORS.get(kind)
    if cls is None:
        raise ConnectError(
            f"{host}: the connection multiplexer failed: {message}",
            hint=f"run again with --no-persist (or {PERSIST_ENV}=0) to connect directly",
        )
    hint = raw.get("hint")
    raise cls(message, hint=None if hint is None else str(hint))


# -- the multiplexer ----------------------------------------------------------------------------


@dataclass
class _Kept:
    """One kept connection and who uses it."""

    connector: SSHConnector
    users: int = 0
    last_used: float = field(default_factory=time.monotonic)
    persist: float = DEFAULT_PERSIST
    connecting: threading.Lock = field(default_factory=threading.Lock)


class MuxServer:
    """Serves clients of this user on ``directory``/sock (see the module docstring)."""

    def __init__(self, directory: Path, *, uid: int | None = None) -> None:
        self.directory = directory
        self.uid = os.geteuid() if uid is None else uid
        """The only user id served (a test sets another to see this user refused)."""
        self.kept: dict[str, _Kept] = {}
        self.handshakes = 0
        self.clients = 0
        self.refused = 0
        self.idle = DEFAULT_PERSIST
        self._last_activity = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None

    def listen(self) -> None:
        """Bind the socket (mode 0600, a stale one replaced); the caller holds the lock file."""
        path = self.directory / SOCKET_NAME
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            listener.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)  # (the umask made it so already; our own 0700 directory)
        listener.listen(128)
        listener.settimeout(_REAP)
        self._listener = listener

    def serve(self) -> None:
        """Accept clients until stopped or idle (nothing kept, nobody connected) for
        :attr:`idle` seconds; then close every connection."""
        listener = self._listener
        assert listener is not None
        try:
            while not self._stop.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    if self._reap():
                        break
                    continue
                client.settimeout(None)
                with self._lock:
                    self.clients += 1
                    self._last_activity = time.monotonic()
                threading.Thread(target=self._client, args=(client,), daemon=True).start()
        finally:
            # the socket goes before the lock file is released (the process exits): a new
            # multiplexer never finds this one's socket
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.directory / SOCKET_NAME)
            with self._lock:
                kept, self.kept = list(self.kept.values()), {}
            for each in kept:
                each.connector.close()

    def stop(self) -> None:
        self._stop.set()

    def _reap(self) -> bool:
        """Close connections unused for their persistence time; True when the multiplexer
        itself has nothing left to do."""
        now = time.monotonic()
        doomed: list[_Kept] = []
        with self._lock:
            for key, each in list(self.kept.items()):
                if each.users == 0 and now - each.last_used >= each.persist:
                    doomed.append(self.kept.pop(key))
            done = not self.kept and self.clients == 0 and now - self._last_activity >= self.idle
        for each in doomed:
            each.connector.close()
        return done

    def _client(self, sock: socket.socket) -> None:
        kept: _Kept | None = None
        try:
            if peer_uid(sock) != self.uid:
                with self._lock:
                    self.refused += 1
                return
            header, _ = recv_frame(sock)
            if header.get("op") == "stats":
                send_frame(sock, self._stats())
                return
            if header.get("op") == "stop":
                send_frame(sock, {})
                self.stop()
                return
            if header.get("op") == "forget":
                send_frame(sock, {"closed": self._forget(set(header.get("addresses", [])))})
                return
            if header.get("op") != "open" or header.get("protocol") != PROTOCOL:
                send_frame(sock, {"error": {"kind": "protocol", "message": "protocol mismatch"}})
                return
            target = _target_from_json(header["target"])
            try:
                kept = self._acquire(target, float(header.get("persist", DEFAULT_PERSIST)))
            except (ProvisionerError, FileNotFoundError) as error:
                send_frame(sock, {"error": _error_json(error)})
                return
            send_frame(sock, {"pid": os.getpid()})
            while True:
                try:
                    header, payload = recv_frame(sock)
                except EOFError:
                    return
                reply, data = self._do(kept.connector, header, payload)
                kept.last_used = time.monotonic()
                send_frame(sock, reply, data)
        except (OSError, EOFError, ValueError, KeyError, TypeError) as error:
            print(f"client dropped: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        finally:
            sock.close()
            with self._lock:
                self.clients -= 1
                self._last_activity = time.monotonic()
                if kept is not None:
                    kept.users -= 1
                    kept.last_used = time.monotonic()

    def _forget(self, addresses: set[str]) -> int:
        """Close the unused kept connections to ``addresses`` (a destroyed cluster's hosts);
        one in use by another run is left to it and to the persistence time."""
        with self._lock:
            doomed = [
                (key, each) for key, each in self.kept.items()
                if each.users == 0 and each.connector.target.address in addresses
            ]  # fmt: skip
            for key, _ in doomed:
                del self.kept[key]
        for _, each in doomed:
            each.connector.close()
        return len(doomed)

    def _acquire(self, target: HostTarget, persist: float) -> _Kept:
        # imported here: a run that only talks to a multiplexer never loads paramiko
        from provisioner.connectors.ssh import SSHConnector  # noqa: PLC0415

        key = target_key(target)
        with self._lock:
            kept = self.kept.get(key)
            if kept is None:
                kept = self.kept[key] = _Kept(SSHConnector(target))
            kept.users += 1
            kept.persist = persist
            self.idle = max(persist, 1.0)
        try:
            with kept.connecting:
                connector = kept.connector
                before = connector.transport
                try:
                    # held to today's pins and policy before reuse, as a new connection is
                    connector.check_pins()
                except ConnectError:
                    # not reused; a new connection (checked against those pins) may be fine:
                    # the address is another machine now, re-pinned (a lab made again)
                    connector.close()
                connector.connect()
                if connector.transport is not before:
                    with self._lock:
                        self.handshakes += 1
                    _quiet(connector)
        except BaseException:
            with self._lock:
                kept.users -= 1
                unused = kept.users == 0
                if unused and self.kept.get(key) is kept:
                    del self.kept[key]
            if unused:  # else another run uses it: its own next call meets the same state
                kept.connector.close()
            raise
        return kept

    def _do(
        self, connector: SSHConnector, header: dict[str, Any], payload: bytes
    ) -> tuple[dict[str, Any], bytes]:
        op = header.get("op")
        try:
            if op == "run":
                timeout = header.get("timeout")
                result = connector.run(
                    str(header["command"]),
                    stdin=payload if header.get("stdin") else None,
                    timeout=None if timeout is None else float(timeout),
                )
                return {"exit": result.exit_code, "stdout": result.stdout,
                        "stderr": result.stderr}, b""  # fmt: skip
            if op == "put":
                connector.put(
                    payload, str(header["path"]), mode=int(header["mode"]),
                    owner=header.get("owner"), group=header.get("group"),
                )  # fmt: skip
                return {}, b""
            if op == "get":
                return {}, connector.get(str(header["path"]))
            return {"error": {"kind": "protocol", "message": f"unknown request {op!r}"}}, b""
        except (ProvisionerError, FileNotFoundError) as error:
            return {"error": _error_json(error)}, b""
        except Exception as error:  # a bug here must not take every kept connection with it
            traceback.print_exc(file=sys.stderr)
            return {"error": _error_json(error)}, b""

    def _stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "pid": os.getpid(),
                "kept": len(self.kept),
                "handshakes": self.handshakes,
                "refused": self.refused,
                "clients": self.clients - 1,  # not counting the one asking
            }


IDLE_POLL = 1.0
"""Seconds between the wakeups of a kept connection's paramiko thread while nothing arrives
(paramiko's own 0.1 s: 200 wakeups a second for 20 idle connections, about 1.5 % of a core
kept busy between runs); it bounds only how long closing a connection may take."""


def _quiet(connector: SSHConnector) -> None:
    transport = connector.transport
    if transport is not None:
        with contextlib.suppress(OSError):
            transport.sock.settimeout(IDLE_POLL)


def serve_main(directory: Path, ready: int) -> int:
    """The multiplexer process: take the lock file, detach, listen, say ``ready`` on ``ready``
    (a file descriptor), serve. A second one (two runs starting one at once) says ``busy``."""
    secure_dir(directory)
    lock = os.open(
        directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
    )
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.write(ready, b"busy\n")
        return 0
    if os.fork():
        os._exit(0)  # the starter's wait ends here; the server lives on, its own session
    os.chdir("/")  # holds no run's working directory (or its mount) for its lifetime
    server = MuxServer(directory)
    server.listen()
    pid_file = directory / f".{PID_NAME}.tmp"
    pid_file.write_text(f"{os.getpid()}\n")
    os.replace(pid_file, directory / PID_NAME)
    os.write(ready, b"ready\n")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, ready)  # the starter's pipe closes; stray prints go nowhere
    os.close(devnull)
    # the SSH code loads while the run that started us still reads its spec
    threading.Thread(target=importlib.import_module, args=("provisioner.connectors.ssh",),
                     daemon=True).start()  # fmt: skip
    server.serve()
    return 0


def start_mux(directory: Path) -> None:
    """Start a multiplexer on ``directory`` (made 0700 if missing) and wait until it listens
    (or another one, started at the same time, does)."""
    secure_dir(directory, create=True)
    log = os.open(
        directory / LOG_NAME,
        os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
    )
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "provisioner.connectors.mux", str(directory)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
            close_fds=True, start_new_session=True,
        )  # fmt: skip
    finally:
        os.close(log)
    assert process.stdout is not None
    try:
        said = b""
        deadline = time.monotonic() + START_TIMEOUT
        fd = process.stdout.fileno()
        while not said.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise MuxUnavailable(f"it did not start within {START_TIMEOUT:.0f}s")
            chunk = os.read(fd, 64)
            if not chunk:
                break
            said += chunk
    finally:
        process.stdout.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=START_TIMEOUT)
    if said.strip() not in (b"ready", b"busy"):
        raise MuxUnavailable(f"it did not start (see {directory / LOG_NAME})")


def dial(directory: Path) -> socket.socket:
    """A connection to the multiplexer of ``directory``, after checking the directory, the
    socket and the peer's user id; :class:`FileNotFoundError` or :class:`ConnectionError`
    when none listens there."""
    secure_dir(directory)
    path = directory / SOCKET_NAME
    check_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONTROL_TIMEOUT)
        sock.connect(str(path))
        uid = peer_uid(sock)
        if uid != os.geteuid():
            raise MuxUnsafe(f"the process listening on {path} runs as uid {uid}")
    except BaseException:
        sock.close()
        raise
    return sock


def request(directory: Path, op: str) -> dict[str, Any]:
    """A one-off request (``stats``, ``stop``) to the multiplexer of ``directory``."""
    with dial(directory) as sock:
        send_frame(sock, {"op": op})
        return recv_frame(sock)[0]


def forget(addresses: list[str], directory: Path | None = None) -> int:
    """Ask this installation's multiplexer, if one runs, to close its unused connections to
    ``addresses`` (``berth destroy`` leaves no session of ours on the hosts it cleaned); the
    number closed, 0 when none runs or it cannot be used."""
    try:
        with dial(default_dir() if directory is None else directory) as sock:
            send_frame(sock, {"op": "forget", "addresses": addresses})
            return int(recv_frame(sock)[0].get("closed", 0))
    except (OSError, EOFError, ValueError, MuxUnsafe):
        return 0


# -- the client side ----------------------------------------------------------------------------


class Mux:
    """A run's way to the multiplexer: the connector factory of ``apply``, ``plan`` and
    ``verify`` when persistence is on (see the module docstring)."""

    def __init__(self, persist: float = DEFAULT_PERSIST, directory: Path | None = None) -> None:
        self.persist = persist
        self.directory = (default_dir() if directory is None else directory).absolute()
        self.failed: str | None = None
        """Why this run stopped using the multiplexer (None while it uses it)."""
        self._started = False
        self._lock = threading.Lock()

    def dial(self) -> socket.socket:
        """A checked connection to the multiplexer, starting it once if none listens."""
        if self.failed is not None:
            raise MuxUnavailable(self.failed)
        with self._lock:
            try:
                try:
                    return dial(self.directory)
                except (FileNotFoundError, ConnectionError):
                    if self._started:
                        raise
                    self._started = True
                    start_mux(self.directory)
                    return dial(self.directory)
            except MuxUnavailable as error:
                self._fail(f"it could not be started: {error}")
            except MuxUnsafe as error:
                self._fail(f"unsafe: {error}")
            except (OSError, EOFError) as error:
                self._fail(f"{type(error).__name__}: {error}")
            raise MuxUnavailable(self.failed or "")

    def _fail(self, why: str) -> None:
        if self.failed is None:
            self.failed = why
            print(
                f"berth: not using the SSH connection multiplexer in {self.directory} ({why}); "
                "connecting directly",
                file=sys.stderr,
                flush=True,
            )

    def connect(self, target: HostTarget) -> Connector:
        """A connected connector for ``target``: through the multiplexer, else direct."""
        if self.failed is None:
            try:
                return MuxConnector(target, self).connect()
            except MuxUnavailable:
                pass
        return _direct(target)


def _direct(target: HostTarget) -> Connector:
    from provisioner.connectors.ssh import SSHConnector  # noqa: PLC0415

    return SSHConnector(target).connect()


def connector_factory(persist: float) -> Callable[[HostTarget], Connector]:
    """``apply``/``plan``/``verify``'s connect function: through a :class:`Mux` when
    ``persist`` > 0, else a direct SSH connection per host."""
    return Mux(persist).connect if persist > 0 else _direct


class MuxConnector:
    """A :class:`~provisioner.connectors.base.Connector` whose work is done by the multiplexer
    over a kept SSH connection (one Unix connection per concurrent call)."""

    def __init__(self, target: HostTarget, mux: Mux) -> None:
        self.target = target
        self._mux = mux
        self._idle: list[socket.socket] = []
        self._lock = threading.Lock()
        self._direct: Connector | None = None
        self._closed = False

    @property
    def host(self) -> HostName:
        return self.target.name

    def connect(self) -> MuxConnector:
        self._idle.append(self._open())
        return self

    def _open(self) -> socket.socket:
        """A Unix connection on which the multiplexer holds this target's SSH connection;
        :class:`MuxUnavailable` when the multiplexer cannot be used (nothing was sent)."""
        sock = self._mux.dial()
        try:
            send_frame(sock, {"op": "open", "protocol": PROTOCOL, "persist": self._mux.persist,
                              "target": _target_json(self.target)})  # fmt: skip
            sock.settimeout(self.target.connect_timeout * (self.target.retries + 1) * 3 + 60)
            reply, _ = recv_frame(sock)
        except (OSError, EOFError, ValueError) as error:
            sock.close()
            self._mux._fail(f"{type(error).__name__}: {error}")
            raise MuxUnavailable(str(error)) from None
        refused = reply.get("error")
        if refused is not None:
            sock.close()
            if refused.get("kind") == "protocol":
                self._mux._fail("it is another berth release's; it ends once unused")
                raise MuxUnavailable("protocol")
            _raise_error(refused, self.host)
        return sock

    def _fallback(self) -> Connector:
        with self._lock:
            if self._direct is None:
                self._direct = _direct(self.target)
            return self._direct

    def _call(
        self, header: dict[str, Any], payload: bytes, *, what: str, timeout: float, retry: bool
    ) -> tuple[dict[str, Any], bytes] | None:
        """The reply to one request, or None when it must be done directly instead."""
        if self._direct is not None:
            return None
        with self._lock:
            sock = self._idle.pop() if self._idle else None
        if sock is None:
            try:
                sock = self._open()
            except MuxUnavailable:
                return None
        try:
            sock.settimeout(timeout + CONTROL_TIMEOUT)
            send_frame(sock, header, payload)
            reply, data = recv_frame(sock)
        except (OSError, EOFError, ValueError) as error:
            sock.close()
            self._mux._fail(f"it went away: {type(error).__name__}: {error}")
            if retry:
                return None
            raise ConnectError(
                f"{self.host}: the SSH connection multiplexer went away while {what} "
                f"({type(error).__name__}: {error}); the command may or may not have run",
                hint="apply again: the next run connects directly or starts a new multiplexer "
                "(finished operations are not repeated)",
            ) from None
        with self._lock:
            if self._closed:
                sock.close()
            else:
                self._idle.append(sock)
        if "error" in reply:
            _raise_error(reply["error"], self.host)
        return reply, data

    def run(
        self, command: Shell | str, *, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        text = render(command)
        header = {"op": "run", "command": text, "timeout": timeout, "stdin": stdin is not None}
        what = f"running {text.strip().splitlines()[0][:120] if text.strip() else text!r}"
        bound = COMMAND_TIMEOUT if timeout is None else timeout
        answer = self._call(header, stdin or b"", what=what, timeout=bound, retry=False)
        if answer is None:
            return self._fallback().run(command, stdin=stdin, timeout=timeout)
        reply, _ = answer
        return CommandResult(int(reply["exit"]), str(reply["stdout"]), str(reply["stderr"]))

    def put(
        self,
        content: bytes,
        path: str,
        *,
        mode: int = 0o644,
        owner: str | None = None,
        group: str | None = None,
    ) -> None:
        header = {"op": "put", "path": path, "mode": mode, "owner": owner, "group": group}
        answer = self._call(header, content, what=f"uploading {path}", timeout=1800, retry=True)
        if answer is None:  # atomic and idempotent: done again directly
            self._fallback().put(content, path, mode=mode, owner=owner, group=group)

    def get(self, path: str) -> bytes:
        answer = self._call(
            {"op": "get", "path": path}, b"", what=f"reading {path}", timeout=1800, retry=True
        )
        if answer is None:
            return self._fallback().get(path)
        return answer[1]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            direct, self._direct = self._direct, None
        for sock in idle:
            sock.close()
        if direct is not None:
            direct.close()


if __name__ == "__main__":
    sys.exit(serve_main(Path(sys.argv[1]), sys.stdout.fileno()))
