"""The agent's end of exec, attach and port-forward (protocol: :mod:`berth.api.agentstreams`).

exec runs the command the runtime names for it (``runc exec [-t] <id> cmd...``: the process
joins the running container's namespaces and cgroup) with pipes, or with a pseudo-terminal
whose size follows the client's resize events, and ends the session with the exit code as
an upstream ``Status``. port-forward opens a TCP connection to ``127.0.0.1:<port>`` inside the
pod's network namespace and relays it, half-closes included. attach connects to the stdio
the runtime keeps for containers started with stdin/tty (:class:`AttachingRuntime`; the runc
runtime's shim serves it on a unix socket), or follows the log of any other container.

A runtime offers this through :class:`StreamingRuntime`; one that does not (the simulated
runtime) answers 501.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import pty
import signal
import struct
import termios
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from aiohttp import WSMsgType, web

from berth.agent.pods import PodManager
from berth.agent.runtime import Runtime
from berth.api import agentstreams as ch
from berth.client.keys import ObjectKey

log = logging.getLogger(__name__)

READ_CHUNK = 32 * 1024
_PF_DATA = bytes([ch.PF_DATA])
DRAIN_AFTER_EXIT_SECONDS = 0.5
"""How long output is still read after the process exited (a background child may hold the
terminal open forever; its output past this is not waited for)."""
KILL_GRACE_SECONDS = 5.0
_TRUE = {"1", "t", "T", "true", "True", "TRUE"}


@runtime_checkable
class StreamingRuntime(Protocol):
    def exec_argv(self, container_id: str, command: Sequence[str], *, tty: bool) -> list[str]:
        """The host command that runs ``command`` inside the running container."""
        ...

    async def connect_port(
        self, sandbox_id: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TCP connection to ``127.0.0.1:port`` in the sandbox's network namespace."""
        ...


@runtime_checkable
class AttachingRuntime(Protocol):
    async def connect_attach(
        self, container_id: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to the stdio the runtime keeps for the container (frames: see
        :mod:`berth.runtime.shim`); None when it keeps none (started without stdin/tty)."""
        ...


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "") in _TRUE


async def serve_exec(
    request: web.Request, manager: PodManager, runtime: Runtime
) -> web.StreamResponse:
    ns, pod = request.match_info["namespace"], request.match_info["pod"]
    container = request.match_info["container"]
    command = request.query.getall("command", [])
    if not command:
        return web.Response(status=400, text="exec needs a command")
    if not isinstance(runtime, StreamingRuntime):
        return web.Response(status=501, text=f"the {runtime.name} runtime cannot exec")
    cid = await _running_container(request, manager, runtime)
    if isinstance(cid, web.Response):
        return cid
    tty = _flag(request, "tty")
    stdin, stdout, stderr = (
        _flag(request, "stdin"),
        _flag(request, "stdout"),
        _flag(request, "stderr"),
    )
    argv = runtime.exec_argv(cid, command, tty=tty)
    ws = web.WebSocketResponse(protocols=(ch.EXEC_PROTOCOL,), max_msg_size=ch.MAX_MESSAGE)
    await ws.prepare(request)
    process = await TtyProcess.start(argv) if tty else await PipeProcess.start(argv, stdin=stdin)
    try:
        code = await _run(ws, process, stdin=stdin, stdout=stdout or tty, stderr=stderr and not tty)
    except Exception:
        log.exception("exec in %s/%s/%s failed", ns, pod, container)
        code = None
    finally:
        await process.stop()
    result = (
        ch.failure_status("the command could not be run")
        if code is None
        else ch.success_status()
        if code == 0
        else ch.exit_status(list(command), code)
    )
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_bytes(bytes([ch.ERROR]) + json.dumps(result).encode())
        await ws.close()
    return ws


async def _running_container(
    request: web.Request, manager: PodManager, runtime: Runtime
) -> str | web.Response:
    """The id of the running container the request names, else the agent's refusal."""
    ns, pod = request.match_info["namespace"], request.match_info["pod"]
    container = request.match_info["container"]
    cid = manager.container_id(ns, pod, container)
    status = await runtime.container_status(cid) if cid is not None else None
    if cid is None or status is None:
        return web.Response(
            status=404, text=f'container "{container}" in pod "{pod}" not found on this node'
        )
    if status.phase != "running":
        return web.Response(
            status=400, text=f'container "{container}" in pod "{pod}" is not running'
        )
    return cid


async def serve_attach(
    request: web.Request, manager: PodManager, runtime: Runtime
) -> web.StreamResponse:
    """Attach to the container's own stdio: the terminal or pipes its shim keeps; for a
    container started without stdin/tty, its output as it is written from now on. The
    session ends when the container's process does (or the client leaves: the container
    goes on, as upstream's)."""
    ns, pod = request.match_info["namespace"], request.match_info["pod"]
    container = request.match_info["container"]
    if not isinstance(runtime, AttachingRuntime):
        return web.Response(status=501, text=f"the {runtime.name} runtime cannot attach")
    cid = await _running_container(request, manager, runtime)
    if isinstance(cid, web.Response):
        return cid
    stdin, stdout, stderr = (
        _flag(request, "stdin"),
        _flag(request, "stdout"),
        _flag(request, "stderr"),
    )
    try:
        conn = await runtime.connect_attach(cid)
    except OSError as exc:
        return web.Response(
            status=400, text=f'cannot attach to container "{container}" in pod "{pod}": {exc}'
        )
    process: _Process = AttachedStdio(*conn) if conn is not None else LogFollower(runtime, cid)
    ws = web.WebSocketResponse(protocols=(ch.EXEC_PROTOCOL,), max_msg_size=ch.MAX_MESSAGE)
    await ws.prepare(request)
    try:
        code = await _run(ws, process, stdin=stdin, stdout=stdout, stderr=stderr)
    except Exception:
        log.exception("attach to %s/%s/%s failed", ns, pod, container)
        code = None
    finally:
        await process.stop()
    result = ch.success_status() if code is not None else ch.failure_status("attach failed")
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_bytes(bytes([ch.ERROR]) + json.dumps(result).encode())
        await ws.close()
    return ws


ATTACH_FRAME_LIMIT = 1 << 20


class AttachedStdio:
    """A session on the shim's attach socket (frames: channel byte, 4-byte length, data)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.stdout = asyncio.StreamReader()
        self.stderr = asyncio.StreamReader()
        self.decoder = asyncio.create_task(self._decode())

    async def _decode(self) -> None:
        try:
            while True:
                header = await self.reader.readexactly(5)
                length = int.from_bytes(header[1:], "big")
                if length > ATTACH_FRAME_LIMIT:
                    return
                data = await self.reader.readexactly(length)
                if header[0] == ch.STDOUT:
                    self.stdout.feed_data(data)
                elif header[0] == ch.STDERR:
                    self.stderr.feed_data(data)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            return
        finally:
            self.stdout.feed_eof()
            self.stderr.feed_eof()

    def _send(self, channel: int, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(bytes([channel]) + len(data).to_bytes(4, "big") + data)

    async def write_stdin(self, data: bytes) -> None:
        self._send(ch.STDIN, data)
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.drain()

    async def close_stdin(self) -> None:
        self._send(ch.CLOSE, bytes([ch.STDIN]))

    def resize(self, width: int, height: int) -> None:
        if width > 0 and height > 0:
            self._send(ch.RESIZE, json.dumps({"Width": width, "Height": height}).encode())

    def outputs(self) -> list[tuple[int, asyncio.StreamReader]]:
        return [(ch.STDOUT, self.stdout), (ch.STDERR, self.stderr)]

    async def wait(self) -> int:
        await asyncio.shield(self.decoder)
        return 0

    async def stop(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
        self.decoder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.decoder


class LogFollower:
    """Attach to a container whose stdio is not kept: what it writes to its log from now."""

    def __init__(self, runtime: Runtime, cid: str) -> None:
        self.stdout = asyncio.StreamReader()
        self.task = asyncio.create_task(self._follow(runtime, cid))

    async def _follow(self, runtime: Runtime, cid: str) -> None:
        try:
            async for chunk in runtime.logs(cid, tail_lines=0, follow=True):
                self.stdout.feed_data(chunk)
        finally:
            self.stdout.feed_eof()

    async def write_stdin(self, data: bytes) -> None:
        return

    async def close_stdin(self) -> None:
        return

    def resize(self, width: int, height: int) -> None:
        return

    def outputs(self) -> list[tuple[int, asyncio.StreamReader]]:
        return [(ch.STDOUT, self.stdout)]

    async def wait(self) -> int:
        await asyncio.shield(self.task)
        return 0

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


class _Process(Protocol):
    async def write_stdin(self, data: bytes) -> None: ...
    async def close_stdin(self) -> None: ...
    def resize(self, width: int, height: int) -> None: ...
    def outputs(self) -> list[tuple[int, asyncio.StreamReader]]: ...
    async def wait(self) -> int: ...
    async def stop(self) -> None: ...


class PipeProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, argv: list[str], *, stdin: bool) -> PipeProcess:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        return cls(proc)

    async def write_stdin(self, data: bytes) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.write(data)
            with contextlib.suppress(ConnectionError):
                await self.proc.stdin.drain()

    async def close_stdin(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()

    def resize(self, width: int, height: int) -> None:
        return

    def outputs(self) -> list[tuple[int, asyncio.StreamReader]]:
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        return [(ch.STDOUT, self.proc.stdout), (ch.STDERR, self.proc.stderr)]

    async def wait(self) -> int:
        return _exit_code(await self.proc.wait())

    async def stop(self) -> None:
        await _stop(self.proc)
        # read the pipes to their end so that their transports close
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.proc.communicate(), KILL_GRACE_SECONDS)


class TtyProcess:
    """The process on a new pseudo-terminal; its output is the master side."""

    def __init__(self, proc: asyncio.subprocess.Process, master: int) -> None:
        self.proc = proc
        self.master = master
        self.reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        loop.add_reader(master, self._readable)
        self._closed = False

    @classmethod
    async def start(cls, argv: list[str]) -> TtyProcess:
        master, slave = pty.openpty()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        return cls(proc, master)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: every holder of the terminal closed it
            data = b""
        if data:
            self.reader.feed_data(data)
        else:
            self._close_master()

    def _close_master(self) -> None:
        if not self._closed:
            self._closed = True
            asyncio.get_running_loop().remove_reader(self.master)
            os.close(self.master)
            self.reader.feed_eof()

    async def write_stdin(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._closed:
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                await asyncio.sleep(0.01)
                continue
            except OSError:
                return
            view = view[n:]

    async def close_stdin(self) -> None:
        return  # a terminal has no end of input but the ^D its user types

    def resize(self, width: int, height: int) -> None:
        if self._closed or width <= 0 or height <= 0:
            return
        with contextlib.suppress(OSError):
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
        # runc copies its terminal's size to the container's on SIGWINCH; the process is not
        # the terminal's session leader, so the kernel's own SIGWINCH would miss it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGWINCH)

    def outputs(self) -> list[tuple[int, asyncio.StreamReader]]:
        return [(ch.STDOUT, self.reader)]

    async def wait(self) -> int:
        return _exit_code(await self.proc.wait())

    async def stop(self) -> None:
        await _stop(self.proc)
        self._close_master()


def _exit_code(rc: int) -> int:
    return 128 - rc if rc < 0 else rc  # a signal -N is reported as 128+N


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """End what is still running of the session: its whole process group (a shell waits for
    its foreground child before acting on SIGTERM; runc passes the signal into the container)."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), KILL_GRACE_SECONDS)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


async def _run(
    ws: web.WebSocketResponse, process: _Process, *, stdin: bool, stdout: bool, stderr: bool
) -> int | None:
    """Relay until the process exits; its exit code (``None`` if the client left first)."""

    async def pump_out(channel: int, reader: asyncio.StreamReader, wanted: bool) -> None:
        while chunk := await reader.read(READ_CHUNK):
            if wanted and not ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_bytes(bytes([channel]) + chunk)

    async def pump_in() -> None:
        async for msg in ws:
            if msg.type != WSMsgType.BINARY or not msg.data:
                continue
            data: bytes = msg.data
            if data[0] == ch.STDIN and stdin:
                await process.write_stdin(data[1:])
            elif data[0] == ch.CLOSE and data[1:2] == bytes([ch.STDIN]):
                await process.close_stdin()
            elif data[0] == ch.RESIZE:
                with contextlib.suppress(ValueError):
                    size = json.loads(data[1:])
                    if isinstance(size, dict):
                        process.resize(_dim(size.get("Width")), _dim(size.get("Height")))

    wanted = {ch.STDOUT: stdout, ch.STDERR: stderr}
    outs = [asyncio.create_task(pump_out(c, r, wanted[c])) for c, r in process.outputs()]
    inputs = asyncio.create_task(pump_in())
    waiter = asyncio.create_task(process.wait())
    try:
        done, _ = await asyncio.wait({waiter, inputs}, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            return None  # the client went away: the caller stops the process
        # the output written before the exit, as far as it comes soon
        await asyncio.wait(outs, timeout=DRAIN_AFTER_EXIT_SECONDS)
        return waiter.result()
    finally:
        for task in (*outs, inputs, waiter):
            task.cancel()


def _dim(value: object) -> int:
    return value if isinstance(value, int) and 0 < value < 65536 else 0


# --- port-forward ------------------------------------------------------------------------------


async def serve_portforward(
    request: web.Request, manager: PodManager, runtime: Runtime
) -> web.StreamResponse:
    ns, pod = request.match_info["namespace"], request.match_info["pod"]
    raw = request.query.get("port", "")
    port = int(raw) if raw.isdigit() else 0
    if not 0 < port < 65536:
        return web.Response(status=400, text=f"invalid port {raw!r}")
    if not isinstance(runtime, StreamingRuntime):
        return web.Response(status=501, text=f"the {runtime.name} runtime cannot port-forward")
    rec = manager.records.get(ObjectKey(f"{ns}/{pod}"))
    if rec is None or not rec.sandbox:
        return web.Response(status=404, text=f'pod "{pod}" not found on this node')
    ws = web.WebSocketResponse(max_msg_size=ch.MAX_MESSAGE)
    await ws.prepare(request)
    try:
        reader, writer = await runtime.connect_port(rec.sandbox, port)
    except OSError as exc:
        text = (
            f"error forwarding port {port} to pod {pod}, uid {rec.uid}: failed to connect to"
            f" localhost:{port} inside the pod's network namespace: {exc.strerror or exc}"
        )
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_bytes(bytes([ch.PF_ERROR]) + text.encode())
            await ws.close()
        return ws
    try:
        await _relay_port(ws, reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.close()
    return ws


async def _relay_port(
    ws: web.WebSocketResponse, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    async def from_pod() -> None:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            while chunk := await reader.read(ch.PF_CHUNK):
                await ws.send_bytes(_PF_DATA + chunk)
            await ws.send_bytes(bytes([ch.PF_EOF]))

    async def to_pod() -> None:
        async for msg in ws:
            if msg.type != WSMsgType.BINARY or not msg.data:
                continue
            data: bytes = msg.data
            if data[0] == ch.PF_DATA:
                writer.write(data[1:])
                await writer.drain()
            elif data[0] == ch.PF_EOF and writer.can_write_eof():
                writer.write_eof()  # the client is done sending; its replies may still come

    # The forward ends when the pod's side does (as the kubelet's does: the client learns it
    # from the data stream's end), or when the API server closes the session.
    out = asyncio.create_task(from_pod())
    into = asyncio.create_task(to_pod())
    try:
        await asyncio.wait({out, into}, return_when=asyncio.FIRST_COMPLETED)
    except (ConnectionError, OSError, RuntimeError):
        pass
    finally:
        out.cancel()
        into.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError, RuntimeError):
            await into
