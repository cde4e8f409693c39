"""A small apply on this machine for the output tests: three local "hosts" (operations confined
to a temp directory), a phase writing files, a phase where one host is slow, an operator-side
step, and optionally a phase where one host fails. Run as a script (``python -m
tests.unit.output.scenario ROOT [--fail] [--timeline FILE]``) it prints what ``berth apply``
prints by default, so a test can watch it in a terminal (a pty) or through a pipe (CI)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.commands import Command, Shell
from provisioner.connectors.base import Connector, HostName, HostTarget
from provisioner.connectors.local import LocalConnector
from provisioner.engine.runner import Engine, HostsFailed, RunContext
from provisioner.facts.base import Fact
from provisioner.operations.base import OpContext, Operation
from provisioner.operations.files import Directory, File
from provisioner.output.progress import ProgressReporter
from provisioner.output.record import RunRecord
from provisioner.output.timeline import write_timeline
from provisioner.reporting import Reporter
from provisioner.workflow import Inventory, Phase, PhaseData, select

HOSTS = ("h1", "h2", "h3")
SLOW_HOST, SLOW_SECONDS = "h3", 2.6
FAILING_HOST = "h2"


@dataclass(frozen=True)
class Sleep(Operation):
    """Always changes: sleeps ``seconds`` on the host."""

    seconds: float

    @property
    def id(self) -> str:
        return f"sleep:{self.seconds}"

    def describe(self) -> str:
        return f"sleep {self.seconds}s"

    def facts(self) -> tuple[Fact[Any], ...]:
        return ()

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        yield Shell("sleep", str(self.seconds))


@dataclass(frozen=True)
class Broken(Operation):
    """Always changes and always fails, saying why on stderr."""

    @property
    def id(self) -> str:
        return "broken"

    def describe(self) -> str:
        return "service berth-broken"

    def facts(self) -> tuple[Fact[Any], ...]:
        return ()

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        yield Shell("sh", "-c", "echo 'broken.service: disk full' >&2; exit 3")


def phases(root: Path, *, fail: bool) -> list[Phase]:
    def files(data: PhaseData, host: HostTarget) -> Sequence[Operation]:
        base = root / host.name
        return (Directory(str(base)), File(str(base / "app.conf"), f"{host.name}\n".encode()))

    def slow(data: PhaseData, host: HostTarget) -> Sequence[Operation]:
        return (Sleep(SLOW_SECONDS if host.name == SLOW_HOST else 0.2),)

    def broken(data: PhaseData, host: HostTarget) -> Sequence[Operation]:
        return (Broken(),) if host.name == FAILING_HOST else ()

    def summarize(data: PhaseData, report: Callable[[str], None]) -> int:
        time.sleep(0.1)
        report("wrote the summary")
        return 1

    listed = [
        Phase("files", "Write files", operations=files),
        Phase("slow", "Wait on the hosts", operations=slow),
        Phase("summary", "Sum up on the operator's side", after=summarize),
    ]
    return [*listed, Phase("broken", "Break one host", operations=broken)] if fail else listed


def engine(root: Path, reporter: Reporter, *, fail: bool = False) -> Engine:
    def connect(target: HostTarget) -> Connector:
        return LocalConnector(target.name)

    inventory = Inventory("demo", tuple(HostTarget(HostName(h), "127.0.0.1") for h in HOSTS))
    ctx = RunContext(inventory, cache_dir=root / "cache")
    return Engine(
        ctx, select(phases(root, fail=fail), only=(), skip=()), connect=connect, reporter=reporter
    )


def apply(root: Path, reporter: Reporter, *, fail: bool = False) -> None:
    """What ``berth apply -i SPEC --yes`` does, on the scenario's hosts."""
    with engine(root, reporter, fail=fail) as run:
        run.connect_all()
        run.preflight()
        run.report_plan(run.plan())
        run.apply()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--fail", action="store_true")
    parser.add_argument("--timeline", type=Path)
    args = parser.parse_args()
    record = RunRecord()
    try:
        apply(args.root, ProgressReporter(record=record), fail=args.fail)
    except HostsFailed:
        raise SystemExit(6) from None
    finally:
        if args.timeline is not None:
            write_timeline(record, args.timeline, title="scenario")


if __name__ == "__main__":
    main()
