"""``python -m berth.apiserver --config FILE``: run the API server until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import time

from berth import eventloop
from berth.store.interface import StoreError

from .app import ApiServer
from .config import ConfigError, parse_args

GC_THRESHOLDS = (10_000, 20, 20)
"""Cyclic GC thresholds while serving (CPython's defaults are 700, 10, 10)."""


def _tune_gc() -> None:
    """A request allocates a few hundred short-lived containers (decoded bodies, the objects
    of admission and validation), almost none in cycles: with the default threshold of 700
    the young generation is collected every other request or so, and every tenth of those
    rescans the older ones. Startup objects (modules, the RBAC policy, caches) are frozen
    out of the collector's view, and collections made rarer: about 10% less CPU per pod
    create (289 -> 262 us in the create benchmark), for a few MB more of young objects
    between collections. Reference counting still frees everything not in a cycle at once."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


PROFILE_ENV = "BERTH_APISERVER_PROFILE"
"""Set to a file path, SIGUSR1 starts a :mod:`cProfile` of the server (CPU clock) and the next
SIGUSR1 stops it and writes its stats there: what a span of work (bench/pods.py ``--profile``:
one pod burst) costs the server, without its start-up. Off by default."""


def _profile_toggle(path: str) -> None:
    import cProfile  # noqa: PLC0415 - only when asked for

    profile: list[cProfile.Profile] = []

    def toggle() -> None:
        if profile:
            profile.pop().disable()
            return
        current = cProfile.Profile(time.process_time)
        profile.append(current)
        current.enable()

    def toggle_and_dump() -> None:
        running = profile[0] if profile else None
        toggle()
        if running is not None:
            running.dump_stats(path)

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, toggle_and_dump)


async def _serve(server: ApiServer) -> None:
    await server.start()
    _tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if os.environ.get(PROFILE_ENV):
        _profile_toggle(os.environ[PROFILE_ENV])
    # Tell a supervising process (tests, systemd wrappers) where we listen.
    print(f"listening on {server.config.bind_address}:{server.port}", flush=True)
    await stop.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = parse_args(argv)
        server = ApiServer(config)
    except (ConfigError, OSError, ValueError) as exc:
        print(f"berth-apiserver: {exc}", file=sys.stderr)
        return 2
    try:
        eventloop.run(_serve(server))
    except (OSError, StoreError) as exc:
        # Port in use, unreadable certificates, datastore locked by another server ...
        print(f"berth-apiserver: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
