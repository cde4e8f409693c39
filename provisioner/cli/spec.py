"""`berth validate`, `berth schema` and `berth inventory ...`: the spec, before any SSH."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from provisioner.errors import ProvisionerError, SpecError
from provisioner.inventory_sources import from_terraform, from_vagrant
from provisioner.spec import ClusterSpec, dump_spec, json_schema, load_spec, parse_spec

SpecOption = Annotated[
    Path, typer.Option("--inventory", "-i", help="cluster spec (YAML)", show_default=False)
]
OutputOption = Annotated[
    Path | None, typer.Option("--output", "-o", help="write here instead of stdout")
]


def validate(
    inventory: SpecOption,
    *,
    no_ssh_files: Annotated[
        bool,
        typer.Option(
            "--no-ssh-files",
            help="do not check the SSH identity and known_hosts files (validating on a machine "
            "that does not apply the spec, e.g. in CI); missing ones become notes",
        ),
    ] = False,
) -> None:
    """Check a cluster spec and report every problem at once (exit 3 when there are any),
    the SSH key files it names included."""
    spec = load_spec(inventory, ssh_files=not no_ssh_files)
    typer.echo(f"{inventory}: valid: {summary(spec)}")
    for note in notes(spec):
        typer.echo(f"note: {note}", err=True)


def notes(spec: ClusterSpec) -> list[str]:
    """Things worth a look that are not errors: files the spec names that do not exist (yet:
    with --no-ssh-files, or a known_hosts file that accept-new will create), and an HA control
    plane that clients reach through one of its hosts only."""
    missing: dict[tuple[str, Path], list[str]] = {}
    for host in spec.hosts:
        ssh = spec.ssh_for(host.name)
        for what, path in (
            ("identityFile", ssh.identity_file),
            ("knownHostsFile", ssh.known_hosts_file),
        ):
            if path is not None and not path.exists():
                missing.setdefault((what, path), []).append(host.name)
    out = [
        f"{what} {path} does not exist (used by {', '.join(hosts)})"
        for (what, path), hosts in missing.items()
    ]
    control_planes = spec.control_plane_hosts
    api = spec.spec.api_server
    if len(control_planes) > 1 and api.endpoint is None and api.vip is None:
        first = control_planes[0]
        out.append(
            f"apiServer.endpoint is not set: clients reach the {len(control_planes)} API servers "
            f"through {first.name} ({first.address}) only; set apiServer.vip (a free address "
            "of the hosts' subnet) or apiServer.endpoint (a load balancer) to survive its loss"
        )
    return out


def summary(spec: ClusterSpec) -> str:
    """One line describing a valid spec."""
    control_planes = len(spec.control_plane_hosts)
    workers = len(spec.workers)
    return (
        f"cluster {spec.name}: {len(spec.hosts)} host(s), {control_planes} control-plane, "
        f"{workers} worker(s), datastore {spec.spec.datastore.type}, API {spec.api_server_url}"
    )


def schema(output: OutputOption = None) -> None:
    """Print the JSON Schema of the cluster spec (for editor completion and checks)."""
    text = json.dumps(json_schema(), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"wrote {output}", err=True)


def _emit(document: dict[str, Any], output: Path | None, header: str) -> None:
    """Write a generated spec and validate it where it was written (so errors point into it)."""
    text = dump_spec(document, header=header)
    if output is None:
        parse_spec(text, filename="<generated spec>")
        typer.echo(text, nl=False)
        return
    output.write_text(text)
    try:
        spec = load_spec(output)
    except SpecError as error:
        error.hint = f"{output} was written; edit it to fix the lines above"
        raise
    typer.echo(f"wrote {output}: {summary(spec)}", err=True)


def _addresses(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, address = pair.partition("=")
        if not sep or not name or not address:
            raise typer.BadParameter(f"{pair!r}: expected NAME=IP", param_hint="--address")
        out[name] = address
    return out


def inventory_from_vagrant(
    *,
    ssh_config: Annotated[
        Path | None,
        typer.Option(help="saved `vagrant ssh-config` output; runs vagrant when omitted"),
    ] = None,
    name: Annotated[str, typer.Option(help="cluster name (metadata.name)")] = "vagrant",
    control_plane: Annotated[
        list[str] | None,
        typer.Option("--control-plane", help="machine with the control-plane role (repeatable)"),
    ] = None,
    address: Annotated[
        list[str] | None,
        typer.Option(help="NAME=IP node address, e.g. for VirtualBox port forwards (repeatable)"),
    ] = None,
    user: Annotated[str, typer.Option(help="SSH user berth logs in as")] = "root",
    output: OutputOption = None,
) -> None:
    """Write a cluster spec for the machines of a Vagrant project."""
    if ssh_config is not None:
        text, filename = ssh_config.read_text(), str(ssh_config)
    else:
        text, filename = _run_vagrant_ssh_config(), "vagrant ssh-config"
    document = from_vagrant(
        text,
        name=name,
        filename=filename,
        control_planes=control_plane or (),
        addresses=_addresses(address or []),
        user=user,
    )
    _emit(document, output, f"generated by `berth inventory from-vagrant` from {filename}")


def _run_vagrant_ssh_config() -> str:
    if shutil.which("vagrant") is None:
        raise ProvisionerError(
            "vagrant is not installed", hint="pass saved output with --ssh-config FILE"
        )
    result = subprocess.run(
        ["vagrant", "ssh-config"], capture_output=True, text=True, check=False, timeout=120
    )
    if result.returncode != 0:
        raise ProvisionerError(
            f"`vagrant ssh-config` failed (exit {result.returncode}): {result.stderr.strip()}",
            hint="run it in the directory of the Vagrantfile, after `vagrant up`",
        )
    return result.stdout


def inventory_from_terraform(
    *,
    source: Annotated[
        Path, typer.Argument(help="`terraform output -json` saved to a file, or - for stdin")
    ],
    name: Annotated[str, typer.Option(help="cluster name (metadata.name)")] = "terraform",
    output_name: Annotated[
        str, typer.Option("--output-name", help="Terraform output holding the host list")
    ] = "berth_hosts",
    control_plane: Annotated[
        list[str] | None,
        typer.Option("--control-plane", help="host with the control-plane role (repeatable)"),
    ] = None,
    identity_file: Annotated[
        str | None, typer.Option(help="SSH private key for every host")
    ] = None,
    host_key_policy: Annotated[
        str, typer.Option(help="strict (pinned keys only) or accept-new (pin on first contact)")
    ] = "strict",
    output: OutputOption = None,
) -> None:
    """Write a cluster spec from `terraform output -json` (see inventories/README.md)."""
    text = sys.stdin.read() if str(source) == "-" else source.read_text()
    filename = "<stdin>" if str(source) == "-" else str(source)
    document = from_terraform(
        text,
        name=name,
        filename=filename,
        output=output_name,
        control_planes=control_plane or (),
        identity_file=identity_file,
        host_key_policy=host_key_policy,
    )
    _emit(document, output, f"generated by `berth inventory from-terraform` from {filename}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the top-level app."""
    app.command()(validate)
    app.command()(schema)
    inventory = typer.Typer(
        help="Generate a cluster spec from an existing inventory.", no_args_is_help=True
    )
    inventory.command("from-vagrant")(inventory_from_vagrant)
    inventory.command("from-terraform")(inventory_from_terraform)
    app.add_typer(inventory, name="inventory")
