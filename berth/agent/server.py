"""The agent's HTTPS endpoint (the API server proxies ``pods/log``, ``pods/exec``,
``pods/attach``, ``pods/portforward`` and ``nodes/proxy`` here):
``GET /containerLogs/{namespace}/{pod}/{container}?follow=&tailLines=&previous=``,
``GET /exec/{namespace}/{pod}/{container}``, ``GET /attach/{namespace}/{pod}/{container}``
and ``GET /portForward/{namespace}/{pod}``
(WebSockets: :mod:`berth.agent.streaming`), ``GET /stats/summary`` (CPU and memory,
:mod:`berth.agent.stats`), ``GET /metrics`` (Prometheus: pod start latency, runtime errors,
work queues) and ``GET /healthz``. Clients must present a certificate signed by the cluster CA
(mTLS), and every request is then authorized for that certificate's identity
(:mod:`berth.agent.authz`):
another node, the service proxy or any other cluster identity gets 403.

Concurrency contract: handlers only read the pod manager's records and the runtime's logs; a
following log stream ends when the container exits or the client goes away.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from berth.agent import streaming
from berth.agent.authz import AgentAuthorizer, identity_from_peercert, node_request
from berth.agent.pods import PodManager
from berth.agent.runtime import Runtime
from berth.agent.stats import summary
from berth.client.keys import ObjectKey
from berth.client.kubeconfig import server_ssl_context
from berth.machinery.prometheus import REGISTRY

_TRUE = {"1", "t", "T", "true", "True", "TRUE"}


def _authorization(
    manager: PodManager, authorizer: AgentAuthorizer, default_node: str
) -> Middleware:
    @web.middleware
    async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
        peercert = request.transport.get_extra_info("peercert") if request.transport else None
        who = identity_from_peercert(peercert)
        if who is None:
            return web.Response(status=401, text="Unauthorized")
        node = (
            request.query.get("node", default_node)
            if request.path == "/stats/summary"
            else default_node
        )
        ns, pod = request.match_info.get("namespace"), request.match_info.get("pod")
        if ns and pod:
            rec = manager.records.get(ObjectKey(f"{ns}/{pod}"))
            node = rec.node if rec is not None else default_node
        asked = node_request(request.method, request.path, node)
        if not await authorizer.allowed(who, asked):
            return web.Response(status=403, text=asked.describe(who))
        response: web.StreamResponse = await handler(request)
        return response

    return authorize


def make_app(
    manager: PodManager,
    runtime: Runtime,
    *,
    authorizer: AgentAuthorizer,
    default_node: str,
) -> web.Application:
    """The agent's routes; ``default_node`` names the node a request that is not about one
    pod is authorized against (``/stats/summary?node=NAME``: that node, for an agent that
    runs several)."""
    started = datetime.now(UTC)

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def container_logs(request: web.Request) -> web.StreamResponse:
        ns = request.match_info["namespace"]
        pod = request.match_info["pod"]
        container = request.match_info["container"]
        previous = request.query.get("previous", "") in _TRUE
        follow = request.query.get("follow", "") in _TRUE
        tail_raw = request.query.get("tailLines")
        try:
            tail = int(tail_raw) if tail_raw is not None else None
        except ValueError:
            return web.Response(status=400, text=f"tailLines must be an integer, got {tail_raw!r}")
        cid = manager.container_id(ns, pod, container, previous=previous)
        if cid is None:
            what = "previous terminated container" if previous else "container"
            return web.Response(
                status=404, text=f'{what} "{container}" in pod "{pod}" not found on this node'
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await resp.prepare(request)
        async for chunk in runtime.logs(cid, tail_lines=tail, follow=follow):
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def stats_summary(request: web.Request) -> web.Response:
        node = request.query.get("node", default_node)
        body = await summary(manager, runtime, node, started)
        return web.json_response(body)

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(text=REGISTRY.render(), content_type="text/plain")

    app = web.Application(middlewares=[_authorization(manager, authorizer, default_node)])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/stats/summary", stats_summary)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", container_logs)

    async def exec_(request: web.Request) -> web.StreamResponse:
        return await streaming.serve_exec(request, manager, runtime)

    async def port_forward(request: web.Request) -> web.StreamResponse:
        return await streaming.serve_portforward(request, manager, runtime)

    async def attach(request: web.Request) -> web.StreamResponse:
        return await streaming.serve_attach(request, manager, runtime)

    app.router.add_get("/exec/{namespace}/{pod}/{container}", exec_)
    app.router.add_get("/attach/{namespace}/{pod}/{container}", attach)
    app.router.add_get("/portForward/{namespace}/{pod}", port_forward)
    return app


def tls_context(*, cert_file: str, key_file: str, client_ca_file: str) -> ssl.SSLContext:
    return server_ssl_context(
        ca_pem=Path(client_ca_file).read_bytes(),
        cert_pem=Path(cert_file).read_bytes(),
        key_pem=Path(key_file).read_bytes(),
    )


async def serve(
    app: web.Application, *, address: str, port: int, ssl_context: ssl.SSLContext | None
) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, address, port, ssl_context=ssl_context)
    await site.start()
    return runner
