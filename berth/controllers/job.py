"""Job controller: run a Job's pods to completion, count each finished pod exactly once.

reconcile(key) reads the Job and its pods from the caches and, as kube-controller-manager's
job controller does:

* **tracks** finished pods through the ``batch.kubernetes.io/job-tracking`` finalizer every
  pod is created with. A finished pod's uid is first written to
  ``status.uncountedTerminatedPods`` (Indexed Jobs: its index to ``completedIndexes``), then
  its finalizer is removed, then the uid moves to ``succeeded``/``failed``. Every status
  write is conditioned on the cached resourceVersion, and no reconcile acts on a cached Job
  older than its last status write, so a stale cache can neither overwrite a newer count
  nor start pods from an old one; a controller killed between any two steps finds the pod
  either still holding its finalizer (not yet counted) or listed as uncounted (counted on
  the next pass) — nothing is lost or counted twice.
* **decides**: a pod failure policy ``FailJob`` match, ``failed > backoffLimit`` (OnFailure:
  container restarts), ``activeDeadlineSeconds`` or the completions reached add
  ``FailureTarget`` / ``SuccessCriteriaMet`` first; remaining pods are deleted, and once none
  is left running the terminal ``Failed`` / ``Complete`` follows (1.32's order);
* **manages** pods: ``parallelism`` at a time, never more than the completions left; Indexed
  Jobs one pod per missing index (``JOB_COMPLETION_INDEX``, hostname ``<job>-<index>``);
  replacements of failed pods wait an exponential back-off read from the failed pods' finish
  times (so it survives a restart); a suspended Job's pods are deleted.

Pods whose Job is gone (or replaced by a new one of the same name) get their finalizer
removed, so deleting a Job never leaves pods stuck.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime

from berth.api.meta import format_time
from berth.api.resources import JOBS, PODS
from berth.api.selectors import EVERYTHING, LabelSelector, SelectorError, label_selector_from_object
from berth.client import errors
from berth.client.interface import Obj
from berth.client.keys import ObjectKey, make_key
from berth.controllers import jobpolicy as jp
from berth.controllers import pods as podutil
from berth.controllers.context import Context
from berth.machinery import ownership
from berth.machinery.controller import Controller, Retry
from berth.machinery.expectations import Expectations
from berth.machinery.informer import Handlers
from berth.machinery.objects import (
    Frozen,
    controller_ref,
    is_deleting,
    key_of,
    labels,
    meta,
    name,
    namespace,
    thaw,
    uid,
)
from berth.machinery.queue import WorkQueue

log = logging.getLogger(__name__)

BURST = 100
"""Most pods created or deleted by one reconcile (kube: 500)."""
MAX_UNCOUNTED = 500
"""Most uids listed in each ``uncountedTerminatedPods`` list (kube: 500, ~20 KB)."""


def by_job_key(pod: Frozen) -> Iterable[str]:
    """Index pods by the ``namespace/name`` of the Job controlling them."""
    ref = controller_ref(pod)
    if (
        ref is None
        or ref.get("kind") != "Job"
        or not str(ref.get("apiVersion", "")).startswith("batch/")
    ):
        return []
    return [make_key(namespace(pod), str(ref.get("name")))]


class JobController:
    def __init__(self, ctx: Context, *, workers: int = 4) -> None:
        self.ctx = ctx
        self.jobs = ctx.informers.informer(JOBS)
        self.pods = ctx.pods()
        self.pods.add_index("job", by_job_key)
        self.queue: WorkQueue[ObjectKey] = WorkQueue(ctx.clock, name="job")
        self.expectations = Expectations(ctx.clock)
        self.written: dict[ObjectKey, int] = {}
        """The resourceVersion of each Job's last status write: a cached Job older than
        that is stale, and counting or creating pods from it could double them."""
        self.controller = Controller("job", self, self.queue, workers=workers)
        self.jobs.add_handlers(ownership.requeue_handlers(self._enqueue))
        self.pods.add_handlers(
            Handlers(
                on_add=self._pod_changed,
                on_update=self._pod_updated,
                on_delete=self._pod_changed,
            )
        )

    def _enqueue(self, obj: Frozen) -> None:
        self.queue.add(key_of(obj))

    def _pod_changed(self, pod: Frozen) -> None:
        for key in by_job_key(pod):
            self.queue.add(ObjectKey(key))
        if ownership.is_orphan(pod):
            # an orphan: a Job whose selector matches may adopt it
            for job in self.jobs.list(namespace(pod) or ""):
                sel = _job_selector(job)
                if not sel.empty and sel.matches(labels(pod)):
                    self._enqueue(job)

    def _pod_updated(self, old: Frozen, new: Frozen) -> None:
        self._pod_changed(old)
        self._pod_changed(new)

    # ---- reconcile ----------------------------------------------------------------------
    async def reconcile(self, key: ObjectKey) -> None:
        job = self.jobs.get(key)
        related = self.pods.by_index("job", key)
        if job is None:
            self.expectations.forget(key)
            self.written.pop(key, None)
            await self._release_if_orphaned(key, related)
            return
        managed_by = (job.get("spec") or {}).get("managedBy")
        if managed_by not in (None, jp.CONTROLLER_NAME):
            return  # another controller runs this Job (spec.managedBy)
        owned = [p for p in related if (controller_ref(p) or {}).get("uid") == uid(job)]
        strays = [p for p in related if p not in owned and jp.has_tracking_finalizer(p)]
        await self._release(strays)  # pods of an older Job of the same name
        if is_deleting(job) or jp.is_finished(job):
            # Nothing is counted any more; no pod may stay stuck on our finalizer.
            await self._release([p for p in owned if jp.has_tracking_finalizer(p)])
            return
        if _revision(meta(job).get("resourceVersion")) < self.written.get(key, 0):
            raise Retry(0.2, "the cache has not seen our last status write yet")
        owned += await self._adopt(job)
        try:
            await self._sync(key, job, owned)
        except errors.Conflict:
            # The cached Job is older than the stored one: nothing was counted from it;
            # run again once the watch has brought the newer version.
            raise Retry(0.2, "stale Job in the cache") from None

    async def _sync(self, key: ObjectKey, job: Frozen, owned: list[Frozen]) -> None:
        now = self.ctx.clock.now()
        spec = job.get("spec") or {}
        status: Obj = thaw(job.get("status") or {})
        indexed = spec.get("completionMode") == "Indexed"
        completions = int(spec.get("completions") or 0)
        uncounted = status.get("uncountedTerminatedPods") or {}
        unc_ok: list[str] = list(uncounted.get("succeeded") or [])
        unc_fail: list[str] = list(uncounted.get("failed") or [])
        succeeded = int(status.get("succeeded") or 0)
        failed = int(status.get("failed") or 0)
        completed = jp.parse_indexes(status.get("completedIndexes"), completions)
        per_index_limit = spec.get("backoffLimitPerIndex") if indexed else None
        failed_ix = jp.parse_indexes(status.get("failedIndexes"), completions)
        by_uid = {uid(p): p for p in owned}

        # 1. Uids recorded as uncounted whose pod has lost its finalizer (or is gone) are
        # counted now: their finalizer removal is what made the record final.
        def released(u: str) -> bool:
            p = by_uid.get(u)
            return p is None or not jp.has_tracking_finalizer(p)

        flushed_ok = [u for u in unc_ok if released(u)]
        flushed_fail = [u for u in unc_fail if released(u)]
        succeeded += len(flushed_ok)
        failed += len(flushed_fail)
        unc_ok = [u for u in unc_ok if u not in flushed_ok]
        unc_fail = [u for u in unc_fail if u not in flushed_fail]

        # 2. Newly finished pods still holding the finalizer: record them (and decide).
        verdict = jp.pending_verdict(job)
        if verdict is None:
            for p in owned:
                if jp.has_tracking_finalizer(p) and uid(p) not in unc_fail:
                    match = jp.match_failure_policy(job, p)
                    if match is not None and match.action == "FailJob":
                        verdict = jp.Verdict(
                            jp.FAILURE_TARGET, jp.REASON_POD_FAILURE_POLICY, match.message
                        )
                        break
        to_release: list[Frozen] = []
        for p in owned:
            if not jp.has_tracking_finalizer(p):
                continue
            u = uid(p)
            if u in unc_fail or (u in unc_ok and not indexed):
                to_release.append(p)  # recorded before: only its finalizer is left to remove
                continue
            ix = jp.completion_index(p) if indexed else None
            index_ok = not indexed or (ix is not None and ix < completions)
            if podutil.phase(p) == "Succeeded" and u not in unc_fail:
                if indexed:
                    if ix is not None and ix < completions:
                        completed.add(ix)
                elif len(unc_ok) < MAX_UNCOUNTED:
                    unc_ok.append(u)
                else:
                    continue  # the list is full: counted on a later pass
                to_release.append(p)
            elif jp.considered_failed(p, job) or (verdict is not None and not verdict.success):
                # Once the Job is failing, every pod not yet finished counts as failed.
                if index_ok and jp.counts_as_failure(job, p):
                    if len(unc_fail) >= MAX_UNCOUNTED:
                        continue
                    unc_fail.append(u)
                    if per_index_limit is not None and ix is not None and ix not in completed:
                        # the index itself fails past its own limit, or by a FailIndex rule
                        match = jp.match_failure_policy(job, p)
                        over = jp.index_failure_count(p) + 1 > int(per_index_limit)
                        if over or (match is not None and match.action == "FailIndex"):
                            failed_ix.add(ix)
                to_release.append(p)
            elif verdict is not None:
                to_release.append(p)  # lingering pods of a Job that has succeeded

        active = [p for p in owned if podutil.is_active(p)]
        deleting = self.expectations.pending_deletes(key, [name(p) for p in active])
        active = [p for p in active if name(p) not in deleting]
        terminating = [p for p in owned if jp.is_terminating(p)]
        if indexed:
            succeeded = len(completed)
        succ_total = succeeded + len(unc_ok)
        fail_total = failed + len(unc_fail)

        # 3. The verdict, if none yet.
        suspended = bool(spec.get("suspend"))
        # a Job resumed now starts its deadline afresh (startTime is reset below)
        resuming = not suspended and jp.has_true(job, jp.SUSPENDED)
        conditions: list[Obj] = list(status.get("conditions") or [])
        events: list[tuple[bool, str, str]] = []
        if verdict is None:
            left = jp.deadline_left(job, now)
            if fail_total > int(spec.get("backoffLimit", 6)) or jp.past_backoff_limit_on_failure(
                job, active
            ):
                verdict = jp.Verdict(
                    jp.FAILURE_TARGET, jp.REASON_BACKOFF_LIMIT, jp.MSG_BACKOFF_LIMIT
                )
            elif left is not None and left <= 0 and not suspended and not resuming:
                verdict = jp.Verdict(jp.FAILURE_TARGET, jp.REASON_DEADLINE, jp.MSG_DEADLINE)
            elif (
                per_index_limit is not None
                and spec.get("maxFailedIndexes") is not None
                and len(failed_ix) > int(spec["maxFailedIndexes"])
            ):
                verdict = jp.Verdict(
                    jp.FAILURE_TARGET, jp.REASON_MAX_FAILED_INDEXES, jp.MSG_MAX_FAILED_INDEXES
                )
            elif failed_ix and len(completed | failed_ix) >= completions:
                verdict = jp.Verdict(
                    jp.FAILURE_TARGET, jp.REASON_FAILED_INDEXES, jp.MSG_FAILED_INDEXES
                )
            elif (rule := jp.success_policy_rule(job, completed)) is not None:
                verdict = jp.Verdict(
                    jp.SUCCESS_CRITERIA_MET,
                    jp.REASON_SUCCESS_POLICY,
                    f"Matched rules at index {rule}",
                )
            elif jp.success_reached(job, succ_total, len(active), completed):
                verdict = jp.Verdict(
                    jp.SUCCESS_CRITERIA_MET,
                    jp.REASON_COMPLETIONS_REACHED,
                    jp.MSG_COMPLETIONS_REACHED,
                )
            if verdict is not None:
                jp.set_condition(
                    conditions, verdict.type, "True", verdict.reason, verdict.message, now=now
                )

        # 4. Suspension and start time.
        if verdict is None:
            if suspended:
                if jp.set_condition(
                    conditions, jp.SUSPENDED, "True", "JobSuspended", "Job suspended", now=now
                ):
                    events.append((False, "Suspended", "Job suspended"))
            elif resuming:
                jp.set_condition(
                    conditions, jp.SUSPENDED, "False", "JobResumed", "Job resumed", now=now
                )
                events.append((False, "Resumed", "Job resumed"))
                # the deadline counts time the Job is continuously active
                status["startTime"] = format_time(now)
        if not suspended and not status.get("startTime"):
            status["startTime"] = format_time(now)

        status.update(
            active=len(active),
            ready=sum(1 for p in active if podutil.is_ready(p)),
            terminating=len(terminating),
            succeeded=succeeded,
            failed=failed,
            uncountedTerminatedPods=_uncounted(unc_ok, unc_fail),
            conditions=conditions,
        )
        if indexed:
            status["completedIndexes"] = jp.format_indexes(completed)
        if per_index_limit is not None:
            status["failedIndexes"] = jp.format_indexes(failed_ix)
        base = thaw(job.get("status") or {})
        rv = await self._write_status(job, base, status)
        base = copy.deepcopy(status)

        # 5. Release the recorded pods, then count them.
        done = await self._release(to_release)
        moved_ok = [u for u in unc_ok if u in done]
        moved_fail = [u for u in unc_fail if u in done]
        if moved_ok or moved_fail:
            status["succeeded"] = succeeded if indexed else succeeded + len(moved_ok)
            status["failed"] = failed + len(moved_fail)
            unc_ok = [u for u in unc_ok if u not in done]
            unc_fail = [u for u in unc_fail if u not in done]
            status["uncountedTerminatedPods"] = _uncounted(unc_ok, unc_fail)

        # 6. Pods: delete what must go, create what is missing.
        retry: float | None = None
        if verdict is not None or suspended:
            await self._delete_pods(job, key, active)
            status["active"] = status["ready"] = 0
        else:
            retry, change = await self._manage(
                job,
                key,
                owned=owned,
                active=active,
                terminating=terminating,
                succeeded=succ_total,
                completed=completed | failed_ix,
                now=now,
            )
            status["active"] = max(0, len(active) + change)
            left = jp.deadline_left(job, now)
            if left is None and spec.get("activeDeadlineSeconds") is not None:
                left = float(spec["activeDeadlineSeconds"])
            if left is not None:
                retry = left if retry is None else min(retry, left)

        # 7. The terminal condition once nothing runs and everything is counted.
        still_running = any(
            podutil.is_active(p) or jp.is_terminating(p) or jp.has_tracking_finalizer(p)
            for p in owned
            if uid(p) not in done
        )
        if verdict is not None and not unc_ok and not unc_fail and not still_running:
            if jp.set_condition(
                conditions, verdict.terminal_type, "True", verdict.reason, verdict.message, now=now
            ):
                if verdict.success:
                    status["completionTime"] = format_time(now)
                    events.append((False, "Completed", "Job completed"))
                else:
                    events.append((True, verdict.reason, verdict.message))
            status["conditions"] = conditions
            status["active"] = 0
            status["terminating"] = 0
            status["ready"] = 0
        if status != base:
            await self._write_status(job, base, status, rv=rv)
        for warning, reason, message in events:
            if warning:
                await self.ctx.recorder.warning(job, reason, message)
            else:
                await self.ctx.recorder.normal(job, reason, message)
        if retry is not None:
            raise Retry(max(retry, 0.05), "waiting for back-off or deadline")

    async def _manage(
        self,
        job: Frozen,
        key: ObjectKey,
        *,
        owned: list[Frozen],
        active: list[Frozen],
        terminating: list[Frozen],
        succeeded: int,
        completed: set[int],
        now: datetime,
    ) -> tuple[float | None, int]:
        """Create or delete pods toward the wanted number; returns a delay to check again
        (the back-off before replacing failed pods; None when nothing waits) and by how
        many pods the active count changed."""
        spec = job.get("spec") or {}
        indexed = spec.get("completionMode") == "Indexed"
        parallelism = int(spec.get("parallelism", 1))
        creating = self.expectations.pending_creates(key, [name(p) for p in owned])
        occupied = len(active) + len(creating)
        if jp.replacement_policy(job) == "Failed":
            occupied += len(terminating)  # replacements wait until the old pod is gone
        if indexed:
            completions = int(spec.get("completions") or 0)
            busy: dict[int, list[Frozen]] = {}
            extra: list[Frozen] = []
            for p in active:
                ix = jp.completion_index(p)
                if ix is None or ix >= completions or ix in completed:
                    extra.append(p)
                else:
                    busy.setdefault(ix, []).append(p)
            for pods in busy.values():
                extra += sorted(pods, key=podutil.deletion_rank)[:-1]  # duplicates of an index
            taken = set(busy) | {_index_of(n, name(job)) for n in creating}
            if jp.replacement_policy(job) == "Failed":
                taken |= {ix for p in terminating if (ix := jp.completion_index(p)) is not None}
            over = max(0, len(busy) + len(creating) - parallelism)
            if over:
                extra += sorted((ps[-1] for ps in busy.values()), key=podutil.deletion_rank)[:over]
            if extra:
                await self._delete_pods(job, key, extra[:BURST])
                return None, -len(extra[:BURST])
            missing = [i for i in range(completions) if i not in completed and i not in taken]
            room = max(0, parallelism - len(busy) - len(creating))
            todo = missing[: min(room, BURST)]
            if not todo:
                return None, 0
            if spec.get("backoffLimitPerIndex") is None:
                wait = jp.backoff_remaining(owned, job, now)
                if wait > 0:
                    return wait, 0
                await self._create_pods(job, key, todo)
                return None, len(todo)
            # each index waits its own back-off, from its own failures
            ready: list[int | None] = []
            waits: list[float] = []
            for ix in todo:
                mine = [p for p in owned if jp.completion_index(p) == ix]
                wait = jp.backoff_remaining(mine, job, now)
                if wait > 0:
                    waits.append(wait)
                else:
                    ready.append(ix)
            if ready:
                await self._create_pods(job, key, ready, owned=owned)
            return (min(waits) if waits else None), len(ready)
        want = jp.want_active(job, succeeded, len(active))
        if occupied > want and active:
            victims = sorted(active, key=podutil.deletion_rank)[: min(occupied - want, BURST)]
            await self._delete_pods(job, key, victims)
            return None, -len(victims)
        if occupied < want:
            wait = jp.backoff_remaining(owned, job, now)
            if wait > 0:
                return wait, 0
            count = min(want - occupied, BURST)
            await self._create_pods(job, key, [None] * count)
            return None, count
        return None, 0

    async def _adopt(self, job: Frozen) -> list[Frozen]:
        """Take running orphan pods the Job's selector matches (kube's ClaimPods), adding the
        tracking finalizer so their end is counted like any other pod's."""

        def track(pod: Frozen, patch: Obj) -> None:
            finalizers = list(meta(pod).get("finalizers") or ())
            patch["metadata"]["finalizers"] = [*finalizers, jp.TRACKING_FINALIZER]

        return await ownership.adopt(
            self.ctx.client,
            PODS,
            job,
            self.pods.list(namespace(job) or ""),
            _job_selector(job),
            eligible=podutil.is_active,
            amend=track,
        )

    # ---- writes -------------------------------------------------------------------------
    async def _write_status(
        self, job: Frozen, base: Obj, status: Obj, *, rv: str | None = None
    ) -> str:
        """Turn the Job's status ``base`` into ``status``, only over the version it was
        computed from (a Conflict means the cache was stale: the reconcile runs again on the
        newer Job). Returns the resourceVersion now current."""
        expected = rv or str(meta(job).get("resourceVersion", ""))
        if status == base:
            return expected
        patch: Obj = {"metadata": {"resourceVersion": expected}, "status": _patch_of(base, status)}
        written = await self.ctx.client.patch(
            JOBS, name(job), patch, namespace=namespace(job), subresource="status"
        )
        rv_now = str(written["metadata"].get("resourceVersion", ""))
        self.written[key_of(job)] = _revision(rv_now)
        return rv_now

    async def _create_pods(
        self,
        job: Frozen,
        key: ObjectKey,
        indexes: Sequence[int | None],
        *,
        owned: Sequence[Frozen] = (),
    ) -> None:
        template = (job.get("spec") or {}).get("template") or {}

        async def one(ix: int | None) -> None:
            body = podutil.pod_from_template(template, job, generate_name=f"{name(job)}-")
            m = body["metadata"]
            m["finalizers"] = [jp.TRACKING_FINALIZER]
            if ix is None:
                m["name"] = f"{name(job)}-{podutil.random_suffix()}"
            else:
                m["generateName"] = f"{name(job)}-{ix}-"
                m["name"] = f"{name(job)}-{ix}-{podutil.random_suffix()}"
                labels, annotations, hostname = jp.index_pod_extras(job, ix)
                if (job.get("spec") or {}).get("backoffLimitPerIndex") is not None:
                    annotations[jp.INDEX_FAILURE_COUNT] = str(jp.failures_of_index(owned, job, ix))
                m.setdefault("labels", {}).update(labels)
                m["annotations"] = {**(m.get("annotations") or {}), **annotations}
                pod_spec = body["spec"]
                pod_spec.setdefault("hostname", hostname)
                for c in (pod_spec.get("containers") or []) + (
                    pod_spec.get("initContainers") or []
                ):
                    env = c.setdefault("env", [])
                    if not any(e.get("name") == jp.COMPLETION_INDEX_ENV for e in env):
                        env.append(jp.index_env())
            await ownership.create_expected(
                self.ctx.client, self.expectations, key, PODS, body, namespace=namespace(job)
            )
            await self.ctx.recorder.normal(job, "SuccessfulCreate", f"Created pod: {m['name']}")

        results = await asyncio.gather(*(one(ix) for ix in indexes), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            await self.ctx.recorder.warning(job, "FailedCreate", f"Error creating: {failures[0]}")
            raise failures[0]

    async def _delete_pods(self, job: Frozen, key: ObjectKey, victims: list[Frozen]) -> None:
        async def one(pod: Frozen) -> None:
            await ownership.delete_expected(self.ctx.client, self.expectations, key, PODS, pod)
            await self.ctx.recorder.normal(job, "SuccessfulDelete", f"Deleted pod: {name(pod)}")

        await asyncio.gather(*(one(p) for p in victims[:BURST]))

    async def _release(self, pods: Iterable[Frozen]) -> set[str]:
        """Remove the tracking finalizer; returns the uids now free of it (or gone)."""

        async def one(pod: Frozen) -> str | None:
            current: Frozen | None = pod
            for _attempt in range(3):
                if current is None or not jp.has_tracking_finalizer(current):
                    return uid(pod)
                rest = [
                    f for f in meta(current).get("finalizers") or () if f != jp.TRACKING_FINALIZER
                ]
                patch: Obj = {
                    "metadata": {
                        "finalizers": rest or None,
                        "resourceVersion": meta(current).get("resourceVersion"),
                    }
                }
                try:
                    await self.ctx.client.patch(PODS, name(pod), patch, namespace=namespace(pod))
                    return uid(pod)
                except errors.NotFound:
                    return uid(pod)
                except errors.Conflict:
                    try:
                        current = await self.ctx.client.get(
                            PODS, name(pod), namespace=namespace(pod)
                        )
                    except errors.NotFound:
                        return uid(pod)
                    if uid(current) != uid(pod):
                        return uid(pod)
            return None

        results = await asyncio.gather(*(one(p) for p in pods), return_exceptions=True)
        done: set[str] = set()
        for r in results:
            if isinstance(r, str):
                done.add(r)
            elif isinstance(r, BaseException):
                log.warning("job: could not remove a pod's tracking finalizer: %s", r)
        return done

    async def _release_if_orphaned(self, key: ObjectKey, pods: list[Frozen]) -> None:
        """Pods of a Job the cache no longer has: ask the API (the cache may lag a new Job)
        and free them when their Job is really gone."""
        held = [p for p in pods if jp.has_tracking_finalizer(p)]
        if not held:
            return
        ns, job_name = key.split("/", 1)
        try:
            live = await self.ctx.client.get(JOBS, job_name, namespace=ns)
        except errors.NotFound:
            live = None
        live_uid = uid(live) if live is not None else None
        await self._release([p for p in held if (controller_ref(p) or {}).get("uid") != live_uid])


def _uncounted(ok: list[str], fail: list[str]) -> Obj:
    out: Obj = {}
    if ok:
        out["succeeded"] = ok
    if fail:
        out["failed"] = fail
    return out


def _patch_of(old: Obj, new: Obj) -> Obj:
    """A JSON merge patch turning ``old`` into ``new`` (removed keys become null)."""
    patch: Obj = {}
    for k, v in new.items():
        was = old.get(k)
        if was == v:
            continue
        if isinstance(was, dict) and isinstance(v, dict) and v:
            patch[k] = _patch_of(was, v)
        elif isinstance(was, dict) and isinstance(v, dict):
            patch[k] = {sub: None for sub in was}
        else:
            patch[k] = v
    for k in old:
        if k not in new:
            patch[k] = None
    return patch


def _index_of(pod_name: str, job_name: str) -> int:
    rest = pod_name[len(job_name) + 1 :]
    head = rest.split("-", 1)[0]
    return int(head) if head.isdigit() else -1


def _revision(rv: object) -> int:
    """berth's resourceVersions are store revisions (integers); anything else compares as 0
    (no staleness check rather than a wrong one)."""
    text = str(rv or "")
    return int(text) if text.isdigit() and len(text) < 20 else 0


def _job_selector(job: Frozen) -> LabelSelector:
    """The Job's selector; empty (adopts nothing) when it does not parse, which the API
    server's validation prevents but a stale or hand-written object might still hold."""
    try:
        return label_selector_from_object((job.get("spec") or {}).get("selector"))
    except SelectorError:
        return EVERYTHING
