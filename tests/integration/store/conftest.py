"""Backends for the store conformance suite.

Every test in ``test_store_conformance.py`` runs once per backend. A backend hands out a fresh
:class:`Store` and a key prefix that no other test uses: the etcd backend shares one real etcd
server across the session (so revisions there are never reset and tests assert only relative
revisions), the in-process backends start empty each time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from berth.store.etcd import EtcdStore
from berth.store.interface import Store
from berth.store.memory import MemoryStore
from berth.store.sqlite import SqliteStore

from .etcd_server import EtcdProcess, start_etcd

Scenario = Callable[[Store, str], Awaitable[None]]
Opener = Callable[[int], AbstractAsyncContextManager[Store]]

SCENARIO_TIMEOUT = 20.0


@dataclass(frozen=True)
class Backend:
    name: str
    opener: Opener
    bounded_watch: bool  # True when slow watchers are dropped with WatchOverflow in-process

    def run(self, scenario: Scenario, *, watch_buffer: int = 1000) -> None:
        """Run ``scenario(store, prefix)`` on a fresh event loop with a fresh store."""

        async def main() -> None:
            async with self.opener(watch_buffer) as store:
                prefix = f"/conformance/{uuid.uuid4().hex[:8]}/"
                await asyncio.wait_for(scenario(store, prefix), SCENARIO_TIMEOUT)

        asyncio.run(main())


def _memory_opener() -> Opener:
    @asynccontextmanager
    async def open_memory(watch_buffer: int) -> AsyncIterator[Store]:
        store = MemoryStore(watch_buffer=watch_buffer)
        try:
            yield store
        finally:
            await store.close()

    return open_memory


def _sqlite_opener(directory: Path) -> Opener:
    @asynccontextmanager
    async def open_sqlite(watch_buffer: int) -> AsyncIterator[Store]:
        store = await SqliteStore.open(directory / "state.db", watch_buffer=watch_buffer)
        try:
            yield store
        finally:
            await store.close()

    return open_sqlite


def _etcd_opener(url: str) -> Opener:
    @asynccontextmanager
    async def open_etcd(watch_buffer: int) -> AsyncIterator[Store]:
        del watch_buffer  # etcd never drops slow watchers; they are backpressured instead
        store = await EtcdStore.open([url])
        try:
            yield store
        finally:
            await store.close()

    return open_etcd


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdProcess]:
    """One real etcd for the whole session (tests use disjoint key prefixes)."""
    server = start_etcd(tmp_path_factory.mktemp("etcd"))
    try:
        yield server
    finally:
        server.stop()


BACKENDS = ["memory", "sqlite", "etcd"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    name: str = request.param
    if name == "etcd":
        server: EtcdProcess = request.getfixturevalue("etcd_server")
        yield Backend(name, _etcd_opener(server.url), bounded_watch=False)
    elif name == "memory":
        yield Backend(name, _memory_opener(), bounded_watch=True)
    elif name == "sqlite":
        yield Backend(name, _sqlite_opener(tmp_path), bounded_watch=True)
    else:  # pragma: no cover - the list above is the source of truth
        raise AssertionError(name)
