"""``berth images load FILE -i SPEC``: ship an OCI image archive to every node over SSH."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from provisioner.cli.locking import WaitLockOption, cluster_locked
from provisioner.images import ImageArchiveError, choose_reference, load_image, read_archive
from provisioner.spec import load_spec
from provisioner.state import ClusterState
from provisioner.workflow.inventory import inventory_from_spec

_out = Console(highlight=False, soft_wrap=True)  # one line per host, never folded

images_app = typer.Typer(help="Images on the nodes (air-gapped clusters).", no_args_is_help=True)


@images_app.command("load")
def load(
    archive: Annotated[Path, typer.Argument(help="OCI archive (skopeo copy ... oci-archive:F)")],
    inventory: Annotated[
        Path, typer.Option("--inventory", "-i", help="cluster spec (YAML)", show_default=False)
    ],
    *,
    reference: Annotated[
        str | None, typer.Option("--as", help="the name pods use (default: the archive's)")
    ] = None,
    hosts: Annotated[
        list[str] | None, typer.Option("--host", help="only these hosts (repeatable)")
    ] = None,
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", help="base directory of cluster state")
    ] = None,
    wait_lock: WaitLockOption = None,
) -> None:
    """Import the image into every node's store, verified by digest; pods then use it with
    imagePullPolicy IfNotPresent or Never and no node contacts a registry."""
    spec = load_spec(inventory, ssh_files=True)
    state = ClusterState.for_spec(spec, state_dir=state_dir)
    image = read_archive(archive)
    name, ref_name = choose_reference(image, reference)
    targets = list(inventory_from_spec(spec, known_hosts=state.known_hosts).hosts)
    if hosts:
        unknown = sorted(set(hosts) - {str(t.name) for t in targets})
        if unknown:
            raise ImageArchiveError(f"{inventory}: no host named {', '.join(unknown)} in the spec")
        targets = [t for t in targets if str(t.name) in hosts]
    with cluster_locked(state, wait_lock=wait_lock, spec=inventory):
        for loaded in load_image(image, targets, reference=name, ref_name=ref_name):
            _out.print(f"{loaded.host}: {name} loaded ({loaded.image_id})", markup=False)


def register(app: typer.Typer) -> None:
    """Add `images load`."""
    app.add_typer(images_app, name="images")
