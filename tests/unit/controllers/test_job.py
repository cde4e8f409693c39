"""Job reconcile(key) on a fake API and clock: pods created with the tracking finalizer,
each finished pod counted exactly once (repeated reconciles, a stale cache, a new controller
instance), back-off before replacements, the back-off limit, Indexed pods, pod failure policy
and orphaned pods' finalizers."""

from __future__ import annotations

from typing import Any

import pytest

from berth.api.meta import format_time
from berth.api.resources import JOBS, PODS
from berth.client.interface import Obj
from berth.client.keys import ObjectKey
from berth.controllers import jobpolicy as jp
from berth.controllers.job import JobController
from berth.machinery.controller import Retry

from .harness import Harness, run

KEY = ObjectKey("default/j")


def job(**spec: Any) -> Obj:
    base: Obj = {
        "parallelism": 1,
        "completions": 1,
        "backoffLimit": 6,
        "completionMode": "NonIndexed",
        "suspend": False,
        "podReplacementPolicy": "TerminatingOrFailed",
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
        "template": {
            "metadata": {"labels": {"batch.kubernetes.io/job-name": "j"}},
            "spec": {
                "containers": [{"name": "main", "image": "busybox"}],
                "restartPolicy": "Never",
            },
        },
    }
    base.update(spec)
    return {"metadata": {"name": "j", "namespace": "default"}, "spec": base}


def pods(h: Harness) -> list[Obj]:
    return sorted(h.api.objects(PODS), key=lambda p: p["metadata"]["name"])


def stored_job(h: Harness) -> Obj:
    j = h.api.stored(JOBS, KEY)
    assert j is not None
    return j


async def reconcile(h: Harness, c: JobController) -> float | None:
    await h.sync()
    try:
        await c.reconcile(KEY)
    except Retry as r:
        return r.delay
    finally:
        await h.sync()
    return None


async def settle(h: Harness, c: JobController, rounds: int = 6) -> None:
    for _ in range(rounds):
        await reconcile(h, c)


async def end(h: Harness, p: Obj, code: int = 0, **status: Any) -> None:
    stamp = format_time(h.clock.now())
    await h.api.patch(
        PODS,
        p["metadata"]["name"],
        {
            "status": {
                "phase": "Succeeded" if code == 0 else "Failed",
                "containerStatuses": [
                    {
                        "name": "main",
                        "restartCount": 0,
                        "state": {"terminated": {"exitCode": code, "finishedAt": stamp}},
                    }
                ],
                **status,
            }
        },
        namespace="default",
        subresource="status",
    )


async def confirm_deletions(h: Harness) -> None:
    """What a node does for a pod being deleted: confirm it stopped (grace 0)."""
    for p in pods(h):
        if p["metadata"].get("deletionTimestamp"):
            await h.api.delete(
                PODS, p["metadata"]["name"], namespace="default", grace_period_seconds=0
            )


def test_creates_parallelism_pods_with_the_tracking_finalizer() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(JOBS, job(parallelism=2, completions=5))
        c = JobController(h.ctx)
        await reconcile(h, c)
        ps = pods(h)
        assert len(ps) == 2
        for p in ps:
            assert p["metadata"]["finalizers"] == [jp.TRACKING_FINALIZER]
            assert p["metadata"]["labels"] == {"batch.kubernetes.io/job-name": "j"}
            (ref,) = p["metadata"]["ownerReferences"]
            assert ref["kind"] == "Job"
            assert ref["controller"] is True
        st = stored_job(h)["status"]
        assert st["active"] == 2
        assert st["startTime"] == format_time(h.clock.now())
        # a reconcile before the cache shows the pods creates no more (expectations)
        await c.reconcile(KEY)
        assert len(pods(h)) == 2

    run(body)


def test_each_success_is_counted_once_across_reconciles_and_restarts() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(JOBS, job(parallelism=2, completions=3))
        c = JobController(h.ctx)
        await reconcile(h, c)
        first = pods(h)[0]
        await end(h, first)
        await settle(h, c)
        st = stored_job(h)["status"]
        assert st["succeeded"] == 1
        assert st["uncountedTerminatedPods"] == {}
        p = h.api.stored(PODS, f"default/{first['metadata']['name']}")
        assert p is not None
        assert "finalizers" not in p["metadata"]
        assert len(pods(h)) == 3  # a replacement for the finished one
        # a brand-new controller (a restart) over the same API counts nothing again
        c2 = JobController(h.ctx)
        await settle(h, c2)
        assert stored_job(h)["status"]["succeeded"] == 1
        for p in pods(h):
            if p["status"]["phase"] != "Succeeded":
                await end(h, p)
        await settle(h, c2)
        st = stored_job(h)["status"]
        assert st["succeeded"] == 3
        assert [x["type"] for x in st["conditions"]] == ["SuccessCriteriaMet", "Complete"]
        assert st["completionTime"]
        assert len(pods(h)) == 3

    run(body)


def test_a_stale_cached_job_never_overwrites_a_newer_count() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(JOBS, job(parallelism=1, completions=2))
        c = JobController(h.ctx)
        await reconcile(h, c)
        await end(h, pods(h)[0])
        await settle(h, c)
        assert stored_job(h)["status"]["succeeded"] == 1
        # Put an old version of the Job back into the cache (a watch lagging behind): the
        # finished pod no longer holds its finalizer and is not listed as uncounted, so a
        # write computed from this Job would set succeeded back to 0.
        stale = stored_job(h)
        stale["status"] = {"succeeded": 0, "active": 1, "uncountedTerminatedPods": {}}
        stale["metadata"]["resourceVersion"] = "1"
        c.jobs.replace([stale], "1")
        with pytest.raises(Retry):
            await c.reconcile(KEY)
        assert stored_job(h)["status"]["succeeded"] == 1

    run(body)


def test_replacements_wait_for_the_back_off() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(JOBS, job())
        c = JobController(h.ctx)
        await reconcile(h, c)
        await end(h, pods(h)[0], code=1)
        delay = None
        for _ in range(3):
            delay = await reconcile(h, c) or delay
        assert delay == pytest.approx(10, abs=0.1)
        assert len(pods(h)) == 1
        assert stored_job(h)["status"]["failed"] == 1
        h.clock.advance(10)
        await settle(h, c)
        assert len(pods(h)) == 2
        await end(h, pods(h)[1] if pods(h)[1]["status"]["phase"] != "Failed" else pods(h)[0], 1)
        h.clock.advance(1)
        delay = None
        for _ in range(3):
            delay = await reconcile(h, c) or delay
        assert delay == pytest.approx(19, abs=0.1)  # 20 s after the second failure

    run(body)


def test_backoff_limit_fails_the_job_in_two_steps() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(JOBS, job(backoffLimit=0, parallelism=2, completions=2))
        c = JobController(h.ctx)
        await reconcile(h, c)
        a, b = pods(h)
        await end(h, a, code=2)
        await reconcile(h, c)
        st = stored_job(h)["status"]
        assert [x["type"] for x in st["conditions"]] == ["FailureTarget"]
        assert st["conditions"][0]["reason"] == "BackoffLimitExceeded"
        # the other pod is deleted; the Job is Failed only once it is gone
        other = h.api.stored(PODS, f"default/{b['metadata']['name']}")
        assert other is not None
        assert other["metadata"].get("deletionTimestamp")
        await confirm_deletions(h)
        await settle(h, c)
        st = stored_job(h)["status"]
        assert [x["type"] for x in st["conditions"]] == ["FailureTarget", "Failed"]
        assert st["failed"] == 2  # the deleted pod counts as failed, as in kube
        # the deleted pod could go (finalizer removed); the failed one stays, as in kube
        assert [p["metadata"]["name"] for p in pods(h)] == [a["metadata"]["name"]]
        assert "finalizers" not in pods(h)[0]["metadata"]

    run(body)


def test_indexed_pods_carry_their_index() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(JOBS, job(completionMode="Indexed", completions=3, parallelism=2))
        c = JobController(h.ctx)
        await reconcile(h, c)
        ps = pods(h)
        assert sorted(p["metadata"]["annotations"][jp.COMPLETION_INDEX] for p in ps) == ["0", "1"]
        for p in ps:
            ix = p["metadata"]["annotations"][jp.COMPLETION_INDEX]
            assert p["metadata"]["labels"][jp.COMPLETION_INDEX] == ix
            assert p["metadata"]["name"].startswith(f"j-{ix}-")
            assert p["spec"]["hostname"] == f"j-{ix}"
            (env,) = p["spec"]["containers"][0]["env"]
            assert env == jp.index_env()
        zero = next(p for p in ps if p["metadata"]["annotations"][jp.COMPLETION_INDEX] == "0")
        await end(h, zero)
        await settle(h, c)
        st = stored_job(h)["status"]
        assert st["completedIndexes"] == "0"
        assert st["succeeded"] == 1
        live = [p for p in pods(h) if p["status"]["phase"] != "Succeeded"]
        assert sorted(p["metadata"]["annotations"][jp.COMPLETION_INDEX] for p in live) == [
            "1",
            "2",
        ]

    run(body)


def test_pod_failure_policy_fail_job_and_ignore() -> None:
    async def body() -> None:
        h = Harness()
        policy = {
            "rules": [
                {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [9]}},
                {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
            ]
        }
        h.api.seed(JOBS, job(podFailurePolicy=policy, podReplacementPolicy="Failed"))
        c = JobController(h.ctx)
        await reconcile(h, c)
        await end(h, pods(h)[0], code=9)
        await settle(h, c)
        st = stored_job(h)["status"]
        assert st.get("failed", 0) == 0  # ignored: not counted, replaced at once
        live = [p for p in pods(h) if p["status"]["phase"] != "Failed"]
        assert len(live) == 1
        await end(h, live[0], code=42)
        await settle(h, c)
        st = stored_job(h)["status"]
        failed = next(x for x in st["conditions"] if x["type"] == "Failed")
        assert failed["reason"] == "PodFailurePolicy"
        assert "failed with exit code 42 matching FailJob rule at index 1" in failed["message"]

    run(body)


def test_pods_of_a_deleted_job_lose_the_finalizer() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(JOBS, job(parallelism=2, completions=2))
        c = JobController(h.ctx)
        await reconcile(h, c)
        assert len(pods(h)) == 2
        await h.api.delete(JOBS, "j", namespace="default")
        await settle(h, c)
        assert all("finalizers" not in p["metadata"] for p in pods(h))

    run(body)


def test_suspend_deletes_active_pods_and_sets_the_condition() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(JOBS, job(parallelism=2, completions=4))
        c = JobController(h.ctx)
        await reconcile(h, c)
        await h.api.patch(JOBS, "j", {"spec": {"suspend": True}}, namespace="default")
        await settle(h, c)
        st = stored_job(h)["status"]
        sus = next(x for x in st["conditions"] if x["type"] == "Suspended")
        assert (sus["status"], sus["reason"]) == ("True", "JobSuspended")
        assert all(p["metadata"].get("deletionTimestamp") for p in pods(h))

    run(body)


def test_a_pod_recorded_as_failed_stays_failed_if_it_then_succeeds() -> None:
    """A pod deleted while running is recorded as failed (TerminatingOrFailed); if the
    controller stops before removing its finalizer and the pod then exits 0, it is still
    counted once, as the failure already recorded, and its finalizer goes."""

    async def body() -> None:
        h = Harness()
        h.api.seed(JOBS, job(completions=2))
        c = JobController(h.ctx)
        await reconcile(h, c)
        (p,) = pods(h)
        await h.api.patch(
            JOBS,
            "j",
            {"status": {"uncountedTerminatedPods": {"failed": [p["metadata"]["uid"]]}}},
            namespace="default",
            subresource="status",
        )
        await end(h, p, code=0)
        c2 = JobController(h.ctx)
        await settle(h, c2)
        st = stored_job(h)["status"]
        assert st["failed"] == 1
        assert st.get("succeeded", 0) == 0
        assert st["uncountedTerminatedPods"] == {}
        stored = h.api.stored(PODS, f"default/{p['metadata']['name']}")
        assert stored is not None
        assert "finalizers" not in stored["metadata"]

    run(body)


def test_backoff_limit_per_index_fails_only_that_index() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(
            JOBS,
            job(
                completionMode="Indexed",
                completions=2,
                parallelism=2,
                backoffLimitPerIndex=1,
                backoffLimit=2147483647,
                podReplacementPolicy="Failed",
            ),
        )
        c = JobController(h.ctx)
        await reconcile(h, c)

        def of(ix: str) -> list[Obj]:
            return [p for p in pods(h) if p["metadata"]["annotations"][jp.COMPLETION_INDEX] == ix]

        (zero,) = of("0")
        assert zero["metadata"]["annotations"][jp.INDEX_FAILURE_COUNT] == "0"
        await end(h, zero, code=1)
        await settle(h, c)
        assert len(of("0")) == 1  # its own back-off: 10 s
        h.clock.advance(10)
        await settle(h, c)
        again = [p for p in of("0") if p["status"]["phase"] != "Failed"]
        assert [p["metadata"]["annotations"][jp.INDEX_FAILURE_COUNT] for p in again] == ["1"]
        await end(h, again[0], code=1)  # past the per-index limit: index 0 fails for good
        (one,) = of("1")
        await end(h, one, code=0)
        await settle(h, c)
        h.clock.advance(60)
        await settle(h, c)
        assert len(of("0")) == 2  # no third attempt at index 0
        st = stored_job(h)["status"]
        assert st["failedIndexes"] == "0"
        assert st["completedIndexes"] == "1"
        assert st["failed"] == 2
        failed = next(x for x in st["conditions"] if x["type"] == "Failed")
        assert (failed["reason"], failed["message"]) == ("FailedIndexes", "Job has failed indexes")

    run(body)


def test_success_policy_completes_an_indexed_job_early() -> None:
    async def body() -> None:
        h = Harness()
        policy = {"rules": [{"succeededIndexes": "0-2", "succeededCount": 5},
                            {"succeededIndexes": "1,3"}]}  # fmt: skip
        h.api.seed(
            JOBS, job(completionMode="Indexed", completions=4, parallelism=4, successPolicy=policy)
        )
        c = JobController(h.ctx)
        await reconcile(h, c)
        by_ix = {p["metadata"]["annotations"][jp.COMPLETION_INDEX]: p for p in pods(h)}
        await end(h, by_ix["1"])
        await settle(h, c)
        assert not any(x["type"] == "SuccessCriteriaMet" for x in stored_job(h)["status"].get(
            "conditions", []))  # fmt: skip
        await end(h, by_ix["3"])
        await settle(h, c)
        st = stored_job(h)["status"]
        met = next(x for x in st["conditions"] if x["type"] == "SuccessCriteriaMet")
        assert (met["reason"], met["message"]) == ("SuccessPolicy", "Matched rules at index 1")
        # the lingering pods (0 and 2) are deleted; Complete follows once they are gone
        assert all(
            p["metadata"].get("deletionTimestamp")
            for p in pods(h)
            if p["metadata"]["annotations"][jp.COMPLETION_INDEX] in ("0", "2")
        )
        await confirm_deletions(h)
        await settle(h, c)
        st = stored_job(h)["status"]
        done = next(x for x in st["conditions"] if x["type"] == "Complete")
        assert done["reason"] == "SuccessPolicy"
        assert st["completedIndexes"] == "1,3"

    run(body)


def test_a_matching_orphan_pod_is_adopted_and_tracked() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(
            JOBS,
            job(
                manualSelector=True,
                selector={"matchLabels": {"app": "batch"}},
                completions=1,
            ),
        )
        orphan = h.api.seed(
            PODS,
            {
                "metadata": {"name": "stray", "namespace": "default", "labels": {"app": "batch"}},
                "spec": {"containers": [{"name": "main", "image": "busybox"}]},
                "status": {"phase": "Running"},
            },
        )
        c = JobController(h.ctx)
        await settle(h, c)
        stray = h.api.stored(PODS, "default/stray")
        assert stray is not None
        (ref,) = stray["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["uid"]) == ("Job", stored_job(h)["metadata"]["uid"])
        assert stray["metadata"]["finalizers"] == [jp.TRACKING_FINALIZER]
        assert len(pods(h)) == 1  # it counts as the Job's one active pod: none created
        await end(h, orphan)
        await settle(h, c)
        assert stored_job(h)["status"]["succeeded"] == 1

    run(body)


def test_a_stale_cached_job_creates_no_extra_pod() -> None:
    """The cache still shows the Job before our last count (succeeded 0, one pod active):
    computed from it the status looks unchanged, so no conditional write would catch it, and
    it would start a third pod for a Job of two completions. The controller waits instead."""

    async def body() -> None:
        h = Harness()
        h.api.seed(JOBS, job(parallelism=2, completions=2))
        c = JobController(h.ctx)
        await reconcile(h, c)
        a, _b = pods(h)
        await end(h, a)
        await settle(h, c)
        current = stored_job(h)
        assert current["status"]["succeeded"] == 1
        assert len(pods(h)) == 2
        stale = {**current, "status": {**current["status"], "succeeded": 0}}
        stale["metadata"] = {**current["metadata"], "resourceVersion": "1"}
        c.jobs.replace([stale], "1")
        with pytest.raises(Retry):
            await c.reconcile(KEY)
        assert len(pods(h)) == 2
        assert stored_job(h)["status"]["succeeded"] == 1

    run(body)


def test_resuming_restarts_the_active_deadline() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(JOBS, job(activeDeadlineSeconds=30, completions=1))
        c = JobController(h.ctx)
        await reconcile(h, c)
        await h.api.patch(JOBS, "j", {"spec": {"suspend": True}}, namespace="default")
        await settle(h, c)
        h.clock.advance(300)  # suspended far longer than the deadline
        await h.api.patch(JOBS, "j", {"spec": {"suspend": False}}, namespace="default")
        await settle(h, c)
        st = stored_job(h)["status"]
        assert not any(x["type"] in ("FailureTarget", "Failed") for x in st["conditions"])
        assert st["startTime"] == format_time(h.clock.now())
        h.clock.advance(31)
        await settle(h, c)
        st = stored_job(h)["status"]
        failed = next(x for x in st["conditions"] if x["type"] == "FailureTarget")
        assert failed["reason"] == "DeadlineExceeded"

    run(body)


def test_a_job_with_zero_completions_completes_at_once_with_a_start_time() -> None:
    async def body() -> None:
        h = Harness()
        h.api.seed(JOBS, job(completions=0))
        c = JobController(h.ctx)
        await settle(h, c)
        st = stored_job(h)["status"]
        assert [x["type"] for x in st["conditions"]] == ["SuccessCriteriaMet", "Complete"]
        assert st["startTime"] == st["completionTime"]
        assert pods(h) == []

    run(body)
