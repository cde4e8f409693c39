"""Running host commands: one small async seam shared by the runtime, CNI and the proxy."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Completed:
    """The outcome of a finished command."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        """``argv`` + rc + the first lines of stderr (for error messages)."""
        err = self.stderr.decode(errors="replace").strip()
        if len(err) > 500:
            err = err[:500] + "…"
        return f"`{shlex.join(self.argv)}` exited {self.returncode}" + (f": {err}" if err else "")


class Runner(Protocol):
    """Runs argv (never a shell string) and returns its output; does not raise on rc != 0."""

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        time_limit: float = 60.0,
    ) -> Completed: ...


class CommandFailed(Exception):
    """A command the caller needed to succeed did not."""

    def __init__(self, result: Completed, what: str = "") -> None:
        super().__init__(f"{what}: {result.describe()}" if what else result.describe())
        self.result = result


class SubprocessRunner:
    """The real :class:`Runner`: ``asyncio`` subprocesses, killed when the timeout passes."""

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        time_limit: float = 60.0,
    ) -> Completed:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env) if env is not None else None,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), time_limit)
        except TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
            err += f"\n(killed after {time_limit:.0f} s)".encode()
            return Completed(tuple(argv), -9, out, err)
        return Completed(
            tuple(argv), proc.returncode if proc.returncode is not None else -1, out, err
        )


def use_pidfd_child_watcher() -> bool:
    """Have asyncio learn of child exits through pidfds (Linux 5.3+), as Python 3.12+ does by
    default; True when it now does.

    Python 3.11's default child watcher starts one thread per child process to ``waitpid`` on
    it: on a node agent that runs ~10 tools per pod start (CNI plugins, ``ip``, runc, the
    shim), the threads' start-up was a large share of its subprocess CPU (profiled on a
    30-pod burst). Call from the process's main coroutine (the loop is running), before its
    first subprocess."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return sys.version_info >= (3, 12)
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # the kernel has no pidfds: keep the threads
        return False
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())  # 3.11's watcher serves one loop
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_child_watcher(watcher)
    return True


def host_env(**extra: str) -> dict[str, str]:
    """A minimal environment for tools (PATH only), plus ``extra``."""
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    env.update(extra)
    return env


async def check(
    runner: Runner,
    argv: Sequence[str],
    *,
    what: str = "",
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> Completed:
    """Run and raise :class:`CommandFailed` unless rc == 0."""
    result = await runner.run(argv, stdin=stdin, env=env)
    if not result.ok:
        raise CommandFailed(result, what)
    return result
