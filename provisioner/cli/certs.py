"""`berth certs status|ensure|renew`: the cluster PKI kept in the operator's state directory.

``status`` and ``ensure`` only touch the local state (under the cluster lock). ``renew`` also
distributes what it re-issued, one host at a time (:mod:`provisioner.cli.certs_rollout`), unless
``--local-only`` or ``--dry-run``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from provisioner import pki
from provisioner.cli.certs_rollout import Rollout, rollout_order
from provisioner.cli.locking import WaitLockOption, cluster_locked
from provisioner.clusterapi import admin_kubeconfig_path
from provisioner.errors import ExitCode
from provisioner.reporting import ConsoleReporter
from provisioner.spec import ClusterSpec, load_spec
from provisioner.state import ClusterState, cache_dir
from provisioner.workflow.inventory import inventory_from_spec

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
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="work on a scratch copy of the state and report")
]

# Wide when piped: a table folded to 80 columns cuts SANs and dates into pieces.
_out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
_err = Console(stderr=True, highlight=False)
_STYLE = {"ok": "green", "expiring": "yellow", "expired": "red", "mismatch": "yellow"}
_ACTION_STYLE = {"kept": "dim", "created": "green", "reissued": "yellow", "updated": "yellow"}


def status(
    inventory: SpecOption,
    state_dir: StateDirOption = None,
    check: Annotated[
        bool, typer.Option("--check", help="exit 1 if anything is missing, wrong or expiring")
    ] = False,
) -> None:
    """Show every certificate: subject, SANs, expiry and days left."""
    spec = load_spec(inventory)
    state = ClusterState.open(spec.name, state_dir=state_dir)
    rows = pki.status(spec, state)
    window = spec.spec.certificates.renew_before_days
    table = Table(title=f"certificates of cluster {spec.name} ({state.root})")
    for column in ("name", "subject", "SANs", "expires (UTC)", "days left", "status"):
        table.add_column(column, overflow="fold")
    for row in rows:
        style = _STYLE.get(row.health, "red")
        table.add_row(
            row.name,
            row.subject,
            ", ".join(row.sans),
            f"{row.not_after:%Y-%m-%d %H:%M}" if row.not_after else "-",
            "-" if row.days_left is None else str(row.days_left),
            f"[{style}]{row.health}[/{style}]",
        )
    _out.print(table)
    bad = [r for r in rows if r.health != "ok"]
    for row in bad:
        detail = "; ".join(row.notes) or (
            f"{row.days_left} day(s) left (warning below {window})"
            if row.health in ("expiring", "expired")
            else row.health
        )
        _err.print(f"warning: {row.name}: {row.health}: {detail}", style="yellow", markup=False)
    if bad:
        _err.print(
            f"hint: `berth certs renew -i {inventory}` re-issues leaves (CAs are kept)",
            style="yellow",
            markup=False,
        )
    if check and bad:
        raise typer.Exit(int(ExitCode.FAILURE))


def _run(
    spec: ClusterSpec,
    state: ClusterState,
    inventory: Path,
    *,
    renew: bool,
    dry_run: bool,
    wait_lock: str | None,
) -> pki.PkiReport:
    with cluster_locked(state, wait_lock=wait_lock, spec=inventory):
        report = pki.ensure(spec, state, renew_leaves=renew, dry_run=dry_run)
    table = Table(title=f"PKI of cluster {spec.name} ({report.state_root})")
    for column in ("item", "what", "action", "reason"):
        table.add_column(column, overflow="fold")
    for item in report.actions:
        style = _ACTION_STYLE[item.action]
        table.add_row(item.name, item.description, f"[{style}]{item.action}[/{style}]", item.reason)
    _out.print(table)
    for warning in report.warnings:
        _err.print(f"warning: {warning}", style="yellow", markup=False)
    for orphan in report.orphans:
        _err.print(f"note: {orphan} is no longer in the spec (left in place)", markup=False)
    if dry_run:
        _err.print(f"dry run: results are in {report.state_root}; the state is unchanged")
    else:
        admin = admin_kubeconfig_path(state)
        _err.print(f"admin kubeconfig: {admin} (kubectl --kubeconfig {admin} ...)", markup=False)
    return report


def ensure(
    inventory: SpecOption,
    state_dir: StateDirOption = None,
    dry_run: DryRunOption = False,
    wait_lock: WaitLockOption = None,
) -> None:
    """Create missing certificates, verify existing ones, re-issue what no longer fits the spec."""
    spec = load_spec(inventory)
    state = ClusterState.open(spec.name, state_dir=state_dir)
    _run(spec, state, inventory, renew=False, dry_run=dry_run, wait_lock=wait_lock)


def renew(
    inventory: SpecOption,
    *,
    state_dir: StateDirOption = None,
    dry_run: DryRunOption = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    local_only: Annotated[
        bool,
        typer.Option("--local-only", help="only re-issue in the state; `berth apply` distributes"),
    ] = False,
    wait_lock: WaitLockOption = None,
) -> None:
    """Re-issue every leaf certificate and kubeconfig (CAs are kept), then put them on the
    hosts one host at a time, control-plane hosts first: only the units that use a changed file
    restart, and each host must be healthy again before the next one is touched."""
    distribute = not (dry_run or local_only)
    spec = load_spec(inventory, ssh_files=distribute)
    order = ", ".join(h.name for h in rollout_order(inventory_from_spec(spec).hosts))
    if distribute and not yes:
        typer.confirm(
            f"Re-issue every leaf certificate and restart the units using them, one host at a "
            f"time ({order})?",
            abort=True,
        )
    state = ClusterState.open(spec.name, state_dir=state_dir)
    # one hold for re-issuing and distributing: no apply may slip in between
    with cluster_locked(state, wait_lock=wait_lock, spec=inventory):
        _renew(spec, state, inventory, state_dir, order, dry_run=dry_run, distribute=distribute)


def _renew(
    spec: ClusterSpec,
    state: ClusterState,
    inventory: Path,
    state_dir: Path | None,
    order: str,
    *,
    dry_run: bool,
    distribute: bool,
) -> None:
    # the caller holds the lock, loaded the spec and opened the state: not again here
    _run(spec, state, inventory, renew=True, dry_run=dry_run, wait_lock=None)
    if not distribute:
        _err.print(
            f"not distributed; `berth certs renew -i {inventory}` (or `berth apply`) puts them on "
            f"the hosts ({order}), one host at a time",
            markup=False,
        )
        return
    rollout = Rollout(
        spec=spec, state=state, state_dir=state_dir, cache_dir=cache_dir(),
        reporter=ConsoleReporter(), say=lambda line: _out.print(line, markup=False),
    )  # fmt: skip
    outcomes = rollout.run()
    restarted = sum(1 for o in outcomes if o.restarted)
    _out.print(
        f"renewed certificates are on {len(outcomes)} host(s); units restarted on {restarted}",
        markup=False,
    )


def register(app: typer.Typer) -> None:
    """Add this area's commands to the top-level app."""
    certs = typer.Typer(help="Inspect and renew the cluster PKI.", no_args_is_help=True)
    certs.command()(status)
    certs.command()(ensure)
    certs.command()(renew)
    app.add_typer(certs, name="certs")
