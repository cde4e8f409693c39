"""Lab suites run only when asked for (``tests/vm``, ``tests/chaos``), and the labs of a
pytest session: fresh names with this process' PID, torn down at the end, and the labs of
pytest processes that died (a killed run) torn down first."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from provisioner.lab import Lab, list_labs
from tests.lab.clusters import tear_down_labs
from tests.lab.workloads import blackhole_routes

L = TypeVar("L", bound=Lab)


def asked_for(config: pytest.Config, marker: str, env: str) -> bool:
    """Whether this run asked for the tests marked ``marker``: ``env=1``, or a ``-m``
    expression naming the marker and not negating it."""
    expression = str(config.getoption("markexpr", "") or "")
    named = re.search(rf"\b{re.escape(marker)}\b", expression) is not None
    negated = re.search(rf"\bnot\s+{re.escape(marker)}\b", expression) is not None
    return os.environ.get(env) == "1" or (named and not negated)


def deselect_unless_asked(
    config: pytest.Config, items: list[pytest.Item], marker: str, env: str
) -> None:
    """Deselect (not skip) the tests marked ``marker`` unless the run asked for them: a run
    that did not neither runs nor reports them."""
    if asked_for(config, marker, env):
        return
    marked = [item for item in items if item.get_closest_marker(marker) is not None]
    if marked:
        config.hook.pytest_deselected(items=marked)
        items[:] = [item for item in items if item.get_closest_marker(marker) is None]


def reap_abandoned_labs(tag: str = "") -> None:
    """Tear down labs named ``pt<pid>-<tag><n>`` whose pytest process is gone."""
    pattern = re.compile(rf"^pt(\d+)-{re.escape(tag)}\d+$")
    for name in list_labs():
        match = pattern.match(name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            Lab(name).down()  # (Lab.down stops a VM lab's QEMUs too)


@contextlib.contextmanager
def session_labs(kind: Callable[[str], L], tag: str) -> Iterator[Callable[[int], L]]:
    """Yield ``make(count)``: a lab of ``kind`` named ``pt<pid>-<tag><n>``, up with ``count``
    hosts. Pod and service CIDRs are blackholed meanwhile (see ``blackhole_routes``); every lab
    made is torn down at the end, even after failures."""
    with blackhole_routes():
        reap_abandoned_labs(tag)
        counter = itertools.count(1)
        made: list[Lab] = []

        def make(count: int) -> L:
            lab = kind(f"pt{os.getpid()}-{tag}{next(counter)}")
            made.append(lab)  # before up: a half-made lab is torn down too
            lab.up(count, replace=True)
            return lab

        yield make
        tear_down_labs(made)
