"""CronJob controller: create a Job for each scheduled time (kube's cronjob controller v2).

reconcile(key):

1. brings ``status.active`` in line with the CronJob's Jobs (finished ones leave it and set
   ``lastSuccessfulTime``; entries whose Job is gone are dropped);
2. unless suspended, finds the most recent scheduled time not yet run, between the last
   schedule (or the creation) and now — after an outage only the latest missed time runs,
   with a ``TooManyMissedTimes`` warning past 100 missed; ``startingDeadlineSeconds`` both
   bounds how far back to look and skips a run that is too late (``MissSchedule``);
3. applies ``concurrencyPolicy``: Forbid skips the run while a Job is active (it runs at the
   next time), Replace deletes the active Jobs first;
4. creates ``<cronjob>-<scheduled time in minutes since the epoch>`` (a second attempt for
   the same time hits AlreadyExists, so a time never runs twice), records it in
   ``status.active`` and ``lastScheduleTime``;
5. deletes the oldest finished Jobs beyond the history limits;
6. asks to be woken at the next scheduled time.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from berth.api import cron
from berth.api.meta import format_time, parse_time
from berth.api.resources import CRONJOBS, JOBS
from berth.client import errors
from berth.client.interface import Obj
from berth.client.keys import ObjectKey
from berth.controllers import jobpolicy as jp
from berth.controllers.context import Context
from berth.machinery import ownership
from berth.machinery.controller import Controller, Retry
from berth.machinery.objects import (
    Frozen,
    controller_ref,
    is_deleting,
    key_of,
    meta,
    name,
    namespace,
    owner_reference,
    thaw,
    uid,
)
from berth.machinery.queue import WorkQueue

log = logging.getLogger(__name__)

CRONJOBS_KIND = "CronJob"
SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
TOO_MANY_MISSED = 100
"""More missed times than this since the last run earns a warning (the latest still runs)."""
WAKE_SLACK = 0.1
"""Seconds past a scheduled time to wake (so the time is surely in the past)."""


@dataclass(frozen=True, slots=True)
class Due:
    """The scheduled time to run now (None: nothing due) and how many were missed."""

    time: datetime | None
    missed: int


def job_name(cronjob_name: str, scheduled: datetime) -> str:
    return f"{cronjob_name}-{int(scheduled.timestamp()) // 60}"


def due(
    sched: cron.Schedule,
    *,
    created: datetime,
    last_schedule: datetime | None,
    starting_deadline: int | None,
    now: datetime,
) -> Due:
    """The most recent scheduled time in (earliest, now] not yet run, as kube picks it:
    earliest is the last schedule (else the creation), moved up to ``now - deadline`` when a
    starting deadline is set."""
    earliest = last_schedule or created
    if starting_deadline is not None:
        earliest = max(earliest, now - timedelta(seconds=starting_deadline))
    if earliest > now:
        return Due(None, 0)
    first = sched.next_after(earliest)
    if first is None or first > now:
        return Due(None, 0)
    second = sched.next_after(first)
    if second is None or second > now:
        return Due(first, 1)
    # Estimated from the period (iterating a years-long outage minute by minute is too slow).
    period = (second - first).total_seconds()
    missed = int((now - first).total_seconds() // period) + 1 if period > 0 else 1
    if sched.every:  # constant delay: firings are anchored at the first one
        return Due(first + timedelta(seconds=(missed - 1) * sched.every), missed)
    latest = sched.latest_at_or_before(now) or first
    return Due(max(latest, first), missed)


def is_too_late(scheduled: datetime, starting_deadline: int | None, now: datetime) -> bool:
    return starting_deadline is not None and scheduled + timedelta(seconds=starting_deadline) < now


def finished_type(job: Frozen) -> str | None:
    if jp.has_true(job, jp.COMPLETE):
        return jp.COMPLETE
    if jp.has_true(job, jp.FAILED):
        return jp.FAILED
    return None


def history_victims(jobs: list[Frozen], successful_limit: int, failed_limit: int) -> list[Frozen]:
    """Finished Jobs beyond the limits, oldest first (by start, else creation time)."""

    def started(j: Frozen) -> str:
        return str(
            (j.get("status") or {}).get("startTime") or meta(j).get("creationTimestamp") or ""
        )

    out: list[Frozen] = []
    for kind, limit in ((jp.COMPLETE, successful_limit), (jp.FAILED, failed_limit)):
        done = sorted((j for j in jobs if finished_type(j) == kind), key=started)
        if len(done) > limit:
            out += done[: len(done) - limit]
    return out


def by_cronjob_uid(job: Frozen) -> list[str]:
    ref = controller_ref(job)
    if ref is None or ref.get("kind") != CRONJOBS_KIND:
        return []
    return [str(ref.get("uid"))]


class CronJobController:
    def __init__(self, ctx: Context, *, workers: int = 2) -> None:
        self.resource = CRONJOBS
        self.ctx = ctx
        self.cronjobs = ctx.informers.informer(CRONJOBS)
        self.jobs = ctx.informers.informer(JOBS)
        self.jobs.add_index("cronjob", by_cronjob_uid)
        self.queue: WorkQueue[ObjectKey] = WorkQueue(ctx.clock, name="cronjob")
        self.controller = Controller("cronjob", self, self.queue, workers=workers)
        self.cronjobs.add_handlers(ownership.requeue_handlers(self._enqueue))
        self.jobs.add_handlers(ownership.requeue_handlers(self._job_changed))

    def _enqueue(self, obj: Frozen) -> None:
        self.queue.add(key_of(obj))

    def _job_changed(self, job: Frozen) -> None:
        key = ownership.owner_key(job, CRONJOBS_KIND)
        if key is not None:
            self.queue.add(key)

    # ---- reconcile ----------------------------------------------------------------------
    async def reconcile(self, key: ObjectKey) -> None:
        cj = self.cronjobs.get(key)
        if cj is None:
            return
        now = self.ctx.clock.now()
        spec = cj.get("spec") or {}
        status: Obj = thaw(cj.get("status") or {})
        before = thaw(cj.get("status") or {})
        children = self.jobs.by_index("cronjob", uid(cj))
        await self._track_active(cj, status, children)

        wake: float | None = None
        sched: cron.Schedule | None = None
        if not is_deleting(cj) and not spec.get("suspend"):
            try:
                sched = cron.parse(str(spec.get("schedule", "")), spec.get("timeZone"))
            except cron.ScheduleError as exc:
                reason = "UnknownTimeZone" if "time zone" in str(exc) else "UnparseableSchedule"
                await self.ctx.recorder.warning(cj, reason, str(exc))
        if sched is not None:
            await self._run_due(cj, sched, status, now)
            nxt = sched.next_after(now)
            if nxt is not None:
                wake = (nxt - now).total_seconds() + WAKE_SLACK
        if status != before:
            patch: Obj = {
                "metadata": {"resourceVersion": meta(cj).get("resourceVersion")},
                "status": {
                    k: status.get(k)
                    for k in set(status) | set(before)
                    if status.get(k) != before.get(k)
                },
            }
            try:
                await self.ctx.client.patch(
                    self.resource, name(cj), patch, namespace=namespace(cj), subresource="status"
                )
            except errors.NotFound:
                return
            except errors.Conflict:
                # the cached CronJob is stale; a Job made above is found again by its name
                raise Retry(0.2, "stale CronJob in the cache") from None
        await self._clean_history(cj, children)
        if wake is not None:
            raise Retry(wake, "next scheduled time")

    async def _track_active(self, cj: Frozen, status: Obj, children: list[Frozen]) -> None:
        by_uid = {uid(j): j for j in children}
        active: list[Obj] = []
        for ref in status.get("active") or []:
            job = by_uid.get(str(ref.get("uid")))
            if job is None:
                # not in the cache: ask the API before forgetting it (the cache may lag)
                try:
                    live = await self.ctx.client.get(
                        JOBS, str(ref.get("name")), namespace=namespace(cj)
                    )
                except errors.NotFound:
                    live = None
                if live is None or uid(live) != ref.get("uid"):
                    await self.ctx.recorder.normal(
                        cj, "MissingJob", f"Active job went missing: {ref.get('name')}"
                    )
                    continue
                job = live
            done = finished_type(job)
            if done is None:
                active.append(ref)
                continue
            await self.ctx.recorder.normal(
                cj, "SawCompletedJob", f"Saw completed job: {name(job)}, condition: {done}"
            )
        listed = {str(r.get("uid")) for r in active}
        for job in children:
            if (
                finished_type(job) is None
                and uid(job) not in listed
                and not is_deleting(job)
                and SCHEDULED_TIMESTAMP in (meta(job).get("annotations") or {})
            ):
                # A scheduled Job whose status entry was lost (the controller stopped between
                # creating it and writing the status): track it again. Jobs made by hand
                # (``kubectl create job --from``) are not counted, as in kube.
                active.append(_reference(job))
            if finished_type(job) == jp.COMPLETE:
                t = parse_time((job.get("status") or {}).get("completionTime"))
                last = parse_time(status.get("lastSuccessfulTime"))
                if t is not None and (last is None or t > last):
                    status["lastSuccessfulTime"] = format_time(t)
        if active:
            status["active"] = active
        else:
            status.pop("active", None)

    async def _run_due(self, cj: Frozen, sched: cron.Schedule, status: Obj, now: datetime) -> None:
        spec = cj.get("spec") or {}
        deadline = spec.get("startingDeadlineSeconds")
        created = parse_time(meta(cj).get("creationTimestamp")) or now
        last = parse_time(status.get("lastScheduleTime"))
        plan = due(sched, created=created, last_schedule=last, starting_deadline=deadline, now=now)
        if plan.time is None:
            return
        if plan.missed > TOO_MANY_MISSED:
            await self.ctx.recorder.warning(
                cj,
                "TooManyMissedTimes",
                f"too many missed start times: {plan.missed}. Set or decrease"
                " .spec.startingDeadlineSeconds or check clock skew",
            )
        scheduled = plan.time
        if is_too_late(scheduled, deadline, now):
            await self.ctx.recorder.warning(
                cj,
                "MissSchedule",
                f"Missed scheduled time to start a job: {format_time(scheduled)}",
            )
            return
        wanted = job_name(name(cj), scheduled)
        active = status.get("active") or []
        if any(r.get("name") == wanted for r in active):
            return
        policy = spec.get("concurrencyPolicy", "Allow")
        if policy == "Forbid" and active:
            await self.ctx.recorder.normal(
                cj,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is"
                " Forbid",
            )
            return
        if policy == "Replace":
            for ref in list(active):
                with contextlib.suppress(errors.NotFound, errors.Conflict):
                    await self.ctx.client.delete(
                        JOBS,
                        str(ref.get("name")),
                        namespace=namespace(cj),
                        propagation_policy="Background",
                        precondition_uid=str(ref.get("uid")),
                    )
                await self.ctx.recorder.normal(
                    cj, "SuccessfulDelete", f"Deleted job {ref.get('name')}"
                )
            status.pop("active", None)
            active = []
        body = self._job_for(cj, wanted, scheduled, sched)
        try:
            job = await self.ctx.client.create(JOBS, body, namespace=namespace(cj))
        except errors.AlreadyExists:
            # created by an earlier attempt whose status write was lost: that time has run
            status["lastScheduleTime"] = format_time(scheduled)
            return
        except errors.ApiError as exc:
            await self.ctx.recorder.warning(cj, "FailedCreate", f"Error creating job: {exc}")
            raise
        await self.ctx.recorder.normal(cj, "SuccessfulCreate", f"Created job {wanted}")
        status["active"] = [*active, _reference(job)]
        status["lastScheduleTime"] = format_time(scheduled)

    def _job_for(
        self, cj: Frozen, job_name_: str, scheduled: datetime, sched: cron.Schedule
    ) -> Obj:
        tmpl = thaw((cj.get("spec") or {}).get("jobTemplate") or {})
        tmeta = tmpl.get("metadata") or {}
        annotations = dict(tmeta.get("annotations") or {})
        annotations[SCHEDULED_TIMESTAMP] = (
            scheduled.astimezone(sched.zone).isoformat().replace("+00:00", "Z")
        )
        m: Obj = {
            "name": job_name_,
            "namespace": namespace(cj),
            "annotations": annotations,
            "ownerReferences": [owner_reference(cj)],
        }
        if tmeta.get("labels"):
            m["labels"] = dict(tmeta["labels"])
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": m, "spec": tmpl.get("spec")}

    async def _clean_history(self, cj: Frozen, children: list[Frozen]) -> None:
        spec = cj.get("spec") or {}
        victims = history_victims(
            [j for j in children if not is_deleting(j)],
            int(spec.get("successfulJobsHistoryLimit", 3)),
            int(spec.get("failedJobsHistoryLimit", 1)),
        )
        for job in victims:
            try:
                await self.ctx.client.delete(
                    JOBS,
                    name(job),
                    namespace=namespace(job),
                    propagation_policy="Background",
                    precondition_uid=uid(job),
                )
            except (errors.NotFound, errors.Conflict):
                continue
            await self.ctx.recorder.normal(cj, "SuccessfulDelete", f"Deleted job {name(job)}")


def _reference(job: Frozen) -> Obj:
    return {
        "kind": "Job",
        "namespace": namespace(job),
        "name": name(job),
        "uid": uid(job),
        "apiVersion": "batch/v1",
        "resourceVersion": meta(job).get("resourceVersion"),
    }
