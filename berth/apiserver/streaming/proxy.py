"""Serving ``pods/exec``, ``pods/attach`` and ``pods/portforward``.

The client picks its protocol with its upgrade request:

* ``Upgrade: websocket`` with subprotocol ``v5.channel.k8s.io`` or ``v4.channel.k8s.io``
  (kubectl >= 1.30, the Python client): one channel byte per binary message (0 stdin,
  1 stdout, 2 stderr, 3 error, 4 resize; v5 adds 255 = close a channel, so stdin can end).
* ``Upgrade: SPDY/3.1`` with ``X-Stream-Protocol-Version: v4.channel.k8s.io`` (older kubectl,
  and newer ones when the WebSocket upgrade is refused): one SPDY stream per channel.
* port-forward: SPDY streams ``error``/``data`` per ``port`` and ``requestID``, either on the
  upgraded connection itself or tunnelled inside WebSocket binary messages (subprotocol
  ``SPDY/3.1+portforward.k8s.io``, kubectl >= 1.31).

The agent is dialled *before* the client's connection is upgraded, so a pod that is not
running, a missing container or an unreachable node is an ordinary ``Status`` error. The
error channel ends every exec with the agent's ``Status`` (``Success``, or ``Failure`` with
reason ``NonZeroExitCode`` and the exit code as an ``ExitCode`` cause).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from aiohttp import WSMsgType, web

from berth.api import agentstreams as ch
from berth.api.meta import Obj, get_path
from berth.apiserver.audit import AuditLog
from berth.apiserver.errors import ApiError, bad_request
from berth.apiserver.params import parse_bool

from . import spdy
from .agent import AgentStream, AgentTarget, agent_target, dial, pod_path
from .upgrade import switch_protocols

if TYPE_CHECKING:
    from berth.apiserver.app import ApiServer
    from berth.apiserver.auth import UserInfo

log = logging.getLogger(__name__)
AUDIT = AuditLog()

WS_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
SPDY_EXEC_PROTOCOLS = ("v4.channel.k8s.io",)
PORTFORWARD_PROTOCOL = "portforward.k8s.io"
PORTFORWARD_TUNNEL = "SPDY/3.1+portforward.k8s.io"
STREAM_CREATION_SECONDS = 30.0
"""How long a SPDY client may take to open the streams its request named (the kubelet's)."""
MAX_RESIZE_BUFFER = 4096
MAX_COMMAND_ARGS = 1024
MAX_COMMAND_BYTES = 64 * 1024


def _upgrade_kind(request: web.Request) -> str:
    up = request.headers.get("Upgrade", "").strip().lower()
    if up == "websocket":
        return "websocket"
    if up.startswith("spdy/3.1"):
        return "spdy"
    raise bad_request("Upgrade request required")


def _offered(request: web.Request, header: str) -> list[str]:
    return [
        p.strip()
        for value in request.headers.getall(header, [])
        for p in value.split(",")
        if p.strip()
    ]


# --- exec / attach -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecOptions:
    container: str
    command: list[str]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    def params(self) -> list[tuple[str, str]]:
        out = [(k, "1") for k in ("stdin", "stdout", "stderr", "tty") if getattr(self, k)]
        return out + [("command", c) for c in self.command]


def _container_of(pod: Obj, requested: str) -> str:
    name = str(get_path(pod, "metadata", "name"))
    spec = pod.get("spec") or {}
    containers = [str(c.get("name")) for c in spec.get("containers") or [] if isinstance(c, dict)]
    others = [
        str(c.get("name"))
        for key in ("initContainers", "ephemeralContainers")
        for c in spec.get(key) or []
        if isinstance(c, dict)
    ]
    if not requested:
        if len(containers) != 1:
            raise bad_request(
                f"a container name must be specified for pod {name}, choose one of:"
                f" [{' '.join(containers)}]"
            )
        return containers[0]
    if requested not in containers and requested not in others:
        raise bad_request(f"container {requested} is not valid for pod {name}")
    return requested


def exec_options(request: web.Request, pod: Obj, *, attach: bool) -> ExecOptions:
    q = request.query
    command = q.getall("command", [])
    if not attach:
        if not command:
            raise bad_request("you must specify at least one command for the container")
        if len(command) > MAX_COMMAND_ARGS or sum(len(c) for c in command) > MAX_COMMAND_BYTES:
            raise bad_request("the command is too long")
    stdin = parse_bool(q.get("stdin"), "stdin")
    stdout = parse_bool(q.get("stdout"), "stdout")
    stderr = parse_bool(q.get("stderr"), "stderr")
    tty = parse_bool(q.get("tty"), "tty")
    if tty and stderr:
        stderr = False  # a terminal has one output stream, as the kubelet treats it
    if not (stdin or stdout or stderr):
        raise bad_request("you must specify at least 1 of stdin, stdout, stderr")
    phase = get_path(pod, "status", "phase")
    if phase in ("Succeeded", "Failed"):
        what = "attach to" if attach else "exec into"
        raise bad_request(f"cannot {what} a container in a completed pod; current phase is {phase}")
    return ExecOptions(
        _container_of(pod, q.get("container", "")), list(command), stdin, stdout, stderr, tty
    )


class ExecClient(Protocol):
    """The client side of an exec/attach session, whatever its protocol."""

    async def pump_input(self, agent: AgentStream) -> None:
        """Relay stdin, its end and resizes to the agent until the client is done."""

    async def output(self, channel: int, data: bytes) -> None: ...

    async def finish(self, status: dict[str, Any]) -> None: ...


class WebSocketExec:
    def __init__(self, ws: web.WebSocketResponse, opts: ExecOptions, version: int) -> None:
        self.ws = ws
        self.opts = opts
        self.version = version

    async def pump_input(self, agent: AgentStream) -> None:
        async for msg in self.ws:
            # The Python client sends text frames for str data: same channel layout.
            if msg.type == WSMsgType.TEXT:
                data = str(msg.data).encode()
            elif msg.type == WSMsgType.BINARY:
                data = bytes(msg.data)
            else:
                continue
            if not data:
                continue
            channel = data[0]
            if (channel == ch.STDIN and self.opts.stdin) or (
                channel == ch.RESIZE and self.opts.tty
            ):
                await agent.send(data)
            elif channel == ch.CLOSE and self.version >= 5 and data[1:2] == bytes([ch.STDIN]):
                await agent.send(bytes([ch.CLOSE, ch.STDIN]))

    async def output(self, channel: int, data: bytes) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_bytes(bytes([channel]) + data)

    async def finish(self, status: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_bytes(bytes([ch.ERROR]) + orjson.dumps(status))
            await self.ws.close()


class SpdyExec:
    def __init__(self, session: spdy.Session, streams: dict[str, spdy.Stream]) -> None:
        self.session = session
        self.streams = streams

    async def pump_input(self, agent: AgentStream) -> None:
        tasks = []
        if "stdin" in self.streams:
            tasks.append(asyncio.create_task(self._stdin(agent, self.streams["stdin"])))
        if "resize" in self.streams:
            tasks.append(asyncio.create_task(self._resize(agent, self.streams["resize"])))
        try:
            if tasks:
                await asyncio.gather(*tasks)
            await asyncio.Event().wait()  # the session ends this side (cancellation)
        finally:
            for t in tasks:
                t.cancel()

    @staticmethod
    async def _stdin(agent: AgentStream, stream: spdy.Stream) -> None:
        while chunk := await stream.read():
            await agent.send(bytes([ch.STDIN]) + chunk)
        await agent.send(bytes([ch.CLOSE, ch.STDIN]))

    @staticmethod
    async def _resize(agent: AgentStream, stream: spdy.Stream) -> None:
        """Resize events are JSON objects one after another on the stream."""
        buf = ""
        decoder = json.JSONDecoder()
        while chunk := await stream.read():
            buf += chunk.decode("utf-8", "replace")
            while True:
                buf = buf.lstrip()
                try:
                    obj, end = decoder.raw_decode(buf)
                except ValueError:
                    break
                buf = buf[end:]
                if isinstance(obj, dict):
                    await agent.send(bytes([ch.RESIZE]) + orjson.dumps(_size(obj)))
            if len(buf) > MAX_RESIZE_BUFFER:
                stream.abandon()  # not resize events: stop listening rather than buffer
                return

    async def output(self, channel: int, data: bytes) -> None:
        stream = self.streams.get("stdout" if channel == ch.STDOUT else "stderr")
        if stream is not None:
            await stream.write(data)

    async def finish(self, status: dict[str, Any]) -> None:
        for name in ("stdout", "stderr"):
            if name in self.streams:
                await self.streams[name].close()
        err = self.streams["error"]
        if status.get("status") != "Success":
            await err.write(orjson.dumps(status))
        await err.close()
        await self.session.close()


def _size(obj: dict[str, Any]) -> dict[str, int]:
    def dim(key: str) -> int:
        v = obj.get(key)
        return v if isinstance(v, int) and 0 <= v < 65536 else 0

    return {"Width": dim("Width"), "Height": dim("Height")}


async def _relay_exec(client: ExecClient, agent: AgentStream) -> dict[str, Any]:
    """Pump both ways until the agent ends the session (its final Status) or the client goes
    away (the agent connection is then closed, which stops the command)."""
    status: dict[str, Any] = ch.failure_status("the node agent closed the stream without a status")

    async def outputs() -> None:
        nonlocal status
        while (msg := await agent.receive()) is not None:
            if not msg:
                continue
            channel, data = msg[0], msg[1:]
            if channel in (ch.STDOUT, ch.STDERR):
                await client.output(channel, data)
            elif channel == ch.ERROR:
                with contextlib.suppress(orjson.JSONDecodeError):
                    decoded = orjson.loads(data)
                    if isinstance(decoded, dict):
                        status = decoded

    inputs = asyncio.create_task(client.pump_input(agent))
    relay = asyncio.create_task(outputs())
    try:
        await asyncio.wait({inputs, relay}, return_when=asyncio.FIRST_COMPLETED)
        if not relay.done():
            status = ch.failure_status("the client went away", "ClientGone")
    finally:
        for task in (inputs, relay):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await agent.close()
    return status


def _audit(
    request: web.Request,
    user: UserInfo,
    sub: str,
    pod: Obj,
    *,
    protocol: str,
    extra: dict[str, Any],
    status: str,
) -> None:
    """One audit line per stream session, once it ended (the verb is the request's: a
    WebSocket upgrade is a ``get``, a SPDY one a ``create``)."""
    AUDIT.write(
        {
            "verb": "get" if request.method == "GET" else "create",
            "user": user.name,
            "resource": "pods",
            "subresource": sub,
            "namespace": get_path(pod, "metadata", "namespace"),
            "name": get_path(pod, "metadata", "name"),
            "protocol": protocol,
            **extra,
            "outcome": status,
        }
    )


async def serve_exec(
    request: web.Request, server: ApiServer, user: UserInfo, pod: Obj, *, attach: bool
) -> web.StreamResponse:
    kind = _upgrade_kind(request)
    opts = exec_options(request, pod, attach=attach)
    sub = "attach" if attach else "exec"
    if kind == "websocket":
        offered = _offered(request, "Sec-WebSocket-Protocol")
        chosen = next((p for p in offered if p in WS_PROTOCOLS), None)
        if chosen is None:
            raise bad_request(
                f"none of the WebSocket subprotocols {offered} is supported; use one of"
                f" {list(WS_PROTOCOLS)}"
            )
    else:
        offered = _offered(request, "X-Stream-Protocol-Version")
        chosen = next((p for p in offered if p in SPDY_EXEC_PROTOCOLS), None)
        if chosen is None:
            raise ApiError(
                403,
                "Forbidden",
                f"unable to upgrade: unable to negotiate protocol: client supports {offered},"
                f" server supports {list(SPDY_EXEC_PROTOCOLS)}",
            )
    target = await agent_target(server, pod)
    agent = await dial(
        server,
        target,
        pod_path(sub, pod, opts.container),
        opts.params(),
        protocols=(ch.EXEC_PROTOCOL,),
    )
    audit_extra = {"container": opts.container, "command": opts.command, "tty": opts.tty}
    try:
        if kind == "websocket":
            ws = web.WebSocketResponse(
                protocols=(chosen,), max_msg_size=ch.MAX_MESSAGE, autoping=True
            )
            await ws.prepare(request)
            client: ExecClient = WebSocketExec(ws, opts, 5 if chosen.startswith("v5") else 4)
            status = await _relay_exec(client, agent)
            # audited before the client hears the end (it may act on the line at once)
            _audit(
                request,
                user,
                sub,
                pod,
                protocol=chosen,
                extra=audit_extra,
                status=str(status.get("status")),
            )
            await client.finish(status)
            return ws
        resp, conn = await switch_protocols(
            request,
            {"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": chosen},
        )
        session = spdy.Session(conn.read, conn.write)
        runner = asyncio.create_task(session.run())
        try:
            streams = await _expected_streams(session, opts)
            if streams is None:
                _audit(
                    request,
                    user,
                    sub,
                    pod,
                    protocol="SPDY/3.1",
                    extra=audit_extra,
                    status="StreamsMissing",
                )
                return resp
            spdy_client = SpdyExec(session, streams)
            status = await _relay_exec(spdy_client, agent)
            _audit(
                request,
                user,
                sub,
                pod,
                protocol="SPDY/3.1",
                extra=audit_extra,
                status=str(status.get("status")),
            )
            await spdy_client.finish(status)
        finally:
            await session.close()
            runner.cancel()
            conn.close()
        return resp
    finally:
        await agent.close()


async def _expected_streams(
    session: spdy.Session, opts: ExecOptions
) -> dict[str, spdy.Stream] | None:
    """Wait for the streams the request named (``error`` always, ``resize`` with a tty)."""
    wanted = {"error"} | {n for n in ("stdin", "stdout", "stderr") if getattr(opts, n)}
    if opts.tty:
        wanted.add("resize")
    streams: dict[str, spdy.Stream] = {}

    async def collect() -> None:
        while not wanted <= streams.keys():
            stream = await session.accept()
            if stream is None:
                return
            kind = stream.headers.get("streamtype", "")
            if kind in wanted and kind not in streams:
                if kind in ("stdin", "resize"):
                    stream.will_read()
                streams[kind] = stream
            else:
                await stream.reset(spdy.PROTOCOL_ERROR)

    try:
        await asyncio.wait_for(collect(), STREAM_CREATION_SECONDS)
    except TimeoutError:
        return None
    if not wanted <= streams.keys():
        return None
    return streams


# --- port-forward ------------------------------------------------------------------------------


async def serve_portforward(
    request: web.Request, server: ApiServer, user: UserInfo, pod: Obj
) -> web.StreamResponse:
    kind = _upgrade_kind(request)
    phase = get_path(pod, "status", "phase")
    if phase in ("Succeeded", "Failed"):
        raise bad_request(f"cannot port-forward to a completed pod; current phase is {phase}")
    target = await agent_target(server, pod)
    forwarder = PortForwarder(server, target, pod)
    if kind == "websocket":
        offered = _offered(request, "Sec-WebSocket-Protocol")
        if PORTFORWARD_TUNNEL not in offered:
            raise bad_request(
                f"none of the WebSocket subprotocols {offered} is supported; use"
                f" {PORTFORWARD_TUNNEL}"
            )
        ws = web.WebSocketResponse(
            protocols=(PORTFORWARD_TUNNEL,), max_msg_size=ch.MAX_MESSAGE, autoping=True
        )
        await ws.prepare(request)

        async def ws_read() -> bytes:
            while True:
                msg = await ws.receive()
                if msg.type == WSMsgType.BINARY:
                    data: bytes = msg.data
                    if data:  # an empty message is not the end: the Go client sends them
                        return data
                    continue
                if msg.type in (
                    WSMsgType.CLOSE,
                    WSMsgType.CLOSING,
                    WSMsgType.CLOSED,
                    WSMsgType.ERROR,
                ):
                    return b""

        async def ws_write(data: bytes | bytearray) -> None:
            # aiohttp takes any bytes-like object (its annotation says bytes)
            await ws.send_bytes(data)  # type: ignore[arg-type]

        await forwarder.serve(spdy.Session(ws_read, ws_write))
        _audit(
            request,
            user,
            "portforward",
            pod,
            protocol=PORTFORWARD_TUNNEL,
            extra={"ports": forwarder.ports},
            status="Closed",
        )
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.close()
        return ws
    offered = _offered(request, "X-Stream-Protocol-Version")
    if PORTFORWARD_PROTOCOL not in offered:
        raise ApiError(
            403,
            "Forbidden",
            f"unable to upgrade: unable to negotiate protocol: client supports {offered},"
            f" server supports {[PORTFORWARD_PROTOCOL]}",
        )
    resp, conn = await switch_protocols(
        request,
        {
            "Connection": "Upgrade",
            "Upgrade": "SPDY/3.1",
            "X-Stream-Protocol-Version": PORTFORWARD_PROTOCOL,
        },
    )
    try:
        await forwarder.serve(spdy.Session(conn.read, conn.write))
    finally:
        conn.close()
    _audit(
        request,
        user,
        "portforward",
        pod,
        protocol="SPDY/3.1",
        extra={"ports": forwarder.ports},
        status="Closed",
    )
    return resp


class PortForwarder:
    """Pairs the ``error`` and ``data`` streams of each request and relays the data stream
    through its own agent connection to the pod's port."""

    def __init__(self, server: ApiServer, target: AgentTarget, pod: Obj) -> None:
        self.server = server
        self.target = target
        self.pod = pod
        self.ports: list[int] = []
        self._pending: dict[str, dict[str, spdy.Stream]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(self, session: spdy.Session) -> None:
        runner = asyncio.create_task(session.run())
        try:
            while (stream := await session.accept()) is not None:
                await self._add(stream)
        finally:
            for t in list(self._tasks):
                t.cancel()
            await session.close()
            runner.cancel()

    async def _add(self, stream: spdy.Stream) -> None:
        h = stream.headers
        kind, request_id = h.get("streamtype", ""), h.get("requestid", "")
        if kind not in ("error", "data") or not request_id:
            await stream.reset(spdy.PROTOCOL_ERROR)
            return
        pair = self._pending.setdefault(request_id, {})
        if kind in pair or len(self._pending) > spdy.MAX_STREAMS:
            await stream.reset(spdy.PROTOCOL_ERROR)
            return
        pair[kind] = stream
        if kind == "data":
            stream.will_read()  # what the client sends while the agent is dialled waits
        if len(pair) == 2:
            del self._pending[request_id]
            task = asyncio.create_task(self._forward(pair["data"], pair["error"]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _forward(self, data: spdy.Stream, error: spdy.Stream) -> None:
        raw = data.headers.get("port", "")
        port = int(raw) if raw.isdigit() else 0
        if not 0 < port < 65536:
            data.abandon()
            await error.write(f"invalid port {raw!r}".encode())
            await error.close()
            await data.close()
            return
        if port not in self.ports and len(self.ports) < 64:
            self.ports.append(port)
        try:
            agent = await dial(
                self.server,
                self.target,
                pod_path("portForward", self.pod),
                [("port", str(port))],
            )
        except ApiError as exc:
            data.abandon()
            await error.write(f"error forwarding port {port} to pod: {exc.message}".encode())
            await error.close()
            await data.close()
            return
        await _relay_port(agent, data, error)


_PF_DATA = bytes([ch.PF_DATA])


async def _relay_port(agent: AgentStream, data: spdy.Stream, error: spdy.Stream) -> None:
    async def upstream() -> None:
        while chunk := await data.read():
            # one message per read (reads join what arrived), none past the agent's bound
            for i in range(0, len(chunk), ch.PF_CHUNK):
                await agent.send(_PF_DATA + chunk[i : i + ch.PF_CHUNK])
        await agent.send(bytes([ch.PF_EOF]))

    up = asyncio.create_task(upstream())
    try:
        while (msg := await agent.receive()) is not None:
            if not msg:
                continue
            kind, payload = msg[0], memoryview(msg)[1:]  # no copy of the payload
            if kind == ch.PF_DATA:
                await data.write(payload)
            elif kind == ch.PF_ERROR:
                await error.write(payload)
            elif kind == ch.PF_EOF:
                await data.close()
    finally:
        up.cancel()
        data.abandon()  # what the client still sends for this connection goes nowhere
        await agent.close()
        await data.close()
        await error.close()
