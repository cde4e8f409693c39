"""Jobs end to end against a real API server, the real controller manager and simulated
nodes whose containers a test ends with an exit code: completions and parallelism, the back-off
limit, Indexed Jobs, suspension, the TTL, kubectl create/wait, and a controller manager stopped
in the middle of a Job (pods finishing while it is down) that loses and doubles nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from berth.api.resources import CRONJOBS, JOBS, PODS
from berth.client import errors
from berth.client.interface import Obj
from berth.controllers.manager import ControllerManager, ManagerConfig
from berth.machinery.clock import RealClock
from tests.harness.apiserver import ServerHandle

from .cluster import Cluster, control_plane, wait_until

TRACKING = "batch.kubernetes.io/job-tracking"


def run(coro: Any) -> None:
    asyncio.run(coro)


def job(name: str, **spec: Any) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "work", "image": "busybox:1"}],
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 1,
                }
            },
            **spec,
        },
    }


async def job_pods(c: Cluster, name: str) -> list[Obj]:
    return await c.pods(selector=f"batch.kubernetes.io/job-name={name}")


async def running(c: Cluster, name: str) -> list[Obj]:
    return [
        p
        for p in await job_pods(c, name)
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]


ENDED: set[str] = set()
"""Uids of pods a test already ended (their status may still say Running for a moment)."""


async def finish(c: Cluster, name: str, count: int, *, code: int = 0) -> list[str]:
    """End ``count`` running containers of the Job's pods with ``code``."""

    async def ready() -> list[Obj] | None:
        pods = [p for p in await running(c, name) if p["metadata"]["uid"] not in ENDED]
        return pods if len(pods) >= count else None

    pods = (await wait_until(ready, what=f"{count} running pods of {name}"))[:count]
    for p in pods:
        ENDED.add(p["metadata"]["uid"])
        c.runtime.exit("default", p["metadata"]["name"], "work", code=code)
    return [p["metadata"]["name"] for p in pods]


async def condition(c: Cluster, name: str, type_: str) -> Obj | None:
    j = await c.api.get(JOBS, name, namespace="default")
    for cond in j.get("status", {}).get("conditions") or []:
        if cond["type"] == type_ and cond["status"] == "True":
            return j
    return None


async def finished(c: Cluster, name: str, type_: str, within: float = 30.0) -> Obj:
    async def check() -> Obj | None:
        return await condition(c, name, type_)

    try:
        return await wait_until(check, within=within, what=f"job {name} {type_}")
    except AssertionError as exc:
        j = await c.api.get(JOBS, name, namespace="default")
        raise AssertionError(f"{exc}; job status: {j.get('status')}") from None


def test_completions_with_parallelism_finish_exactly(server: ServerHandle, tmp_path: Path) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path) as c:
            await c.api.create(JOBS, job("five", completions=5, parallelism=2))
            seen_running: set[int] = set()
            for _ in range(5):
                seen_running.add(len(await running(c, "five")))
                await finish(c, "five", 1)
            j = await finished(c, "five", "Complete")
            st = j["status"]
            assert st["succeeded"] == 5
            assert st.get("failed", 0) == 0
            assert st.get("active", 0) == 0
            assert st["completionTime"] >= st["startTime"]
            assert not st.get("uncountedTerminatedPods")
            types = [cond["type"] for cond in st["conditions"]]
            assert types == ["SuccessCriteriaMet", "Complete"]
            assert {cond["reason"] for cond in st["conditions"]} == {"CompletionsReached"}
            pods = await job_pods(c, "five")
            assert len(pods) == 5  # exactly five pods ever ran
            assert all(p["status"]["phase"] == "Succeeded" for p in pods)
            assert all(TRACKING not in (p["metadata"].get("finalizers") or []) for p in pods)
            assert max(seen_running) <= 2
            table = await c.kubectl("get", "jobs")
            assert "five   Complete   5/5" in table

    run(body())


def test_failing_job_stops_at_backoff_limit(server: ServerHandle, tmp_path: Path) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path) as c:
            await c.api.create(JOBS, job("bad", backoffLimit=1))
            await finish(c, "bad", 1, code=3)
            # the replacement waits the first back-off step (10 s)
            await finish(c, "bad", 1, code=3)
            j = await finished(c, "bad", "Failed")
            st = j["status"]
            assert st["failed"] == 2
            assert [cond["type"] for cond in st["conditions"]] == ["FailureTarget", "Failed"]
            assert st["conditions"][1]["reason"] == "BackoffLimitExceeded"
            await asyncio.sleep(1.5)
            assert len(await job_pods(c, "bad")) == 2  # no third attempt

    run(body())


def test_indexed_job_gives_each_pod_its_index(server: ServerHandle, tmp_path: Path) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path) as c:
            await c.api.create(
                JOBS, job("idx", completions=3, parallelism=3, completionMode="Indexed")
            )
            pods = await wait_until(
                lambda: _n_running(c, "idx", 3), what="three indexed pods running"
            )
            by_index = {
                p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: p
                for p in pods
            }
            assert sorted(by_index) == ["0", "1", "2"]
            for ix, p in by_index.items():
                assert p["metadata"]["name"].startswith(f"idx-{ix}-")
                assert p["spec"]["hostname"] == f"idx-{ix}"
                assert p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == ix
                cfg = c.runtime.config_of("default", p["metadata"]["name"], "work")
                assert cfg is not None
                assert cfg.env["JOB_COMPLETION_INDEX"] == ix
            # index 1 fails once and is retried under the same index
            for ix, code in (("1", 1), ("0", 0), ("2", 0)):
                ENDED.add(by_index[ix]["metadata"]["uid"])
                c.runtime.exit("default", by_index[ix]["metadata"]["name"], "work", code=code)

            async def retried() -> list[Obj] | None:
                return [
                    p
                    for p in await running(c, "idx")
                    if p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
                    == "1"
                    and p["metadata"]["uid"] not in ENDED
                ] or None

            (again,) = await wait_until(retried, within=30, what="index 1 retried")
            c.runtime.exit("default", again["metadata"]["name"], "work", code=0)
            j = await finished(c, "idx", "Complete")
            assert j["status"]["completedIndexes"] == "0-2"
            assert j["status"]["succeeded"] == 3
            assert j["status"]["failed"] == 1

    run(body())


async def _n_running(c: Cluster, name: str, n: int) -> list[Obj] | None:
    pods = await running(c, name)
    return pods if len(pods) == n else None


def test_suspend_deletes_pods_and_resume_restarts(server: ServerHandle, tmp_path: Path) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path) as c:
            await c.api.create(JOBS, job("sus", suspend=True, parallelism=2, completions=2))
            await finished(c, "sus", "Suspended")
            assert await job_pods(c, "sus") == []
            j = await c.api.get(JOBS, "sus", namespace="default")
            assert "startTime" not in j["status"]
            await c.api.patch(JOBS, "sus", {"spec": {"suspend": False}}, namespace="default")
            await wait_until(lambda: _n_running(c, "sus", 2), what="resumed pods")
            j = await c.api.get(JOBS, "sus", namespace="default")
            assert j["status"]["startTime"]
            resumed = [x for x in j["status"]["conditions"] if x["type"] == "Suspended"]
            assert resumed[0]["status"] == "False"
            assert resumed[0]["reason"] == "JobResumed"
            await finish(c, "sus", 2)
            await finished(c, "sus", "Complete")

    run(body())


def test_active_deadline_and_ttl(server: ServerHandle, tmp_path: Path) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path) as c:
            await c.api.create(
                JOBS, job("slow", activeDeadlineSeconds=2, ttlSecondsAfterFinished=1)
            )
            j = await finished(c, "slow", "Failed", within=30)
            failed = next(x for x in j["status"]["conditions"] if x["type"] == "Failed")
            assert failed["reason"] == "DeadlineExceeded"
            assert failed["message"] == "Job was active longer than specified deadline"

            async def gone() -> bool:
                try:
                    await c.api.get(JOBS, "slow", namespace="default")
                except errors.NotFound:
                    return not await job_pods(c, "slow")
                return False

            await wait_until(gone, within=30, what="TTL deletion of the job and its pods")

    run(body())


def test_kubectl_create_and_wait(server: ServerHandle, tmp_path: Path) -> None:
    """``kubectl create job`` and ``kubectl wait --for=condition=complete`` (1.20 and 1.32),
    and ``kubectl create job --from=cronjob/x`` (1.32)."""

    async def body() -> None:
        async with control_plane(server, tmp_path) as c:
            await c.kubectl("create", "job", "kc", "--image=busybox:1", "--", "true")
            await c.kubectl_132(
                "create", "cronjob", "nightly", "--image=busybox:1", "--schedule=0 3 * * *"
            )
            await c.kubectl_132("create", "job", "kc2", "--from=cronjob/nightly")
            waits = [
                asyncio.create_task(
                    c.kubectl("wait", "--for=condition=complete", "job/kc", "--timeout=40s")
                ),
                asyncio.create_task(
                    c.kubectl_132("wait", "--for=condition=complete", "job/kc2", "--timeout=40s")
                ),
            ]
            for job_name, container in (("kc", "kc"), ("kc2", "nightly")):

                async def one(job_name: str = job_name) -> list[Obj] | None:
                    pods = [
                        p
                        for p in await job_pods(c, job_name)
                        if p["status"].get("phase") == "Running"
                    ]
                    return pods or None

                (pod,) = await wait_until(one, what=f"the pod of {job_name}")
                c.runtime.exit("default", pod["metadata"]["name"], container, code=0)
            out_120, out_132 = await asyncio.gather(*waits)
            assert "job.batch/kc condition met" in out_120
            assert "job.batch/kc2 condition met" in out_132

    run(body())


def test_controller_restart_mid_job_loses_and_doubles_nothing(
    server: ServerHandle, tmp_path: Path
) -> None:
    """Stop the controller manager with pods running, finish some while it is down (and
    one while its uid sits in uncountedTerminatedPods), start a new one: every completion
    is counted once and the Job ends with exactly ``completions`` successes."""

    async def body() -> None:
        async with control_plane(server, tmp_path) as c:
            await c.api.create(JOBS, job("crash", completions=6, parallelism=3))
            await finish(c, "crash", 1)

            async def one_counted() -> bool:
                j = await c.api.get(JOBS, "crash", namespace="default")
                return bool(j["status"].get("succeeded") == 1)

            await wait_until(one_counted, what="first completion counted")
            await wait_until(lambda: _n_running(c, "crash", 3), what="3 running again")
            # Stop the controller manager (its informers and workers go with it).
            await c.stop_manager()
            # Pods finish while no controller runs: nothing counts them yet.
            done_while_down = await finish(c, "crash", 2)

            async def terminal() -> bool:
                pods = {p["metadata"]["name"]: p for p in await job_pods(c, "crash")}
                return all(pods[n]["status"].get("phase") == "Succeeded" for n in done_while_down)

            await wait_until(terminal, what="pods succeeded while the controller was down")
            # Replay the two crash points of the tracking protocol by hand: pod A's uid is
            # recorded as uncounted but A still holds its finalizer (crash before the
            # removal); pod B's uid is recorded and its finalizer already removed (crash
            # before the count moved).
            pods = {p["metadata"]["name"]: p for p in await job_pods(c, "crash")}
            a, b = (pods[n]["metadata"]["uid"] for n in done_while_down)
            await c.api.patch(
                JOBS,
                "crash",
                {"status": {"uncountedTerminatedPods": {"succeeded": [a, b]}}},
                namespace="default",
                subresource="status",
            )
            await c.api.patch(
                PODS, done_while_down[1], {"metadata": {"finalizers": None}}, namespace="default"
            )
            client = c.clients[0]
            new = await ControllerManager.create(
                client, RealClock(), ManagerConfig(controllers=("job",))
            )
            runner = asyncio.create_task(new.run())
            try:
                for _ in range(3):
                    await finish(c, "crash", 1)
                j = await finished(c, "crash", "Complete")
                assert j["status"]["succeeded"] == 6
                assert j["status"].get("failed", 0) == 0
                pods_after = await job_pods(c, "crash")
                succeeded = [p for p in pods_after if p["status"]["phase"] == "Succeeded"]
                assert len(succeeded) == 6 == len(pods_after)
                assert all(
                    TRACKING not in (p["metadata"].get("finalizers") or []) for p in pods_after
                )
            finally:
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)

    run(body())


def test_deleting_a_job_removes_its_pods(server: ServerHandle, tmp_path: Path) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path) as c:
            await c.api.create(JOBS, job("del", parallelism=2, completions=4))
            await wait_until(lambda: _n_running(c, "del", 2), what="two pods")
            await c.kubectl("delete", "job", "del")

            async def no_pods() -> bool:
                return not await c.pods(selector="batch.kubernetes.io/job-name=del")

            await wait_until(no_pods, within=30, what="pods of the deleted job gone")

    run(body())


def test_cronjob_runs_a_missed_time_and_tracks_it(server: ServerHandle, tmp_path: Path) -> None:
    """A CronJob whose last run is three minutes old (as after a controller outage) runs the
    latest missed time at once: a Job named after the scheduled minute, in status.active until
    it completes, then lastSuccessfulTime."""

    async def body() -> None:
        async with control_plane(server, tmp_path) as c:
            await c.api.create(
                CRONJOBS,
                {
                    "metadata": {"name": "tick", "namespace": "default"},
                    "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": job("x")["spec"]}},
                },
            )
            past = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=3)
            await c.api.patch(
                CRONJOBS,
                "tick",
                {"status": {"lastScheduleTime": past.strftime("%Y-%m-%dT%H:%M:%SZ")}},
                namespace="default",
                subresource="status",
            )

            async def job_made() -> list[Obj] | None:
                jobs = (await c.api.list(JOBS, namespace="default")).items
                return [j for j in jobs if j["metadata"]["name"].startswith("tick-")] or None

            (made,) = await wait_until(job_made, within=30, what="the CronJob's Job")
            minutes = int(made["metadata"]["name"].split("-")[1])
            assert minutes * 60 > past.timestamp()
            assert made["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
            cj = await c.api.get(CRONJOBS, "tick", namespace="default")
            assert [a["name"] for a in cj["status"]["active"]] == [made["metadata"]["name"]]
            name = made["metadata"]["name"]
            pods = await wait_until(lambda: _n_running(c, name, 1), what="the Job's pod")
            c.runtime.exit("default", pods[0]["metadata"]["name"], "work", code=0)
            await finished(c, name, "Complete")

            async def recorded() -> Obj | None:
                cj = await c.api.get(CRONJOBS, "tick", namespace="default")
                st = cj.get("status") or {}
                return cj if st.get("lastSuccessfulTime") and not st.get("active") else None

            await wait_until(recorded, what="lastSuccessfulTime recorded")
            out = await c.kubectl("get", "cronjob", "tick")
            assert "* * * * *" in out

    run(body())
