"""Dialling a pod's node agent for a stream (WebSocket over mTLS, the agent's certificate
checked for the node's name exactly as for ``pods/log``: see :mod:`berth.apiserver.logs`)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

import aiohttp

from berth.api.agentstreams import MAX_MESSAGE
from berth.api.meta import Obj, get_path
from berth.apiserver.errors import ApiError, bad_request
from berth.apiserver.logs import agent_address, agent_ssl_context

if TYPE_CHECKING:
    from berth.apiserver.app import ApiServer

CONNECT_SECONDS = 10.0


@dataclass(frozen=True)
class AgentTarget:
    node: str
    host: str
    port: int


async def agent_target(server: ApiServer, pod: Obj) -> AgentTarget:
    name = str(get_path(pod, "metadata", "name"))
    node_name = get_path(pod, "spec", "nodeName")
    if not node_name:
        raise bad_request(f"pod {name} does not have a host assigned")
    host, port = await agent_address(server, str(node_name))
    return AgentTarget(str(node_name), host, port)


def pod_path(kind: str, pod: Obj, *rest: str) -> str:
    ns = str(get_path(pod, "metadata", "namespace"))
    name = str(get_path(pod, "metadata", "name"))
    return "/".join(
        [f"/{kind}", quote(ns, safe=""), quote(name, safe="")] + [quote(r, safe="") for r in rest]
    )


class AgentStream:
    """An open WebSocket to the agent, and the client session that owns it."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self.session = session
        self.ws = ws

    async def send(self, data: bytes) -> None:
        if not self.ws.closed:
            with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError):
                await self.ws.send_bytes(data)

    async def receive(self) -> bytes | None:
        """The next binary message; ``None`` once the agent closed."""
        while True:
            msg = await self.ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                data: bytes = msg.data
                return data
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG):
                continue
            return None

    async def close(self) -> None:
        try:
            await self.ws.close()
        finally:
            await self.session.close()


async def dial(
    server: ApiServer,
    target: AgentTarget,
    path: str,
    params: list[tuple[str, str]],
    *,
    protocols: tuple[str, ...] = (),
) -> AgentStream:
    """Open ``path`` on the target's agent; agent refusals become the matching ApiError."""
    if server._agent_ssl is None:
        server._agent_ssl = agent_ssl_context(server)
    url = f"https://{target.host}:{target.port}{path}"
    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_SECONDS)
    )
    try:
        ws = await session.ws_connect(
            url,
            params=params,
            protocols=protocols,
            ssl=server._agent_ssl,
            server_hostname=target.node,
            max_msg_size=MAX_MESSAGE,
            autoping=True,
        )
    except aiohttp.WSServerHandshakeError as exc:
        await session.close()
        if exc.status == 404:
            raise ApiError(404, "NotFound", exc.message or "not found on the node") from exc
        if exc.status in (400, 403):
            raise ApiError(
                exc.status,
                "BadRequest" if exc.status == 400 else "Forbidden",
                exc.message or f"the agent answered {exc.status}",
            ) from exc
        raise ApiError(
            502,
            "InternalError",
            f"the agent on node {target.node} answered {exc.status}: {exc.message}",
        ) from exc
    except aiohttp.ClientConnectorCertificateError as exc:
        await session.close()
        raise ApiError(
            502,
            "InternalError",
            f"refusing to proxy to {target.host}:{target.port}: it does not present the serving"
            f" certificate of node {target.node}: {exc.certificate_error}",
        ) from exc
    except asyncio.CancelledError:
        await session.close()  # the session ended while the agent was dialled
        raise
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        await session.close()
        raise ApiError(
            502,
            "InternalError",
            f"cannot reach the agent on node {target.node} at {target.host}:{target.port}:"
            f" {exc.__class__.__name__}",
        ) from exc
    return AgentStream(session, ws)
