"""The cluster lock from the command line: every mutating command (apply, destroy, upgrade,
rollback, certs renew/ensure, snapshot restore, images load) holds it for its whole run, and
`berth state unlock` breaks one a crashed run on another machine left behind."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from provisioner.cluster_lock import LockHolder, parse_duration
from provisioner.spec import load_spec
from provisioner.state import ClusterState

if TYPE_CHECKING:
    from rich.console import Console

WaitLockOption = Annotated[
    str | None,
    typer.Option(
        "--wait-lock",
        metavar="DURATION",
        help="if another berth run holds the cluster, wait up to DURATION (30s, 5m, 1h) for it "
        "instead of failing at once (exit 9)",
        show_default=False,
    ),
]


@functools.cache
def _err() -> Console:
    # imported when something is said: most runs never wait for the lock (rich is ~30 ms)
    from rich.console import Console  # noqa: PLC0415

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _say(line: str) -> None:
    _err().print(line, style="yellow", markup=False)


def wait_seconds(wait_lock: str | None) -> float | None:
    """The ``--wait-lock`` value in seconds (``None``: do not wait)."""
    if wait_lock is None:
        return None
    try:
        return parse_duration(wait_lock)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--wait-lock") from None


@contextlib.contextmanager
def cluster_locked(
    state: ClusterState, *, wait_lock: str | None, spec: Path | None = None
) -> Iterator[LockHolder]:
    """Hold ``state``'s lock for the ``with`` block, as the command line asked (refuse at once,
    or wait with ``--wait-lock``); waiting and takeovers are said on stderr."""
    wait = wait_seconds(wait_lock)
    with state.lock(wait=wait, say=_say, spec=str(spec) if spec else None) as holder:
        yield holder


def unlock(
    inventory: Annotated[
        Path, typer.Option("--inventory", "-i", help="cluster spec (YAML)", show_default=False)
    ],
    lock_id: Annotated[str, typer.Argument(help="the lock id the refused run printed")],
    *,
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", help="base directory of cluster state")
    ] = None,
) -> None:
    """Break the cluster lock LOCK_ID that a berth run which is over left behind (its machine
    crashed, or it was killed there). Only when you know that run no longer runs: two runs at
    once make the same changes twice."""
    spec = load_spec(inventory)
    state = ClusterState.for_spec(spec, state_dir=state_dir)
    holder = state.break_lock(lock_id)
    typer.echo(f"cluster {spec.name}: broke the lock of {holder.describe()}")


def register(app: typer.Typer) -> None:
    """Add `state unlock`."""
    area = typer.Typer(help="The operator-side cluster state.", no_args_is_help=True)
    area.command()(unlock)
    app.add_typer(area, name="state")
