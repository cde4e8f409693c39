"""Shims started by forking a warm zygote (``shim.py --zygote SOCKET``), not as new Pythons.

A shim started as ``python3 -S shim.py ...`` spends ~10-15 ms CPU on the interpreter's start
and ``import ctypes`` before it runs ``runc``: per container, on the busy node's pod-start
path. The zygote pays that once and forks each shim (~1 ms). A forked shim is the same
program as a spawned one (:func:`berth.runtime.shim.main`, same arguments, same
descriptors 0-2): it outlives the agent and the zygote alike (it starts its own session),
and records its container's exit as before. The zygote only starts shims: if it dies, the
running shims and containers are unaffected, and the next start makes a new zygote (or,
when none can serve, falls back to spawning the shim the old way).

The socket's name carries a hash of the shim's code and interpreter: an upgraded runtime
never forks an old zygote's code; an old zygote exits after
:data:`berth.runtime.shim.ZYGOTE_IDLE_SECONDS` without requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from berth.network.command import Completed

log = logging.getLogger(__name__)

_RC_LIMIT = 16
_OUTPUT_LIMIT = 1 << 20
START_SECONDS = 30.0  # a loaded node starts Python slowly
RESTART_BACKOFF_SECONDS = 5.0


def directory_of(runc_root: Path) -> Path:
    """Where a runtime whose runc state is under ``runc_root`` keeps its zygotes' sockets."""
    return runc_root.parent / "zygote"


def stop_zygotes(directory: Path, *, proc: Path = Path("/proc"), wait: float = 5.0) -> list[int]:
    """Node teardown: kill every zygote serving under ``directory`` and remove its socket and
    lock; the pids killed. A zygote outlives the agent that started it (for up to
    ZYGOTE_IDLE_SECONDS), in the agent unit's control group: left there, it keeps the unit
    loaded after the unit file is gone. Only the process that holds a lock open is killed:
    the pid written in a lock file may belong to another process by now (forked shims even
    share the zygote's command line, but none keeps its lock open)."""
    killed = []
    for lock in sorted(directory.glob("shim-zygote-*.sock.lock")):
        pid = _lock_holder(lock, proc)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        lock.with_suffix("").unlink(missing_ok=True)  # the socket: "....sock"
        lock.unlink(missing_ok=True)
    deadline = time.monotonic() + wait
    while any(_running(pid, proc) for pid in killed) and time.monotonic() < deadline:
        time.sleep(0.02)  # gone (or a zombie) before the caller looks at the control group
    return killed


def _lock_holder(lock: Path, proc: Path) -> int | None:
    try:
        text = lock.read_bytes()[:16].decode("ascii", "replace").strip()
    except OSError:
        return None
    if not text.isdigit() or int(text) <= 1:
        return None
    fds = proc / text / "fd"
    try:
        links = [os.readlink(fd) for fd in fds.iterdir()]
    except OSError:  # gone, or not ours to read
        return None
    return int(text) if str(lock) in links else None


def _running(pid: int, proc: Path) -> bool:
    try:
        status = (proc / str(pid) / "status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def socket_path(directory: Path, python: str, shim: str) -> Path:
    code = hashlib.sha256(Path(shim).read_bytes() + python.encode()).hexdigest()[:16]
    return directory / f"shim-zygote-{code}.sock"


class ShimZygote:
    """The runtime's side: ``run`` starts one shim through the zygote (starting the zygote
    when there is none); ``None`` when no zygote can serve (the caller spawns the shim)."""

    def __init__(self, *, python: str, shim: str, directory: Path, env: Mapping[str, str]) -> None:
        self.python = python
        self.shim = shim
        self.directory = directory
        self.env = dict(env)
        self.path = socket_path(directory, python, shim)
        self._starting: asyncio.Lock | None = None
        self._failed_at = -RESTART_BACKOFF_SECONDS

    async def run(self, shim_args: Sequence[str]) -> Completed | None:
        request = "\0".join(shim_args).encode()
        outcome = await self._request(request)
        if outcome is not None:
            return outcome
        if not await self._start():
            return None
        return await self._request(request)

    async def _start(self) -> bool:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            loop = asyncio.get_running_loop()
            if await asyncio.to_thread(self._alive):  # a racing start made it meanwhile
                return True
            if loop.time() - self._failed_at < RESTART_BACKOFF_SECONDS:
                return False
            try:
                ok = await asyncio.to_thread(self._spawn)
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("shim zygote: cannot start: %s", exc)
                ok = False
            if ok:
                log.info("shim zygote: serving at %s", self.path)
            else:
                log.warning("shim zygote: none serves at %s; shims are spawned", self.path)
                self._failed_at = loop.time()
            return ok

    def _spawn(self) -> bool:
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        argv = [self.python, "-S", self.shim, "--zygote", str(self.path)]
        done = subprocess.run(  # returns once the zygote listens (it daemonizes)
            argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=START_SECONDS,
            check=False,
        )
        return done.returncode == 0 and self.path.exists()

    def _alive(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC) as probe:
            try:
                probe.connect(str(self.path))
            except OSError:
                return False
        return True

    async def _request(self, request: bytes) -> Completed | None:
        """One shim start; ``None``: the zygote took nothing. Its answer (the shim's stdout,
        stderr and exit code, once ``runc create`` is done) is waited for on the event loop
        (readers on the pipes and the socket), not in a worker thread: a burst's shims would
        hold the loop's few threads (min(32, cores + 4)) for as long as runc runs, and the
        root file system copies and durable writes of the other pods queued behind them."""
        connected = self._connect(request)
        if connected is None:
            return None
        conn, out_r, err_r = connected
        with conn:
            try:
                stdout, stderr = await asyncio.gather(_read_all(out_r), _read_all(err_r))
            finally:
                os.close(out_r)
                os.close(err_r)
            try:
                raw = await asyncio.get_running_loop().sock_recv(conn, _RC_LIMIT)
            except OSError:
                raw = b""
        argv = (self.python, "-S", self.shim, *request.decode().split("\0"))
        if not raw:
            if not stdout and not stderr:
                return None  # the zygote died before it forked: nothing was started
            return Completed(argv, 1, stdout, stderr + b"\nshim zygote: no exit code")
        try:
            rc = int(raw)
        except ValueError:
            rc = 1
        return Completed(argv, rc, stdout, stderr)

    def _connect(self, request: bytes) -> tuple[socket.socket, int, int] | None:
        """Send the request with the shim's stdio (connecting to a listening unix socket
        and sending one message do not block); the socket and the read ends of stdout and
        stderr, non-blocking. ``None``: no zygote listens."""
        try:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        except OSError:
            return None
        try:
            conn.connect(str(self.path))
        except OSError:
            conn.close()
            return None
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            os.set_blocking(out_r, False)  # our ends only: the shim's block as usual
            os.set_blocking(err_r, False)
            socket.send_fds(conn, [request], [devnull, out_w, err_w])
        except OSError:
            for fd in (out_r, err_r):
                os.close(fd)
            conn.close()
            return None
        finally:
            for fd in (out_w, err_w, devnull):
                os.close(fd)
        conn.setblocking(False)
        return conn, out_r, err_r


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _read_all(fd: int) -> bytes:
    """Everything until EOF from the non-blocking pipe ``fd`` (at most _OUTPUT_LIMIT kept)."""
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    kept = 0
    while True:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            readable: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, _wake, readable)
            try:
                await readable
            finally:
                loop.remove_reader(fd)
            continue
        if not data:
            return b"".join(chunks)
        if kept < _OUTPUT_LIMIT:
            chunks.append(data[: _OUTPUT_LIMIT - kept])
            kept += len(chunks[-1])
