"""The engine: connects to every host, plans, and applies phase by phase.

Hosts are handled in parallel by a bounded thread pool; phases run in order, and a phase starts
only when the previous one finished on every host. Planning gathers each host's facts for all
selected phases in one round-trip and evaluates every operation against them (predict only).
Applying re-reads the facts of each operation just before running it, because earlier operations
change the host (a printed plan is a prediction, never a script to replay).

Every host's turn in a stage or phase is reported as a ``start`` and an ``end`` event (``end``
carries ``ok`` and ``seconds``), and each operation as a ``running`` event when it begins: the
live progress display and the ``--timeline`` SVG are drawn from these.

A watchdog names every host still busy each ``watchdog_interval`` seconds of a stage or phase
(with the operation it is running), so a slow or stuck host is visible while the others wait;
the connector bounds every remote wait, so a stuck host ends as an error naming it. A host
lost mid-operation (cut off, powered off, frozen: the SSH connector notices within
``liveness.DEAD_AFTER`` seconds) fails alone, named with its phase and operation; the other
hosts finish the phase, and the run then stops with exit 6.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from provisioner.commands import Command, Shell, Upload
from provisioner.connectors.base import Connector, HostName, HostTarget
from provisioner.engine.diff import upload_diff
from provisioner.engine.factmemo import FactMemo, memo_path, selection_key
from provisioner.engine.plan import Plan, PlanDriftError, PlannedOp
from provisioner.errors import (
    ConnectError,
    ExitCode,
    OperationError,
    PreflightError,
    ProvisionerError,
)
from provisioner.facts.base import Fact, FactSet
from provisioner.facts.files import PathInfo
from provisioner.facts.gather import gather
from provisioner.operations.base import HostRun, OpContext, Operation, Outcome, evaluate
from provisioner.operations.systemd import DaemonReload
from provisioner.reporting import CollectingReporter, Event, Reporter
from provisioner.spec import ClusterSpec
from provisioner.workflow import Inventory, RemoveHostsFn, SelectedPhase

T = TypeVar("T")
R = TypeVar("R")
ConnectFn = Callable[[HostTarget], Connector]
CLUSTER = "(cluster)"
"""The pseudo host of operator-side work (a phase's ``after`` step) in plans and reports."""


def ssh_connect(target: HostTarget) -> Connector:
    """The default connector factory: a connected :class:`SSHConnector` (imported on use: a
    run whose connections are kept by the multiplexer never loads paramiko)."""
    from provisioner.connectors.ssh import SSHConnector  # noqa: PLC0415

    return SSHConnector(target).connect()


class HostsFailed(ProvisionerError):
    """One or more hosts failed; one line per host, each prefixed ``[phase] host:``."""

    def __init__(self, problems: list[str], *, exit_code: ExitCode, what: str, hint: str) -> None:
        super().__init__(f"{what} failed on {len(problems)} host(s)", hint=hint)
        self.problems = problems
        self.exit_code = exit_code

    def lines(self) -> list[str]:
        return [*self.problems, *super().lines()]


@dataclass
class RunContext:
    """The :class:`~provisioner.workflow.PhaseData` the engine hands to phases."""

    inventory: Inventory
    cache_dir: Path
    spec: ClusterSpec | None = None
    dry_run: bool = True
    state_dir: Path | None = None
    """``--state-dir``: phases open the cluster state under it (default: the usual base)."""
    phase_set: str = "custom"
    remove_hosts: RemoveHostsFn | None = None
    """How phases remove hosts that left the spec (the CLI passes ``berth destroy``'s)."""
    engine: Engine | None = field(default=None, repr=False)

    def host_facts(self, host: HostName, facts: Sequence[Fact[Any]]) -> FactSet:
        if self.engine is None:
            raise RuntimeError("RunContext is not attached to an engine")
        return self.engine.host_facts(host, facts)


@dataclass
class ApplySummary:
    changed: int = 0
    unchanged: int = 0
    hosts: int = 0


class Engine:
    """Plan and apply ``phases`` on ``ctx.inventory`` (see the module docstring)."""

    def __init__(
        self,
        ctx: RunContext,
        phases: Sequence[SelectedPhase],
        *,
        connect: ConnectFn = ssh_connect,
        reporter: Reporter | None = None,
        parallel: int = 16,
        allow_unreachable: bool = False,
    ) -> None:
        self.ctx = ctx
        ctx.engine = self
        self.phases = list(phases)
        self._connect = connect
        self.reporter: Reporter = reporter or CollectingReporter()
        self.parallel = max(1, parallel)
        self.allow_unreachable = allow_unreachable
        self.connectors: dict[HostName, Connector] = {}
        self.unreachable: dict[HostName, str] = {}
        self._facts: dict[HostName, FactSet] = {}
        self._fact_locks: dict[HostName, threading.Lock] = {}
        self._ops: dict[tuple[str, HostName], list[Operation]] = {}
        self._runs: dict[HostName, HostRun] = {}
        self._prepared: bool | None = None  # the dry_run value prepare last ran with
        self._preflight_done = False
        self.watchdog_interval = 60.0
        """Seconds between ``warning`` events naming the hosts a stage or phase waits for."""
        self._doing: dict[HostName, str] = {}  # the operation each host is applying now
        self._failed_op: dict[HostName, str | None] = {}  # the operation a failed host was in
        self._memo: FactMemo | None = None  # set by plan(): the facts the last plan needed

    # -- plumbing -------------------------------------------------------------------------------

    def emit(
        self, kind: str, message: str, *, phase: str = "", host: str = "", **data: Any
    ) -> None:
        self.reporter.emit(Event(kind, phase, host, message, data))

    def _map(
        self, fn: Callable[[T], R], items: Iterable[T], *, stage: str = ""
    ) -> list[tuple[T, R | BaseException]]:
        """Run ``fn`` on every item in the bounded pool; results or exceptions, in order.
        While items are still running, the watchdog reports them (see the module docstring)."""
        work = list(items)
        if not work:
            return []

        def guarded(item: T) -> R | BaseException:
            host = str(getattr(item, "name", item))
            if stage:
                self.emit("start", stage, phase=stage, host=host)
            began = time.monotonic()
            outcome: R | BaseException
            try:
                outcome = fn(item)
            except Exception as error:
                outcome = error
            if stage:
                self.emit(
                    "end", stage, phase=stage, host=host,
                    ok=not isinstance(outcome, BaseException),
                    seconds=round(time.monotonic() - began, 3),
                )  # fmt: skip
            return outcome

        with ThreadPoolExecutor(max_workers=min(self.parallel, len(work))) as pool:
            futures = [pool.submit(guarded, item) for item in work]
            started = time.monotonic()
            pending: set[Future[R | BaseException]] = set(futures)
            while pending:
                _, pending = wait(pending, timeout=self.watchdog_interval)
                if pending:
                    busy = [item for item, f in zip(work, futures, strict=True) if f in pending]
                    self._still_busy(busy, stage, time.monotonic() - started)
            return [(item, f.result()) for item, f in zip(work, futures, strict=True)]

    def _still_busy(self, items: Sequence[object], stage: str, elapsed: float) -> None:
        for item in items:
            name = str(getattr(item, "name", item))
            doing = self._doing.get(HostName(name))
            self.emit(
                "warning",
                f"still running after {elapsed:.0f}s" + (f": {doing}" if doing else ""),
                phase=stage,
                host=name,
                elapsed=round(elapsed, 1),
            )

    @property
    def hosts(self) -> list[HostTarget]:
        """Reachable hosts (all hosts before :meth:`connect_all`)."""
        return [h for h in self.ctx.inventory.hosts if h.name not in self.unreachable]

    def connector(self, host: HostName) -> Connector:
        return self.connectors[host]

    def close(self) -> None:
        for connector in self.connectors.values():
            connector.close()
        self.connectors.clear()
        stop = getattr(self.reporter, "close", None)  # e.g. a live progress display
        if stop is not None:
            stop()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connecting and facts -------------------------------------------------------------------

    def connect_all(self, *, tolerate: bool = False) -> None:
        """Connect to every host at once; unreachable hosts abort unless allowed (or
        ``tolerate``: preflight reports them with every other problem)."""
        todo = [h for h in self.ctx.inventory.hosts if h.name not in self.connectors]
        self.emit("stage", "connecting", phase="connecting", total=len(todo))
        for target, result in self._map(self._connect, todo, stage="connecting"):
            if isinstance(result, BaseException):
                message = _message(result, target.name)
                self.unreachable[target.name] = message
                if self.allow_unreachable:
                    # skipped: this line is the only report; otherwise the error that ends the
                    # run (or preflight's) names the host, once
                    self.emit("problem", f"unreachable: {message}", host=target.name)
            else:
                self.connectors[target.name] = result
                self._fact_locks[target.name] = threading.Lock()
                self.emit("connected", "connected", host=target.name)
        if self.unreachable and not self.allow_unreachable and not tolerate:
            raise HostsFailed(
                [f"{name}: {why}" for name, why in self.unreachable.items()],
                exit_code=ExitCode.CONNECTION,
                what="connecting",
                hint="nothing was changed; fix the hosts or pass --allow-unreachable to skip them",
            )

    def host_facts(
        self, host: HostName, facts: Sequence[Fact[Any]], *, speculative: Sequence[Fact[Any]] = ()
    ) -> FactSet:
        """Facts of ``host``, gathering (in one round-trip) only those not cached yet, with
        the ``speculative`` ones not cached yet riding along (see :func:`gather`)."""
        with self._fact_locks[host]:
            cached = self._facts.setdefault(host, FactSet(host))
            missing = [f for f in facts if f not in cached]
            if missing:
                extra = [f for f in speculative if f not in cached]
                gather(self.connectors[host], missing, into=cached, speculative=extra)
            return cached

    # -- phases ---------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Run the selected phases' operator-side ``prepare`` steps (once)."""
        # a plan prepares without writing; the apply that follows prepares for real
        if self._prepared is False or self._prepared == self.ctx.dry_run:
            return
        for selected in self.phases:
            if selected.phase.prepare is not None:
                selected.phase.prepare(self.ctx)
        self._prepared = self.ctx.dry_run
        # operations computed before a real prepare may rest on inputs it just created
        self._ops.clear()

    def operations(self, selected: SelectedPhase, host: HostTarget) -> list[Operation]:
        key = (selected.path, host.name)
        if key not in self._ops:
            phase = selected.phase
            ops: list[Operation] = []
            if phase.operations is not None and host in phase.hosts(self.ctx.inventory):
                ops = [*phase.operations(self.ctx, host), DaemonReload()]
            ids = [op.id for op in ops]
            duplicates = sorted({i for i in ids if ids.count(i) > 1})
            if duplicates:
                raise OperationError(
                    f"[{selected.path}] {host.name}: operations declared twice: {duplicates}"
                )
            self._ops[key] = ops
        return self._ops[key]

    def _phase_facts(self, host: HostTarget, *, checks: bool = True) -> list[Fact[Any]]:
        """Facts the selected phases declared (``checks=False``: only phases with operations,
        which planning needs; the preflight's own probes are skipped then)."""
        return [
            fact
            for p in self.phases
            if p.phase.facts is not None and (checks or p.phase.operations is not None)
            for fact in p.phase.facts(self.ctx, host)
        ]

    def preflight(self) -> None:
        """Run every selected phase's ``check`` on all hosts at once; report every problem.

        The facts of *every* selected phase are gathered here in the same round-trip, so
        planning afterwards needs only the operations' own facts."""
        if self._preflight_done:
            return
        checking = [p for p in self.phases if p.phase.check is not None]
        problems: list[str] = []
        if not self.allow_unreachable:
            problems += [f"[preflight] {n}: unreachable: {w}" for n, w in self.unreachable.items()]

        def gather_checks(host: HostTarget) -> None:
            self.host_facts(host.name, self._phase_facts(host))

        self.emit("stage", "preflight", phase="preflight", total=len(self.hosts))
        for host, result in self._map(gather_checks, self.hosts, stage="preflight"):
            if isinstance(result, BaseException):
                problems.append(f"[preflight] {host.name}: {_message(result, host.name)}")
        for selected in checking:
            assert selected.phase.check is not None
            live = {h.name: self.connectors[h.name] for h in self.hosts}
            for problem in selected.phase.check(self.ctx, live):
                line = f"[{selected.path}] {problem}"
                problems.append(line)
        if problems:
            # the error carries every problem and is printed once (a `failed` event in json)
            raise PreflightError(
                problems, hint="nothing was changed; fix the problems above and run again"
            )
        for selected in checking:
            self.emit("done", "all checks passed", phase=selected.path)
        self._preflight_done = True

    # -- plan -----------------------------------------------------------------------------------

    def _phase_ops(self, host: HostTarget) -> list[tuple[SelectedPhase, list[Operation]]]:
        return [(p, self.operations(p, host)) for p in self.phases if p.phase.operations]

    def plan(self) -> Plan:
        """Predict every operation on every reachable host (no writes)."""
        self.prepare()
        plan = Plan(
            cluster=self.ctx.inventory.cluster,
            phase_set=self.ctx.phase_set,
            phases=[p.path for p in self.phases],
            hosts=[h.name for h in self.hosts],
            unreachable=sorted(self.unreachable),
        )
        failures: list[str] = []
        self._memo = FactMemo(
            memo_path(self.ctx.cache_dir, self.ctx.inventory.cluster),
            selection_key([p.path for p in self.phases]),
        )
        self.emit("stage", "plan", phase="plan", total=len(self.hosts))
        for host, result in self._map(self._plan_host, self.hosts, stage="plan"):
            if isinstance(result, BaseException):
                failures.append(f"{host.name}: {_message(result, host.name)}")
                continue
            ops, fingerprints = result
            plan.ops.extend(ops)
            plan.fingerprints[host.name] = fingerprints
        if failures:
            raise HostsFailed(
                failures, exit_code=ExitCode.APPLY, what="planning", hint="nothing was changed"
            )
        with contextlib.suppress(OSError):  # only a prediction: the next plan reads more
            self._memo.save()
        self._memo = None
        order = {p.path: i for i, p in enumerate(self.phases)}
        hosts = {h: i for i, h in enumerate(plan.hosts)}
        for selected in self.phases:
            if selected.phase.after is not None:
                predicted: list[str] = []
                selected.phase.after(self.ctx, predicted.append)
                plan.ops += [
                    PlannedOp(phase=selected.path, host=CLUSTER, op=f"after:{line}",
                              description=line, commands=[line])
                    for line in predicted
                ]  # fmt: skip
        plan.ops.sort(key=lambda o: (order[o.phase], hosts.get(o.host, len(hosts))))
        return plan

    def _plan_host(self, host: HostTarget) -> tuple[list[PlannedOp], dict[str, str]]:
        # one round trip for the whole plan: a phase that declares no facts builds its
        # operations without any, so their facts join the declared ones (cached after
        # preflight) in one batch, and the facts of operations built *from* facts ride along
        # as predicted by the last plan (the memo); only a wrong prediction costs a second trip
        early = [
            fact
            for p in self.phases
            if p.phase.operations is not None and p.phase.facts is None
            for op in self.operations(p, host)
            for fact in op.facts()
        ]
        declared = [*self._phase_facts(host, checks=False), *early]
        memo = self._memo
        predicted = memo.predicted(host.name) if memo is not None else []
        self.host_facts(host.name, declared, speculative=predicted)
        by_phase = self._phase_ops(host)
        wanted = [f for _, ops in by_phase for op in ops for f in op.facts()]
        facts = self.host_facts(host.name, wanted)
        if memo is not None:
            known = set(declared)
            memo.record(host.name, [f for f in wanted if f not in known])
        run = HostRun()
        planned: list[PlannedOp] = []
        for selected, ops in by_phase:
            for op in ops:
                outcome = evaluate(op, OpContext(host.name, facts, run))
                planned.append(self._planned(selected.path, host, outcome, facts))
        return planned, facts.digests(wanted)

    def _planned(self, phase: str, host: HostTarget, outcome: Outcome, facts: FactSet) -> PlannedOp:
        op = outcome.op
        diffs = [
            d
            for c in outcome.commands
            if isinstance(c, Upload) and (d := self._diff(host.name, c, facts))
        ]
        return PlannedOp(
            phase=phase,
            host=host.name,
            op=op.id,
            description=op.describe(),
            commands=[c.describe() for c in outcome.commands],
            digests=[c.digest() for c in outcome.commands],
            noop=outcome.noop_reason,
            diff="\n".join(diffs) or None,
        )

    def _diff(self, host: HostName, upload: Upload, facts: FactSet) -> str | None:
        fact = PathInfo((upload.path,))
        state = facts.get(fact).get(upload.path) if fact in facts else None
        return upload_diff(self.connectors[host], upload, state)

    def report_plan(self, plan: Plan) -> None:
        for op in plan.ops:
            if op.changed:
                self.emit(
                    "change", op.description, phase=op.phase, host=op.host,
                    commands=op.commands, diff=op.diff, op=op.op,
                )  # fmt: skip
            else:
                self.emit("noop", f"{op.description}: {op.noop}", phase=op.phase, host=op.host)
        changed_hosts = len({op.host for op in plan.changes})
        self.emit(
            "summary",
            f"plan: {len(plan.changes)} change(s) on {changed_hosts} host(s), "
            f"{len(plan.ops) - len(plan.changes)} operation(s) already in place",
            changes=len(plan.changes),
            of="plan",
        )

    # -- apply ----------------------------------------------------------------------------------

    def check_drift(self, plan: Plan) -> None:
        """Refuse a saved plan when any host's facts changed since it was made."""
        problems: list[str] = []

        def fresh(host: HostTarget) -> dict[str, str]:
            wanted = [f for _, ops in self._phase_ops(host) for op in ops for f in op.facts()]
            return gather(self.connectors[host.name], wanted).digests(wanted)

        missing = sorted(set(plan.hosts) - {h.name for h in self.hosts})
        problems += [f"{name}: in the plan but not reachable now" for name in missing]
        for host, result in self._map(fresh, [h for h in self.hosts if h.name in plan.hosts]):
            if isinstance(result, BaseException):
                problems.append(f"{host.name}: {_message(result, host.name)}")
                continue
            before = plan.fingerprints.get(host.name, {})
            changed = sorted(
                k for k in before.keys() | result.keys() if before.get(k) != result.get(k)
            )
            if changed:
                problems.append(f"{host.name}: drifted since the plan: {', '.join(changed)}")
        if problems:
            raise PlanDriftError(problems)

    def apply(self, plan: Plan | None = None) -> ApplySummary:
        """Apply every phase; with a saved ``plan``, refuse anything it did not show."""
        self.ctx.dry_run = False
        self.prepare()
        if plan is not None:
            self.check_drift(plan)
        summary = ApplySummary(hosts=len(self.hosts))
        self.emit(
            "run", "apply",
            phases=[p.path for p in self.phases if p.phase.operations or p.phase.after],
            after=[p.path for p in self.phases if p.phase.after],
            hosts=[h.name for h in self.hosts],
        )  # fmt: skip
        for selected in self.phases:
            if selected.phase.operations is None:
                if selected.phase.after is not None:
                    self.emit("phase", selected.phase.summary, phase=selected.path, total=0)
                    summary.changed += self._after(selected)
                continue
            failures: list[str] = []
            targets = [h for h in self.hosts if self.operations(selected, h)]
            self.emit("phase", selected.phase.summary, phase=selected.path, total=len(targets))
            apply_one = functools.partial(self._apply_host, selected, plan=plan)
            for host, result in self._map(apply_one, targets, stage=selected.path):
                if isinstance(result, BaseException):
                    message = _message(result, host.name)
                    failures.append(f"[{selected.path}] {host.name}: {message}")
                    hint = result.hint if isinstance(result, ProvisionerError) else None
                    self.emit(
                        "error", message, phase=selected.path, host=host.name,
                        op=self._failed_op.pop(host.name, None), hint=hint,
                    )  # fmt: skip
                else:
                    summary.changed += result[0]
                    summary.unchanged += result[1]
            if failures:
                raise HostsFailed(
                    failures,
                    exit_code=ExitCode.APPLY,
                    what=f"phase {selected.path}",
                    hint="fix the cause and apply again: finished operations are not repeated",
                )
            if selected.phase.after is not None:
                summary.changed += self._after(selected)
        self.emit(
            "summary",
            f"apply: {summary.changed} change(s), {summary.unchanged} operation(s) already in "
            f"place on {summary.hosts} host(s)",
            changes=summary.changed,
            of="apply",
        )
        return summary

    def _after(self, selected: SelectedPhase) -> int:
        """Run a phase's operator-side ``after`` step, reporting each change it makes."""
        assert selected.phase.after is not None

        def report(line: str) -> None:
            self.emit("done", line, phase=selected.path, host=CLUSTER)

        self.emit("start", selected.path, phase=selected.path, host=CLUSTER)
        began, ok = time.monotonic(), False
        try:
            changed = selected.phase.after(self.ctx, report)
            ok = True
        finally:
            self.emit(
                "end", selected.path, phase=selected.path, host=CLUSTER, ok=ok,
                seconds=round(time.monotonic() - began, 3),
            )  # fmt: skip
        return changed

    def _apply_host(
        self, selected: SelectedPhase, host: HostTarget, *, plan: Plan | None
    ) -> tuple[int, int]:
        try:
            changed, unchanged = self._apply_ops(selected, host, plan=plan)
        except Exception:
            self._failed_op[host.name] = self._doing.get(host.name)  # for the error event
            raise
        finally:
            self._doing.pop(host.name, None)  # the watchdog names only what runs now
        self.emit("progress", "finished", phase=selected.path, host=host.name)
        return changed, unchanged

    def _apply_ops(
        self, selected: SelectedPhase, host: HostTarget, *, plan: Plan | None
    ) -> tuple[int, int]:
        connector = self.connectors[host.name]
        run = self._runs.setdefault(host.name, HostRun())
        changed = unchanged = 0
        for op in self.operations(selected, host):
            self._doing[host.name] = op.describe()
            self.emit("running", op.describe(), phase=selected.path, host=host.name)
            try:
                facts = gather(connector, op.facts())
                outcome = evaluate(op, OpContext(host.name, facts, run))
                if plan is not None:
                    _check_against_plan(plan, selected.path, host.name, outcome)
                if not outcome.changed:
                    unchanged += 1
                    self.emit(
                        "noop", f"{op.describe()}: {outcome.noop_reason}",
                        phase=selected.path, host=host.name,
                    )  # fmt: skip
                    continue
                for command in outcome.commands:
                    _execute(connector, command)
            except ConnectError as error:
                # the host was lost mid-operation: say which operation it was in
                lost = error.message.removeprefix(f"{host.name}: ")
                raise ConnectError(
                    f"{host.name}: {op.describe()}: {lost}", hint=error.hint
                ) from None
            changed += 1
            self.emit(
                "done", op.describe(), phase=selected.path, host=host.name,
                commands=[c.describe() for c in outcome.commands], op=op.id,
            )  # fmt: skip
        return changed, unchanged


def _check_against_plan(plan: Plan, phase: str, host: str, outcome: Outcome) -> None:
    planned = plan.find(phase, host, outcome.op.id)
    digests = [c.digest() for c in outcome.commands]
    if planned is None:
        if digests:
            raise OperationError(
                f"{outcome.op.describe()} is not in the plan; plan again",
            )
        return
    if planned.digests != digests:
        shown = "; ".join(planned.commands) or "nothing"
        now = "; ".join(c.describe() for c in outcome.commands) or "nothing"
        raise OperationError(
            f"{outcome.op.describe()}: the plan showed [{shown}] but the host now needs [{now}]",
            hint="the host changed during the apply; run `berth plan` again",
        )


def apply_operation(connector: Connector, op: Operation, run: HostRun | None = None) -> Outcome:
    """Apply one operation outside a phase run exactly as a phase run would: gather its facts
    on the host, :func:`~provisioner.operations.base.evaluate` it, execute what it yields
    (uploads with their mode, owner and group). For tools that act on one host at a time
    (``berth upgrade`` installing a bundle) instead of faking facts and running commands by
    hand."""
    facts = gather(connector, op.facts())
    outcome = evaluate(op, OpContext(connector.host, facts, run if run is not None else HostRun()))
    for command in outcome.commands:
        _execute(connector, command)
    return outcome


def _execute(connector: Connector, command: Command) -> None:
    if isinstance(command, Upload):
        connector.put(
            command.content, command.path, mode=command.mode, owner=command.owner,
            group=command.group,
        )  # fmt: skip
        return
    assert isinstance(command, Shell)
    connector.run(command).check(connector.host, command.render())


def _message(error: BaseException, host: str | None = None) -> str:
    """One line for ``error``, without a leading ``host:`` the caller prefixes anyway."""
    if isinstance(error, ProvisionerError):
        text = "; ".join(error.lines())
    else:
        text = f"{type(error).__name__}: {error}"
    if host and text.startswith(f"{host}: "):
        text = text[len(host) + 2 :]
    return text
