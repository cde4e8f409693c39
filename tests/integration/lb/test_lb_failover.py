"""The load balancer on loopback, with stand-in API servers going away and coming back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from berth.lb.config import Backend, HealthConfig, LBConfig
from berth.lb.proxy import LoadBalancer

from .standins import StandIn, ask, make_pki

INTERVAL = 0.2
FAILOVER_BUDGET = 2.0  # seconds; the brief asks for "within seconds"


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 30))


@contextlib.asynccontextmanager
async def _setup(
    count: int = 3, *, health: HealthConfig | None = None, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[list[StandIn], LoadBalancer]]:
    """``count`` stand-ins behind a started balancer; everything is closed afterwards."""
    backends = [StandIn(f"api{i}", tls=tls) for i in range(count)]
    balancer: LoadBalancer | None = None
    try:
        for backend in backends:
            await backend.start()
        config = LBConfig(
            backends=tuple(Backend("127.0.0.1", b.port) for b in backends),
            listen_port=0,
            connect_timeout=0.5,
            health=health or HealthConfig(interval=INTERVAL, timeout=0.5, fall=2, rise=1),
        )
        balancer = LoadBalancer(config)
        await balancer.start()
        yield backends, balancer
    finally:
        if balancer is not None:
            await balancer.stop()
        for backend in backends:
            await backend.kill()


async def _answers(port: int, n: int) -> list[str]:
    return [await ask(port) for _ in range(n)]


def test_spreads_connections_over_every_backend() -> None:
    async def scenario() -> None:
        async with _setup() as (backends, lb):
            answers = await _answers(lb.port, 9)
            assert sorted(set(answers)) == ["api0", "api1", "api2"]
            assert all(answers.count(b.name) == 3 for b in backends)

    run(scenario)


def test_stopped_backend_is_skipped_at_once_and_rejoins_when_back() -> None:
    async def scenario() -> None:
        async with _setup() as (backends, lb):
            port = backends[1].port
            await backends[1].kill()
            # before any health check ran: the failed connect itself fails over
            answers = await _answers(lb.port, 6)
            assert "api1" not in answers
            assert "" not in answers, "no client saw a dropped connection"
            assert not lb.pool.is_up(lb.config.backends[1])
            backends[1].port = port
            await backends[1].start()
            deadline = time.monotonic() + FAILOVER_BUDGET
            while not lb.pool.is_up(lb.config.backends[1]):
                assert time.monotonic() < deadline, "backend did not rejoin"
                await asyncio.sleep(0.05)
            assert "api1" in await _answers(lb.port, 6)

    run(scenario)


def test_silent_dead_backend_connections_are_closed_within_the_check_budget() -> None:
    """Power-cut style: the backend's open connections get no FIN/RST. The health checks notice
    the backend is gone and the balancer closes its clients' connections so they reconnect."""

    async def scenario() -> None:
        async with _setup() as (backends, lb):
            # a long-lived client connection (a watch) through each backend
            streams = []
            for _ in range(3):
                reader, writer = await asyncio.open_connection("127.0.0.1", lb.port)
                writer.write(b"GET\n")
                await writer.drain()
                streams.append((await reader.readline(), reader, writer))
            victim = next(s for s in streams if s[0] == b"api2\n")
            await backends[2].pause()
            started = time.monotonic()
            async with asyncio.timeout(FAILOVER_BUDGET):
                assert await victim[1].read() == b"", "connection through the dead backend closed"
            closed_after = time.monotonic() - started
            assert closed_after < FAILOVER_BUDGET
            # connections through the healthy backends are untouched
            for answer, _, writer in streams:
                if answer != b"api2\n":
                    writer.write(b"GET\n")
                    await writer.drain()
            for answer, reader, _ in streams:
                if answer != b"api2\n":
                    assert await reader.readline() == answer
            assert set(await _answers(lb.port, 4)) == {"api0", "api1"}
            for _, _, writer in streams:
                writer.close()

    run(scenario)


def test_every_backend_down_closes_clients_then_recovers() -> None:
    async def scenario() -> None:
        async with _setup(count=2) as (backends, lb):
            ports = [b.port for b in backends]
            for backend in backends:
                await backend.kill()
            assert await ask(lb.port) == "", "client connection closed, not hung"
            assert lb.stats.refused == 1
            for backend, port in zip(backends, ports, strict=True):
                backend.port = port
                await backend.start()
            # the last-resort path tries down backends too: no wait for a health check
            assert await ask(lb.port) in {"api0", "api1"}

    run(scenario)


def test_https_readyz_check_and_tls_passthrough(tmp_path: Path) -> None:
    """Health by /readyz with a client certificate; a backend that answers 503 is taken out
    although it still accepts TCP, and TLS sessions go through the balancer end to end."""
    pki = make_pki(tmp_path)

    async def scenario() -> None:
        health = HealthConfig(
            mode="https",
            interval=INTERVAL,
            timeout=0.5,
            fall=1,
            rise=1,
            ca_file=pki.ca,
            cert_file=pki.client_cert,
            key_file=pki.client_key,
        )
        async with _setup(2, health=health, tls=pki.server_context()) as (backends, lb):
            first = lb.config.backends[0]
            client = pki.client_context()
            answers = {await ask(lb.port, tls=client) for _ in range(4)}
            assert answers == {"api0", "api1"}, "TLS handshake with the backend through the LB"
            backends[0].ready = False
            deadline = time.monotonic() + FAILOVER_BUDGET
            while lb.pool.is_up(first):
                assert time.monotonic() < deadline, "503 on /readyz did not take api0 out"
                await asyncio.sleep(0.05)
            assert "503" in lb.pool.states[first].last_error
            assert {await ask(lb.port, tls=client) for _ in range(4)} == {"api1"}
            backends[0].ready = True
            deadline = time.monotonic() + FAILOVER_BUDGET
            while not lb.pool.is_up(first):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)

    run(scenario)


def test_entry_point_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    async def scenario() -> None:
        backend = StandIn("api0")
        await backend.start()
        reserve = StandIn("probe")
        await reserve.start()
        port = reserve.port
        await reserve.pause()
        config = tmp_path / "lb.yaml"
        config.write_text(
            f"listen: {{address: 127.0.0.1, port: {port}}}\n"
            f"backends: ['127.0.0.1:{backend.port}']\n"
            "health: {mode: tcp, intervalSeconds: 0.2}\n"
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "berth.lb",
            "--config",
            str(config),
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])},
        )
        try:
            deadline = time.monotonic() + 30  # a Python start on a loaded machine
            while True:
                try:
                    answer = await ask(port, within=1)
                    if answer:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "berth.lb did not start listening"
                await asyncio.sleep(0.1)
            assert answer == "api0"
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 5) == 0
            assert process.stderr is not None
            assert b"listening on 127.0.0.1" in await process.stderr.read()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await backend.kill()

    run(scenario)


@pytest.mark.parametrize("bad", ["backends: []\n", "not yaml: ["])
def test_entry_point_rejects_bad_config(tmp_path: Path, bad: str) -> None:
    config = tmp_path / "lb.yaml"
    config.write_text(bad)
    done = subprocess.run(
        [sys.executable, "-m", "berth.lb", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"berth-lb: {config}:")
