"""How ``berth`` ends when it is the process's own program: without the interpreter's teardown
(issue 18: ~40 ms of a no-op apply's CPU), but only after what that teardown would do that
matters (``atexit`` functions, flushed streams, threads still at work), and only then: a
program that calls :func:`main` and goes on (a test) gets its ``SystemExit`` as before.

Each case runs a fresh interpreter whose ``__main__`` calls ``main`` the way the ``berth``
script does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[3]

# a __main__ like the console script's; ``Teardown`` says when module globals are torn down
PROGRAM = """
import atexit, os, sys, threading
from provisioner.cli.main import main

class Teardown:
    def __del__(self, write=os.write):  # the streams may be gone by then: the descriptor
        write(2, b"torn down\\n")

kept = Teardown()
atexit.register(lambda: print("atexit ran", flush=True))
{setup}
sys.argv = ["berth", *{argv!r}]
sys.exit(main())
"""


def _berth(
    *argv: str, setup: str = "", tmp: Path, input_after_first_line: str | None = None
) -> tuple[int, str, str]:
    env = {
        **os.environ, "PYTHONPATH": str(ROOT), "BERTH_STATE_DIR": str(tmp / "state"),
        "BERTH_CACHE_DIR": str(tmp / "cache"),
    }  # fmt: skip
    code = PROGRAM.format(setup=setup, argv=list(argv))
    with subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env, cwd=tmp,
    ) as process:  # fmt: skip
        assert process.stdin is not None
        assert process.stdout is not None
        first = ""
        if input_after_first_line is not None:
            first = process.stdout.readline()  # the command has printed: main() returns now
            # ... and the process must wait for the thread, which waits for this input
            with pytest.raises(subprocess.TimeoutExpired):
                process.wait(timeout=2)
            process.stdin.write(input_after_first_line)
        out, err = process.communicate(timeout=120)
    return process.returncode, first + out, err


def test_a_successful_command_ends_without_teardown_after_atexit_and_its_output(
    tmp_path: Path,
) -> None:
    code, out, err = _berth("version", tmp=tmp_path)
    assert code == 0
    assert out.splitlines()[0].startswith("berth ")  # flushed before the process ended
    assert out.splitlines()[-1] == "atexit ran"
    assert "torn down" not in err  # fails on the old code: the interpreter freed every module


def test_a_failing_command_keeps_its_exit_code_and_message(tmp_path: Path) -> None:
    code, out, err = _berth("validate", "-i", str(tmp_path / "missing.yaml"), tmp=tmp_path)
    assert code == 3  # a spec error
    assert "missing.yaml: cannot read the spec" in err
    assert "atexit ran" in out
    assert "torn down" not in err


def test_a_thread_still_at_work_is_waited_for(tmp_path: Path) -> None:
    # the thread outlives main(): it reads stdin, written only once berth printed its line
    setup = (
        "worker = threading.Thread(target=lambda: print('read', sys.stdin.readline().strip(),"
        " flush=True))\nworker.start()"
    )
    code, out, _ = _berth(
        "version", setup=setup, tmp=tmp_path, input_after_first_line="from the test\n"
    )
    assert code == 0
    # the ordinary exit: it waits for the thread before it runs the atexit functions (an exit
    # that did not wait would run them at once, and end before the thread could read)
    assert out.splitlines()[1:] == ["read from the test", "atexit ran"]


def test_called_by_a_program_that_goes_on_main_raises_system_exit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.argv", ["berth", "version"])
    assert not cli_main._is_process_entry()
    with pytest.raises(SystemExit) as exited:
        cli_main.main()
    assert exited.value.code in (0, None)
    assert capsys.readouterr().out.startswith("berth ")
