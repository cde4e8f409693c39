"""`berth upgrade` and `berth rollback`: move a running cluster to another berth release in
place, one node at a time, and back (see :mod:`provisioner.upgrade`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

import berth
from provisioner.artifacts.berth_bundle import (
    Bundle,
    build_bundle,
    bundle_id,
    bundle_path,
    pinned_requirements,
)
from provisioner.cli.locking import WaitLockOption, cluster_locked
from provisioner.errors import SpecError
from provisioner.output.record import RunRecord
from provisioner.output.timeline import write_timeline
from provisioner.spec import ClusterSpec, load_spec
from provisioner.state import ClusterState, cache_dir
from provisioner.upgrade.cluster import SshClusterOps
from provisioner.upgrade.journal import Journal
from provisioner.upgrade.planner import PlannedHost
from provisioner.upgrade.runner import Upgrader
from provisioner.upgrade.seam import ClusterOps
from provisioner.upgrade.timing import TimedOps
from provisioner.upgrade.version import Release

SpecOption = Annotated[
    Path, typer.Option("--inventory", "-i", help="cluster spec (YAML)", show_default=False)
]
StateOption = Annotated[
    Path | None, typer.Option("--state-dir", help="base directory of cluster state")
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]
GateOption = Annotated[
    float, typer.Option("--gate-timeout", help="seconds a node has to pass its health gate")
]


def _check_to(spec: ClusterSpec, inventory: Path, to: str) -> None:
    """``--to`` must name this berth's own release, and the spec must not say otherwise."""
    try:
        Release.parse(to)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--to") from None
    if to != berth.__version__:
        # the operator ships itself (its bundle), as `berth apply` does
        raise SpecError(
            [f"--to {to}: this is berth {berth.__version__}, which can only install itself"],
            hint=f"run the upgrade with berth {to}",
        )
    if spec.spec.version is not None and spec.spec.version != to:
        raise SpecError(
            [
                f"{inventory}: spec.version: is {spec.spec.version}, but --to asks for {to}; a "
                "later `berth apply` with this spec would take the cluster back"
            ],
            hint=f"set spec.version: {to} in the spec, then run the upgrade",
        )


def _journal_release(state: ClusterState) -> str:
    """The release the interrupted upgrade goes to (``--resume`` without ``--to``)."""
    latest = Journal.latest(state.journal_dir)
    target = latest.replay().target if latest else ""
    if not target:
        raise typer.BadParameter("no interrupted upgrade to resume", param_hint="--resume")
    return target.rpartition("-")[0]


def _upgrader(spec: ClusterSpec, state: ClusterState, ops: ClusterOps) -> Upgrader:
    return Upgrader(
        ops,
        hosts=[PlannedHost(h.name, h.is_control_plane) for h in spec.hosts],
        journal_dir=state.journal_dir,
        snapshot_dir=state.root / "snapshots",
        max_unavailable=spec.spec.upgrade.max_unavailable,
        report=typer.echo,
    )


def upgrade(
    inventory: SpecOption,
    *,
    to: Annotated[
        str | None, typer.Option("--to", help="the berth release to upgrade to", show_default=False)
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue the interrupted upgrade from its journal")
    ] = False,
    allow_downgrade: Annotated[
        bool, typer.Option("--allow-downgrade", help="permit a lower release than hosts run")
    ] = False,
    plan: Annotated[
        bool, typer.Option("--plan", "--dry-run", help="show the upgrade plan; change nothing")
    ] = False,
    yes: YesOption = False,
    gate_timeout: GateOption = 120.0,
    state_dir: StateOption = None,
    wait_lock: WaitLockOption = None,
    timeline: Annotated[
        Path | None,
        typer.Option(
            "--timeline",
            help="draw the upgrade per host and step as an SVG timeline in this file",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Upgrade every host to release --to (this berth's build), control plane first, one
    node at a time, each gated on its health; a node that fails its gate is rolled back and the
    upgrade halts. A datastore snapshot is taken first and kept in the cluster state."""
    spec = load_spec(inventory, ssh_files=True)
    if to is None and not resume:
        raise typer.BadParameter("give the release to upgrade to", param_hint="--to")
    state = ClusterState.for_spec(spec, state_dir=state_dir)
    # a plan changes nothing: it runs beside an apply; an upgrade holds the cluster throughout
    with (
        contextlib.nullcontext()
        if plan
        else cluster_locked(state, wait_lock=wait_lock, spec=inventory)
    ):
        _upgrade(
            spec, state, inventory, to=to, resume=resume, allow_downgrade=allow_downgrade,
            plan=plan, yes=yes, gate_timeout=gate_timeout, timeline=timeline,
        )  # fmt: skip


def _upgrade(
    spec: ClusterSpec,
    state: ClusterState,
    inventory: Path,
    *,
    to: str | None,
    resume: bool,
    allow_downgrade: bool,
    plan: bool,
    yes: bool,
    gate_timeout: float,
    timeline: Path | None = None,
) -> None:
    version = to or _journal_release(state)
    _check_to(spec, inventory, version)
    cache = cache_dir()
    # the id is known without building: the skew check refuses before pip or any upload
    ident = bundle_id(version=version, pins=pinned_requirements())
    planned = Bundle(ident, bundle_path(cache, ident))
    with (
        SshClusterOps(
            spec, state, bundle=planned, cache_dir=cache, gate_timeout=gate_timeout
        ) as ops,
        _timeline(timeline, title=f"berth upgrade {inventory} --to {version}") as record,
    ):
        upgrader = _upgrader(spec, state, ops if record is None else TimedOps(ops, record))
        if plan:
            for line in upgrader.plan(allow_downgrade=allow_downgrade).lines():
                typer.echo(line)
            return
        if resume:
            ops.bundle = build_bundle(cache, version=version, ident=ident)
            upgrader.resume(target=planned.id)
            return
        preview = upgrader.plan(allow_downgrade=allow_downgrade)
        ops.bundle = build_bundle(cache, version=version, ident=ident)
        if preview.batches and not yes:
            for line in preview.lines():
                typer.echo(line)
            typer.confirm("Upgrade the hosts above?", abort=True)
        upgrader.upgrade(allow_downgrade=allow_downgrade)


@contextlib.contextmanager
def _timeline(path: Path | None, *, title: str) -> Iterator[RunRecord | None]:
    """With ``--timeline``, a record of the run's steps, drawn to ``path`` when it is over
    (also when it failed: where it stopped is worth seeing)."""
    if path is None:
        yield None
        return
    record = RunRecord()
    try:
        yield record
    finally:
        if record.spans():
            write_timeline(record, path, title=title)


def rollback(
    inventory: SpecOption,
    *,
    restore_snapshot: Annotated[
        bool,
        typer.Option(
            "--restore-snapshot",
            help="also put back the datastore snapshot taken before the upgrade (objects "
            "written since are lost)",
        ),
    ] = False,
    yes: YesOption = False,
    gate_timeout: GateOption = 120.0,
    state_dir: StateOption = None,
    wait_lock: WaitLockOption = None,
) -> None:
    """Return every host the last upgrade touched to the release it ran before, workers
    first, each gated on its health."""
    spec = load_spec(inventory, ssh_files=True)
    state = ClusterState.for_spec(spec, state_dir=state_dir)
    cache = cache_dir()
    # the target bundle is irrelevant to a rollback; name it by what the journal says
    placeholder = Bundle("0.0.0-000000000000", Path("/dev/null"))
    if not yes:
        what = " and the datastore snapshot" if restore_snapshot else ""
        typer.confirm(f"Return every upgraded host to its previous release{what}?", abort=True)
    with (
        cluster_locked(state, wait_lock=wait_lock, spec=inventory),
        SshClusterOps(
            spec, state, bundle=placeholder, cache_dir=cache, gate_timeout=gate_timeout
        ) as ops,
    ):
        _upgrader(spec, state, ops).rollback(restore_snapshot=restore_snapshot)


def register(app: typer.Typer) -> None:
    """Add `upgrade` and `rollback`."""
    app.command()(upgrade)
    app.command()(rollback)
