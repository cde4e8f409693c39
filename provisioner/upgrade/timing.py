"""Timing an upgrade for ``berth upgrade --timeline``: :class:`TimedOps` wraps the real
:class:`~provisioner.upgrade.seam.ClusterOps` and reports each step on a host (cordon, drain,
install, switch, gate, uncordon, remove) and the datastore snapshot as ``start``/``end`` events,
the same events the engine emits per host and phase, so the same timeline draws both."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from provisioner.output.record import CLUSTER
from provisioner.reporting import Event, Reporter
from provisioner.upgrade.gate import GateFailure
from provisioner.upgrade.seam import ClusterOps


@dataclass
class _Verdict:
    ok: bool


class TimedOps:
    """``inner`` with every step timed to ``reporter`` (the step is the event's phase)."""

    def __init__(self, inner: ClusterOps, reporter: Reporter) -> None:
        self.inner = inner
        self.reporter = reporter

    @contextlib.contextmanager
    def _step(self, step: str, host: str) -> Iterator[_Verdict]:
        self.reporter.emit(Event("start", step, host, step))
        began, verdict = time.monotonic(), _Verdict(ok=False)
        try:
            verdict.ok = True
            yield verdict
        except BaseException:
            verdict.ok = False
            raise
        finally:
            data = {"ok": verdict.ok, "seconds": round(time.monotonic() - began, 3)}
            self.reporter.emit(Event("end", step, host, step, data))

    @property
    def target(self) -> str:
        return self.inner.target

    def running(self) -> dict[str, str | None]:
        return self.inner.running()

    def snapshot(self, dest: Path) -> Path:
        with self._step("snapshot", CLUSTER):
            return self.inner.snapshot(dest)

    def restore_snapshot(self, source: Path) -> None:
        with self._step("restore-snapshot", CLUSTER):
            self.inner.restore_snapshot(source)

    def install(self, host: str, bundle: str) -> None:
        with self._step("install", host):
            self.inner.install(host, bundle)

    def remove(self, host: str, bundle: str) -> None:
        with self._step("remove", host):
            self.inner.remove(host, bundle)

    def switch(self, host: str, bundle: str) -> dt.datetime:
        with self._step("switch", host):
            return self.inner.switch(host, bundle)

    def cordon(self, host: str) -> None:
        with self._step("cordon", host):
            self.inner.cordon(host)

    def drain(self, host: str) -> str:
        with self._step("drain", host):
            return self.inner.drain(host)

    def uncordon(self, host: str) -> None:
        with self._step("uncordon", host):
            self.inner.uncordon(host)

    def gate(self, host: str, bundle: str, *, since: dt.datetime) -> list[GateFailure]:
        with self._step("gate", host) as verdict:
            failures = self.inner.gate(host, bundle, since=since)
            verdict.ok = not failures  # a failed gate is a failed step on the timeline
        return failures

    def logs(self, host: str) -> str:
        return self.inner.logs(host)
