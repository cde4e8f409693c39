"""`berth lab`: boot, inspect, fault and tear down a local multi-host lab (systemd-nspawn
containers, or QEMU VMs with ``--vm``)."""

from __future__ import annotations

import os
import time
from typing import Annotated

import typer

from provisioner.errors import LabError
from provisioner.lab import Lab, ensure_rootfs, list_labs
from provisioner.lab.rootfs import default_recipe, parse_releases
from provisioner.lab.system import ip_forward_enabled
from provisioner.lab.vagrantbox import ensure_box
from provisioner.lab.vmimage import ensure_base_image
from provisioner.lab.vmlab import VmLab, open_lab

lab_app = typer.Typer(
    help="A local multi-host lab: systemd-nspawn hosts (or QEMU VMs) on a private bridge, "
    "faults on demand.",
    no_args_is_help=True,
)

NameOption = Annotated[
    str,
    typer.Option("--name", "-n", envvar="BERTH_LAB_NAME", help="Lab name (DNS-1123 label)."),
]
HostArgument = Annotated[str, typer.Argument(help="Host name inside the lab: n1, n2, ...")]


def register(app: typer.Typer) -> None:
    """Add ``berth lab ...`` to the top-level app."""
    app.add_typer(lab_app, name="lab")


@lab_app.command()
def up(  # noqa: PLR0917 (typer: every option is a parameter)
    count: Annotated[int, typer.Argument(help="Number of hosts.")] = 3,
    name: NameOption = "demo",
    subnet: Annotated[
        str | None, typer.Option(help="Private IPv4 range (default: a free /24 of 10.231/16).")
    ] = None,
    replace: Annotated[bool, typer.Option(help="Tear down an existing lab of that name.")] = False,
    hybrid_cgroups: Annotated[
        bool, typer.Option(help="Boot hosts on cgroup v1 (lets runc inside enforce limits).")
    ] = False,
    release: Annotated[
        str | None,
        typer.Option(
            help="Debian release of the hosts: one for all (trixie), or counts in host order"
            " (bookworm:2,trixie:1). Default: bookworm."
        ),
    ] = None,
    vm: Annotated[
        bool,
        typer.Option(
            "--vm",
            help="QEMU VMs (own kernel; KVM if a probe shows it works, else TCG) instead of"
            " containers. Debian 12 only.",
        ),
    ] = False,
) -> None:
    """Boot COUNT hosts n1..nCOUNT and write the lab's cluster spec."""
    lab = VmLab(name) if vm else Lab(name)
    started = time.monotonic()
    lab.up(
        count,
        subnet_cidr=subnet,
        replace=replace,
        unified_cgroups=not hybrid_cgroups,
        releases=parse_releases(release, count),
    )
    typer.echo(
        f"lab {lab.name}: {count} host(s) up in {time.monotonic() - started:.1f}s "
        f"(boot to sshd {lab.boot_seconds or 0:.2f}s)"
    )
    _print_status(lab)


@lab_app.command()
def down(name: NameOption = "demo") -> None:
    """Remove the lab and everything it made on this machine."""
    lab = open_lab(name)
    existed = lab.exists()
    started = time.monotonic()
    lab.down()
    what = "removed" if existed else "nothing recorded; leftovers (if any) removed"
    typer.echo(f"lab {lab.name}: {what} in {time.monotonic() - started:.1f}s")


@lab_app.command()
def status(name: NameOption = "demo") -> None:
    """Show each host's state, and how to reach it."""
    _print_status(open_lab(name))


@lab_app.command("list")
def list_() -> None:
    """List the labs on this machine."""
    for lab_name in list_labs():
        lab = open_lab(lab_name)
        kind = lab.state.kind
        typer.echo(f"{lab_name}\t{kind}\t{lab.subnet or '-'}\t{len(lab.hosts)} host(s)\t{lab.dir}")


@lab_app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ssh(
    host: HostArgument,
    command: Annotated[list[str] | None, typer.Argument(help="Command to run.")] = None,
    name: NameOption = "demo",
) -> None:
    """Log in to HOST as root (or run COMMAND there), host key checked strictly."""
    argv = open_lab(name).ssh_argv(host, command or [])
    # Replace this process: the user's terminal talks to ssh directly.
    os.execvp(argv[0], argv)  # noqa: S606 - argv list from Lab.ssh_argv, no shell


@lab_app.command()
def rootfs(
    release: Annotated[str, typer.Option(help="Debian release (bookworm or trixie).")] = "bookworm",
    vm: Annotated[
        bool,
        typer.Option(
            "--vm",
            help="Also build the VM lab's base image over it (Debian's cloud kernel from the "
            "package archive, initramfs, disk); bookworm only.",
        ),
    ] = False,
) -> None:
    """Build the shared host rootfs of a release (debootstrap) unless it is cached already."""
    result = ensure_rootfs(default_recipe(parse_releases(release, 1)[0]))
    how = f"built in {result.seconds:.1f}s" if result.built else "cached"
    typer.echo(f"rootfs {result.path} ({how})")
    if vm:
        if release != "bookworm":
            raise LabError(f"VM labs boot Debian 12 (bookworm) only, not {release}")
        started = time.monotonic()
        image, built = ensure_base_image(result.path)
        how = f"built in {time.monotonic() - started:.1f}s" if built else "cached"
        typer.echo(f"VM image {image.directory} ({how})")


@lab_app.command()
def box() -> None:
    """Build the Vagrant box (vagrant-libvirt) from the VM lab's image unless it is cached;
    print its path (add it with `vagrant box add --name berth/bookworm PATH`)."""
    result = ensure_box(ensure_rootfs(default_recipe("bookworm")).path)
    how = f"built in {result.seconds:.1f}s" if result.built else "cached"
    typer.echo(f"box {result.path} ({how})")


VM_ONLY = ("reboot", "reset")


def _fault(verb: str, doc: str) -> None:
    def command(host: HostArgument, name: NameOption = "demo") -> None:
        lab = open_lab(name)
        if verb in VM_ONLY and not isinstance(lab, VmLab):
            raise LabError(f"`berth lab {verb}` needs a VM lab (berth lab up --vm)")
        started = time.monotonic()
        getattr(lab, verb)(host)
        typer.echo(f"{lab.name}/{host}: {verb} done in {time.monotonic() - started:.2f}s")

    command.__doc__ = doc
    lab_app.command(verb)(command)


for _verb, _doc in (
    ("stop", "Power HOST off cleanly (its disk is kept)."),
    ("start", "Boot a stopped or killed HOST again."),
    ("kill", "Power-cut HOST (SIGKILL its systemd)."),
    ("freeze", "Hang HOST: freeze all its processes."),
    ("thaw", "Unfreeze HOST."),
    ("cut", "Unplug HOST's network cable."),
    ("heal", "Plug HOST's network cable back in."),
    ("reboot", "Reboot HOST cleanly from inside (VM labs; returns at once)."),
    ("reset", "Press HOST's reset button: no shutdown (VM labs)."),
):
    _fault(_verb, _doc)


@lab_app.command()
def partition(a: HostArgument, b: HostArgument, name: NameOption = "demo") -> None:
    """Drop all traffic between hosts A and B."""
    open_lab(name).partition(a, b)
    typer.echo(f"{name}: {a} and {b} partitioned")


@lab_app.command()
def unpartition(a: HostArgument, b: HostArgument, name: NameOption = "demo") -> None:
    """Let traffic between hosts A and B pass again."""
    open_lab(name).unpartition(a, b)
    typer.echo(f"{name}: {a} and {b} reconnected")


def _print_status(lab: Lab) -> None:
    if not lab.exists():
        raise LabError(f"no lab named {lab.name!r}", hint=f"berth lab up --name {lab.name}")
    state = lab.state
    kind = f"QEMU VMs ({state.accel})" if state.kind == "vm" else "nspawn"
    typer.echo(
        f"lab {lab.name}: {kind}, subnet {state.subnet}, bridge {state.bridge} ({state.gateway})"
    )
    typer.echo(f"{'HOST':<6}{'ADDRESS':<16}{'RELEASE':<10}{'STATE':<10}{'SSHD':<6}PID")
    for item in lab.status():
        condition = "stopped"
        if item.running:
            condition = "frozen" if item.frozen else "cut" if item.cut else "running"
        typer.echo(
            f"{item.host.name:<6}{item.host.address:<16}"
            f"{state.hosts[item.host.name].release:<10}{condition:<10}"
            f"{'yes' if item.sshd else 'no':<6}{item.pid or '-'}"
        )
    for a, b in state.partitions:
        typer.echo(f"partitioned: {a} <-> {b}")
    if ip_forward_enabled():
        typer.echo("warning: net.ipv4.ip_forward=1 on this machine (the lab never turns it on)")
    typer.echo(f"spec: {lab.spec_path}")
    typer.echo(f"ssh:  berth lab ssh n1 --name {lab.name}    (or: {' '.join(lab.ssh_argv('n1'))})")
