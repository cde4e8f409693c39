"""The real client: Kubernetes REST over HTTPS with mutual TLS, on aiohttp.

One :class:`aiohttp.ClientSession` (connection pool) per client, created lazily inside the
running loop. Watches are streamed: the chunked body is split on newlines by hand so an object
of any size fits (aiohttp's ``readline`` caps line length).

aiohttp is imported where a request is first made, not with this module: the operator's
``berth`` imports the cluster phases (whose last steps talk to the API server) for every
command, and aiohttp was ~0.13 s of the ~1 s of CPU each start took (a no-op ``berth apply``
of 20 lab hosts takes ~1.3 s of CPU in all).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlencode

import orjson

from berth.api.resources import ResourceDef
from berth.client import errors
from berth.client.interface import (
    Obj,
    ObjectList,
    PatchBody,
    PatchType,
    PropagationPolicy,
    WatchEvent,
)
from berth.client.kubeconfig import load_kubeconfig

if TYPE_CHECKING:
    import aiohttp

_JSON = "application/json"
_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}


# Connections for ordinary requests, per client. Each TLS connection costs ~200 KiB resident
# on both ends (uvloop's SSL transport reads through a 256 KiB buffer of its own), and the API
# server serves one request at a time per connection on one event loop, so connections beyond a
# handful queue requests in the server instead of the client without serving any more of them:
# 400 concurrent creates through one client (tests/harness API server, 2 cores) went at 228-297/s
# with 64 connections, 307-413/s with 8, 310-399/s with 16, with less server CPU per create.
# With 64, a loaded lab's controller manager held ~94 sockets, the scheduler ~75, each agent ~70,
# and the API server ~390: memory the bursts left behind in every process.
MAX_CONNECTIONS = 8

# How long an idle connection is kept for the next request. aiohttp's default (15 s) closed the
# agents' connections between pod bursts (leases and node status keep one busy, not eight), so
# every burst began with TLS handshakes on both ends: 22 per agent in one bench run, ~1 ms of
# CPU each in the agent alone. client-go keeps idle connections 90 s (its transport's
# IdleConnTimeout); the pool bounds how many (MAX_CONNECTIONS) and the API server keeps them
# longer (aiohttp's server: 3630 s).
IDLE_CONNECTION_SECONDS = 90.0


class HttpClient:
    """:class:`berth.client.interface.ApiClient` over HTTPS."""

    def __init__(
        self,
        server: str,
        ssl_context: ssl.SSLContext | None,
        *,
        request_timeout: float = 30.0,
        max_connections: int = MAX_CONNECTIONS,
        user_agent: str = "berth",
    ) -> None:
        self.server = server.rstrip("/")
        self._ssl = ssl_context
        self._timeout = request_timeout
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        # Watches hold their connection for minutes: they get their own unbounded pool so
        # they can never starve ordinary requests of connections.
        self._watch_session: aiohttp.ClientSession | None = None
        self._headers = {"User-Agent": user_agent, "Accept": _JSON}
        self._discovery: dict[str, set[str]] = {}

    @classmethod
    def from_kubeconfig(cls, path: str | Path, *, user_agent: str = "berth") -> HttpClient:
        creds = load_kubeconfig(path)
        return cls(creds.server, creds.ssl_context(), user_agent=user_agent)

    def _sess(self, *, watch: bool = False) -> aiohttp.ClientSession:
        import aiohttp  # noqa: PLC0415 - on first use (see the module docstring)

        current = self._watch_session if watch else self._session
        if current is None or current.closed:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl if self._ssl is not None else False,
                limit=0 if watch else self._max_connections,
                keepalive_timeout=IDLE_CONNECTION_SECONDS,
            )
            current = aiohttp.ClientSession(connector=connector, headers=self._headers)
            if watch:
                self._watch_session = current
            else:
                self._session = current
        return current

    async def close(self) -> None:
        for session in (self._session, self._watch_session):
            if session is not None:
                await session.close()
        self._session = self._watch_session = None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = _JSON,
    ) -> Any:
        import aiohttp  # noqa: PLC0415 - on first use (see the module docstring)

        url = self.server + path
        if params:
            url += "?" + urlencode(params)
        data = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else None
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        try:
            async with self._sess().request(
                method, url, data=data, headers=headers, timeout=timeout
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise errors.Unreachable(f"{method} {path}: {exc or type(exc).__name__}") from exc
        decoded: Any = None
        if raw:
            try:
                decoded = orjson.loads(raw)
            except orjson.JSONDecodeError:
                decoded = {"message": raw.decode(errors="replace")[:500]}
        if status >= 400:
            raise errors.from_status(status, decoded if isinstance(decoded, dict) else None)
        return decoded

    async def served(self, resource: ResourceDef) -> bool:
        gv = resource.api_version
        if gv not in self._discovery:
            path = f"/apis/{gv}" if resource.group else f"/api/{gv}"
            try:
                doc = await self._request("GET", path)
            except errors.NotFound:
                doc = {}
            self._discovery[gv] = {
                str(r.get("name"))
                for r in (doc or {}).get("resources") or []
                if "/" not in str(r.get("name"))
            }
        return resource.plural in self._discovery[gv]

    async def get(
        self,
        resource: ResourceDef,
        name: str,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> Obj:
        return cast(
            Obj, await self._request("GET", resource.object_path(name, namespace, subresource))
        )

    async def list(
        self,
        resource: ResourceDef,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
    ) -> ObjectList:
        params: dict[str, str] = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if resource_version is not None:
            params["resourceVersion"] = resource_version
        doc = await self._request("GET", resource.collection_path(namespace), params=params)
        meta = doc.get("metadata") or {}
        items = doc.get("items") or []
        for item in items:
            # Lists carry kind/apiVersion on the list, not on each item; restore them.
            item.setdefault("kind", resource.kind)
            item.setdefault("apiVersion", resource.api_version)
        return ObjectList(
            items=items,
            resource_version=str(meta.get("resourceVersion", "")),
            continue_token=str(meta.get("continue", "") or ""),
        )

    async def create(
        self, resource: ResourceDef, body: Obj, *, namespace: str | None = None
    ) -> Obj:
        ns = namespace or (body.get("metadata") or {}).get("namespace")
        return cast(Obj, await self._request("POST", resource.collection_path(ns), body=body))

    async def create_subresource(
        self,
        resource: ResourceDef,
        name: str,
        subresource: str,
        *,
        body: Obj,
        namespace: str | None = None,
    ) -> Obj:
        path = resource.object_path(name, namespace, subresource)
        return cast(Obj, await self._request("POST", path, body=body) or {})

    async def update(
        self, resource: ResourceDef, body: Obj, *, subresource: str | None = None
    ) -> Obj:
        meta = body.get("metadata") or {}
        path = resource.object_path(str(meta.get("name")), meta.get("namespace"), subresource)
        return cast(Obj, await self._request("PUT", path, body=body))

    async def patch(
        self,
        resource: ResourceDef,
        name: str,
        patch: PatchBody,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
        patch_type: PatchType = "merge",
    ) -> Obj:
        path = resource.object_path(name, namespace, subresource)
        content_type = _PATCH_CONTENT_TYPES[patch_type]
        return cast(Obj, await self._request("PATCH", path, body=patch, content_type=content_type))

    async def delete(
        self,
        resource: ResourceDef,
        name: str,
        *,
        namespace: str | None = None,
        propagation_policy: PropagationPolicy | None = None,
        grace_period_seconds: int | None = None,
        precondition_uid: str | None = None,
    ) -> Obj | None:
        options: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if precondition_uid:
            options["preconditions"] = {"uid": precondition_uid}
        doc = await self._request("DELETE", resource.object_path(name, namespace), body=options)
        # Servers answer with the object (graceful deletion, finalizers, and for some kinds
        # also the final state) or with a Status; only the former is returned.
        if isinstance(doc, dict) and doc.get("kind") == resource.kind:
            return cast(Obj, doc)
        return None

    async def watch(
        self,
        resource: ResourceDef,
        *,
        namespace: str | None = None,
        resource_version: str = "",
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[WatchEvent]:
        params = {"watch": "true", "allowWatchBookmarks": "true"}
        if resource_version:
            params["resourceVersion"] = resource_version
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if timeout_seconds is not None:
            params["timeoutSeconds"] = str(timeout_seconds)
        url = self.server + resource.collection_path(namespace) + "?" + urlencode(params)
        # No total timeout: the server ends the stream after timeoutSeconds. A read timeout a
        # minute beyond that is the last resort against a server that vanished without closing
        # the connection; informers give up on a silent watch much sooner (berth.api.watch).
        idle = (timeout_seconds or 300) + 60
        import aiohttp  # noqa: PLC0415 - on first use (see the module docstring)

        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout, sock_read=idle)
        try:
            async for event in self._stream(url, timeout):
                yield event
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise errors.Unreachable(
                f"watch {resource.plural}: {exc or type(exc).__name__}"
            ) from exc

    async def _stream(self, url: str, limits: aiohttp.ClientTimeout) -> AsyncIterator[WatchEvent]:
        async with self._sess(watch=True).get(url, timeout=limits) as resp:
            if resp.status >= 400:
                raw = await resp.read()
                body = orjson.loads(raw) if raw.startswith(b"{") else None
                raise errors.from_status(resp.status, body)
            buf = b""
            async for chunk in resp.content.iter_any():
                buf += chunk
                while True:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        break
                    line, buf = buf[:nl], buf[nl + 1 :]
                    if line.strip():
                        doc = orjson.loads(line)
                        yield WatchEvent(type=doc["type"], object=doc["object"])
            if buf.strip():
                doc = orjson.loads(buf)
                yield WatchEvent(type=doc["type"], object=doc["object"])
