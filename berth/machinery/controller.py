"""The reconcile runner: workers take keys from a :class:`WorkQueue` and call
``reconcile(key)``.

Concurrency contract: ``workers`` tasks share one queue; the queue guarantees a key is never
reconciled by two workers at once, so a reconcile may assume it is alone for its key (but not
for other keys). Error policy, applied uniformly here and nowhere else:

* return normally → :meth:`WorkQueue.forget` (the key's backoff resets);
* raise :class:`Retry` → requeue after ``delay`` (transient, expected: "check again later");
* raise anything else → logged and requeued with the queue's exponential backoff;
* raise :class:`Permanent` → logged, not requeued until the next event for the key.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from berth.client.keys import ObjectKey
from berth.machinery.queue import WorkQueue

log = logging.getLogger(__name__)


class Retry(Exception):
    """Reconcile again after ``delay`` seconds (no backoff, not an error)."""

    def __init__(self, delay: float, why: str = "") -> None:
        super().__init__(why or f"retry in {delay}s")
        self.delay = delay


class Permanent(Exception):
    """The object cannot be reconciled as it stands; wait for it to change."""


class Reconciler(Protocol):
    async def reconcile(self, key: ObjectKey) -> None: ...


class Controller:
    def __init__(
        self,
        name: str,
        reconciler: Reconciler,
        queue: WorkQueue[ObjectKey],
        *,
        workers: int = 1,
    ) -> None:
        self.name = name
        self.reconciler = reconciler
        self.queue = queue
        self.workers = workers

    async def process(self, key: ObjectKey) -> None:
        """Reconcile one key already taken from the queue, then apply the error policy."""
        try:
            await self.reconciler.reconcile(key)
        except Retry as r:
            self.queue.forget(key)
            self.queue.add_after(key, r.delay)
        except Permanent as exc:
            self.queue.forget(key)
            log.warning("%s: %s: %s (waiting for a change)", self.name, key, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "%s: reconcile %s failed (attempt %d): %s",
                self.name,
                key,
                self.queue.num_requeues(key) + 1,
                exc,
                exc_info=not isinstance(exc, OSError | ConnectionError),
            )
            self.queue.add_rate_limited(key)
        else:
            self.queue.forget(key)
        finally:
            self.queue.done(key)

    async def process_next(self) -> bool:
        """Take one key and process it; False after shutdown."""
        key = await self.queue.get()
        if key is None:
            return False
        await self.process(key)
        return True

    async def drain(self, limit: int = 10_000) -> int:
        """Process keys until the queue is empty (tests); returns how many were processed."""
        n = 0
        while len(self.queue) and n < limit:
            key = self.queue.get_nowait()
            if key is None:
                break
            await self.process(key)
            n += 1
        return n

    async def run(self) -> None:
        async def worker() -> None:
            while await self.process_next():
                pass

        await asyncio.gather(*(worker() for _ in range(self.workers)))
