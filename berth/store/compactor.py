"""Periodic compaction, the way kube-apiserver does it for etcd.

Every ``interval`` seconds the compactor compacts the store at the revision it observed one
interval earlier. History therefore always reaches back at least one interval (5 minutes by
default) and at most two, which is what reconnecting reflectors need: they resume watches
after their 5-10 minute timeouts from the last revision they saw, and get ``410`` and relist
only if that is older than the window.

Run exactly one compactor per store (with etcd: per cluster; compacting twice is harmless but
wasted work). It is a plain coroutine: ``task = asyncio.create_task(run_compactor(store))``
and cancel the task on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from berth.store.interface import Store, StoreError

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 300.0


async def run_compactor(
    store: Store,
    *,
    interval: float = DEFAULT_INTERVAL,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Compact ``store`` forever (until cancelled); a failed round is logged and retried at
    the next interval, never fatal."""
    previous: int | None = None
    while True:
        await sleep(interval)
        try:
            current = await store.current_revision()
            if previous is not None and previous < current:
                await store.compact(previous)
                log.info("compacted the datastore at revision %d", previous)
            previous = current
        except StoreError as exc:
            log.warning("datastore compaction failed (will retry): %s", exc)
