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
from typing import Any

from berth.client.http import HttpClient
from berth.machinery.clock import Clock, RealClock
from berth.machinery.leaderelection import LeaderElectionConfig, LeaderElector

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
    parser.add_argument("-v", "--verbose", action="store_true")


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


async def run_component(args: argparse.Namespace, lead: Lead, *, user_agent: str) -> None:
    client = HttpClient.from_kubeconfig(args.kubeconfig, user_agent=user_agent)
    clock = RealClock()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)

    async def work() -> None:
        await lead(client, clock)

    if args.leader_elect:
        elector = LeaderElector(
            client,
            clock,
            LeaderElectionConfig(
                name=args.lease_name,
                identity=args.identity,
                namespace=args.lease_namespace,
                lease_duration=args.lease_duration,
                renew_deadline=args.renew_deadline,
                retry_period=args.retry_period,
            ),
        )
        main = asyncio.create_task(elector.run(work))
    else:
        main = asyncio.create_task(work())
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({main, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (main, stopper):
            t.cancel()
        await asyncio.gather(main, stopper, return_exceptions=True)
        await client.close()
        await asyncio.sleep(0.25)  # let TLS connections close cleanly (aiohttp's advice)
    if main.done() and not main.cancelled() and main.exception() is not None:
        raise main.exception()  # type: ignore[misc]
