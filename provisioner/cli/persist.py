"""``--persist SECONDS`` / ``--no-persist``: whether a run keeps its SSH connections open for the
next one (:mod:`provisioner.connectors.mux`), shared by ``apply``, ``plan`` and ``verify``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from provisioner.connectors.mux import PERSIST_ENV, connector_factory, persist_from_env

if TYPE_CHECKING:
    from provisioner.connectors.base import Connector, HostTarget

PersistOption = Annotated[
    float | None,
    typer.Option(
        "--persist", metavar="SECONDS", show_default=False,
        help=f"keep the SSH connections open this long after their last use, in a per-user "
        f"multiplexer the next run reuses (default: {PERSIST_ENV} or 60; 0 = off)",
    ),
]  # fmt: skip
NoPersistOption = Annotated[
    bool,
    typer.Option(
        "--no-persist",
        help=f"connect directly and keep nothing open (= --persist 0 = {PERSIST_ENV}=0)",
    ),
]


def persist_seconds(persist: float | None, no_persist: bool) -> float:
    """Seconds to keep connections for: the options, else the environment, else 60."""
    if no_persist:
        return 0.0
    if persist is None:
        return persist_from_env()
    if not 0 <= persist <= 86400:
        raise typer.BadParameter("--persist must be between 0 and 86400 seconds")
    return persist


def connect_fn(persist: float | None, no_persist: bool) -> Callable[[HostTarget], Connector]:
    """The connector factory the options ask for."""
    return connector_factory(persist_seconds(persist, no_persist))
