"""Running ``kubectl port-forward`` in a test without ever waiting on it unbounded.

kubectl prints ``Forwarding from ADDRESS:LOCAL -> REMOTE`` on stdout once per listener it
opened, and ``Unable to listen on port N: ...`` on stderr for a local port it could not bind;
as long as at least one listener opened it then serves forever. So a test reading one stdout
line per requested port blocks for good when one port fails (the CI hang of the two-ports
test: a local port picked by the test was bound by another process before kubectl started).

:func:`port_forward` reads both pipes on threads, fails the test as soon as kubectl reports a
port it cannot listen on, exits, or stays silent past a generous deadline, always with
kubectl's stderr in the message, and stops kubectl afterwards. Ask for local port 0 (``:REMOTE``)
so kubectl picks free ports itself: a port chosen by the test can be taken before kubectl binds
it, one chosen by kubectl is bound at once.
"""

from __future__ import annotations

import contextlib
import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, NoReturn

import pytest

FORWARDING = re.compile(r"^Forwarding from (?P<address>\S+):(?P<local>\d+) -> (?P<remote>\d+)$")
CANNOT_LISTEN = "Unable to listen on port"
READY_SECONDS = 60.0
"""How long kubectl may take to connect and listen: generous, a loaded CI machine is slow."""
STOP_SECONDS = 10.0


@dataclass
class Forwarding:
    """A running ``kubectl port-forward``: ``local[remote_port]`` is where to connect."""

    proc: subprocess.Popen[str]
    local: dict[int, int] = field(default_factory=dict)
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    _lines: queue.Queue[tuple[str, str | None]] = field(default_factory=queue.Queue)
    _readers: list[threading.Thread] = field(default_factory=list)

    def _read(self, name: str, pipe: IO[str]) -> None:
        with contextlib.suppress(ValueError, OSError):  # the pipe closed under us
            for line in pipe:
                self._lines.put((name, line.rstrip("\n")))
        self._lines.put((name, None))

    def _next(self, timeout: float) -> tuple[str, str | None]:
        name, line = self._lines.get(timeout=timeout)
        if line is not None:
            (self.stdout if name == "stdout" else self.stderr).append(line)
        return name, line

    def _fail(self, why: str) -> NoReturn:
        self.stop()
        pytest.fail(f"kubectl port-forward {why}; its stderr:\n" + "\n".join(self.stderr))

    def wait_ready(self, ports: int, deadline_seconds: float) -> None:
        deadline = time.monotonic() + deadline_seconds
        while len(self.local) < ports:
            left = deadline - time.monotonic()
            try:
                name, line = self._next(max(left, 0.0))
            except queue.Empty:
                self._fail(
                    f"printed {len(self.local)} of {ports} listeners in {deadline_seconds} s"
                )
            if line is None:
                if name == "stdout":
                    self._fail(f"ended after {len(self.local)} of {ports} listeners")
                continue
            if name == "stderr" and line.startswith(CANNOT_LISTEN):
                self._fail("could not listen on a port")
            if name == "stdout" and (m := FORWARDING.match(line)):
                self.local[int(m["remote"])] = int(m["local"])

    def stop(self) -> None:
        """Stop kubectl and collect the rest of what it wrote (bounded)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_SECONDS)
        for reader in self._readers:
            reader.join(STOP_SECONDS)
        with contextlib.suppress(queue.Empty):
            while True:
                self._next(0)


@contextlib.contextmanager
def port_forward(
    argv: Sequence[str],
    env: dict[str, str],
    *,
    ports: int,
    ready_seconds: float = READY_SECONDS,
) -> Iterator[Forwarding]:
    """Start ``argv`` (a ``kubectl port-forward`` with ``ports`` port specs and one listen
    address), wait until every port listens, yield, then stop kubectl."""
    proc = subprocess.Popen(
        list(argv),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    fwd = Forwarding(proc)
    assert proc.stdout is not None
    assert proc.stderr is not None
    for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        reader = threading.Thread(target=fwd._read, args=(name, pipe), daemon=True)
        reader.start()
        fwd._readers.append(reader)
    try:
        fwd.wait_ready(ports, ready_seconds)
        yield fwd
    finally:
        fwd.stop()
        for pipe in (proc.stdout, proc.stderr):
            pipe.close()
        print("kubectl port-forward stderr:", "\n".join(fwd.stderr))
