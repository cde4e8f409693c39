"""Container status without forking runc: a started container whose init process (pid and
start time, from /proc) is alive and whose shim recorded no exit is running; everything else
still asks runc. And the agent adapter's poll_changes names the pods whose container ended.

/proc is a directory the tests write (``proc=``), so pids, zombies and pid reuse are staged.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from berth.network.command import Completed
from berth.runtime.agent_runtime import RuncAgentRuntime
from berth.runtime.runc import ContainerState, RuncRuntime, container_id, process_start_ticks
from berth.runtime.sandbox import SandboxRecord
from berth.runtime.spec import ContainerID, PodUID
from tests.unit.runtime.helpers import runc_runtime

POD = PodUID("pod-1")


class RecordingRunner:
    """Answers runc like a runc that knows no container (``state`` fails); records argv."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        time_limit: float = 60.0,
    ) -> Completed:
        self.calls.append(tuple(argv))
        return self.answer(tuple(argv))

    def answer(self, argv: tuple[str, ...]) -> Completed:
        if "state" in argv:
            return Completed(argv, 1, b"", b"container does not exist")
        return Completed(argv, 0, b"", b"")

    def runc(self, command: str) -> list[tuple[str, ...]]:
        return [c for c in self.calls if command in c]


def _stat(proc: Path, pid: int, *, state: str = "S", ticks: int = 777) -> None:
    # field 2 holds spaces and a ')' on purpose: fields are counted after the last ')'
    rest = " ".join([state, *["0"] * 18, str(ticks), "0", "0"])
    (proc / str(pid)).mkdir(parents=True, exist_ok=True)
    (proc / str(pid) / "stat").write_text(f"{pid} (sh -c x) y) {rest}\n")


def _runtime(tmp_path: Path) -> tuple[RuncRuntime, RecordingRunner, Path]:
    runner = RecordingRunner()
    proc = tmp_path / "proc"
    proc.mkdir()
    return runc_runtime(tmp_path, runner=runner, proc=proc), runner, proc


def _created(rt: RuncRuntime, *, pid: int) -> ContainerID:
    """A container as create_container leaves it: bundle, meta.json, the shim's init.pid."""
    cid = container_id(POD, "web", 0)
    d = rt.containers_dir / cid
    d.mkdir(parents=True)
    meta = {"id": cid, "podUid": POD, "name": "web", "attempt": 0, "image": "i",
            "imageId": "sha256:x", "createdAt": "t0"}  # fmt: skip
    (d / "meta.json").write_text(json.dumps(meta))
    (d / "init.pid").write_text(f"{pid}\n")
    return cid


def test_start_time_is_read_after_the_command_name(tmp_path: Path) -> None:
    _stat(tmp_path, 10, ticks=123456)
    _stat(tmp_path, 11, state="Z")
    assert process_start_ticks(10, tmp_path) == 123456
    assert process_start_ticks(11, tmp_path) is None, "a zombie has ended"
    assert process_start_ticks(12, tmp_path) is None


def test_a_running_container_is_answered_without_runc(tmp_path: Path) -> None:
    rt, runner, proc = _runtime(tmp_path)
    cid = _created(rt, pid=4242)
    _stat(proc, 4242, ticks=777)
    asyncio.run(rt.start_container(cid))
    meta = json.loads((rt.containers_dir / cid / "meta.json").read_text())
    assert (meta["initPid"], meta["initStartTicks"]) == (4242, 777)
    runner.calls.clear()
    for _ in range(3):
        status = asyncio.run(rt.container_status(cid))
        assert (status.state, status.pid) == (ContainerState.RUNNING, 4242)
    assert runner.calls == [], "no runc state for a container known to run"
    assert rt.has_ended(cid) is False


def test_an_ended_or_replaced_process_is_asked_of_runc(tmp_path: Path) -> None:
    rt, runner, proc = _runtime(tmp_path)
    cid = _created(rt, pid=4242)
    _stat(proc, 4242, ticks=777)
    asyncio.run(rt.start_container(cid))
    _stat(proc, 4242, ticks=999)  # the pid now belongs to another process
    assert rt.has_ended(cid) is True
    runner.calls.clear()
    status = asyncio.run(rt.container_status(cid))
    assert len(runner.runc("state")) == 1
    assert status.state == ContainerState.UNKNOWN  # runc and the shim know nothing either
    _stat(proc, 4242, ticks=777)
    exit_doc = {"exitCode": 3, "signal": None, "finishedAt": "t2"}
    (rt.containers_dir / cid / "exit.json").write_text(json.dumps(exit_doc))
    assert rt.has_ended(cid) is True, "the shim's exit file wins over a live-looking pid"
    status = asyncio.run(rt.container_status(cid))
    assert (status.state, status.exit_code) == (ContainerState.EXITED, 3)
    assert len(runner.runc("state")) == 1, "a recorded exit is answered without runc"


def test_stopping_polls_proc_not_runc_while_the_process_lives(tmp_path: Path) -> None:
    rt, runner, proc = _runtime(tmp_path)
    cid = _created(rt, pid=4242)
    _stat(proc, 4242, ticks=777)
    asyncio.run(rt.start_container(cid))

    async def stop() -> bool:
        async def exit_soon() -> None:
            await asyncio.sleep(0.3)  # ~6 polls of 50 ms
            (rt.containers_dir / cid / "exit.json").write_text('{"exitCode": 143}')

        waiter = asyncio.create_task(exit_soon())
        stopped = await rt._wait_stopped(cid, 5.0)
        await waiter
        return stopped

    runner.calls.clear()
    assert asyncio.run(stop()) is True
    assert runner.runc("state") == []


def test_poll_changes_names_the_pod_whose_container_ended_once(tmp_path: Path) -> None:
    rt, _runner, proc = _runtime(tmp_path)
    record = SandboxRecord(uid=POD, namespace="ns", name="web-1", netns="n", ip="10.244.1.5",
                           state="ready", extra={"node": "n1"})  # fmt: skip
    rt.sandboxes.pod_dir(POD).mkdir(parents=True)
    record.save(rt.sandboxes.pod_dir(POD) / "sandbox.json")
    agent = RuncAgentRuntime(rt)
    cid = _created(rt, pid=4242)
    _stat(proc, 4242, ticks=777)
    asyncio.run(rt.start_container(cid))
    assert agent.poll_changes() == [], "nothing watched until the agent saw it running"
    status = asyncio.run(agent.container_status(cid))
    assert status is not None
    assert status.phase == "running"
    assert agent.poll_changes() == []
    (rt.containers_dir / cid / "exit.json").write_text('{"exitCode": 1}')
    (changed,) = agent.poll_changes()
    assert (changed.namespace, changed.name, changed.uid, changed.node, changed.pod_ip) == (
        "ns", "web-1", POD, "n1", "10.244.1.5",
    )  # fmt: skip
    assert agent.poll_changes() == [], "reported once"


class StoppedRunner(RecordingRunner):
    """runc says the container is stopped (its process ended); the shim's create verdict names
    the shim's pid."""

    def answer(self, argv: tuple[str, ...]) -> Completed:
        if "state" in argv:
            return Completed(argv, 0, b'{"status": "stopped", "pid": 0}', b"")
        return Completed(argv, 0, b'{"ok": true, "pid": 4242, "shim": 4100}', b"")


def _stopped_runtime(tmp_path: Path) -> tuple[RuncRuntime, Path]:
    rt, _runner, proc = _runtime(tmp_path)
    rt.runner = StoppedRunner()
    return rt, proc


def test_an_exit_the_shim_has_not_recorded_yet_is_still_running(tmp_path: Path) -> None:
    """Issue 19.8: a container that exits before anyone looks, while its shim is still
    writing the exit file, is neither "unknown" nor ended: it runs until the exit is
    recorded, and then reports its real code."""
    rt, proc = _stopped_runtime(tmp_path)
    cid = _created(rt, pid=4242)
    _stat(proc, 4100, ticks=555)  # the shim
    asyncio.run(rt._spawn_shim(cid, rt.containers_dir / cid))
    meta = json.loads((rt.containers_dir / cid / "meta.json").read_text())
    assert (meta["shimPid"], meta["shimStartTicks"]) == (4100, 555)
    asyncio.run(rt.start_container(cid))  # the process already ended: no init pid to watch
    status = asyncio.run(rt.container_status(cid))
    assert status.state == ContainerState.RUNNING, status
    assert rt.has_ended(cid) is False, "the shim is still recording the exit"
    exit_doc = {"exitCode": 0, "signal": None, "finishedAt": "t2"}
    (rt.containers_dir / cid / "exit.json").write_text(json.dumps(exit_doc))
    assert rt.has_ended(cid) is True
    status = asyncio.run(rt.container_status(cid))
    assert (status.state, status.exit_code, status.reason) == (
        ContainerState.EXITED,
        0,
        "Completed",
    )


def test_a_shim_gone_without_an_exit_file_is_an_unknown_end(tmp_path: Path) -> None:
    rt, proc = _stopped_runtime(tmp_path)
    cid = _created(rt, pid=4242)
    _stat(proc, 4100, ticks=555)
    asyncio.run(rt._spawn_shim(cid, rt.containers_dir / cid))
    _stat(proc, 4100, ticks=556)  # the pid now belongs to another process: the shim died
    assert rt.has_ended(cid) is True
    status = asyncio.run(rt.container_status(cid))
    assert (status.state, status.reason) == (ContainerState.UNKNOWN, "ContainerStatusUnknown")


def test_stopping_returns_once_the_shim_recorded_the_exit(tmp_path: Path) -> None:
    """A graceful node shutdown reports each stopped container's exit code right after the
    stop: the stop must not return while the shim is still writing it (issue 19.9)."""
    rt, proc = _stopped_runtime(tmp_path)
    cid = _created(rt, pid=4242)
    _stat(proc, 4100, ticks=555)  # the shim, alive
    asyncio.run(rt._spawn_shim(cid, rt.containers_dir / cid))

    async def stop() -> bool:
        async def shim_writes_soon() -> None:
            await asyncio.sleep(0.3)
            (rt.containers_dir / cid / "exit.json").write_text('{"exitCode": 7}')

        writer = asyncio.create_task(shim_writes_soon())
        stopped = await rt._wait_stopped(cid, 5.0)
        recorded = (rt.containers_dir / cid / "exit.json").exists()
        await writer
        return stopped and recorded

    assert asyncio.run(stop()) is True
    status = asyncio.run(rt.container_status(cid))
    assert (status.state, status.exit_code) == (ContainerState.EXITED, 7)


class ExitOnTerm(RecordingRunner):
    """A container that exits at its SIGTERM: `runc kill` makes its shim record the exit."""

    exit_file: Path | None = None

    def answer(self, argv: tuple[str, ...]) -> Completed:
        if "kill" in argv and self.exit_file is not None:
            self.exit_file.write_text('{"exitCode": 0}')
        return super().answer(argv)


def test_stopping_a_running_container_signals_it_without_asking_runc(tmp_path: Path) -> None:
    """A pod's deletion: a container known to run gets its SIGTERM at once (no `runc state`
    first), and once its shim recorded the exit, stopping it again and reading its status ask
    runc nothing."""
    rt, _runner, proc = _runtime(tmp_path)
    runner = ExitOnTerm()
    rt.runner = runner
    cid = _created(rt, pid=4242)
    _stat(proc, 4242, ticks=777)
    asyncio.run(rt.start_container(cid))
    runner.exit_file = rt.containers_dir / cid / "exit.json"
    runner.calls.clear()
    asyncio.run(rt.stop_container(cid, grace_seconds=30))
    assert [c[-2:] for c in runner.runc("kill")] == [(cid, "TERM")]
    assert runner.runc("state") == []
    asyncio.run(rt.stop_container(cid, grace_seconds=30))
    status = asyncio.run(rt.container_status(cid))
    assert (status.state, status.exit_code) == (ContainerState.EXITED, 0)
    assert runner.runc("state") == []
    assert len(runner.runc("kill")) == 1


def test_one_pods_containers_are_listed_without_runc_list(tmp_path: Path) -> None:
    """A pod's teardown lists its containers twice: that reads only its own bundles (and runc
    for none of them when they are known running or exited), never `runc list` of the whole
    node."""
    rt, runner, proc = _runtime(tmp_path)
    cid = _created(rt, pid=4242)
    _stat(proc, 4242, ticks=777)
    asyncio.run(rt.start_container(cid))
    other = rt.containers_dir / "pod-2_web_0"  # another pod's container
    other.mkdir()
    (other / "meta.json").write_text(json.dumps({"id": "pod-2_web_0", "podUid": "pod-2"}))
    runner.calls.clear()
    (status,) = asyncio.run(rt.list_containers(pod_uid=POD))
    assert (status.id, status.state) == (cid, ContainerState.RUNNING)
    (rt.containers_dir / cid / "exit.json").write_text('{"exitCode": 143}')
    (status,) = asyncio.run(rt.list_containers(pod_uid=POD))
    assert (status.state, status.exit_code) == (ContainerState.EXITED, 143)
    assert runner.calls == []
    assert asyncio.run(rt.list_containers(pod_uid=PodUID("pod-3"))) == []


def test_stopping_waits_for_the_shims_end_not_a_poll(tmp_path: Path) -> None:
    """With a shim to watch, the stop waits on its pidfd: /proc is looked at again only after
    the shim ended (here a real process that records the exit and ends a little later), not
    every 50 ms meanwhile."""
    rt, _runner, proc = _runtime(tmp_path)
    cid = _created(rt, pid=4242)
    _stat(proc, 4242, ticks=777)
    asyncio.run(rt.start_container(cid))
    exit_file = rt.containers_dir / cid / "exit.json"
    record = f"import time; time.sleep(0.5); open({str(exit_file)!r}, 'w').write('{{}}')"
    shim = subprocess.Popen([sys.executable, "-c", record])
    _stat(proc, shim.pid, ticks=555)  # the staged /proc names the real process as the shim
    meta = json.loads((rt.containers_dir / cid / "meta.json").read_text())
    meta.update(shimPid=shim.pid, shimStartTicks=555)
    (rt.containers_dir / cid / "meta.json").write_text(json.dumps(meta))
    looks = 0
    known_running = rt._known_running

    def counted(cid: ContainerID, meta: Mapping[str, object]) -> bool:
        nonlocal looks
        looks += 1
        return known_running(cid, meta)

    rt._known_running = counted  # type: ignore[method-assign]
    reaped = asyncio.run(_reaped_after_stop(rt, cid, shim))
    assert reaped
    assert exit_file.exists()
    assert looks <= 1, f"polled {looks} times while the shim ran"


async def _reaped_after_stop(
    rt: RuncRuntime, cid: ContainerID, shim: subprocess.Popen[bytes]
) -> bool:
    # The shim is this test's child: it becomes readable only once reaped, as the real shim is
    # by its parent (init, on a node). Reap it in a thread while the stop waits.
    reaper = asyncio.create_task(asyncio.to_thread(shim.wait))
    stopped = await rt._wait_stopped(cid, 60.0)
    await reaper
    return stopped
