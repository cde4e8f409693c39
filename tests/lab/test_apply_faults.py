"""`berth apply` when a host's cable is cut mid-run (issue 19, point 1): the apply fails within a
minute naming the host, the phase and the operation, the other host finishes the phase, and an
apply after the host is back converges.

One 2-host lab. The faults are placed by the apply's own ``--output json`` events, never by
sleeping:

* cut in the artifacts phase as soon as n2 has done its first operation (its bundle upload is
  next);
* frozen (every process stopped, its kernel still acknowledging TCP) as the next apply starts
  the artifacts phase (n2 still lacks the bundle);
* cut in the pki phase: the host that finishes artifacts first is cut (the phase waits for the
  other one, so the cut is in place before the host starts pki).

Before the fix an apply never ended (a dead peer was never noticed): each test then fails after
:data:`FAILS_WITHIN` seconds instead of hanging.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from provisioner.lab import Lab
from tests.lab.conftest import LabFactory

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
PHASES = ("--only", "preflight", "--only", "artifacts", "--only", "pki")
FAILS_WITHIN = 60.0
"""Seconds from the cut to apply's exit: the dead host is noticed after ~DEAD_AFTER (20 s)."""
Event = dict[str, Any]


@dataclass
class Apply:
    """A running `berth apply --output json`, its events read as they come."""

    process: subprocess.Popen[str]
    events: list[Event] = field(default_factory=list)
    _queue: queue.Queue[Event | None] = field(default_factory=queue.Queue)
    _reader: threading.Thread | None = None

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self._queue.put(json.loads(line))
        self._queue.put(None)

    def until(self, wanted: Callable[[Event], bool], *, within: float = 180.0) -> Event:
        """The first further event ``wanted`` accepts (fails if apply ends first)."""
        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no such event within {within:.0f}s; last: {self.events[-5:]}"
            try:
                event = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            assert event is not None, f"apply ended first: {self.events[-5:]}"
            self.events.append(event)
            if wanted(event):
                return event

    def finish(self, *, within: float) -> int:
        """Wait for apply to exit; on a timeout kill it and fail (it hung)."""
        try:
            code = self.process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            pytest.fail(f"apply still running {within:.0f}s after the fault (it hangs)")
        while (event := self._queue.get(timeout=10)) is not None:
            self.events.append(event)
        return code

    def stop(self) -> None:
        """Kill apply if it still runs; release its pipe."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        assert self._reader is not None
        self._reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()

    def failure(self) -> list[str]:
        (failed,) = [e for e in self.events if e["kind"] == "failed"]
        lines: list[str] = failed["data"]["lines"]
        return lines


@dataclass
class Cluster:
    lab: Lab
    spec: Path
    env: dict[str, str]

    def start(self) -> Apply:
        command = [sys.executable, "-m", "provisioner.cli.main", "apply", "-i", str(self.spec),
                   *PHASES, "--yes", "--output", "json"]  # fmt: skip
        process = subprocess.Popen(
            command, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        return Apply(process)


@pytest.fixture(scope="module")
def cluster(lab_factory: LabFactory, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    lab = lab_factory(2)
    work = tmp_path_factory.mktemp("faults")
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    env = dict(
        os.environ,
        BERTH_STATE_DIR=str(work / "state"),
        BERTH_CACHE_DIR=str(work / "cache"),
        BERTH_BUNDLE_SOURCE=os.environ.get("BERTH_BUNDLE_SOURCE", commit),
    )
    return Cluster(lab, lab.spec_path, env)


@pytest.fixture
def healed(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster; every host is thawed and its cable plugged back in afterwards."""
    try:
        yield cluster
    finally:
        for host in cluster.lab.hosts:
            cluster.lab.thaw(host.name)
            cluster.lab.heal(host.name)


def _of(kind: str, phase: str, host: str | None = None) -> Callable[[Event], bool]:
    def wanted(event: Event) -> bool:
        return (event["kind"], event["phase"]) == (kind, phase) and (
            host is None or event["host"] == host
        )

    return wanted


def _assert_failed_naming(apply: Apply, code: int, phase: str, host: str) -> None:
    lines = apply.failure()
    assert code == 6, lines
    problems = [line for line in lines if line.startswith(f"[{phase}] ")]
    assert len(problems) == 1, lines
    # "[phase] host: <operation>: connection lost while <what>: no answer for 20s (...)"
    head, _, why = problems[0].partition(": connection lost while ")
    assert head.startswith(f"[{phase}] {host}: "), problems
    assert head.removeprefix(f"[{phase}] {host}: "), f"no operation named: {problems}"
    assert "no answer for" in why, problems
    errors = [e for e in apply.events if e["kind"] == "error"]
    assert [(e["phase"], e["host"]) for e in errors] == [(phase, host)]


def test_a_host_cut_in_the_artifacts_phase_fails_the_apply_naming_it(healed: Cluster) -> None:
    apply = healed.start()
    try:
        apply.until(_of("done", "artifacts", "n2"))
        healed.lab.cut("n2")
        cut_at = time.monotonic()
        code = apply.finish(within=FAILS_WITHIN)
    finally:
        apply.stop()
    took = time.monotonic() - cut_at
    assert took < FAILS_WITHIN
    print(f"apply failed {took:.1f}s after the cut")
    _assert_failed_naming(apply, code, "artifacts", "n2")
    # the other host finished the phase; no host started the next one
    assert [e for e in apply.events if _of("progress", "artifacts", "n1")(e)]
    applied = {"phase", "done", "progress"}  # the plan's "change" events come before
    assert not [e for e in apply.events if e["phase"] == "pki" and e["kind"] in applied]


def test_a_host_frozen_in_the_artifacts_phase_fails_the_apply_naming_it(healed: Cluster) -> None:
    # n2 still lacks the bundle (the cut above interrupted it): seconds of work in artifacts
    apply = healed.start()
    try:
        apply.until(_of("phase", "artifacts"))
        healed.lab.freeze("n2")
        frozen_at = time.monotonic()
        code = apply.finish(within=FAILS_WITHIN)
    finally:
        apply.stop()
    took = time.monotonic() - frozen_at
    assert took < FAILS_WITHIN
    print(f"apply failed {took:.1f}s after the freeze")
    _assert_failed_naming(apply, code, "artifacts", "n2")
    assert [e for e in apply.events if _of("progress", "artifacts", "n1")(e)]


def test_a_host_cut_in_the_pki_phase_fails_the_apply_naming_it(healed: Cluster) -> None:
    apply = healed.start()
    try:
        first = apply.until(_of("progress", "artifacts"))
        victim = str(first["host"])
        healed.lab.cut(victim)
        cut_at = time.monotonic()
        code = apply.finish(within=FAILS_WITHIN)
    finally:
        apply.stop()
    print(f"apply failed {time.monotonic() - cut_at:.1f}s after the cut: {apply.failure()}")
    other = "n1" if victim == "n2" else "n2"
    _assert_failed_naming(apply, code, "pki", victim)
    assert [e for e in apply.events if _of("progress", "pki", other)(e)]


def test_apply_converges_once_the_host_is_back(healed: Cluster) -> None:
    for _ in range(2):  # the first apply finishes the work; the second finds none left
        apply = healed.start()
        try:
            code = apply.finish(within=300)
        finally:
            apply.stop()
        assert code == 0, apply.events[-5:]
    summary = [e for e in apply.events if e["kind"] == "summary"][-1]
    assert summary["data"]["changes"] == 0, summary
