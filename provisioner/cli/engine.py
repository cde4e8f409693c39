"""`berth preflight`, `berth plan` and `berth apply`: the engine from the command line.

``plan`` connects, runs preflight, and prints per host and phase each change (with a unified diff
for files) or why nothing is needed; ``-o FILE`` saves it. ``apply FILE`` applies a saved plan
exactly and refuses if a host drifted since. ``apply -i SPEC`` plans, shows, asks (``--yes``
skips), then applies, re-reading facts before every operation.

``apply`` shows a live progress display and a summary table by default (plain lines without a
terminal); ``-v`` prints each operation, ``-vv`` also its commands, diffs and the operations
already in place; ``--timeline FILE.svg`` draws where the time went.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from provisioner.cli.locking import WaitLockOption, cluster_locked
from provisioner.cli.persist import NoPersistOption, PersistOption, connect_fn
from provisioner.engine.plan import Plan, PlanDriftError
from provisioner.engine.runner import ConnectFn, Engine, RunContext, ssh_connect
from provisioner.errors import ProvisionerError, SpecError
from provisioner.output.record import RunRecord
from provisioner.phases.sets import PHASE_SETS
from provisioner.reporting import (
    COMMANDS,
    NOOPS,
    OPS,
    ConsoleReporter,
    Event,
    JsonReporter,
    Reporter,
    TeeReporter,
)
from provisioner.spec import load_spec
from provisioner.spec.model import ClusterSpec
from provisioner.state import ClusterState, cache_dir
from provisioner.workflow import select
from provisioner.workflow.inventory import inventory_from_spec

if TYPE_CHECKING:
    from provisioner.connectors.base import HostTarget
    from provisioner.destroy import DestroyResult

SpecOption = Annotated[
    Path, typer.Option("--inventory", "-i", help="cluster spec (YAML)", show_default=False)
]
OnlyOption = Annotated[list[str], typer.Option("--only", help="run only this phase (repeatable)")]
SkipOption = Annotated[list[str], typer.Option("--skip", help="skip this phase (repeatable)")]
SetOption = Annotated[str, typer.Option("--phases", help=f"phase set: {', '.join(PHASE_SETS)}")]
OutputOption = Annotated[str, typer.Option("--output", help="text or json (one event per line)")]
UnreachableOption = Annotated[
    bool, typer.Option("--allow-unreachable", help="skip unreachable hosts instead of aborting")
]
StateOption = Annotated[
    Path | None, typer.Option("--state-dir", help="base directory of cluster state")
]
ParallelOption = Annotated[int, typer.Option("--parallel", help="hosts handled at once")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="also show no-ops")]
VerbosityOption = Annotated[
    int,
    typer.Option(
        "--verbose", "-v", count=True,
        help="-v: print each operation; -vv: also its commands, diffs and the no-ops",
    ),
]  # fmt: skip
TimelineOption = Annotated[
    Path | None,
    typer.Option(
        "--timeline", help="draw the run per host and phase as an SVG timeline in this file",
        show_default=False,
    ),
]  # fmt: skip


def _reporter(output: str, verbose: bool) -> Reporter:
    if output not in ("text", "json"):
        raise typer.BadParameter("--output must be text or json")
    return (
        JsonReporter()
        if output == "json"
        else ConsoleReporter(verbosity=NOOPS if verbose else COMMANDS)
    )


def _apply_reporter(output: str, verbosity: int, record: RunRecord) -> Reporter:
    """``--output json``: the event stream; ``-v``/``-vv``: lines; else the progress display.
    Every event also goes to ``record`` (the ``--timeline``)."""
    if output not in ("text", "json"):
        raise typer.BadParameter("--output must be text or json")
    shown: Reporter
    if output == "json":
        shown = JsonReporter()
    elif verbosity > 0:
        shown = ConsoleReporter(verbosity=OPS if verbosity == 1 else NOOPS)
    else:
        # imported here: the display is drawn with rich, which a JSON stream never loads
        from provisioner.output.progress import ProgressReporter  # noqa: PLC0415

        return ProgressReporter(record=record)
    return TeeReporter(shown, record)


@contextlib.contextmanager
def _timeline(record: RunRecord, path: Path | None, *, title: str) -> Iterator[None]:
    """Write the timeline when the run is over, whether it succeeded or not."""
    try:
        yield
    finally:
        if path is not None and record.spans():
            # imported here: its XML escaping pulls in urllib.request, http.client and ssl
            from provisioner.output.timeline import write_timeline  # noqa: PLC0415

            write_timeline(record, path, title=title)


@contextlib.contextmanager
def _final_error_event(reporter: Reporter, output: str) -> Iterator[None]:
    """With ``--output json``, end the stream with a ``failed`` event carrying the error (the
    reporter in ``main`` still prints it to stderr and sets the exit code)."""
    try:
        yield
    except ProvisionerError as error:
        if output == "json":
            reporter.emit(
                Event("failed", message=error.message,
                      data={"lines": error.lines(), "exit_code": int(error.exit_code)})
            )  # fmt: skip
        raise


@contextlib.contextmanager
def _engine(
    spec_path: Path,
    *,
    phase_set: str,
    only: list[str],
    skip: list[str],
    reporter: Reporter,
    allow_unreachable: bool,
    state_dir: Path | None,
    parallel: int,
    lock: bool = False,
    wait_lock: str | None = None,
    connect: ConnectFn | None = None,
) -> Iterator[Engine]:
    """The engine for ``spec_path``; with ``lock``, the cluster lock is held from before the
    first host is contacted until the engine is closed (a second apply is refused, exit 9)."""
    spec = load_spec(spec_path, ssh_files=True)
    state = ClusterState.open(spec.name, state_dir=state_dir)
    holding = (
        cluster_locked(state, wait_lock=wait_lock, spec=spec_path)
        if lock
        else contextlib.nullcontext()
    )
    with holding, _build_engine(
        spec, state, phase_set=phase_set, only=only, skip=skip, reporter=reporter,
        allow_unreachable=allow_unreachable, state_dir=state_dir, parallel=parallel,
        connect=connect,
    ) as engine:  # fmt: skip
        yield engine


def _remove_hosts(cluster: str, targets: Sequence[HostTarget], cache_dir: Path) -> DestroyResult:
    # imported on use: the teardown machinery (footprints, clean checks) is heavy, and only a
    # phase that removes hosts from the cluster calls it
    from provisioner.destroy import remove_hosts  # noqa: PLC0415

    return remove_hosts(cluster, targets, cache_dir)


def _build_engine(
    spec: ClusterSpec,
    state: ClusterState,
    *,
    phase_set: str,
    only: list[str],
    skip: list[str],
    reporter: Reporter,
    allow_unreachable: bool,
    state_dir: Path | None,
    parallel: int,
    connect: ConnectFn | None = None,
) -> Engine:
    if phase_set not in PHASE_SETS:
        raise typer.BadParameter(f"unknown phase set {phase_set!r}; known: {', '.join(PHASE_SETS)}")
    try:
        phases = select(PHASE_SETS[phase_set](), only=only, skip=skip)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    ctx = RunContext(
        inventory=inventory_from_spec(spec, known_hosts=state.known_hosts),
        cache_dir=cache_dir(),
        spec=spec,
        phase_set=phase_set,
        state_dir=state_dir,
        remove_hosts=_remove_hosts,
    )
    return Engine(
        ctx, phases, reporter=reporter, parallel=parallel, allow_unreachable=allow_unreachable,
        connect=connect or ssh_connect,
    )  # fmt: skip


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def preflight(
    inventory: SpecOption,
    *,
    output: OutputOption = "text",
    state_dir: StateOption = None,
    parallel: ParallelOption = 16,
) -> None:
    """Check every host (reachability, OS, Python, systemd, ports, disk, clock skew, host-to-host
    reachability) without changing anything; report every problem at once (exit 4)."""
    reporter = _reporter(output, verbose=False)
    with _final_error_event(reporter, output), _engine(
        inventory, phase_set="cluster", only=["preflight"], skip=[], reporter=reporter,
        allow_unreachable=False, state_dir=state_dir, parallel=parallel,
    ) as engine:  # fmt: skip
        engine.connect_all(tolerate=True)
        engine.preflight()


def plan(
    inventory: SpecOption,
    *,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="save the plan here")] = None,
    phases: SetOption = "cluster",
    only: OnlyOption = [],  # noqa: B006 - typer reads list defaults, never mutates them
    skip: SkipOption = [],  # noqa: B006
    output: OutputOption = "text",
    allow_unreachable: UnreachableOption = False,
    state_dir: StateOption = None,
    parallel: ParallelOption = 16,
    verbose: VerboseOption = False,
    persist: PersistOption = None,
    no_persist: NoPersistOption = False,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="show the upgrade plan to this berth release instead (order, batches, checks)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Show what `apply` would change on every host, per phase (no changes are made); with
    `--to VERSION`, the rolling upgrade plan instead."""
    if to is not None:
        # one planner for upgrades: the same one `berth upgrade --plan` prints (imported here:
        # the upgrade machinery is heavy and `plan`/`apply` need it only for this)
        from provisioner.cli import upgrade  # noqa: PLC0415

        upgrade.upgrade(inventory, to=to, plan=True, state_dir=state_dir)
        return
    reporter = _reporter(output, verbose)
    connect = connect_fn(persist, no_persist)
    with _final_error_event(reporter, output), _engine(
        inventory, phase_set=phases, only=only, skip=skip, reporter=reporter,
        allow_unreachable=allow_unreachable, state_dir=state_dir, parallel=parallel,
        connect=connect,
    ) as engine:  # fmt: skip
        engine.connect_all(tolerate=True)
        engine.preflight()
        result = engine.plan()
        result.spec_path = str(inventory.resolve())
        result.spec_digest = _digest(inventory)
        result.only, result.skip = list(only), list(skip)
        engine.report_plan(result)
        if out is not None:
            result.save(out)
            engine.emit("summary", f"plan saved to {out}; apply it with: berth apply {out}")


def apply(
    plan_file: Annotated[
        Path | None, typer.Argument(help="a plan saved by `berth plan -o`")
    ] = None,
    *,
    inventory: Annotated[
        Path | None, typer.Option("--inventory", "-i", help="cluster spec (YAML)")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    phases: SetOption = "cluster",
    only: OnlyOption = [],  # noqa: B006
    skip: SkipOption = [],  # noqa: B006
    output: OutputOption = "text",
    allow_unreachable: UnreachableOption = False,
    state_dir: StateOption = None,
    parallel: ParallelOption = 16,
    verbose: VerbosityOption = 0,
    timeline: TimelineOption = None,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="skip the final `verify` phase (= --skip verify)")
    ] = False,
    wait_lock: WaitLockOption = None,
    persist: PersistOption = None,
    no_persist: NoPersistOption = False,
) -> None:
    """Apply a saved plan exactly (`berth apply PLAN`), or plan, show, confirm and apply
    (`berth apply -i SPEC`). Preflight runs whenever something is to change."""
    record = RunRecord()
    reporter = _apply_reporter(output, verbose, record)
    connect = connect_fn(persist, no_persist)
    if no_verify and phases == "cluster":
        skip = [*skip, "verify"]
    title = f"berth apply {inventory or plan_file}"
    with _timeline(record, timeline, title=title), _final_error_event(reporter, output):
        if plan_file is not None:
            saved = Plan.load(plan_file)
            spec_path = inventory or Path(saved.spec_path or "")
            if not saved.spec_path or not spec_path.exists():
                raise SpecError([f"{plan_file}: the plan's spec {saved.spec_path} is missing"])
            if _digest(spec_path) != saved.spec_digest:
                raise PlanDriftError([f"{spec_path}: the spec changed since the plan was made"])
            with _engine(
                spec_path, phase_set=saved.phase_set, only=saved.only, skip=saved.skip,
                reporter=reporter, allow_unreachable=allow_unreachable, state_dir=state_dir,
                parallel=parallel, lock=True, wait_lock=wait_lock, connect=connect,
            ) as engine:  # fmt: skip
                engine.connect_all()
                engine.apply(saved)
            return
        if inventory is None:
            raise typer.BadParameter("give a saved PLAN or --inventory/-i SPEC")
        with _engine(
            inventory, phase_set=phases, only=only, skip=skip, reporter=reporter,
            allow_unreachable=allow_unreachable, state_dir=state_dir, parallel=parallel,
            lock=True, wait_lock=wait_lock, connect=connect,
        ) as engine:  # fmt: skip
            engine.connect_all(tolerate=True)
            if engine.unreachable:
                engine.preflight()  # reports the unreachable hosts with every other problem
            predicted = engine.plan()
            if not predicted.has_changes:
                engine.report_plan(predicted)
                return
            # something will change: every host must pass preflight first
            engine.preflight()
            engine.report_plan(predicted)
            if not yes:
                if output == "json":
                    raise typer.BadParameter("--output json needs --yes (no prompt in a stream)")
                if verbose == 0:  # the progress display (it shows the plan in brief)
                    typer.echo(f"each change and its diff: berth plan -i {inventory}")
                typer.confirm("Apply the changes above?", abort=True)
            engine.apply()


def register(app: typer.Typer) -> None:
    """Add `preflight`, `plan` and `apply` to the top-level app."""
    app.command()(preflight)
    app.command()(plan)
    app.command()(apply)
