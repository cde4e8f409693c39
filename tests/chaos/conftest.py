"""Chaos tests: long fault runs on lab clusters, outside the default ``pytest`` run.

They take longer than the CI budget allows (two cluster applies and a dozen faults, about 10
minutes), so they are collected only when asked for: ``make chaos`` (``pytest -m chaos``) or
``BERTH_CHAOS=1``. Without either they are deselected (not skipped): a run that was not asked
for them neither runs nor reports them.

* ``chaos_lab(count)``: boot a lab with a fresh name; every lab made is torn down when the
  session ends, even after failures (names ``pt<pid>-c<n>`` cannot collide with the lab tests'
  ``pt<pid>-<n>`` in one session).
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from provisioner.lab import Lab, list_labs
from tests.lab.clusters import tear_down_labs
from tests.lab.workloads import blackhole_routes

_NAME = re.compile(r"^pt(\d+)-c\d+$")

LabFactory = Callable[[int], Lab]


def _asked_for(config: pytest.Config) -> bool:
    marker_expression = str(config.getoption("markexpr", "") or "")
    return os.environ.get("BERTH_CHAOS") == "1" or (
        "chaos" in marker_expression and "not chaos" not in marker_expression
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _asked_for(config):
        return
    chaos = [item for item in items if item.get_closest_marker("chaos") is not None]
    if chaos:
        config.hook.pytest_deselected(items=chaos)
        items[:] = [item for item in items if item.get_closest_marker("chaos") is None]


@pytest.fixture(scope="session")
def chaos_lab() -> Iterator[LabFactory]:
    with blackhole_routes():
        for name in list_labs():
            match = _NAME.match(name)
            if match and not Path(f"/proc/{match.group(1)}").exists():
                Lab(name).down()  # left behind by a killed run
        counter = itertools.count(1)
        made: list[Lab] = []

        def make(count: int) -> Lab:
            lab = Lab(f"pt{os.getpid()}-c{next(counter)}")
            made.append(lab)  # before up: a half-made lab is torn down too
            lab.up(count, replace=True)
            return lab

        yield make
        tear_down_labs(made)
