"""``berth ... | head -1``: when the reader of berth's stdout goes away, berth ends quietly with
SIGPIPE's status (141), as Unix tools do, instead of 1 (a failure). Real pipes, a real process:
the reader's end is closed before berth starts, so berth's first write meets EPIPE."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.cli import pipes
from provisioner.errors import ExitCode

ROOT = Path(__file__).resolve().parents[3]


def _berth(*args: str, reader_open: bool) -> subprocess.CompletedProcess[str]:
    read, write = os.pipe()
    try:
        if not reader_open:
            os.close(read)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.run(
            [sys.executable, "-m", "provisioner.cli.main", *args],
            stdout=write, stderr=subprocess.PIPE, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip
    finally:
        os.close(write)
        if reader_open:
            os.close(read)


# `version` writes with typer.echo (click's EPIPE handler); `--help` with rich (rich's own)
@pytest.mark.parametrize("args", [("version",), ("--help",)])
def test_a_reader_gone_ends_berth_quietly_with_sigpipes_status(args: tuple[str, ...]) -> None:
    done = _berth(*args, reader_open=False)
    assert (done.returncode, done.stderr) == (ExitCode.READER_GONE, "")


def test_a_reader_that_stays_changes_nothing() -> None:
    done = _berth("version", reader_open=True)
    assert (done.returncode, done.stderr) == (0, "")


def test_a_failure_with_the_reader_still_there_keeps_its_status() -> None:
    done = _berth("no-such-command", reader_open=True)
    assert done.returncode == 2
    assert "No such command" in done.stderr


@pytest.fixture
def lost_pipe() -> Iterator[tuple[int, int]]:
    read, write = os.pipe()
    os.close(read)
    yield read, write
    os.close(write)


def test_an_epipe_elsewhere_is_a_failure_still(lost_pipe: tuple[int, int]) -> None:
    """stdout's pipe lost its reader, but nothing silenced stdout: the EPIPE that ended the
    command was another one (a host's socket), and exit 1 stays a failure."""
    _, write = lost_pipe
    with os.fdopen(os.dup(write), "w") as stdout:
        watch = pipes.StdoutPipe(stdout)
        assert pipes.reader_gone(write)
        assert not watch.ended_on_lost_reader(stdout, 1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdout.fileno())  # what rich does on EPIPE
        os.close(devnull)
        assert watch.ended_on_lost_reader(stdout, 1)
        assert not watch.ended_on_lost_reader(stdout, 0)


def test_a_pipe_still_read_is_not_gone() -> None:
    read, write = os.pipe()
    try:
        assert not pipes.reader_gone(write)
    finally:
        os.close(read)
        os.close(write)
