"""The HTTP layer: TLS, authentication, routing, authorization, content negotiation.

:class:`ApiServer` owns the store, the watch hub, the registry and the aiohttp site. Every
request goes through :meth:`ApiServer.handle`, which turns any error into a ``Status``
response: clients never see a traceback or a bare 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from typing import Any

import orjson
from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import HttpVersion11, RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from berth import __version__
from berth.api.meta import Obj
from berth.api.resources import CRD_RESOURCE, RESOURCES, ResourceDef, ResourceTable
from berth.api.storage import default_storage_class
from berth.store import config as datastore
from berth.store.interface import Store, StoreError, Unavailable

from . import client_warnings, discovery, resourceproxy, reviews
from .allocators import IPAllocator, PortAllocator
from .auth import (
    ANONYMOUS,
    CertificateUsers,
    TokenAuthenticator,
    UserInfo,
)
from .bodies import read_body
from .codec import Codec, load_key
from .config import ServerConfig
from .crd.manager import CustomResources
from .errors import (
    DATASTORE_RETRY_AFTER,
    ApiError,
    bad_request,
    datastore_unavailable,
    forbidden,
    internal,
    method_not_allowed,
    not_acceptable,
    route_not_found,
    unauthorized,
    unsupported_media,
)
from .handlers import METRIC_VERBS, Call, Endpoint, Route, endpoint_for
from .ingressgraph import IngressGraph
from .kinds import KindStrategy, Strategies
from .kinds.customresourcedefinitions import CustomResourceDefinitionStrategy
from .kinds.customresources import CustomObjectStrategy
from .metrics import Metrics
from .nodeauthz import NodeAndRbacAuthorizer, retire_node_group_binding
from .nodegraph import NodeGraph
from .openapi import http as openapi_http
from .openapi.documents import OpenApi
from .options import OPTIONS_KIND, parse_dry_run
from .params import parse_bool
from .peers import ApiServerPeers
from .priority import SYSTEM_CLASSES
from .rbac import Attributes, bootstrap_policy
from .rbac_escalation import EscalationCheck
from .rbac_reconcile import reconcile_bootstrap_roles
from .registry import PATCH_TYPES, Registry
from .resourcemetrics import RESOLUTION, MetricsStore, Scraper
from .serviceaccounts import ServiceAccounts
from .slicedbody import slice_large_body
from .watch import ObjEvent, WatchHub

log = logging.getLogger(__name__)

PUBLIC_PATHS = {"/healthz", "/livez", "/readyz", "/version", "/version/"}
MAX_BODY = 3 * 1024 * 1024
JSON = "application/json"
SHUTDOWN_GRACE = 1.0
"""Seconds a request still running at stop may take to finish before it is cancelled
(watches end at once; this bounds a slow list or write)."""
READYZ_DATASTORE_TIMEOUT = 2.0
"""Seconds /readyz waits for the datastore's current revision before answering 503."""
PEERS_LEAVE_TIMEOUT = 1.0
"""Seconds a stopping server spends deleting its Lease (a dead datastore must not hold it)."""


_CRD_PREFIX = CRD_RESOURCE.key_prefix()


class _CustomResourceTable:
    """What :class:`CustomResources` changes: this server's table and strategies."""

    def __init__(self, server: ApiServer) -> None:
        self.server = server

    def add(self, rd: ResourceDef) -> None:
        self.server.add_resource(rd, self.server.custom_objects)

    def remove(self, rd: ResourceDef) -> None:
        self.server.remove_resource(rd)


def write_verb(method: str, route: Route) -> str:
    """The RBAC verb of a write request to ``route``; 405 for a method the route lacks
    (whether its subresource serves the verb is the dispatch table's to say)."""
    if method == "POST":
        if route.name and not route.subresource:
            raise method_not_allowed(method)
        return "create"
    if method in ("PUT", "PATCH"):
        if not route.name:
            raise method_not_allowed(method)
        return "update" if method == "PUT" else "patch"
    if method == "DELETE":
        return "delete" if route.name else "deletecollection"
    raise method_not_allowed(method)


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type=JSON)


def _status_response(err: ApiError) -> web.Response:
    resp = _json(err.status(), err.code)
    for k, v in err.headers.items():
        resp.headers[k] = v
    return resp


async def open_store(config: ServerConfig) -> Store:
    """The store the configuration names: SQLite (one server), etcd (any number of servers
    on one etcd cluster) or memory (tests) — all opened by :mod:`berth.store.config`."""
    return await datastore.open_store(config.datastore)


def server_ssl_context(config: ServerConfig) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # The certificate a client presents in the handshake is the connection's identity for
    # its life (auth.CertificateUsers remembers it per connection): no TLS 1.2
    # renegotiation can bring another (Go's servers, kube-apiserver's, never renegotiate).
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    ctx.load_cert_chain(str(config.tls_cert_file), str(config.tls_key_file))
    ctx.load_verify_locations(cafile=str(config.client_ca_file))
    # Optional, so that bearer-token clients (service accounts) can connect too.
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class ApiServer:
    """The API server. ``await start()`` binds and serves; ``await stop()`` shuts down."""

    def __init__(self, config: ServerConfig, *, store: Store | None = None) -> None:
        self.config = config
        self._given_store = store
        key = load_key(config.encryption_key_file) if config.encryption_key_file else None
        self.codec = Codec(key)
        self.service_ips = IPAllocator(config.service_cidr)
        self.node_ports = PortAllocator(*config.node_port_range)
        self.node_graph = NodeGraph()
        self.ingress_graph = IngressGraph()
        self.authorizer = NodeAndRbacAuthorizer(self.node_graph, self.ingress_graph)
        self.tokens = (
            TokenAuthenticator.from_file(config.token_auth_file)
            if config.token_auth_file
            else TokenAuthenticator()
        )
        self.service_accounts = ServiceAccounts(config)
        self.cert_users = CertificateUsers()
        self.metrics = Metrics()
        # Resource metrics (metrics.k8s.io) from the agents' stats (resourcemetrics.py).
        self.resource_metrics = MetricsStore()
        self.metrics_resolution = RESOLUTION
        self._scraper_task: asyncio.Task[None] | None = None
        # This server's resources and their strategies: custom resources come and go at
        # run time (add_resource / remove_resource).
        self.table = ResourceTable()
        self.strategies = Strategies()
        # The CRDs this server serves, kept in step with the store (start-up listing, then
        # the watch): also the ``crd_schemas`` the OpenAPI documents read.
        self.crd_schemas = CustomResources(_CustomResourceTable(self), RESOURCES)
        self.custom_objects = CustomObjectStrategy(self.crd_schemas)
        self.crd_strategy = CustomResourceDefinitionStrategy(self.crd_schemas)
        self.strategies.register(CRD_RESOURCE, self.crd_strategy)
        self._group_of: dict[str, str] = {}
        self._group_of_generation = -1
        self.openapi = OpenApi(
            lambda: openapi_http.discovery_groups(self.table),
            lambda: getattr(self, "crd_schemas", None),
        )
        self._runner: web.ServerRunner | None = None
        self._site: web.TCPSite | None = None
        self._compactor: asyncio.Task[None] | None = None
        self._peers_task: asyncio.Task[None] | None = None
        self.port = config.port
        self._agent_ssl: ssl.SSLContext | None = None
        self.stopping = asyncio.Event()

    async def _open(self) -> None:
        store = self._given_store or await open_store(self.config)
        self.store: Store = store
        self.hub = WatchHub(store, self.codec)
        self.registry = Registry(
            store,
            self.codec,
            service_ips=self.service_ips,
            node_ports=self.node_ports,
            pod_security=self.config.pod_security,
            default_tolerations=self.config.default_tolerations,
            resources=self.table,
            strategies=self.strategies,
        )
        self.registry.event_ttl = self.config.event_ttl
        self.registry.escalation = EscalationCheck(self.authorizer, self.registry.get)
        self.registry.service_accounts = self.service_accounts
        self.registry.hub = self.hub

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        await self._open()
        loaded_at = await self._load_caches()
        self.hub.listeners.append(self._on_event)
        await self.hub.start(after=loaded_at)
        await self.registry.load_allocations()
        await self._bootstrap()
        await self.crd_strategy.resettle(self.registry)
        # aiohttp's low-level server, not a web.Application: every path comes to one handler
        # (routing is ours, :meth:`_dispatch`), so the application's router (a regex match
        # and a match-info object per request) and its middleware chain were pure overhead.
        web_server = web.Server(
            self._serve,
            request_factory=self._make_request,
            access_log=None,
            max_field_size=65536,
        )
        self._runner = web.ServerRunner(
            web_server, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE
        )
        await self._runner.setup()
        self._site = web.TCPSite(
            self._runner,
            self.config.bind_address,
            self.config.port,
            ssl_context=server_ssl_context(self.config),
            backlog=1024,
            reuse_address=True,
        )
        await self._site.start()
        server = self._site._server
        sockets = getattr(server, "sockets", None)
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        self._compactor = asyncio.create_task(self._compact_loop(), name="compactor")
        self.peers = ApiServerPeers(
            self.registry, address=self.config.advertise_address, port=self.port
        )
        self._peers_task = asyncio.create_task(self.peers.run(), name="apiserver-peers")
        self.scraper = Scraper(self, self.resource_metrics, resolution=self.metrics_resolution)
        self._scraper_task = asyncio.create_task(self.scraper.run(), name="resource-metrics")
        log.info("berth API server listening on %s:%d", self.config.bind_address, self.port)

    async def stop(self) -> None:
        """Stop promptly: refuse new connections, end every open watch at once (clients
        relist and re-watch), let in-flight requests finish for at most
        :data:`SHUTDOWN_GRACE` seconds, then flush and close the store."""
        self.stopping.set()
        if self._scraper_task is not None:
            self._scraper_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scraper_task
        if self._peers_task is not None:
            self._peers_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._peers_task
            try:  # other servers take us out of the kubernetes Endpoints at once
                await asyncio.wait_for(self.peers.leave(), PEERS_LEAVE_TIMEOUT)
            except (TimeoutError, ApiError, StoreError):
                log.warning("could not withdraw from the kubernetes endpoints", exc_info=True)
        if self._compactor is not None:
            self._compactor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compactor
        # Wakes watches served from the hub's ring; ``stopping`` wakes those replaying the
        # store's log (a resume from before this server started), which nothing else would
        # wake until their timeoutSeconds — aiohttp's shutdown waited on them.
        await self.hub.stop()
        if self._runner is not None:
            server = self._runner.server
            if server is not None:
                # Abort open connections (watches, idle keep-alives) instead of waiting for
                # each client's TLS close_notify, which a vanished client never sends.
                for conn in list(server.connections):
                    transport = conn.transport
                    if transport is not None:
                        transport.abort()
            await self._runner.cleanup()
        await self.registry.close()
        await self.store.close()

    async def _compact_loop(self, interval: float = 300.0) -> None:
        """Keep about ``interval`` seconds (at least) of history for watch resumption. A
        datastore outage skips rounds; it must not end the loop."""
        previous = 0  # nothing to compact until a revision has been read
        while True:
            try:
                if previous:
                    await self.compact(previous)
                previous = await self.store.current_revision()
            except Exception:
                log.exception("compaction round skipped (last revision read: %d)", previous)
            await asyncio.sleep(interval)

    async def compact(self, revision: int) -> None:
        """Drop history before ``revision`` in the store and the watch ring alike, so that a
        watch from an older resourceVersion gets ``410 Expired`` wherever it is served."""
        await self.store.compact(revision)
        self.hub.floor = max(self.hub.floor, revision)

    async def _load_caches(self) -> int:
        """RBAC objects, service-account tokens and the node and ingress graphs, read at one
        revision (returned): the hub replays every event after it, so no write is missed between.
        Each kind is listed once and fed to every cache that keeps it, as :meth:`_on_event`
        feeds them afterwards."""
        rev = await self.store.current_revision()
        for plural in ("clusterroles", "clusterrolebindings", "roles", "rolebindings"):
            rd = self._rd("rbac.authorization.k8s.io", plural)
            for kv in (await self.store.list(rd.key_prefix(), revision=rev)).items:
                self.authorizer.apply(rd.kind, self.codec.decode(kv), deleted=False)
        # persistentvolumes: the node graph reaches a volume through its claimRef; without
        # them a restarted server refused nodes the volumes of claims bound before it started
        for plural in ("serviceaccounts", "pods", "secrets", "persistentvolumes"):
            for kv in (
                await self.store.list(self._rd("", plural).key_prefix(), revision=rev)
            ).items:
                self._apply(kv.key, self.codec.decode(kv), deleted=False)
        for plural in ("ingressclasses", "ingresses"):
            for kv in (
                await self.store.list(
                    self._rd("networking.k8s.io", plural).key_prefix(), revision=rev
                )
            ).items:
                self._apply(kv.key, self.codec.decode(kv), deleted=False)
        crds = [
            self.codec.decode(kv)
            for kv in (await self.store.list(CRD_RESOURCE.key_prefix(), revision=rev)).items
        ]
        self.crd_schemas.load(crds)
        for crd in crds:  # terminating when a server stopped: finish deleting its objects
            self.crd_strategy.observe(self.registry, crd)
        return rev

    def _on_event(self, ev: ObjEvent) -> None:
        self.registry.observe(ev)
        if ev.key.startswith(_CRD_PREFIX):
            # A CRD written through any server: serve (or stop serving) its resources here.
            self.crd_schemas.observe(ev.obj, deleted=ev.deleted, revision=ev.revision)
            if not ev.deleted:
                self.crd_strategy.observe(self.registry, ev.obj)
        elif ev.key.startswith("/registry/rbac.authorization.k8s.io/"):
            kind = ev.obj.get("kind")
            if isinstance(kind, str):
                self.authorizer.apply(kind, ev.obj, deleted=ev.deleted)
        else:
            self._apply(ev.key, ev.obj, deleted=ev.deleted)

    def _apply(self, key: str, obj: Obj, *, deleted: bool) -> None:
        """The node and ingress graphs and the service-account cache (each ignores what it does
        not keep)."""
        self.node_graph.observe(key, obj, deleted=deleted)
        self.ingress_graph.observe(key, obj, deleted=deleted)
        self.service_accounts.cache.apply(key, obj, deleted=deleted)

    async def _bootstrap(self) -> None:
        ns_rd = self._rd("", "namespaces")
        born = await self.store.get(ns_rd.key("", "default")) is None
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            await self.registry.ensure(ns_rd, {"metadata": {"name": ns}})
            await self.service_accounts.ensure_default_account(self.registry, ns)
        for obj in bootstrap_policy():
            rd = self.table.by_kind("rbac.authorization.k8s.io", str(obj["kind"]))
            assert rd is not None
            await self.registry.ensure(rd, obj)
            self.authorizer.apply(rd.kind, obj, deleted=False)
        await reconcile_bootstrap_roles(self.registry, bootstrap_policy())
        pcs = self.table.lookup("scheduling.k8s.io", "v1", "priorityclasses")
        if pcs is not None:
            for pc in SYSTEM_CLASSES:
                await self.registry.ensure(pcs, pc)
        await retire_node_group_binding(self.registry)
        svc = {
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "clusterIP": self.service_ips.first,
                "ports": [
                    {
                        "name": "https",
                        "port": 443,
                        "protocol": "TCP",
                        "targetPort": self.config.port or 6443,
                    }
                ],
            },
        }
        if await self.store.get(self._rd("", "services").key("default", "kubernetes")) is None:
            await self.registry.ensure(self._rd("", "services"), svc)
        # The kubernetes Endpoints are kept by ApiServerPeers once the port is known.
        if born:
            # The default StorageClass, once, when the cluster is made (as k3s ships its
            # local-path class): an administrator may change or delete it for good.
            await self.registry.ensure(
                self._rd("storage.k8s.io", "storageclasses"), default_storage_class()
            )

    def _rd(self, group: str, plural: str) -> ResourceDef:
        rd = self.table.lookup(group, "v1", plural)
        assert rd is not None
        return rd

    # -- request entry ----------------------------------------------------------------------

    def _make_request(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.Request:
        """A request as an aiohttp application would make it (bodies up to
        :data:`MAX_BODY`); it has no match info and no ``app``: nothing here reads them."""
        return web.Request(
            message,
            payload,
            protocol,
            writer,
            task,
            asyncio.get_running_loop(),
            client_max_size=MAX_BODY,
        )

    async def _serve(self, request: web.BaseRequest) -> web.StreamResponse:
        """The low-level server's handler: ``Expect`` as an aiohttp application's default
        handler answers it (``100 Continue`` before the body is read; 417 for any other
        expectation), then :meth:`handle`."""
        assert isinstance(request, web.Request)
        expect = request.headers.get(hdrs.EXPECT)
        if expect:
            if request.version == HttpVersion11:
                if expect.lower() != "100-continue":
                    raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                request.writer.output_size = 0
            await request.writer.drain()
        return await self.handle(request)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        start = time.perf_counter()
        label = ("", "")
        # Warnings (Pod Security's, for one) added while serving become Warning headers.
        warnings, token = client_warnings.begin()
        try:
            resp, label = await self._dispatch(request)
        except ApiError as err:
            resp = _status_response(err)
        except Unavailable as exc:  # e.g. this server's etcd member has no quorum
            resp = _status_response(
                datastore_unavailable(str(exc), outcome_unknown=exc.outcome_unknown)
            )
        except web.HTTPException as exc:  # aiohttp's own (e.g. body too large)
            reason = "RequestEntityTooLarge" if exc.status == 413 else "BadRequest"
            resp = _status_response(ApiError(exc.status, reason, exc.reason or reason))
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("unhandled error serving %s %s", request.method, request.path)
            resp = _status_response(internal())
        finally:
            client_warnings.end(token)
        client_warnings.attach(resp, warnings)
        verb = label[0] or request.method
        self.metrics.observe(
            verb=verb.upper(),
            resource=label[1],
            group=self._metric_group(label[1]),
            code=resp.status,
            seconds=time.perf_counter() - start,
        )
        slice_large_body(resp)
        return resp

    def _metric_group(self, resource: str) -> str:
        if self._group_of_generation != self.table.generation:
            self._group_of = {r.plural: r.group for r in self.table.resources}
            self._group_of_generation = self.table.generation
        return self._group_of.get(resource.split("/", 1)[0], "")

    # -- served resources --------------------------------------------------------------------

    def add_resource(self, rd: ResourceDef, strategy: KindStrategy | None = None) -> None:
        """Serve ``rd`` from now on (a custom resource), with ``strategy`` (default: the
        catalog's fallback, :attr:`Strategies.default`). Discovery shows it at once."""
        if strategy is not None:
            self.strategies.register(rd, strategy)
        self.table.add(rd)

    def remove_resource(self, rd: ResourceDef) -> None:
        """Stop serving ``rd`` (its stored objects are the caller's to delete)."""
        self.table.remove(rd)
        self.strategies.unregister(rd)

    def _authenticate(self, request: web.Request) -> UserInfo:
        transport = request.transport
        user = self.cert_users.user(
            transport.get_extra_info("peercert") if transport is not None else None
        )
        if user is not None:
            return user
        header = request.headers.get("Authorization")
        if header:
            token_user = self.tokens.authenticate(
                header
            ) or self.service_accounts.authenticator.authenticate(header)
            if token_user is None:
                raise unauthorized()
            return token_user
        return ANONYMOUS

    def _impersonate(self, request: web.Request, user: UserInfo) -> UserInfo:
        target = request.headers.get("Impersonate-User")
        groups = request.headers.getall("Impersonate-Group", [])
        if not target:
            if groups:
                raise bad_request("requested impersonation of groups without a user")
            return user
        for kind, name in [("users", target)] + [("groups", g) for g in groups]:
            attrs = Attributes(
                user=user, verb="impersonate", resource_request=True, resource=kind, name=name
            )
            if not self.authorizer.allowed(attrs):
                raise ApiError(
                    403,
                    "Forbidden",
                    f'{kind} "{name}" is forbidden: User "{user.name}" cannot impersonate'
                    f' resource "{kind}" in API group "" at the cluster scope',
                    details={"name": name, "kind": kind},
                )
        extra = () if target == "system:anonymous" else ("system:authenticated",)
        return UserInfo(target, (*groups, *extra))

    async def _dispatch(self, request: web.Request) -> tuple[web.StreamResponse, tuple[str, str]]:
        path = request.path
        user = self._authenticate(request)
        if user is ANONYMOUS and path not in PUBLIC_PATHS:
            raise unauthorized()
        user = self._impersonate(request, user)
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] not in ("api", "apis"):
            return await self._non_resource(request, user, path, parts), ("GET", "")
        self._authorize_nonresource_if_discovery(user, path, parts)
        return await self._api(request, user, parts)

    # -- non-resource endpoints -------------------------------------------------------------

    def _check_nonresource(self, user: UserInfo, path: str, verb: str = "get") -> None:
        if path in PUBLIC_PATHS:
            return
        attrs = Attributes(user=user, verb=verb, resource_request=False, path=path)
        if not self.authorizer.allowed(attrs):
            raise forbidden(f'forbidden: User "{user.name}" cannot {verb} path "{path}"')

    async def _non_resource(
        self, request: web.Request, user: UserInfo, path: str, parts: list[str]
    ) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            raise method_not_allowed(request.method)
        self._check_nonresource(user, path)
        if not parts:
            paths = [
                "/api",
                "/api/v1",
                "/apis",
                "/healthz",
                "/livez",
                "/readyz",
                "/metrics",
                "/openapi/v2",
                "/openapi/v3",
                "/version",
            ]
            paths += [
                f"/apis/{g}/{v}" for g, vs in self.table.group_versions().items() if g for v in vs
            ]
            return _json({"paths": sorted(paths)})
        head = parts[0]
        if head == "version" and len(parts) == 1:
            return _json(discovery.version_info(__version__))
        if head == "readyz":
            return await self._readyz()
        if head in ("healthz", "livez"):
            return web.Response(text="ok", content_type="text/plain")
        if head == "metrics" and len(parts) == 1:
            return web.Response(text=self.metrics.render(), content_type="text/plain")
        if head == "openapi":
            documents = await asyncio.to_thread(self.openapi.current)
            try:
                return openapi_http.serve(request, parts, documents)
            except openapi_http.NotServed:
                raise route_not_found() from None
            except openapi_http.NotAcceptable:
                raise not_acceptable() from None
        raise route_not_found()

    async def _readyz(self) -> web.Response:
        """Ready while not stopping and the datastore answers (an etcd member cut off from
        its quorum does not): load balancers then send clients to another API server."""
        if self.stopping.is_set():
            return web.Response(status=503, text="shutting down", content_type="text/plain")
        try:
            await asyncio.wait_for(self.store.current_revision(), READYZ_DATASTORE_TIMEOUT)
        except TimeoutError:
            why = f"the datastore did not answer within {READYZ_DATASTORE_TIMEOUT:g}s"
        except Unavailable as exc:  # anonymous clients may ask: no addresses, just why
            why = exc.summary
        except StoreError:
            why = "the datastore failed"
        else:
            return web.Response(text="ok", content_type="text/plain")
        return web.Response(
            status=503,
            text=f"datastore not ready: {why}",
            content_type="text/plain",
            headers={"Retry-After": str(DATASTORE_RETRY_AFTER)},
        )

    def _authorize_nonresource_if_discovery(
        self, user: UserInfo, path: str, parts: list[str]
    ) -> None:
        discovery_path = (parts[0] == "api" and len(parts) <= 2) or (
            parts[0] == "apis" and len(parts) <= 3
        )
        if discovery_path:
            self._check_nonresource(user, path)

    # -- API paths ---------------------------------------------------------------------------

    async def _api(
        self, request: web.Request, user: UserInfo, parts: list[str]
    ) -> tuple[web.StreamResponse, tuple[str, str]]:
        if parts[0] == "api":
            if len(parts) == 1:
                return self._get_only(request, discovery.api_versions(self._server_address())), (
                    "GET",
                    "",
                )
            group, version, rest = "", parts[1], parts[2:]
        else:
            if len(parts) == 1:
                return self._get_only(request, discovery.api_group_list(self.table)), ("GET", "")
            if len(parts) == 2:
                doc = discovery.api_group(self.table, parts[1])
                if doc is None:
                    raise route_not_found()
                return self._get_only(request, doc), ("GET", "")
            group, version, rest = parts[1], parts[2], parts[3:]
        if not rest:
            doc = discovery.resource_list(self.table, group, version, self.strategies)
            if doc is None:
                raise route_not_found()
            return self._get_only(request, doc), ("GET", "")
        if reviews.serves(group, version):
            return await reviews.serve(request, user, self.authorizer, group, rest)
        watch_prefix = False
        if rest[0] == "watch":
            watch_prefix = True
            rest = rest[1:]
            if not rest:
                raise route_not_found()
        if group == "" and version == "v1" and not watch_prefix:
            proxied = await self._proxy(request, user, rest)
            if proxied is not None:
                return proxied
        route = self._route(group, version, rest)
        return await self._resource(request, user, route, watch_prefix=watch_prefix)

    async def _proxy(
        self, request: web.Request, user: UserInfo, rest: list[str]
    ) -> tuple[web.StreamResponse, tuple[str, str]] | None:
        """``nodes/NAME/proxy/...`` and ``namespaces/NS/{services,pods}/NAME/proxy/...`` (see
        :mod:`berth.apiserver.resourceproxy`); None for any other path."""
        if len(rest) >= 3 and rest[0] == "nodes" and rest[2] == "proxy":
            rd = self.table.lookup("", "v1", "nodes")
            assert rd is not None
            verb = resourceproxy.verb_of(request.method)
            self._authorize(user, verb, Route(rd, "", rest[1], "proxy"))
            resp = await resourceproxy.serve_node_proxy(self, request, rest[1])
            return resp, (METRIC_VERBS[verb], "nodes/proxy")
        if (
            len(rest) >= 5
            and rest[0] == "namespaces"
            and rest[2] in ("services", "pods")
            and rest[4] == "proxy"
        ):
            rd = self.table.lookup("", "v1", rest[2])
            assert rd is not None
            verb = resourceproxy.verb_of(request.method)
            scheme, name, port = resourceproxy.parse_target(rest[3], rd.singular)
            self._authorize(user, verb, Route(rd, rest[1], name, "proxy"))
            obj = await self.registry.get(rd, rest[1], name)
            if rest[2] == "pods":
                resp = await resourceproxy.serve_pod_proxy(request, obj, scheme=scheme, port=port)
            else:
                resp = await resourceproxy.serve_service_proxy(
                    self, request, obj, scheme=scheme, port=port
                )
            return resp, (METRIC_VERBS[verb], f"{rest[2]}/proxy")
        return None

    def _server_address(self) -> str:
        return f"{self.config.advertise_address}:{self.port}"

    @staticmethod
    def _get_only(request: web.Request, doc: Obj) -> web.Response:
        if request.method not in ("GET", "HEAD"):
            raise method_not_allowed(request.method)
        return _json(doc)

    def _route(self, group: str, version: str, rest: list[str]) -> Route:
        def lookup(plural: str) -> ResourceDef:
            rd = self.table.lookup(group, version, plural)
            if rd is None:
                raise route_not_found()
            return rd

        if rest[0] == "namespaces" and len(rest) >= 3 and group == "":
            ns_rd = lookup("namespaces")
            if len(rest) == 3 and rest[2] in ns_rd.subresources:
                return Route(ns_rd, "", rest[1], rest[2])
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns = rest[1]
            rd = lookup(rest[2])
            if not rd.namespaced or len(rest) > 5:
                raise route_not_found()
            name = rest[3] if len(rest) > 3 else ""
            sub = rest[4] if len(rest) > 4 else ""
            if sub and sub not in rd.subresources:
                raise route_not_found()
            return Route(rd, ns, name, sub)
        rd = lookup(rest[0])
        if len(rest) > 3:
            raise route_not_found()
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if rd.namespaced and name:
            raise route_not_found()  # namespaced objects are addressed under namespaces/{ns}/
        if sub and sub not in rd.subresources:
            raise route_not_found()
        return Route(rd, "", name, sub)

    def _authorize(
        self, user: UserInfo, verb: str, route: Route, *, field_selector: str = ""
    ) -> None:
        rd = route.rd
        attrs = Attributes(
            user=user,
            verb=verb,
            resource_request=True,
            api_group=rd.group,
            resource=rd.plural,
            subresource=route.subresource,
            namespace=route.namespace,
            name=route.name,
            field_selector=field_selector,
        )
        if self.authorizer.allowed(attrs):
            return
        why = self.authorizer.denial_reason(attrs)
        what = f"{rd.plural}/{route.subresource}" if route.subresource else rd.plural
        scope = (
            f'in the namespace "{route.namespace}"' if route.namespace else "at the cluster scope"
        )
        named = f'{rd.group_resource} "{route.name}"' if route.name else rd.group_resource
        raise ApiError(
            403,
            "Forbidden",
            f'{named} is forbidden: User "{user.name}" cannot {verb} resource "{what}" in API'
            f' group "{rd.group}" {scope}' + (f": {why}" if why else ""),
            details={
                **({"name": route.name} if route.name else {}),
                "kind": rd.plural,
                **({"group": rd.group} if rd.group else {}),
            },
        )

    async def _resource(
        self, request: web.Request, user: UserInfo, route: Route, *, watch_prefix: bool
    ) -> tuple[web.StreamResponse, tuple[str, str]]:
        """Serve a request to a resource through the (verb, subresource) dispatch table
        (:mod:`berth.apiserver.handlers`): 405 for a pair nobody serves, then authorization,
        then (writes) the body, then the handler."""
        q = request.query
        method = request.method
        rd = route.rd
        sub = route.subresource
        if rd.namespaced and route.namespace == "" and route.name:
            raise route_not_found()
        st = self.registry.strategies.of(rd)
        reading = method in ("GET", "HEAD")
        if reading:
            if sub and self._endpoint(st, "get", sub) is None:
                raise method_not_allowed(method)
            watching = watch_prefix or parse_bool(q.get("watch"), "watch")
            verb = "watch" if watching else ("get" if route.name else "list")
        else:
            verb = write_verb(method, route)
        endpoint = self._endpoint(st, verb, sub)
        if endpoint is None:
            raise method_not_allowed(method)
        authz_verb = endpoint.authorize_as or verb
        # Authorize before reading a byte of the body: decoding is the costly part, and an
        # identity that may not make this request must not get to make the server do it.
        self._authorize(
            user, authz_verb, route, field_selector=q.get("fieldSelector", "") if reading else ""
        )
        if endpoint.also_authorize:
            self._authorize_as(user, endpoint.also_authorize, route)
        # Reads have no dryRun; on a write any value but All is refused, never taken for a
        # real write (a query ``dryRun=all`` once stored what it was meant only to check).
        dry_run = not reading and parse_dry_run(q.getall("dryRun", None), OPTIONS_KIND[verb])
        body: Any = None
        patch_type = ""
        if not reading:
            if method == "PATCH":
                patch_type = PATCH_TYPES.get((request.content_type or "").lower(), "")
                if not patch_type:
                    raise unsupported_media(request.content_type or "(none)")
            body = await read_body(request)
            if method == "PATCH" and body is None:
                raise bad_request("the patch body is empty")
        call = Call(request, user, route, st, body, patch_type, dry_run)
        resp = await endpoint.handler(self, call)
        resource = f"{rd.plural}/{sub}" if endpoint.metric_subresource else rd.plural
        return resp, (METRIC_VERBS[authz_verb], resource)

    @staticmethod
    def _endpoint(st: KindStrategy, verb: str, subresource: str) -> Endpoint | None:
        return endpoint_for(st, verb, subresource)

    def _authorize_as(self, user: UserInfo, verb: str, route: Route) -> None:
        self._authorize(user, verb, Route(route.rd, route.namespace, route.name, ""))
