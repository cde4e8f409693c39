"""`berth snapshot save|restore -i SPEC`: snapshots of the cluster datastore (etcd or SQLite).

See :mod:`provisioner.snapshot` for what happens on the hosts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from provisioner import snapshot as snapshots
from provisioner.cli.locking import WaitLockOption, cluster_locked
from provisioner.errors import ProvisionerError
from provisioner.spec import load_spec
from provisioner.state import ClusterState

SpecOption = Annotated[
    Path, typer.Option("--inventory", "-i", help="cluster spec (YAML)", show_default=False)
]
StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="base directory of cluster states [default: $BERTH_STATE_DIR or ~/.local/state/berth]",
    ),
]


def save(
    inventory: SpecOption,
    state_dir: StateDirOption = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="file to write [default: <state>/snapshots/...]"),
    ] = None,
) -> None:
    """Take a consistent snapshot of the datastore and copy it here (0600: it holds Secrets)."""
    spec = load_spec(inventory, ssh_files=True)
    state = ClusterState.open(spec.name, state_dir=state_dir)
    taken = snapshots.save(spec, state, output=output)
    revision = f", revision {taken.revision}" if taken.revision is not None else ""
    typer.echo(
        f"{taken.path}: {taken.kind} snapshot from {taken.host}, {taken.size} bytes{revision}, "
        f"sha256 {taken.sha256}"
    )


def restore(
    inventory: SpecOption,
    snapshot: Annotated[Path, typer.Argument(help="a file written by `berth snapshot save`")],
    state_dir: StateDirOption = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="confirm: the datastore is replaced by the snapshot")
    ] = False,
    wait_lock: WaitLockOption = None,
) -> None:
    """Replace the datastore with a snapshot (API servers and etcd members restart)."""
    if not yes:
        raise ProvisionerError(
            "restore replaces the cluster's datastore: every change since the snapshot is lost",
            hint=f"run again with --yes to restore {snapshot}",
        )
    spec = load_spec(inventory, ssh_files=True)
    state = ClusterState.open(spec.name, state_dir=state_dir)
    with cluster_locked(state, wait_lock=wait_lock, spec=inventory):
        snapshots.restore(spec, state, snapshot, report=typer.echo)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the top-level app."""
    area = typer.Typer(help="Save and restore the cluster datastore.", no_args_is_help=True)
    area.command()(save)
    area.command()(restore)
    app.add_typer(area, name="snapshot")
