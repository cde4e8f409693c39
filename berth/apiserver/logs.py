"""``pods/{name}/log``: proxied to the node agent that runs the pod, over mTLS.

The agent serves ``GET /containerLogs/{namespace}/{pod}/{container}`` with the query parameters
``follow``, ``tailLines``, ``previous``, ``timestamps``, ``sinceSeconds`` and ``limitBytes``
(the kubelet's contract) on the port the Node reports in
``status.daemonEndpoints.kubeletEndpoint.Port``. The API server authenticates to it with the
agent-client certificate from its configuration, and accepts the agent only if it presents a
serving certificate from the cluster CA *for that node's name* (a DNS name equal to the Node's
name, as the provisioner issues them). A node writes its own Node's addresses and port, so
without that check it could point the API server at another node, or at any server holding a
cluster certificate (the API server itself), and receive requests meant for someone else;
with it, a dial anywhere but that node's own agent ends at the TLS handshake, before any
request is sent.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING
from urllib.parse import quote

import aiohttp
from aiohttp import web

from berth.api.meta import Obj, get_path

from .errors import ApiError, bad_request
from .params import parse_bool, parse_int

if TYPE_CHECKING:
    from .app import ApiServer

FORWARDED = ("tailLines", "sinceSeconds", "limitBytes")


def _node_address(node: Obj) -> str | None:
    addrs = get_path(node, "status", "addresses") or []
    for kind in ("InternalIP", "ExternalIP", "Hostname"):
        for a in addrs:
            if isinstance(a, dict) and a.get("type") == kind and a.get("address"):
                return str(a["address"])
    return None


def _agent_port(node: Obj) -> int | None:
    ep = get_path(node, "status", "daemonEndpoints", "kubeletEndpoint") or {}
    port = ep.get("Port", ep.get("port")) if isinstance(ep, dict) else None
    return port if isinstance(port, int) and 0 < port < 65536 else None


def agent_ssl_context(server: ApiServer) -> ssl.SSLContext:
    cfg = server.config
    if cfg.agent_client_cert_file is None or cfg.agent_client_key_file is None:
        raise ApiError(
            503,
            "ServiceUnavailable",
            "pod logs are unavailable: the API server has no agent client certificate configured",
        )
    ctx = ssl.create_default_context(cafile=str(cfg.client_ca_file))
    # The name checked is the node's (given per request as server_hostname), not the
    # address dialled: addresses may be NATed, and the node chooses them itself.
    ctx.check_hostname = True
    ctx.load_cert_chain(str(cfg.agent_client_cert_file), str(cfg.agent_client_key_file))
    return ctx


async def agent_address(server: ApiServer, node_name: str) -> tuple[str, int]:
    """The address and agent port the Node reports (503 when it reports none)."""
    node_rd = server.table.lookup("", "v1", "nodes")
    assert node_rd is not None
    node = await server.registry.get(node_rd, "", node_name)
    host, port = _node_address(node), _agent_port(node)
    if host is None or port is None:
        raise ApiError(
            503,
            "ServiceUnavailable",
            f"node {node_name} does not report an address and agent port for log streaming",
        )
    return host, port


async def proxy_logs(request: web.Request, server: ApiServer, pod: Obj) -> web.StreamResponse:
    q = request.query
    name = str(get_path(pod, "metadata", "name"))
    ns = str(get_path(pod, "metadata", "namespace"))
    spec = pod.get("spec") or {}
    containers = [str(c.get("name")) for c in spec.get("containers") or [] if isinstance(c, dict)]
    init = [str(c.get("name")) for c in spec.get("initContainers") or [] if isinstance(c, dict)]
    container = q.get("container", "")
    if not container:
        if len(containers) != 1:
            raise bad_request(
                f"a container name must be specified for pod {name}, choose one of: "
                f"[{' '.join(containers)}]"
                + (f" or one of the init containers: [{' '.join(init)}]" if init else "")
            )
        container = containers[0]
    elif container not in containers and container not in init:
        raise bad_request(f"container {container} is not valid for pod {name}")
    node_name = spec.get("nodeName")
    if not node_name:
        raise bad_request(f"pod {name} does not have a host assigned")
    host, port = await agent_address(server, str(node_name))
    params: dict[str, str] = {}
    follow = parse_bool(q.get("follow"), "follow")
    if follow:
        params["follow"] = "true"
    if parse_bool(q.get("previous"), "previous"):
        params["previous"] = "true"
    if parse_bool(q.get("timestamps"), "timestamps"):
        params["timestamps"] = "true"
    for p in FORWARDED:
        value = parse_int(q.get(p), p, minimum=0)
        if value is not None:
            params[p] = str(value)
    if server._agent_ssl is None:
        server._agent_ssl = agent_ssl_context(server)
    url = f"https://{host}:{port}/containerLogs/{quote(ns)}/{quote(name)}/{quote(container)}"
    timeout = aiohttp.ClientTimeout(total=None if follow else 60, sock_connect=10)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(
                url, params=params, ssl=server._agent_ssl, server_hostname=str(node_name)
            ) as upstream,
        ):
            if upstream.status != 200:
                text = (await upstream.text())[:500]
                code = upstream.status if 400 <= upstream.status < 500 else 502
                raise ApiError(
                    code,
                    "NotFound" if code == 404 else "BadRequest" if code < 500 else "InternalError",
                    text or f"agent answered {upstream.status}",
                )
            resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await resp.write(chunk)
            except (ConnectionError, aiohttp.ClientError):
                pass  # either side went away mid-stream; the response simply ends
            return resp
    except aiohttp.ClientConnectorCertificateError as exc:
        raise ApiError(
            502,
            "InternalError",
            f"refusing to proxy to {host}:{port}: it does not present the serving certificate"
            f" of node {node_name} (one from the cluster CA naming {node_name}):"
            f" {exc.certificate_error}",
        ) from exc
    except aiohttp.ClientError as exc:
        raise ApiError(
            502,
            "InternalError",
            f"cannot reach the agent on node {node_name} at {host}:{port}:"
            f" {exc.__class__.__name__}",
        ) from exc
