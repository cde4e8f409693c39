"""The upgrade, resume and rollback procedures, written against :class:`ClusterOps`.

Per batch (see :mod:`provisioner.upgrade.planner`): every host is cordoned and drained, the new
bundle is unpacked beside the old one, ``current`` is switched and the units restarted, then
each host must pass the health gate. A host that fails its gate is switched straight back to its
previous bundle, its units restarted and gated again, and the run halts with a report naming the
host, the failed check and the tail of its unit logs. Every step is journaled first
(:mod:`provisioner.upgrade.journal`), so ``--resume`` and ``rollback`` know where things stand.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from provisioner.errors import ExitCode, ProvisionerError, StateError
from provisioner.upgrade.gate import GateFailure
from provisioner.upgrade.journal import Journal, Progress, RunStatus, Step
from provisioner.upgrade.planner import PlannedHost, describe_plan, plan_batches
from provisioner.upgrade.seam import ClusterOps
from provisioner.upgrade.version import VersionSkewError, check_skew

Report = Callable[[str], None]
LOG_LINES_SHOWN = 30


class UpgradeHalted(ProvisionerError):
    """The upgrade stopped on a failure; the journal says where (``--resume`` continues)."""

    exit_code = ExitCode.APPLY

    def __init__(self, message: str, *, details: Sequence[str] = (), hint: str | None = None):
        super().__init__(message, hint=hint)
        self.details = list(details)

    def lines(self) -> list[str]:
        return [self.message, *self.details, *([f"hint: {self.hint}"] if self.hint else [])]


@dataclass(frozen=True)
class UpgradePlan:
    target: str
    running: dict[str, str | None]
    batches: list[list[str]]

    def lines(self) -> list[str]:
        out = [f"{h}: runs {b or 'nothing'}" for h, b in sorted(self.running.items())]
        return out + describe_plan(self.batches, target=self.target)


class Upgrader:
    """Rolling upgrade, resume and cluster rollback of one cluster (module docstring)."""

    def __init__(
        self,
        ops: ClusterOps,
        *,
        hosts: Sequence[PlannedHost],
        journal_dir: Path,
        snapshot_dir: Path,
        max_unavailable: int,
        report: Report = lambda line: None,
    ) -> None:
        self.ops = ops
        self.hosts = list(hosts)
        self.journal_dir = journal_dir
        self.snapshot_dir = snapshot_dir
        self.max_unavailable = max_unavailable
        self.report = report

    @property
    def control_plane(self) -> frozenset[str]:
        return frozenset(h.name for h in self.hosts if h.control_plane)

    # -- plan ------------------------------------------------------------------------------

    def plan(self, *, allow_downgrade: bool = False) -> UpgradePlan:
        """Read what the hosts run, apply the skew policy, order the hosts. Changes nothing;
        raises :class:`VersionSkewError` with every problem."""
        target = self.ops.target
        running = self.ops.running()
        problems = check_skew(
            running, control_plane=self.control_plane, target=target,
            allow_downgrade=allow_downgrade,
        )  # fmt: skip
        if problems:
            raise VersionSkewError(
                problems, hint="nothing was changed on any host; see `berth upgrade --help`"
            )
        batches = plan_batches(
            self.hosts, running=running, target=target, max_unavailable=self.max_unavailable
        )
        return UpgradePlan(target, running, batches)

    # -- upgrade ---------------------------------------------------------------------------

    def upgrade(self, *, allow_downgrade: bool = False) -> Progress:
        """A fresh run: refuse when an earlier run is unfinished, plan, snapshot, roll."""
        latest = Journal.latest(self.journal_dir)
        if latest is not None:
            previous = latest.replay()
            if previous.status in (RunStatus.RUNNING, RunStatus.HALTED, RunStatus.ROLLING_BACK):
                raise StateError(
                    f"upgrade {previous.run} to {previous.target} is unfinished "
                    f"({previous.status}; journal {latest.path})",
                    hint="continue it with `berth upgrade --resume`, or undo it with "
                    "`berth rollback`",
                )
        plan = self.plan(allow_downgrade=allow_downgrade)
        for line in plan.lines():
            self.report(line)
        if not plan.batches:
            return Progress(run="", target=plan.target, status=RunStatus.COMPLETED)
        journal = Journal.create(self.journal_dir)
        previous_bundles = {h: b for h, b in plan.running.items() if b is not None}
        journal.append(
            Step.PLANNED, target=plan.target, previous=previous_bundles, batches=plan.batches
        )
        self._snapshot(journal)
        return self._roll(journal, journal.replay())

    def _snapshot(self, journal: Journal) -> None:
        """Snapshot the datastore before the first change; a failure halts the run with
        nothing changed (``--resume`` tries the snapshot again)."""
        dest = self.snapshot_dir / f"upgrade-{journal.run}.db"
        try:
            path = self.ops.snapshot(dest)
        except ProvisionerError as error:
            journal.append(Step.HALTED, reason=f"datastore snapshot failed: {error.message}")
            raise UpgradeHalted(
                f"upgrade halted before any change: the datastore snapshot failed: {error.message}",
                hint="fix the cause, then `berth upgrade --resume`",
            ) from None
        journal.append(Step.SNAPSHOT, path=str(path))
        self.report(f"datastore snapshot: {path}")

    def resume(self, *, target: str | None = None) -> Progress:
        """Continue the newest run from its journal (its target must be what this operator
        ships)."""
        journal = Journal.latest(self.journal_dir)
        if journal is None:
            raise StateError(
                f"no upgrade journal in {self.journal_dir}",
                hint="start one with `berth upgrade --to VERSION`",
            )
        progress = journal.replay()
        if progress.status is RunStatus.COMPLETED:
            raise StateError(f"upgrade {progress.run} to {progress.target} already completed")
        if progress.status in (RunStatus.ROLLING_BACK, RunStatus.ROLLED_BACK):
            raise StateError(
                f"upgrade {progress.run} was rolled back ({progress.status}); it cannot resume",
                hint="finish the rollback with `berth rollback`, or start a new upgrade",
            )
        wanted = target or progress.target
        if self.ops.target != progress.target or wanted != progress.target:
            raise StateError(
                f"upgrade {progress.run} goes to {progress.target}, but this berth ships "
                f"{self.ops.target}",
                hint="resume with the same berth build that started the upgrade",
            )
        running = self.ops.running()
        problems = check_skew(running, control_plane=self.control_plane, target=progress.target)
        if problems:
            raise VersionSkewError(problems, hint="the hosts changed since the upgrade stopped")
        journal.append(Step.RESUMED, pending=progress.pending())
        self.report(f"resuming upgrade {progress.run} to {progress.target}")
        if progress.snapshot is None:
            self._snapshot(journal)
        return self._roll(journal, journal.replay())

    def _roll(self, journal: Journal, progress: Progress) -> Progress:
        target = progress.target
        for batch in progress.pending():
            self._batch(journal, progress, batch, target)
        journal.append(Step.COMPLETED)
        self.report(f"every host runs {target}")
        return journal.replay()

    def _batch(self, journal: Journal, progress: Progress, batch: list[str], target: str) -> None:
        self.report(f"upgrading {', '.join(batch)} -> {target}")
        for host in batch:
            journal.append(Step.STARTED, host)
            self.ops.cordon(host)
            journal.append(Step.CORDONED, host)
            summary = self.ops.drain(host)
            journal.append(Step.DRAINED, host, summary=summary)
            self.report(f"{host}: cordoned and drained ({summary})")
        for host in batch:
            self.ops.install(host, target)
            journal.append(Step.INSTALLED, host, bundle=target)
        since: dict[str, dt.datetime] = {}
        for host in batch:
            since[host] = self.ops.switch(host, target)
            journal.append(Step.SWITCHED, host, bundle=target)
        failed: dict[str, list[GateFailure]] = {}
        for host in batch:
            failures = self.ops.gate(host, target, since=since[host])
            if failures:
                failed[host] = failures
                journal.append(
                    Step.GATE_FAILED, host, checks=[f.check for f in failures],
                    failures=[str(f) for f in failures],
                )  # fmt: skip
                continue
            journal.append(Step.GATE_OK, host)
            self.ops.uncordon(host)
            journal.append(Step.UNCORDONED, host)
            journal.append(Step.DONE, host)
            self.report(f"{host}: runs {target}, healthy")
        if failed:
            self._halt(journal, progress, failed, target)

    def _halt(
        self,
        journal: Journal,
        progress: Progress,
        failed: dict[str, list[GateFailure]],
        target: str,
    ) -> None:
        details: list[str] = []
        for host, failures in failed.items():
            logs = self.ops.logs(host)  # read before the rollback restarts the units
            previous = progress.previous[host]
            since = self.ops.switch(host, previous)
            back = self.ops.gate(host, previous, since=since)
            if back:
                journal.append(Step.GATE_FAILED, host, bundle=previous,
                               failures=[str(f) for f in back])  # fmt: skip
                state = f"switched back to {previous} but NOT healthy: " + "; ".join(
                    str(f) for f in back
                )
            else:
                journal.append(Step.ROLLED_BACK, host, bundle=previous)
                self.ops.uncordon(host)
                journal.append(Step.UNCORDONED, host)
                state = f"rolled back to {previous} automatically; healthy again"
            details += [f"{host}: failed check {f}" for f in failures]
            details.append(f"{host}: {state}")
            tail = logs.strip().splitlines()[-LOG_LINES_SHOWN:]
            details.append(f"{host}: last {len(tail)} log line(s):")
            details += [f"  {line}" for line in tail]
        names = ", ".join(failed)
        reason = f"health gate failed on {names}: " + "; ".join(
            f"{h}: {', '.join(f.check for f in fs)}" for h, fs in failed.items()
        )
        journal.append(Step.HALTED, reason=reason)
        raise UpgradeHalted(
            f"upgrade to {target} halted: {reason}",
            details=details,
            hint=f"the other hosts were not touched; fix the cause, then `berth upgrade "
            f"--resume`, or `berth rollback` to return every host to its previous version "
            f"(journal {journal.path})",
        )

    # -- rollback --------------------------------------------------------------------------

    def rollback(self, *, restore_snapshot: bool = False) -> Progress:
        """Return every host the newest run touched to its previous bundle, workers first;
        with ``restore_snapshot`` also put the pre-upgrade datastore snapshot back."""
        journal = Journal.latest(self.journal_dir)
        if journal is None:
            raise StateError(f"no upgrade journal in {self.journal_dir}; nothing to roll back")
        progress = journal.replay()
        if progress.status is RunStatus.ROLLED_BACK:
            raise StateError(f"upgrade {progress.run} was already rolled back")
        running = self.ops.running()
        revert = revert_order(progress, running)
        journal.append(Step.ROLLBACK_STARTED, hosts=revert)
        self.report(f"rolling back upgrade {progress.run}: {', '.join(revert) or 'no host'}")
        for host in revert:
            previous = progress.previous[host]
            self.ops.install(host, previous)  # a no-op when it is still on the host
            since = self.ops.switch(host, previous)
            failures = self.ops.gate(host, previous, since=since)
            if failures:
                logs = self.ops.logs(host).strip().splitlines()[-LOG_LINES_SHOWN:]
                journal.append(Step.GATE_FAILED, host, bundle=previous,
                               failures=[str(f) for f in failures])  # fmt: skip
                raise UpgradeHalted(
                    f"rollback halted: {host} is back on {previous} but not healthy",
                    details=[f"{host}: failed check {f}" for f in failures]
                    + [f"  {line}" for line in logs],
                    hint="fix the host, then run `berth rollback` again",
                )
            journal.append(Step.REVERTED, host, bundle=previous)
            self.ops.uncordon(host)
            journal.append(Step.UNCORDONED, host)
            self.report(f"{host}: back on {previous}, healthy")
        for host in progress.hosts:
            # the release rolled back from runs nowhere now: leave the hosts as before the run
            if progress.previous.get(host) != progress.target:
                self.ops.remove(host, progress.target)
                journal.append(Step.PRUNED, host, bundle=progress.target)
        for host in sorted(progress.cordoned - set(revert)):
            self.ops.uncordon(host)  # cordoned by a run that died before switching it
            journal.append(Step.UNCORDONED, host)
        if restore_snapshot:
            if progress.snapshot is None:
                raise StateError(f"upgrade {progress.run} recorded no datastore snapshot")
            self.ops.restore_snapshot(Path(progress.snapshot))
            journal.append(Step.SNAPSHOT_RESTORED, path=progress.snapshot)
            self.report(f"datastore restored from {progress.snapshot}")
        journal.append(Step.ROLLBACK_COMPLETED)
        return journal.replay()


def revert_order(progress: Progress, running: dict[str, str | None]) -> list[str]:
    """The hosts a cluster rollback switches back, in order: the reverse of the upgrade
    order (workers before the control plane). A host counts when the journal says it was
    switched, *or* the host itself runs something other than its previous bundle (a kill
    between the switch and its journal line)."""
    touched = set(progress.to_revert())
    touched |= {
        h for h in progress.hosts
        if running.get(h) is not None and running.get(h) != progress.previous.get(h)
    }  # fmt: skip
    return [h for h in reversed(progress.hosts) if h in touched and h in progress.previous]
