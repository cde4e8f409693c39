"""The TCP proxy: accept on the node, pick a healthy backend, copy bytes both ways.

TLS is not terminated: the bytes of the client's TLS session go through unchanged. When a
backend goes down (health checks or a failed connect), every connection through it is closed,
so a client with a long-lived watch notices at once and reconnects through a healthy backend
instead of waiting for TCP keepalive on a dead peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from berth.lb.config import Backend, LBConfig
from berth.lb.health import HealthCheck, check_for
from berth.lb.pool import BackendPool

log = logging.getLogger("berth.lb")
CHUNK = 64 * 1024


@dataclass(eq=False)
class _Link:
    """One client connection and its upstream connection."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.abort()


@dataclass
class Stats:
    accepted: int = 0
    forwarded: dict[Backend, int] = field(default_factory=dict)
    refused: int = 0
    """Client connections closed because no backend could be reached."""


class LoadBalancer:
    """Listen on ``config.listen_address:listen_port`` and forward to healthy backends.

    Example::

        lb = LoadBalancer(LBConfig.load(path))
        await lb.start()
        ...
        await lb.stop()
    """

    def __init__(self, config: LBConfig, *, check: HealthCheck | None = None) -> None:
        self.config = config
        self.pool = BackendPool(config.backends, rise=config.health.rise, fall=config.health.fall)
        self.check = check or check_for(config.health)
        self.stats = Stats()
        self._links: dict[Backend, set[_Link]] = {b: set() for b in config.backends}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._clients: set[asyncio.StreamWriter] = set()
        self._checker: asyncio.Task[None] | None = None
        self.pool.subscribe(self._on_change)

    @property
    def port(self) -> int:
        """The bound port (useful with ``listen.port: 0``)."""
        assert self._server is not None, "start() first"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.config.listen_address, self.config.listen_port, reuse_address=True
        )
        self._checker = asyncio.create_task(self._check_loop(), name="berth-lb-health")
        log.info(
            "listening on %s:%d, backends %s",
            self.config.listen_address,
            self.port,
            ", ".join(map(str, self.config.backends)),
        )

    async def stop(self) -> None:
        """Stop listening, close every proxied connection and wait for the handlers."""
        if self._checker is not None:
            self._checker.cancel()
            await asyncio.gather(self._checker, return_exceptions=True)
        if self._server is not None:
            self._server.close()
        for writer in list(self._clients):
            writer.transport.abort()
        for links in self._links.values():
            for link in list(links):
                link.abort()
        # handlers end by themselves once their sockets are aborted (a dial ends within
        # connect_timeout); cancelling them instead would leave asyncio logging the cancel
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.config.connect_timeout + 1)
        for task in self._tasks:
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    async def check_once(self) -> None:
        """Check every backend concurrently and count the results."""
        results = await asyncio.gather(*(self.check(b) for b in self.pool.backends))
        for backend, problem in zip(self.pool.backends, results, strict=True):
            self.pool.record(backend, problem is None, problem or "")

    async def _check_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await self.check_once()
            await asyncio.sleep(max(0.0, self.config.health.interval - (loop.time() - started)))

    def _on_change(self, backend: Backend, up: bool) -> None:
        if up:
            log.info("backend %s is up", backend)
            return
        links = self._links[backend]
        log.warning(
            "backend %s is down (%s); closing %d connection(s) through it",
            backend,
            self.pool.states[backend].last_error,
            len(links),
        )
        for link in list(links):
            link.abort()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._clients.add(writer)
        self.stats.accepted += 1
        try:
            await self._serve(reader, writer)
        finally:
            self._tasks.discard(task)
            self._clients.discard(writer)
            writer.transport.abort()

    async def _dial(self, backend: Backend) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with asyncio.timeout(self.config.connect_timeout):
            return await asyncio.open_connection(backend.host, backend.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for backend in self.pool.candidates():
            try:
                up_reader, up_writer = await self._dial(backend)
            except (OSError, TimeoutError) as error:
                self.pool.connect_failed(backend, f"connect failed: {error or 'timeout'}")
                continue
            link = _Link(writer, up_writer)
            self._links[backend].add(link)
            self.stats.forwarded[backend] = self.stats.forwarded.get(backend, 0) + 1
            try:
                await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))
            finally:
                self._links[backend].discard(link)
                up_writer.transport.abort()
            return
        self.stats.refused += 1
        log.error("no backend reachable; closing the client connection")


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close ``writer`` (TLS close_notify still flows through)."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
