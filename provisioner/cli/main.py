"""Entry point of the ``berth`` command and its one error reporter.

Each command area lives in its own module with a ``register(app)`` function, so the areas can
grow independently. Errors from every command reach :func:`main`, which prints them the same
way (one red line per problem, a hint, the exit code of the error's kind) and shows a traceback
only with ``--debug``.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import importlib
import os
import sys
import threading
from collections.abc import Iterator, Sequence
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


def _is_process_entry() -> bool:
    """Whether :func:`main` runs as the process's own program (the ``berth`` script, ``python
    -m provisioner.cli.main``), not called by a program that goes on afterwards (a test)."""
    return getattr(sys.modules.get("__main__"), "main", None) is main


@contextlib.contextmanager
def _loading(entry: bool) -> Iterator[None]:
    """While the command's modules load: no cyclic garbage collection (an import makes many
    objects and few cycles; the collector ran over all of them again and again, ~30 ms of a
    start); then, in a process of its own, the loaded modules' objects are frozen out of
    every later collection (``gc.freeze``: they live as long as the process anyway)."""
    if not entry or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def _exit_now(code: object) -> None:
    """In a process of its own, end it with ``code`` without the interpreter's teardown (it
    frees every module and object one by one: ~40 ms of a no-op apply's CPU, for nothing):
    what the teardown would do that matters is done first (the ``atexit`` functions, e.g.
    temporary directories' finalizers and logging's flush; the standard streams' buffers).
    Returns, for the ordinary exit, when it cannot be sure that is all: a thread that exit
    would wait for is still running, ``code`` is a message to print, a stream fails to flush."""
    if code is None:
        code = 0
    if not isinstance(code, int):
        return
    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon and t.is_alive() for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a lost reader, a closed stream: the ordinary exit copes
        return
    os._exit(code)


def main() -> None:
    """Console-script entry point."""
    debug = "--debug" in sys.argv or os.environ.get("BERTH_DEBUG") == "1"
    if "--debug" in sys.argv:
        sys.argv.remove("--debug")
    stdout = pipes.StdoutPipe(sys.stdout)
    entry = _is_process_entry()
    try:
        with _loading(entry):
            app = build_app(areas_for(sys.argv[1:]))
        # standalone mode: typer/click handle --help, usage errors (exit 2) and Ctrl-C itself;
        # only our own errors come out here.
        app()
    except SystemExit as done:
        if stdout.ended_on_lost_reader(sys.stdout, done.code):
            # the reader of our output went away (`berth kubeconfig | head -1`): end the way
            # Unix tools do: quietly (stdout is silenced already), with SIGPIPE's status
            sys.exit(int(ExitCode.READER_GONE))
        if entry:
            _exit_now(done.code)
        raise done
    except ProvisionerError as error:
        if debug:
            raise
        report(error)
        if entry:
            _exit_now(int(error.exit_code))
        sys.exit(int(error.exit_code))


if __name__ == "__main__":
    main()
