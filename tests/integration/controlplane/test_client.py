"""The HTTPS client against the real API server: mTLS, errors as typed exceptions, a server
that is not there as :class:`Unreachable`, watch resume and discovery."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path

import pytest

from berth.api.resources import CONFIGMAPS, DEPLOYMENTS
from berth.client import errors
from berth.client.http import MAX_CONNECTIONS, HttpClient
from berth.client.kubeconfig import load_kubeconfig
from tests.harness.apiserver import ServerHandle


def test_errors_watch_and_discovery(server: ServerHandle, tmp_path: Path) -> None:
    async def body() -> None:
        api = HttpClient.from_kubeconfig(server.kubeconfig())
        try:
            with pytest.raises(errors.NotFound):
                await api.get(CONFIGMAPS, "nope", namespace="default")
            cm = {"metadata": {"name": "a", "namespace": "default"}, "data": {"k": "1"}}
            created = await api.create(CONFIGMAPS, cm)
            with pytest.raises(errors.AlreadyExists):
                await api.create(CONFIGMAPS, cm)
            stale = dict(created, data={"k": "2"})
            await api.update(CONFIGMAPS, stale)
            with pytest.raises(errors.Conflict):
                await api.update(CONFIGMAPS, stale)  # its resourceVersion is now old
            start = created["metadata"]["resourceVersion"]
            seen = []
            async for ev in api.watch(
                CONFIGMAPS, namespace="default", resource_version=start, timeout_seconds=1
            ):
                if ev.type != "BOOKMARK":
                    seen.append((ev.type, ev.object["metadata"]["name"]))
            assert ("MODIFIED", "a") in seen
            assert await api.served(DEPLOYMENTS)
            # a kind the table does not hold (yet): discovery says it is not served
            widgets = dataclasses.replace(DEPLOYMENTS, plural="widgets")
            assert not await api.served(widgets)
        finally:
            await api.close()
            await asyncio.sleep(0.3)

    asyncio.run(body())


def test_a_server_that_is_not_there_is_unreachable(server: ServerHandle) -> None:
    async def body() -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # closed again when the block ends: nobody listens
        creds = load_kubeconfig(server.kubeconfig())
        api = HttpClient(f"https://127.0.0.1:{port}", creds.ssl_context(), request_timeout=2)
        try:
            with pytest.raises(errors.Unreachable):
                await api.get(CONFIGMAPS, "a", namespace="default")
            with pytest.raises(errors.Unreachable):
                async for _ in api.watch(CONFIGMAPS):
                    pass
        finally:
            await api.close()

    asyncio.run(body())


def _established_to(port: int) -> int:
    """TCP connections of this machine (this network namespace) in ESTABLISHED state whose
    remote end is ``port`` on 127.0.0.1: the client ends of connections to the server."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state = fields[2], fields[3]
        if state == "01" and remote == f"0100007F:{port:04X}":
            count += 1
    return count


def test_concurrent_requests_share_a_bounded_pool(server: ServerHandle) -> None:
    """A burst of requests from one client queues on at most ``MAX_CONNECTIONS`` connections:
    every TLS connection costs memory on both ends (see berth.client.http)."""
    port = int(server.url.rsplit(":", 1)[1])

    async def body() -> None:
        api = HttpClient.from_kubeconfig(server.kubeconfig())
        try:
            names = [f"pool-{i}" for i in range(60)]
            await asyncio.gather(
                *(
                    api.create(CONFIGMAPS, {"metadata": {"name": n, "namespace": "default"}})
                    for n in names
                )
            )
            open_now = _established_to(port)
            got = await asyncio.gather(
                *(api.get(CONFIGMAPS, n, namespace="default") for n in names)
            )
            assert [o["metadata"]["name"] for o in got] == names
            assert 1 <= open_now <= MAX_CONNECTIONS
            assert _established_to(port) <= MAX_CONNECTIONS
        finally:
            await api.close()
            await asyncio.sleep(0.3)

    asyncio.run(body())


def _local_ports_to(port: int) -> set[int]:
    """Local ports of this machine's ESTABLISHED connections to ``port`` on 127.0.0.1."""
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if state == "01" and remote == f"0100007F:{port:04X}":
            ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def test_an_idle_connection_outlives_a_pause_between_bursts(server: ServerHandle) -> None:
    """A connection idle for longer than aiohttp's default keep-alive (15 s) serves the next
    request: a node agent's burst of pods must not begin with TLS handshakes."""
    port = int(server.url.rsplit(":", 1)[1])

    async def body() -> None:
        api = HttpClient.from_kubeconfig(server.kubeconfig())
        try:
            await api.create(CONFIGMAPS, {"metadata": {"name": "idle", "namespace": "default"}})
            before = _local_ports_to(port)
            await asyncio.sleep(16.5)  # idle, past aiohttp's 15 s default
            await api.get(CONFIGMAPS, "idle", namespace="default")
            after = _local_ports_to(port)
            assert len(before) == 1
            assert after == before  # the same connection, no new handshake
        finally:
            await api.close()
            await asyncio.sleep(0.3)

    asyncio.run(body())
