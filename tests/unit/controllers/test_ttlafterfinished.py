"""TTL-after-finished on a fake clock: a finished Job is deleted (in the foreground) once
its TTL has passed since its Complete/Failed condition, not before; running Jobs, Jobs
without a TTL and a TTL raised in the meantime are left alone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from berth.api.meta import format_time
from berth.api.resources import JOBS
from berth.client.interface import Obj
from berth.client.keys import ObjectKey
from berth.controllers.ttlafterfinished import TTLAfterFinishedController, expires_in
from berth.machinery.controller import Retry

from .harness import Harness, run

KEY = ObjectKey("default/done")


def finished_job(h: Harness, ttl: int | None, *, type_: str = "Complete", **extra: Any) -> Obj:
    spec: Obj = {} if ttl is None else {"ttlSecondsAfterFinished": ttl}
    stamp = format_time(h.clock.now())
    return {
        "metadata": {"name": "done", "namespace": "default"},
        "spec": spec,
        "status": {
            "conditions": [{"type": type_, "status": "True", "lastTransitionTime": stamp}],
            **extra,
        },
    }


async def reconcile(h: Harness, c: TTLAfterFinishedController) -> float | None:
    await h.sync()
    try:
        await c.reconcile(KEY)
    except Retry as r:
        return r.delay
    return None


def test_deleted_in_the_foreground_once_the_ttl_has_passed() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(JOBS, finished_job(h, 100, type_="Failed"))
        c = TTLAfterFinishedController(h.ctx)
        h.clock.advance(40)
        assert await reconcile(h, c) == 60
        assert h.api.stored(JOBS, KEY) is not None
        h.clock.advance(60)
        assert await reconcile(h, c) is None
        (delete,) = h.api.writes("delete", JOBS)
        assert delete.name == "done"
        stored = h.api.stored(JOBS, KEY)
        # foreground: the Job stays, marked, until the garbage collector removed its pods
        assert stored is None or "foregroundDeletion" in stored["metadata"]["finalizers"]

    run(body)


def test_running_jobs_and_jobs_without_ttl_stay() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(JOBS, finished_job(h, None))
        c = TTLAfterFinishedController(h.ctx)
        h.clock.advance(10_000)
        assert await reconcile(h, c) is None
        assert h.api.writes("delete", JOBS) == []
        running = finished_job(h, 0)
        running["status"] = {}
        assert expires_in(running, h.clock.now()) is None
        done = finished_job(h, 5)
        assert expires_in(done, h.clock.now() + timedelta(seconds=2)) == 3

    run(body)


def test_a_ttl_raised_meanwhile_is_honoured() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(JOBS, finished_job(h, 10))
        c = TTLAfterFinishedController(h.ctx)
        await h.sync()  # the cache holds the 10 s TTL
        await h.api.patch(
            JOBS, "done", {"spec": {"ttlSecondsAfterFinished": 1000}}, namespace="default"
        )
        h.clock.advance(20)
        with pytest.raises(Retry) as r:
            await c.reconcile(KEY)  # the cache says expired; the API says 980 s to go
        assert r.value.delay == 980
        assert h.api.writes("delete", JOBS) == []

    run(body)
