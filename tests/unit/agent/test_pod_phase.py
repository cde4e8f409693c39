"""A pod's phase follows recorded exits only (issue 19.8): a container whose runtime says it
ended but has no exit code yet (the exit is still being recorded) keeps the pod running; the
recorded code then decides Succeeded or Failed; only an exit that stays unknown past
UNKNOWN_CONFIRM fails the pod, reported with exit code 137 and never as success."""

from __future__ import annotations

from berth.agent.pods import UNKNOWN_CONFIRM, UNKNOWN_EXIT_CODE
from berth.api.resources import PODS
from tests.unit.agent.rig import Rig, run


def test_an_exit_not_yet_recorded_does_not_end_the_pod() -> None:
    async def body() -> None:
        r = Rig()
        await r.started(restartPolicy="Never")
        await r.exit_unrecorded()
        assert r.status()["phase"] == "Running", r.status()
        assert "running" in r.container()["state"], "not an exit yet: shown as last known"
        await r.exit(0)  # the runtime records it now
        assert r.status()["phase"] == "Succeeded", r.status()
        term = r.container()["state"]["terminated"]
        assert (term["exitCode"], term["reason"]) == (0, "Completed")
        assert term["finishedAt"] is not None

    run(body())


def test_a_recorded_failure_after_an_unknown_moment_fails_with_its_code() -> None:
    async def body() -> None:
        r = Rig()
        await r.started(restartPolicy="Never")
        await r.exit_unrecorded()
        r.clock.advance(UNKNOWN_CONFIRM / 2)
        await r.sync()
        assert r.status()["phase"] == "Running"
        await r.exit(3)
        assert r.status()["phase"] == "Failed"
        assert r.container()["state"]["terminated"]["exitCode"] == 3

    run(body())


def test_on_failure_does_not_restart_on_a_transient_unknown() -> None:
    async def body() -> None:
        r = Rig()
        await r.started(restartPolicy="OnFailure")
        await r.exit_unrecorded()
        await r.exit(0)
        assert r.status()["phase"] == "Succeeded"
        assert r.container()["restartCount"] == 0

    run(body())


def test_an_exit_that_stays_unknown_fails_the_pod_never_as_success() -> None:
    async def body() -> None:
        r = Rig()
        await r.started(restartPolicy="Never")
        await r.exit_unrecorded()
        r.clock.advance(UNKNOWN_CONFIRM)
        await r.sync()
        assert r.status()["phase"] == "Failed"
        term = r.container()["state"]["terminated"]
        assert (term["exitCode"], term["reason"]) == (UNKNOWN_EXIT_CODE, "ContainerStatusUnknown")

    run(body())


def test_a_terminal_phase_is_never_left() -> None:
    async def body() -> None:
        r = Rig()
        await r.started(restartPolicy="Never")
        await r.exit(3)
        assert r.status()["phase"] == "Failed"
        r.clock.advance(60)
        await r.sync()
        assert r.status()["phase"] == "Failed"
        assert r.container()["state"]["terminated"]["exitCode"] == 3

    run(body())


def test_a_succeeded_pod_stays_succeeded_when_reported_again() -> None:
    """The lab's 100 short-lived pods: every exit-0 pod was reported Succeeded, then Failed
    (code 0, reason Completed) on its next status report."""

    async def body() -> None:
        r = Rig()
        await r.started(restartPolicy="Never")
        await r.exit(0)
        assert r.status()["phase"] == "Succeeded"
        r.clock.advance(1)
        await r.sync()  # a later reconcile of the finished pod (any pod event does it)
        assert r.status()["phase"] == "Succeeded", r.status()
        assert r.container()["state"]["terminated"]["exitCode"] == 0

    run(body())


def test_a_pod_terminal_in_the_api_is_never_run_again() -> None:
    """After a graceful node shutdown and a reboot (or an agent restart), a pod the API already
    shows Failed or Succeeded must not get its containers back: its replacement runs
    elsewhere."""

    async def body() -> None:
        r = Rig()
        r.add(restartPolicy="Always")
        stored = r.api.stored(PODS, "default/p")
        assert stored is not None
        final = {"phase": "Failed", "reason": "Terminated", "message": "shut down"}
        await r.api.patch(PODS, "p", {"status": final}, namespace="default", subresource="status")
        await r.sync()
        assert r.runtime.running() == 0
        assert r.status() == final, "its last status stays as it was"

    run(body())
