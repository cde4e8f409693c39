"""TTL-after-finished controller: delete a finished Job ``ttlSecondsAfterFinished`` after it
finished (kube's ``ttl-after-finished`` controller).

The finish time is the ``lastTransitionTime`` of the Job's ``Complete`` or ``Failed``
condition. When the cached Job looks expired, the Job is read again from the API (its TTL
may just have been changed) and deleted in the foreground, conditioned on its uid, so its
pods go first and a new Job of the same name is never hit.
"""

from __future__ import annotations

from datetime import datetime

from berth.api.meta import parse_time
from berth.api.resources import JOBS
from berth.client import errors
from berth.client.keys import ObjectKey, split_key
from berth.controllers import jobpolicy as jp
from berth.controllers.context import Context
from berth.machinery.controller import Controller, Retry
from berth.machinery.informer import Handlers
from berth.machinery.objects import Frozen, is_deleting, key_of, uid
from berth.machinery.queue import WorkQueue


def finished_at(job: Frozen) -> datetime | None:
    for type_ in (jp.COMPLETE, jp.FAILED):
        c = jp.condition(job, type_)
        if c is not None and c.get("status") == "True":
            return parse_time(c.get("lastTransitionTime"))
    return None


def expires_in(job: Frozen, now: datetime) -> float | None:
    """Seconds until a finished Job with a TTL may be deleted (<= 0: now); None when it has
    no TTL, is not finished or is already being deleted."""
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    if ttl is None or is_deleting(job):
        return None
    done = finished_at(job)
    if done is None:
        return None
    return float(ttl) - (now - done).total_seconds()


class TTLAfterFinishedController:
    def __init__(self, ctx: Context, *, workers: int = 2) -> None:
        self.ctx = ctx
        self.jobs = ctx.informers.informer(JOBS)
        self.queue: WorkQueue[ObjectKey] = WorkQueue(ctx.clock, name="ttl-after-finished")
        self.controller = Controller("ttl-after-finished", self, self.queue, workers=workers)
        self.jobs.add_handlers(
            Handlers(on_add=self._maybe, on_update=lambda _old, new: self._maybe(new))
        )

    def _maybe(self, job: Frozen) -> None:
        if expires_in(job, self.ctx.clock.now()) is not None:
            self.queue.add(key_of(job))

    async def reconcile(self, key: ObjectKey) -> None:
        job = self.jobs.get(key)
        if job is None:
            return
        left = expires_in(job, self.ctx.clock.now())
        if left is None:
            return
        if left > 0:
            raise Retry(left, "TTL not expired yet")
        ns, name = split_key(key)
        try:
            fresh = await self.ctx.client.get(JOBS, name, namespace=ns)
        except errors.NotFound:
            return
        left = expires_in(fresh, self.ctx.clock.now())
        if left is None or uid(fresh) != uid(job):
            return
        if left > 0:
            raise Retry(left, "TTL changed")
        try:
            await self.ctx.client.delete(
                JOBS,
                name,
                namespace=ns,
                propagation_policy="Foreground",
                precondition_uid=uid(fresh),
            )
        except (errors.NotFound, errors.Conflict):
            return
