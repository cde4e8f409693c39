"""`berth verify`, `berth destroy`, `berth kubeconfig`, `berth status`: a cluster's lifecycle
after (and around) `berth apply`. Importing this module also adds the cluster install phases to
the ``cluster`` phase set that `berth plan/apply` run."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from provisioner import hostlayout as layout
from provisioner.cli.locking import WaitLockOption, cluster_locked
from provisioner.cli.persist import NoPersistOption, PersistOption, connect_fn
from provisioner.clusterapi import admin_kubeconfig_path
from provisioner.connectors.base import HostTarget
from provisioner.connectors.mux import forget
from provisioner.destroy import destroy_hosts
from provisioner.errors import ConnectError, ProvisionerError, StateError
from provisioner.phases.cluster.admin import write_admin_kubeconfig
from provisioner.phases.cluster.context import local_bundle_id, release
from provisioner.phases.cluster.removal import forget_host, recorded_hosts
from provisioner.phases.etcd.created import forget_created
from provisioner.pki import status as pki_status
from provisioner.reporting import ConsoleReporter
from provisioner.spec import load_spec
from provisioner.spec.model import ClusterSpec
from provisioner.state import ClusterState, cache_dir
from provisioner.verify.cluster import cluster_checks
from provisioner.verify.run import verify as run_verify
from provisioner.verify.run import write_junit
from provisioner.workflow.inventory import inventory_from_spec

SpecOption = Annotated[
    Path, typer.Option("--inventory", "-i", help="cluster spec (YAML)", show_default=False)
]
StateOption = Annotated[
    Path | None, typer.Option("--state-dir", help="base directory of cluster state")
]
_out = Console(highlight=False, soft_wrap=True)


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


def verify(
    inventory: SpecOption,
    *,
    junit: Annotated[Path | None, typer.Option("--junit", help="write JUnit XML here")] = None,
    output: Annotated[str, typer.Option("--output", help="text or json")] = "text",
    smoke: Annotated[bool, typer.Option("--smoke/--no-smoke", help="run a pod per node")] = True,
    state_dir: StateOption = None,
    persist: PersistOption = None,
    no_persist: NoPersistOption = False,
) -> None:
    """Check every host (units, ports, key files, certificates, versions, leftovers) and the
    cluster through its API (nodes, roles, readiness, leaders, a smoke pod on every schedulable
    node). Exit 7 naming the failing checks."""
    if output not in ("text", "json"):
        raise typer.BadParameter("--output must be text or json")
    spec = load_spec(inventory, ssh_files=True)
    state = ClusterState.for_spec(spec, state_dir=state_dir)
    report = run_verify(
        spec, state, bundle_id=local_bundle_id(release(spec)), smoke=smoke,
        connect=connect_fn(persist, no_persist),
    )  # fmt: skip
    if junit is not None:
        write_junit(report, junit)
    if output == "json":
        typer.echo(report.to_json())
    else:
        for line in report.lines():
            style = "green" if line.startswith("PASS") else "red" if line.startswith("FAIL") else ""
            _out.print(line, style=style, markup=False)
    report.raise_if_failed()


def destroy(
    inventory: SpecOption,
    *,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    keep_data: Annotated[
        bool, typer.Option("--keep-data", help="keep /var/lib/berth (the datastore)")
    ] = False,
    keep_packages: Annotated[
        bool,
        typer.Option(
            "--keep-packages",
            help="keep the Debian packages berth installed (runc, nftables, etcd, ...); "
            "packages that were there before berth are always kept",
        ),
    ] = False,
    state_dir: StateOption = None,
    parallel: Annotated[int, typer.Option("--parallel", help="hosts handled at once")] = 16,
    wait_lock: WaitLockOption = None,
) -> None:
    """Stop and remove everything berth put on the hosts, then check each host is clean.
    Idempotent; unreachable hosts are skipped and named (exit 5)."""
    spec = load_spec(inventory, ssh_files=True)
    state = ClusterState.for_spec(spec, state_dir=state_dir)
    with cluster_locked(state, wait_lock=wait_lock, spec=inventory):
        try:
            _destroy(
                spec, state, yes=yes, keep_data=keep_data, keep_packages=keep_packages,
                parallel=parallel,
            )  # fmt: skip
        finally:
            # connections an apply or verify kept open keep a session on the hosts: closed
            hosts = inventory_from_spec(spec, known_hosts=state.known_hosts).hosts
            forget([t.address for t in hosts])


def _destroy(
    spec: ClusterSpec,
    state: ClusterState,
    *,
    yes: bool,
    keep_data: bool,
    keep_packages: bool,
    parallel: int,
) -> None:
    targets: dict[str, HostTarget] = dict(recorded_hosts(state))
    targets.update(
        {str(h.name): h for h in inventory_from_spec(spec, known_hosts=state.known_hosts).hosts}
    )
    if not yes:
        typer.confirm(
            f"Remove berth from {len(targets)} host(s) of cluster {spec.name} "
            f"({', '.join(sorted(targets))})?",
            abort=True,
        )
    result = destroy_hosts(
        spec.name, list(targets.values()), cache_dir=cache_dir(), keep_data=keep_data,
        keep_packages=keep_packages, reporter=ConsoleReporter(), parallel=parallel,
    )  # fmt: skip
    for name in result.changed:
        if name not in result.dirty:
            forget_host(state, name)
    if not keep_data and not result.dirty and not result.unreachable:
        forget_created(state)  # the members' data is gone: the next apply starts anew
    for line in result.lines():
        bad = "NOT clean" in line or "unreachable" in line
        _out.print(line, style="red" if bad else "green", markup=False)
    if result.dirty:
        raise ProvisionerError(
            f"{len(result.dirty)} host(s) are not clean: {', '.join(sorted(result.dirty))}",
            hint="see the lines above; run `berth destroy` again",
        )
    if result.unreachable:
        raise ConnectError(
            f"skipped unreachable host(s): {', '.join(sorted(result.unreachable))}",
            hint="bring them back and run `berth destroy` again (the others are clean)",
        )


def _installed(target: HostTarget) -> str:
    from provisioner.connectors.ssh import SSHConnector  # noqa: PLC0415 - paramiko on use only

    try:
        connector = SSHConnector(target).connect()
    except ProvisionerError as error:
        return f"unreachable ({error.message})"
    try:
        result = connector.run(f"readlink {layout.CURRENT}")
        return result.stdout.strip().rpartition("/")[2] or "not installed"
    finally:
        connector.close()


def status(inventory: SpecOption, *, state_dir: StateOption = None) -> None:
    """Hosts, roles, installed berth version, node readiness and certificate expiry."""
    spec = load_spec(inventory, ssh_files=True)
    state = ClusterState.for_spec(spec, state_dir=state_dir)
    hosts = inventory_from_spec(spec, known_hosts=state.known_hosts).hosts
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(hosts)))) as pool:
        versions = dict(zip([str(h.name) for h in hosts], pool.map(_installed, hosts), strict=True))
    checks = cluster_checks(admin_kubeconfig_path(state), spec, smoke=False)
    ready = {c.name.split()[1]: c.ok for c in checks if c.name.endswith(" Ready")}
    api = next((c for c in checks if c.name in ("API server reachable", "admin kubeconfig")), None)
    table = Table(title=f"cluster {spec.name} (local berth {local_bundle_id(release(spec))})")
    for column in ("host", "address", "roles", "installed", "node"):
        table.add_column(column)
    for host in spec.hosts:
        node = "Ready" if ready.get(host.name) else ("NotReady" if host.name in ready else "-")
        table.add_row(host.name, host.address, ",".join(host.roles), versions[host.name], node)
    _out.print(table)
    if api is not None:
        _out.print(api.line(), markup=False)
    for leader in (c for c in checks if c.name.startswith("leader")):
        _out.print(leader.line(), markup=False)
    certs = pki_status(spec, state)
    dated = sorted((c for c in certs if c.days_left is not None), key=lambda c: c.days_left or 0)
    unhealthy = [c for c in certs if c.health != "ok"]
    if dated:
        first = dated[0]
        _out.print(
            f"certificates: {len(certs)}, {len(unhealthy)} need attention; first to expire: "
            f"{first.name} on {first.not_after:%Y-%m-%d} ({first.days_left} days)",
            markup=False,
        )
    for cert in unhealthy:
        _out.print(f"certificate {cert.name}: {cert.health} {' '.join(cert.notes)}", markup=False)


def register(app: typer.Typer) -> None:
    """Add `verify`, `destroy`, `kubeconfig` and `status`."""
    app.command()(verify)
    app.command()(destroy)
    app.command()(kubeconfig)
    app.command()(status)
