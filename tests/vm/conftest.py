"""VM lab tests: berth on QEMU VMs (``berth lab up --vm``), outside the default ``pytest`` run.

Under TCG (no usable KVM on the CI machines) a VM boots in 30-90 s and a cluster apply on it takes
minutes, and each VM holds ~1 GiB and most of a core, so they are collected only when asked for:
``make vm-test`` (``pytest -m vm``) or ``BERTH_VM=1``. Without either they are deselected (not
skipped): a run that was not asked for them neither runs nor reports them.

* ``vm_lab_factory(count)``: boot a VM lab with a fresh name (``pt<pid>-v<n>``); every lab made
  is torn down when the session ends, even after failures; labs of dead pytest processes are
  torn down at session start.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from provisioner.lab import Lab, list_labs
from provisioner.lab.vmlab import VmLab
from tests.lab.clusters import tear_down_labs
from tests.lab.workloads import blackhole_routes

_NAME = re.compile(r"^pt(\d+)-v\d+$")

VmLabFactory = Callable[[int], VmLab]


def _asked_for(config: pytest.Config) -> bool:
    marker_expression = str(config.getoption("markexpr", "") or "")
    return os.environ.get("BERTH_VM") == "1" or (
        "vm" in marker_expression.split() and "not vm" not in marker_expression
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _asked_for(config):
        return
    vm = [item for item in items if item.get_closest_marker("vm") is not None]
    if vm:
        config.hook.pytest_deselected(items=vm)
        items[:] = [item for item in items if item.get_closest_marker("vm") is None]


@pytest.fixture(scope="session")
def vm_lab_factory() -> Iterator[VmLabFactory]:
    with blackhole_routes():
        for name in list_labs():
            match = _NAME.match(name)
            if match and not Path(f"/proc/{match.group(1)}").exists():
                Lab(name).down()  # left behind by a killed run (Lab.down stops its QEMUs too)
        counter = itertools.count(1)
        made: list[Lab] = []

        def make(count: int) -> VmLab:
            lab = VmLab(f"pt{os.getpid()}-v{next(counter)}")
            made.append(lab)  # before up: a half-made lab is torn down too
            lab.up(count, replace=True)
            return lab

        yield make
        tear_down_labs(made)
