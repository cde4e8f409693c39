"""Running a control-plane component as a process: flags shared by every entry point, logging,
signal handling, and leader election around the component's work.

Concurrency contract: :func:`run_component` owns the event loop of the process; the ``lead``
coroutine runs only while this process holds the lease (or always, without leader election),
and is cancelled when leadership is lost or on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from aiohttp import web

from berth.client.http import HttpClient
from berth.machinery.clock import Clock, RealClock
from berth.machinery.leaderelection import LeaderElectionConfig, LeaderElector
from berth.machinery.prometheus import REGISTRY

Lead = Callable[[HttpClient, Clock], Coroutine[Any, Any, None]]


def add_common_flags(parser: argparse.ArgumentParser, *, lease_name: str) -> None:
    parser.add_argument("--kubeconfig", required=True, help="kubeconfig with client cert auth")
    parser.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run only while holding the Lease (default: on)",
    )
    parser.add_argument("--lease-name", default=lease_name)
    parser.add_argument("--lease-namespace", default="kube-system")
    parser.add_argument("--lease-duration", type=float, default=15.0)
    parser.add_argument("--renew-deadline", type=float, default=10.0)
    parser.add_argument("--retry-period", type=float, default=2.0)
    parser.add_argument(
        "--identity", default=f"{socket.gethostname()}_{os.getpid()}", help="leader identity"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve Prometheus /metrics (and /healthz) over plain HTTP on 127.0.0.1:PORT (0: off)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


class LeaseSettings(Protocol):
    """Where a process's leader-election settings come from (parsed flags or a config file)."""

    @property
    def lease_name(self) -> str: ...
    @property
    def identity(self) -> str: ...
    @property
    def lease_namespace(self) -> str: ...
    @property
    def lease_duration(self) -> float: ...
    @property
    def renew_deadline(self) -> float: ...
    @property
    def retry_period(self) -> float: ...


def election_config(settings: LeaseSettings) -> LeaderElectionConfig:
    return LeaderElectionConfig(
        name=settings.lease_name,
        identity=settings.identity,
        namespace=settings.lease_namespace,
        lease_duration=settings.lease_duration,
        renew_deadline=settings.renew_deadline,
        retry_period=settings.retry_period,
    )


def stop_on_signals() -> asyncio.Event:
    """An event set on SIGTERM/SIGINT (call from inside the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def run_until_stopped(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    """Wait until ``task`` ends or ``stop`` is set, then cancel and reap both; the caller
    closes its client and re-raises ``task``'s error (:func:`raise_failure`)."""
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (task, stopper):
            t.cancel()
        await asyncio.gather(task, stopper, return_exceptions=True)


def raise_failure(task: asyncio.Task[None]) -> None:
    """Re-raise the error ``task`` ended with, if any (not a cancellation)."""
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


async def run_component(args: argparse.Namespace, lead: Lead, *, user_agent: str) -> None:
    client = HttpClient.from_kubeconfig(args.kubeconfig, user_agent=user_agent)
    clock = RealClock()
    stop = stop_on_signals()

    async def work() -> None:
        await lead(client, clock)

    metrics = await serve_metrics(int(getattr(args, "metrics_port", 0) or 0))
    if args.leader_elect:
        elector = LeaderElector(client, clock, election_config(args))
        main = asyncio.create_task(elector.run(work))
    else:
        main = asyncio.create_task(work())
    try:
        await run_until_stopped(main, stop)
    finally:
        if metrics is not None:
            await metrics.cleanup()
        await client.close()
        await asyncio.sleep(0.25)  # let TLS connections close cleanly (aiohttp's advice)
    raise_failure(main)


async def serve_metrics(port: int) -> web.AppRunner | None:
    """``GET /metrics`` (the process's :data:`REGISTRY`) and ``/healthz`` on 127.0.0.1:``port``
    — loopback only, as the figures need no credentials to read (a scraper on the host, or
    ``berth verify`` over SSH); served by every replica, leader or not."""
    if port <= 0:
        return None

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(text=REGISTRY.render(), content_type="text/plain")

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner
