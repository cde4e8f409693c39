"""PodManager.reconcile(key) with the simulated runtime, fake API and fake clock: phases,
conditions, restarts with crash-loop backoff, probes, init containers, graceful deletion."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from berth.api.resources import EVENTS, PODS
from tests.unit.agent.rig import KEY, Rig, run


def test_bound_pod_runs_and_reports_ready_with_ips() -> None:
    async def body() -> None:
        r = Rig()
        await r.started()
        st = r.status()
        assert st["phase"] == "Running"
        assert st["hostIP"] == "192.0.2.10"
        assert st["podIP"] == "10.244.3.2"
        assert r.cond("Ready") == "True"
        assert r.cond("ContainersReady") == "True"
        assert r.cond("Initialized") == "True"
        assert r.cond("PodScheduled") == "True"
        c = r.container()
        assert "running" in c["state"]
        assert c["ready"] is True
        assert c["restartCount"] == 0
        assert c["containerID"].startswith("simulated://")
        assert c["imageID"].startswith("sha256:"), c
        assert r.events() == ["Created", "Started"]

    run(body())


def test_start_delay_keeps_pod_pending_until_container_runs() -> None:
    async def body() -> None:
        r = Rig(start_delay=2.0)
        await r.started()
        assert r.status()["phase"] == "Pending"
        assert r.container()["state"] == {"waiting": {"reason": "ContainerCreating"}}
        assert r.container()["imageID"] == "sha256:" + hashlib.sha256(b"web:1").hexdigest()
        assert r.cond("Ready") == "False"
        r.clock.advance(2.0)
        await r.sync()
        assert r.status()["phase"] == "Running"
        assert r.cond("Ready") == "True"

    run(body())


def test_crashing_container_restarts_with_exponential_backoff() -> None:
    async def body() -> None:
        r = Rig()
        r.add()
        r.runtime.script_exit("default", "p", "app", after=1.0, code=1)
        await r.sync()
        r.clock.advance(1.0)  # first crash: restarted at once
        await r.sync()
        assert r.container()["restartCount"] == 1
        assert "running" in r.container()["state"]
        r.clock.advance(1.0)  # second crash: 10s back-off
        await r.sync()
        c = r.container()
        assert c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        assert "back-off 10s" in c["state"]["waiting"]["message"]
        assert c["lastState"]["terminated"]["exitCode"] == 1
        assert r.status()["phase"] == "Running"
        r.clock.advance(9.0)
        await r.sync()
        assert r.container()["restartCount"] == 1, "still backing off"
        r.clock.advance(1.0)
        await r.sync()
        assert r.container()["restartCount"] == 2
        r.clock.advance(1.0)  # third crash: 20s
        await r.sync()
        assert "back-off 20s" in r.container()["state"]["waiting"]["message"]
        assert "BackOff" in r.events()
        (ev,) = [e for e in r.api.objects(EVENTS) if e["reason"] == "Started"]
        assert ev["count"] == 3, "repeated events are aggregated"
        assert ev["source"] == {"component": "kubelet", "host": "n1"}

    run(body())


def test_restart_policy_never_and_on_failure_end_in_terminal_phases() -> None:
    async def body() -> None:
        r = Rig()
        await r.started(restartPolicy="Never")
        await r.exit(3)
        assert r.status()["phase"] == "Failed"
        assert r.container()["state"]["terminated"]["exitCode"] == 3
        assert r.cond("Ready") == "False"

        r2 = Rig()
        await r2.started(restartPolicy="OnFailure")
        await r2.exit(0)
        assert r2.status()["phase"] == "Succeeded"

    run(body())


def test_readiness_probe_gates_ready_and_liveness_failure_restarts() -> None:
    async def body() -> None:
        r = Rig()
        probe = {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 5, "failureThreshold": 2}
        r.add(
            containers=[
                {"name": "app", "image": "web:1", "readinessProbe": probe, "livenessProbe": probe}
            ]
        )
        r.runtime.set_probe("default", "p", "app", kind="readiness", ok=False)
        await r.sync()
        assert r.cond("Ready") == "False"
        r.runtime.set_probe("default", "p", "app", kind="readiness", ok=True)
        r.clock.advance(5)
        await r.sync()
        assert r.cond("Ready") == "True"
        r.runtime.set_probe("default", "p", "app", kind="liveness", ok=False)
        r.clock.advance(5)
        await r.sync()
        assert r.container()["restartCount"] == 0, "one failure is below the threshold"
        r.clock.advance(5)
        await r.sync()  # second failure: killed
        await r.sync()  # restarted (first restart has no back-off)
        assert r.container()["restartCount"] == 1

    run(body())


def test_init_containers_run_before_app_containers() -> None:
    async def body() -> None:
        r = Rig()
        r.add(initContainers=[{"name": "setup", "image": "busybox"}])
        r.runtime.script_exit("default", "p", "setup", after=3.0, code=0)
        await r.sync()
        assert r.status()["phase"] == "Pending"
        assert r.cond("Initialized") == "False"
        assert r.container()["state"]["waiting"]["reason"] == "PodInitializing"
        r.clock.advance(3)
        await r.sync()
        await r.sync()
        assert r.cond("Initialized") == "True"
        assert r.status()["phase"] == "Running"
        init = r.status()["initContainerStatuses"][0]
        assert init["state"]["terminated"]["reason"] == "Completed"

    run(body())


def test_graceful_deletion_stops_containers_then_deletes_with_grace_zero() -> None:
    async def body() -> None:
        r = Rig()
        await r.started()
        await r.api.delete(PODS, "p", namespace="default", grace_period_seconds=30)
        assert r.api.stored(PODS, "default/p") is not None, "graceful: still there"
        await r.sync()
        assert r.api.stored(PODS, "default/p") is None
        final = r.api.writes("delete", PODS)[-1]
        assert final.body is not None
        assert final.body["gracePeriodSeconds"] == 0
        assert r.runtime.running() == 0
        assert r.manager.records == {}
        assert "Killing" in r.events()

    run(body())


def test_logs_of_current_and_previous_containers() -> None:
    async def body() -> None:
        r = Rig()
        await r.started()
        r.runtime.append_log("default", "p", "app", line="hello")
        await r.exit(1)
        current = r.manager.container_id("default", "p", "app")
        previous = r.manager.container_id("default", "p", "app", previous=True)
        assert current is not None
        assert previous is not None
        assert current != previous
        old = [line async for line in r.runtime.logs(previous)]
        assert any(b"hello" in line for line in old)
        assert any(b"exited app with code 1" in line for line in old)
        tail = [line async for line in r.runtime.logs(current, tail_lines=1)]
        assert len(tail) == 1
        assert b"started app" in tail[0]

    run(body())


def test_restarted_agent_adopts_running_containers() -> None:
    async def body() -> None:
        r = Rig()
        r.add()
        r.runtime.script_exit("default", "p", "app", after=1.0, code=1)
        await r.sync()
        r.clock.advance(1.0)  # crash once: restartCount 1
        await r.sync()
        before = r.container()
        assert before["restartCount"] == 1
        # A new agent process (same runtime, empty memory) adopts instead of restarting.
        fresh = r.restart_agent()
        assert await fresh.recover({"n1"}) == 1
        assert await fresh.recover({"other-node"}) == 0
        starts = len([a for a in r.api.actions])
        await r.sync()
        after = r.container()
        assert after["containerID"] == before["containerID"]
        assert after["restartCount"] == 1
        assert r.status()["podIP"] == "10.244.3.2"
        assert len(r.api.actions) == starts, "nothing changed, nothing written"
        assert fresh.ips.allocate("n1", "10.244.3.0/24") == "10.244.3.3", "adopted IP is taken"

    run(body())


def test_ephemeral_containers_run_once_and_report_their_own_statuses() -> None:
    """kubectl debug: an ephemeral container added to a running pod starts, shows in
    ephemeralContainerStatuses (not containerStatuses), and is never restarted after it
    ends; the pod stays Running and Ready."""

    async def body() -> None:
        r = Rig()
        r.add(
            ephemeralContainers=[{"name": "dbg", "image": "busybox", "targetContainerName": "app"}]
        )
        r.runtime.script_exit("default", "p", "dbg", after=2.0, code=3)
        await r.sync()
        st = r.status()
        assert [c["name"] for c in st["containerStatuses"]] == ["app"]
        (dbg,) = st["ephemeralContainerStatuses"]
        assert dbg["name"] == "dbg"
        assert "running" in dbg["state"]
        assert r.manager.container_id("default", "p", "dbg") is not None  # attachable
        r.clock.advance(2.0)
        await r.sync()
        r.clock.advance(60.0)
        await r.sync()
        (dbg,) = r.status()["ephemeralContainerStatuses"]
        assert dbg["state"]["terminated"]["exitCode"] == 3
        assert dbg["restartCount"] == 0
        assert r.status()["phase"] == "Running"
        assert r.cond("Ready") == "True"

    run(body())


def test_a_deleted_pods_containers_are_signalled_before_its_killing_event_is_written() -> None:
    """The Killing event is posted beside the stop: the recorder here finishes writing it only
    once the runtime was asked to stop the container (posting it first would wait forever)."""

    async def body() -> None:
        r = Rig()
        await r.started()
        stopping = asyncio.Event()
        stop = r.runtime.stop_container

        async def signalled(container_id: str, *, grace_seconds: float) -> None:
            stopping.set()
            await stop(container_id, grace_seconds=grace_seconds)

        create = r.api.create

        async def after_the_signal(resource: Any, body: Any, **kw: Any) -> Any:
            if resource == EVENTS and body.get("reason") == "Killing":
                await stopping.wait()
            return await create(resource, body, **kw)

        r.runtime.stop_container = signalled  # type: ignore[method-assign]
        r.api.create = after_the_signal  # type: ignore[method-assign]
        await r.delete(30)
        await asyncio.wait_for(r.sync(), 60)  # a deadlock, not a deadline: it is instant
        assert r.gone()
        assert "Killing" in r.events()

    run(body())


def test_status_reports_keep_a_condition_another_writer_added() -> None:
    """The agent writes its own conditions only: one another writer added (here while the
    agent's cache had not seen it yet) stays through the agent's next report."""

    async def body() -> None:
        r = Rig(start_delay=2.0)
        await r.started()
        assert r.cond("Ready") == "False"
        target = {"type": "DisruptionTarget", "status": "True", "reason": "Tested"}
        conditions = [*r.status()["conditions"], target]
        patch = {"status": {"conditions": conditions}}
        await r.api.patch(PODS, "p", patch, namespace="default", subresource="status")
        r.clock.advance(2.0)
        await r.manager.reconcile(KEY)  # no relist: the cached pod predates the condition
        assert r.cond("Ready") == "True"
        assert next(c for c in r.status()["conditions"] if c["type"] == "DisruptionTarget") == (
            target
        )

    run(body())
