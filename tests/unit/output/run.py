"""Running the output scenario (:mod:`tests.unit.output.scenario`) in a subprocess, attached to
a pseudo-terminal like a person's shell or to a pipe like a CI job's log."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCENARIO = (sys.executable, "-m", "tests.unit.output.scenario")
BERTH = (sys.executable, "-m", "tests.unit.output.berth_cli")
"""``berth`` itself on the scenario's hosts (:mod:`tests.unit.output.berth_cli`)."""
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _env(terminal: bool, extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORCE_", "TTY_", "NO_COLOR"))}
    env.update(extra)
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    env["PYTHONPATH"] = str(ROOT)
    env["TERM"] = "xterm-256color" if terminal else "dumb"
    return env


def in_terminal(
    *args: str,
    timeout: float = 60,
    command: Sequence[str] = SCENARIO,
    env: Mapping[str, str] | None = None,
) -> tuple[int, str]:
    """Run the scenario (or ``command``) on a 120x30 pseudo-terminal; its exit code and
    everything it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    process = subprocess.Popen(
        [*command, *args], stdin=slave, stdout=slave, stderr=slave, env=_env(True, env or {}),
        cwd=ROOT,
        close_fds=True,
    )  # fmt: skip
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
    return code, b"".join(chunks).decode("utf-8", "replace")


def in_pipe(
    *args: str,
    timeout: float = 60,
    command: Sequence[str] = SCENARIO,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the scenario (or ``command``) with stdout and stderr on pipes (a CI job)."""
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=_env(False, env or {}), cwd=ROOT,
        timeout=timeout, check=False,
    )  # fmt: skip


def plain(text: str) -> str:
    """``text`` without terminal control sequences."""
    return ANSI.sub("", text).replace("\r", "")
