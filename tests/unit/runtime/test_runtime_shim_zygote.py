"""Shims forked from a warm zygote (berth.runtime.shimzygote): the same shim as a spawned
one (verdict, exit record, log), one zygote for many shims, and a dead zygote kills no
container, loses no exit code and is replaced by the next start."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from berth.network.command import Completed
from berth.runtime import shim
from berth.runtime.shimzygote import ShimZygote, stop_zygotes

SHIM = str(Path(shim.__file__).resolve())
T = TypeVar("T")

# `runc create` stand-in: starts the "container" (a grandchild that outlives this script)
# from the bundle's `mode` file: "fail", or "<seconds> <exit code>"; writes --pid-file.
FAKE_RUNC = """#!{python}
import subprocess, sys
args = sys.argv[1:]
bundle = args[args.index("--bundle") + 1]
mode = open(bundle + "/mode").read().split()
if mode[0] == "fail":
    log = open(args[args.index("--log") + 1], "a")
    print('{{"level":"error","msg":"no such rootfs"}}', file=log)
    sys.exit(1)
proc = subprocess.Popen(["/bin/sh", "-c", f"echo out; sleep {{mode[0]}}; exit {{mode[1]}}"])
open(args[args.index("--pid-file") + 1], "w").write(str(proc.pid))
"""


@pytest.fixture
def base() -> Iterator[Path]:
    # short: the zygote's unix socket lives under it (at most 107 bytes)
    directory = Path(tempfile.mkdtemp(prefix="zyg"))
    runc = directory / "runc"
    runc.write_text(FAKE_RUNC.format(python=sys.executable))
    runc.chmod(0o755)
    yield directory
    for pid in _zygotes(directory):
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(directory, ignore_errors=True)


def _zygotes(directory: Path) -> list[int]:
    """The live zygote under ``directory`` (its pid is in its lock file; forked shims keep
    its command line, so /proc cannot tell them apart)."""
    found = []
    for lock in directory.glob("z/*.lock"):
        text = lock.read_text()
        if text.isdigit() and os.path.exists(f"/proc/{text}"):
            status = Path(f"/proc/{text}/status").read_text()
            if "State:\tZ" not in status:
                found.append(int(text))
    return found


class CountingZygote(ShimZygote):
    def __init__(self, directory: Path) -> None:
        super().__init__(
            python=sys.executable, shim=SHIM, directory=directory / "z", env=dict(os.environ)
        )
        self.spawned = 0

    def _spawn(self) -> bool:
        self.spawned += 1
        return super()._spawn()


def _shim_args(base: Path, name: str, mode: str) -> list[str]:
    """A new bundle ``name`` whose fake runc does ``mode``; the shim's arguments for it."""
    bundle = base / name
    bundle.mkdir()
    (bundle / "mode").write_text(mode)
    return [
        "--runc", str(base / "runc"), "--root", str(base / "root"), "--bundle", str(bundle),
        "--id", name, "--log", str(bundle / "container.log"), "--exit", str(bundle / "exit.json"),
    ]  # fmt: skip


def _start(zygote: ShimZygote, base: Path, name: str, mode: str) -> Completed | None:
    return asyncio.run(zygote.run(_shim_args(base, name, mode)))


def _exit_record(bundle: Path) -> dict[str, object]:
    exit_file = bundle / "exit.json"
    deadline = time.monotonic() + 60  # generous: a loaded machine
    while not exit_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    doc: dict[str, object] = json.loads(exit_file.read_text())
    return doc


def test_one_zygote_forks_shims_that_report_and_record_exits(base: Path) -> None:
    zygote = CountingZygote(base)
    first = _start(zygote, base, "c1", "0.2 3")
    second = _start(zygote, base, "c2", "0.2 5")
    assert first is not None
    assert second is not None
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert zygote.spawned == 1, "the second shim came from the same zygote"
    (zygote_pid,) = _zygotes(base)
    for result, bundle, code in ((first, base / "c1", 3), (second, base / "c2", 5)):
        verdict = json.loads(result.stdout)
        assert verdict["subreaper"] is True
        assert verdict["shim"] != zygote_pid
        assert _exit_record(bundle)["exitCode"] == code
        assert (bundle / "container.log").read_text() == "out\n"


def test_runc_errors_and_bad_arguments_come_back_through_the_zygote(base: Path) -> None:
    zygote = CountingZygote(base)
    failed = _start(zygote, base, "c1", "fail")
    assert failed is not None
    assert failed.returncode == 1
    assert b"no such rootfs" in failed.stderr
    refused = asyncio.run(zygote.run(["--id", "x"]))
    assert refused is not None
    assert refused.returncode == 2


def test_a_killed_zygote_loses_no_container_and_is_replaced(base: Path) -> None:
    zygote = CountingZygote(base)
    running = _start(zygote, base, "c1", "3 4")
    assert running is not None
    assert running.returncode == 0, running.stderr
    for pid in _zygotes(base):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while _zygotes(base) and time.monotonic() < deadline:
        time.sleep(0.05)
    shim_pid = json.loads(running.stdout)["shim"]
    assert os.path.exists(f"/proc/{shim_pid}"), "the shim outlives its zygote"
    after = _start(zygote, base, "c2", "0.1 0")
    assert after is not None
    assert after.returncode == 0, after.stderr
    assert zygote.spawned == 2, "a new zygote for the next start"
    assert _exit_record(base / "c1")["exitCode"] == 4
    assert _exit_record(base / "c2")["exitCode"] == 0


def test_no_zygote_possible_means_none_and_the_caller_spawns(base: Path) -> None:
    zygote = ShimZygote(
        python=str(base / "no-such-python"), shim=SHIM, directory=base / "z", env={}
    )
    assert _start(zygote, base, "c1", "0.1 0") is None


def test_teardown_kills_the_serving_zygote_and_no_process_a_stale_lock_names(base: Path) -> None:
    """``berth.runtime reset`` (destroy) stops the zygote: left alone it outlived the agent in
    the agent unit's control group, which kept ``berth-agent.service`` loaded after destroy
    removed its file. A lock file naming a process that does not hold it (a pid reused since)
    kills nothing."""
    zygote = CountingZygote(base)
    started = _start(zygote, base, "c1", "0.5 6")
    assert started is not None
    assert started.returncode == 0, started.stderr
    (zygote_pid,) = _zygotes(base)
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        stale = base / "z" / "shim-zygote-0123456789abcdef.sock.lock"
        stale.write_text(str(bystander.pid))
        assert stop_zygotes(base / "z") == [zygote_pid]
        status = Path(f"/proc/{zygote_pid}/status")
        assert not status.exists() or "State:\tZ" in status.read_text(), "the zygote is gone"
        assert bystander.poll() is None, "a process named by a lock it does not hold lives"
        assert sorted(p.name for p in (base / "z").iterdir()) == []
    finally:
        bystander.kill()
        bystander.wait()
    assert _exit_record(base / "c1")["exitCode"] == 6, "the running shim was not the zygote"
    assert stop_zygotes(base / "z") == [], "a second teardown finds nothing"


class _NoThreads(ThreadPoolExecutor):
    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        raise AssertionError("a worker thread was used to wait for a shim")


def test_a_shim_start_is_waited_for_on_the_loop_not_in_a_worker_thread(base: Path) -> None:
    """A burst's shims must not hold the loop's few worker threads while runc runs (the
    root file system copies of other pods wait for those): several starts at once, on a
    loop whose executor refuses work, each answered in full."""
    zygote = CountingZygote(base)
    warm = _start(zygote, base, "warm", "0 0")  # the zygote is started (in a thread) here
    assert warm is not None
    assert warm.returncode == 0

    async def burst() -> list[Completed | None]:
        asyncio.get_running_loop().set_default_executor(_NoThreads(max_workers=1))
        modes = ["0.2 0", "0.2 0", "0.2 0", "fail"]
        return await asyncio.gather(
            *(zygote.run(_shim_args(base, f"c{n}", mode)) for n, mode in enumerate(modes))
        )

    results = asyncio.run(burst())
    assert [r.returncode if r is not None else None for r in results] == [0, 0, 0, 1]
    for n, result in enumerate(results[:3]):
        assert result is not None
        assert json.loads(result.stdout)["shim"] > 0
        assert _exit_record(base / f"c{n}")["exitCode"] == 0
    assert results[3] is not None
    assert b"no such rootfs" in results[3].stderr
    assert zygote.spawned == 1
