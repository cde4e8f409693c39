"""`berth verify`, `berth destroy`, `berth kubeconfig`, `berth status`: a cluster's lifecycle
after (and around) `berth apply`. Importing this module also adds the cluster install phases to
the ``cluster`` phase set that `berth plan/apply` run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import provisioner.phases.cluster  # noqa: F401 - registers the cluster phases
from provisioner.errors import StateError
from provisioner.phases.cluster.admin import write_admin_kubeconfig
from provisioner.spec import load_spec
from provisioner.state import ClusterState

SpecOption = Annotated[
    Path, typer.Option("--inventory", "-i", help="cluster spec (YAML)", show_default=False)
]
StateOption = Annotated[
    Path | None, typer.Option("--state-dir", help="base directory of cluster state")
]


def kubeconfig(inventory: SpecOption, *, state_dir: StateOption = None) -> None:
    """Rewrite the admin kubeconfig from the cluster state and print its path."""
    spec = load_spec(inventory)
    state = ClusterState.for_spec(spec, state_dir=state_dir)
    path = write_admin_kubeconfig(spec, state)
    if path is None:
        raise StateError(
            f"cluster {spec.name} has no PKI in {state.root}", hint="run `berth apply` first"
        )
    typer.echo(str(path))
    typer.echo(f"kubectl --kubeconfig {path} get nodes")


def register(app: typer.Typer) -> None:
    """Add `verify`, `destroy`, `kubeconfig` and `status`."""
    app.command()(kubeconfig)
