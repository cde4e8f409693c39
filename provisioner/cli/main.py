"""Entry point of the ``berth`` command and its one error reporter.

Each command area lives in its own module with a ``register(app)`` function, so the areas can
grow independently. Errors from every command reach :func:`main`, which prints them the same
way (one red line per problem, a hint, the exit code of the error's kind) and shows a traceback
only with ``--debug``.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.console import Console

from provisioner.build_info import describe
from provisioner.cli import (
    certs,
    cluster,
    engine,
    images,
    lab,
    locking,
    pipes,
    snapshot,
    spec,
    upgrade,
)
from provisioner.errors import ExitCode, ProvisionerError

app = typer.Typer(
    name="berth",
    help="Bootstrap, upgrade and tear down a Kubernetes-style cluster on plain machines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(describe())
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="print the release and the commit it was built from, and exit",
        ),
    ] = False,
) -> None:
    """Bootstrap, upgrade and tear down a Kubernetes-style cluster on plain machines."""


for area in (lab, spec, certs, engine, cluster, upgrade, images, snapshot, locking):
    area.register(app)


@app.command()
def version() -> None:
    """Print berth's release and the commit it was built from (= `berth --version`)."""
    typer.echo(describe())


# soft_wrap: never fold a FILE:LINE:COL line at 80 columns in CI logs
_err = Console(stderr=True, highlight=False, soft_wrap=True)


def report(error: ProvisionerError) -> None:
    """Print one error the way every berth command does."""
    for line in error.lines():
        style = "yellow" if line.startswith("hint:") else "red"
        _err.print(line, style=style, markup=False)


def main() -> None:
    """Console-script entry point."""
    debug = "--debug" in sys.argv or os.environ.get("BERTH_DEBUG") == "1"
    if "--debug" in sys.argv:
        sys.argv.remove("--debug")
    stdout = pipes.StdoutPipe(sys.stdout)
    try:
        # standalone mode: typer/click handle --help, usage errors (exit 2) and Ctrl-C itself;
        # only our own errors come out here.
        app()
    except SystemExit as done:
        if stdout.ended_on_lost_reader(sys.stdout, done.code):
            # the reader of our output went away (`berth kubeconfig | head -1`): end the way
            # Unix tools do: quietly (stdout is silenced already), with SIGPIPE's status
            sys.exit(int(ExitCode.READER_GONE))
        raise done
    except ProvisionerError as error:
        if debug:
            raise
        report(error)
        sys.exit(int(error.exit_code))


if __name__ == "__main__":
    main()
