"""Entry point of the ``berth`` command and its one error reporter.

Each command area lives in its own module with a ``register(app)`` function, so the areas can
grow independently. Errors from every command reach :func:`main`, which prints them the same
way (one red line per problem, a hint, the exit code of the error's kind) and shows a traceback
only with ``--debug``.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from provisioner.build_info import describe
from provisioner.cli import pipes
from provisioner.errors import ExitCode, ProvisionerError

if TYPE_CHECKING:
    from rich.console import Console

AREAS: dict[str, tuple[str, ...]] = {
    "lab": ("lab",),
    "spec": ("validate", "schema", "inventory"),
    "certs": ("certs",),
    "engine": ("preflight", "plan", "apply"),
    "cluster": ("verify", "destroy", "kubeconfig", "status"),
    "upgrade": ("upgrade", "rollback"),
    "images": ("images",),
    "snapshot": ("snapshot",),
    "locking": ("state",),
}
"""Each command area (a module of ``provisioner.cli``) and the top-level commands it adds.

A run imports only the area of the command it was given: importing every area costs about as
much CPU as a whole no-op ``apply`` on 20 hosts (the PKI, upgrade and lab modules pull in
cryptography's X.509, etcd snapshots, ...). ``--help``, no command or an unknown one load them
all, so usage and suggestions stay complete. A test checks this table against the areas."""


def _print_version(value: bool) -> None:
    if value:
        typer.echo(describe())
        raise typer.Exit


def _new_app() -> typer.Typer:
    root = typer.Typer(
        name="berth",
        help="Bootstrap, upgrade and tear down a Kubernetes-style cluster on plain machines.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    root.callback()(_root)
    return root


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


def version() -> None:
    """Print berth's release and the commit it was built from (= `berth --version`)."""
    typer.echo(describe())


def build_app(areas: Sequence[str] = tuple(AREAS)) -> typer.Typer:
    """The ``berth`` command with these areas' commands (by default all of them)."""
    root = _new_app()
    for area in areas:
        importlib.import_module(f"provisioner.cli.{area}").register(root)
    root.command()(version)
    return root


def areas_for(argv: Sequence[str]) -> tuple[str, ...]:
    """The areas a command line needs: the one of its command, or all of them when it names no
    known command (``berth``, ``berth --help``, a typo)."""
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    for area, commands in AREAS.items():
        if command in commands:
            return (area,)
    return tuple(AREAS)


@functools.cache
def _whole_app() -> typer.Typer:
    return build_app()


@functools.cache
def _stderr() -> Console:
    # imported when an error is printed: rich costs ~30 ms of every start, and a run that
    # succeeds with --output json never prints through it.
    # soft_wrap: never fold a FILE:LINE:COL line at 80 columns in CI logs
    from rich.console import Console  # noqa: PLC0415

    return Console(stderr=True, highlight=False, soft_wrap=True)


def __getattr__(name: str) -> Any:
    # ``provisioner.cli.main.app``: the whole command (docs, tests), built on first use only;
    # ``_err``: the console errors are printed on (tests adjust it)
    if name == "app":
        return _whole_app()
    if name == "_err":
        return _stderr()
    raise AttributeError(name)


def report(error: ProvisionerError) -> None:
    """Print one error the way every berth command does."""
    for line in error.lines():
        style = "yellow" if line.startswith("hint:") else "red"
        _stderr().print(line, style=style, markup=False)


def main() -> None:
    """Console-script entry point."""
    debug = "--debug" in sys.argv or os.environ.get("BERTH_DEBUG") == "1"
    if "--debug" in sys.argv:
        sys.argv.remove("--debug")
    stdout = pipes.StdoutPipe(sys.stdout)
    try:
        # standalone mode: typer/click handle --help, usage errors (exit 2) and Ctrl-C itself;
        # only our own errors come out here.
        build_app(areas_for(sys.argv[1:]))()
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
