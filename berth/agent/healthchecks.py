"""Health-check node ports of ``externalTrafficPolicy: Local`` LoadBalancer Services, served
on every node as kube-proxy serves them: ``GET`` on the Service's ``healthCheckNodePort``
answers 200 when this node has ready endpoints of the Service, 503 otherwise, with a JSON body
naming the Service and the count (``localEndpoints``). An outside load balancer (or anyone)
learns from it which nodes to send the Service's traffic to.

The servers answer from a table the network loop refreshes on every sync; they never read the
API. A request is bounded (8 KiB of head, 5 s), answered, and the connection closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from berth.api.loadbalancers import local_traffic

log = logging.getLogger(__name__)

MAX_HEAD = 8192
READ_SECONDS = 5.0


@dataclass(frozen=True)
class Check:
    namespace: str
    name: str
    local_endpoints: int


def wanted_checks(
    services: Iterable[Mapping[str, Any]],
    local_counts: Mapping[tuple[str, str], Mapping[str, int]],
    node: str,
) -> dict[int, Check]:
    """``healthCheckNodePort -> Check`` for the Services that have one."""
    out: dict[int, Check] = {}
    for svc in services:
        spec = svc.get("spec") or {}
        port = spec.get("healthCheckNodePort")
        if not local_traffic(svc) or spec.get("type") != "LoadBalancer":
            continue
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            continue
        meta = svc.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        out.setdefault(port, Check(key[0], key[1], local_counts.get(key, {}).get(node, 0)))
    return out


def response(check: Check) -> bytes:
    body = json.dumps(
        {
            "service": {"namespace": check.namespace, "name": check.name},
            "localEndpoints": check.local_endpoints,
            "serviceProxyHealthy": True,
        }
    ).encode()
    status = "200 OK" if check.local_endpoints > 0 else "503 Service Unavailable"
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"X-Content-Type-Options: nosniff\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class HealthCheckServers:
    """One listener per health-check node port; :meth:`sync` opens and closes them."""

    def __init__(self, host: str = "0.0.0.0") -> None:  # noqa: S104 - node ports: every address
        self.host = host
        self.checks: dict[int, Check] = {}
        self._servers: dict[int, asyncio.Server] = {}

    async def sync(self, checks: dict[int, Check]) -> None:
        self.checks = dict(checks)
        for port in sorted(set(self._servers) - set(checks)):
            server = self._servers.pop(port)
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()
        for port in sorted(set(checks) - set(self._servers)):
            try:
                self._servers[port] = await asyncio.start_server(
                    functools.partial(self._serve, port), self.host, port, limit=MAX_HEAD
                )
            except OSError as exc:  # port taken: retried on the next sync
                log.warning("health check node port %d: cannot listen: %s", port, exc)

    async def close(self) -> None:
        await self.sync({})

    async def _serve(
        self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_SECONDS)
            check = self.checks.get(port)
            if check is not None:
                writer.write(response(check))
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
