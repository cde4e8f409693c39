"""A node's reboot (issue 23): the sandboxes the runtime still lists are dead (their network
namespaces went with /run). A restarted agent does not adopt them as running: each pod gets a
new sandbox and address, its containers start again in it (restartCount + 1, init containers
all over again), and a pod that never restarts is not remade."""

from __future__ import annotations

from tests.unit.agent.rig import Rig, run


def _sandbox_ids(r: Rig) -> list[str]:
    return sorted(sb.id for sb in r.runtime._sandboxes.values())


def test_after_a_reboot_the_pod_gets_a_new_sandbox_and_its_containers_restart() -> None:
    async def body() -> None:
        r = Rig()
        await r.started()
        before = r.container()
        assert before["restartCount"] == 0
        started_at = r.status()["startTime"]
        old_sandboxes = _sandbox_ids(r)
        r.runtime.reboot()
        fresh = r.restart_agent()
        assert await fresh.recover({"n1"}) == 1
        await r.sync()
        assert _sandbox_ids(r) != old_sandboxes, "a new sandbox, not the dead one"
        assert len(_sandbox_ids(r)) == 1, "the dead one is replaced"
        st = r.status()
        assert st["phase"] == "Running"
        assert r.cond("Ready") == "True"
        c = r.container()
        assert "running" in c["state"], c
        assert c["restartCount"] == 1
        assert c["containerID"] != before["containerID"]
        assert c["lastState"]["terminated"]["exitCode"] != 0, "an unknown end is no success"
        assert st["podIP"], "the new sandbox's address"
        assert st["startTime"] == started_at, "the pod keeps its startTime"
        # The dead sandbox's address was not taken over: the allocator holds only the new.
        assert fresh.ips._used["n1"] == {st["podIP"]}
        await r.delete(grace=0)
        await r.sync()
        assert r.gone()
        assert r.runtime._sandboxes == {}, "the pod's removal removes its (new) sandbox"
        assert r.runtime._containers == {}, "and the containers of the dead one"

    run(body())


def test_after_a_reboot_init_containers_run_again_before_the_app() -> None:
    async def body() -> None:
        r = Rig()
        await r.started(initContainers=[{"name": "init", "image": "busybox"}])
        await r.sync()  # the init container completed: the app runs
        assert "running" in r.container()["state"]
        r.runtime.reboot()
        assert await r.restart_agent().recover({"n1"}) == 1
        await r.sync()
        (init,) = r.status()["initContainerStatuses"]
        assert init["restartCount"] == 1, "the init container ran again"
        await r.sync()
        assert r.status()["phase"] == "Running"
        assert r.container()["restartCount"] == 1
        assert "running" in r.container()["state"]

    run(body())


def test_after_a_reboot_a_never_restarting_pod_is_not_remade() -> None:
    async def body() -> None:
        r = Rig()
        await r.started(restartPolicy="Never")
        r.runtime.reboot()
        assert await r.restart_agent().recover({"n1"}) == 1
        await r.sync()
        st = r.status()
        assert st["phase"] == "Failed", st
        c = r.container()
        assert c["restartCount"] == 0
        assert c["state"]["terminated"]["exitCode"] != 0
        assert all(not sb.ready for sb in r.runtime._sandboxes.values()), "no new sandbox"

    run(body())


def test_after_a_reboot_on_failure_restarts_only_what_did_not_succeed() -> None:
    async def body() -> None:
        r = Rig()
        two = [{"name": "app", "image": "web:1"}, {"name": "done", "image": "job:1"}]
        r.add(restartPolicy="OnFailure", containers=two)
        r.runtime.script_exit("default", "p", "done", after=1.0, code=0)
        await r.sync()
        r.clock.advance(1.0)
        await r.sync()
        assert r.container("done")["state"]["terminated"]["exitCode"] == 0
        r.runtime.reboot()
        assert await r.restart_agent().recover({"n1"}) == 1
        await r.sync()
        assert r.container("app")["restartCount"] == 1
        assert "running" in r.container("app")["state"]
        done = r.container("done")
        assert done["restartCount"] == 0, "a container that succeeded stays done"
        assert done["state"]["terminated"]["exitCode"] == 0

    run(body())
