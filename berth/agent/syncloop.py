"""The level-triggered loop the node agent's network parts share (routes and service rules in
:mod:`berth.agent.network`, NetworkPolicy rules in :mod:`berth.agent.netpolicy`).

Informers only mark the state dirty; one loop, once every informer has synced, renders the
whole state from the caches and applies it. A failed sync is logged and retried after
:data:`RETRY_SECONDS`; a periodic resync (``resync_seconds`` without a change) repairs what
someone removed by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from berth.machinery.clock import Clock
from berth.machinery.informer import Handlers, Informer
from berth.machinery.objects import Frozen
from berth.network.command import CommandFailed

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0


def marks_dirty(dirty: asyncio.Event) -> Handlers:
    """Handlers that mark ``dirty`` on every add, update and delete."""

    def changed(_obj: Frozen) -> None:
        dirty.set()

    return Handlers(on_add=changed, on_update=lambda _old, new: changed(new), on_delete=changed)


async def run_sync_loop(
    informers: Sequence[Informer],
    sync: Callable[[], Awaitable[object]],
    *,
    dirty: asyncio.Event,
    clock: Clock,
    resync_seconds: float,
    what: str,
    task_prefix: str,
    prepare: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """Run ``informers``, then ``sync`` once they have all synced and again on every change
    (``dirty``) or resync, until cancelled. ``prepare`` runs once before the first sync;
    ``what`` names the state in the log ("node n1: network")."""
    tasks = [
        asyncio.create_task(i.run(), name=f"{task_prefix}-{i.resource.plural}") for i in informers
    ]
    try:
        if prepare is not None:
            await prepare()
        for informer in informers:
            await informer.wait_synced()
        dirty.set()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(dirty.wait(), resync_seconds)
            dirty.clear()
            try:
                await sync()
            # the loop must outlive any bad object: log, retry, never die
            except Exception as exc:
                log.warning(
                    "%s sync failed (retrying): %s",
                    what,
                    exc,
                    exc_info=not isinstance(exc, CommandFailed | OSError),
                )
                await clock.sleep(RETRY_SECONDS)
                dirty.set()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
