"""VM lab tests: berth on QEMU VMs (``berth lab up --vm``).

Under TCG (no usable KVM on the CI machines) a VM boots in 30-90 s and a cluster apply on it takes
minutes, and each VM holds 1-2 GiB and most of a core. The 1-VM smoke (test_vm_smoke.py: apply,
a power cut, verify) is part of ``make test``; the modules marked ``vm`` (3 VMs with reboots and a
power cut, the real ``vagrant up``: most of an hour) are collected only when asked for:
``make vm-test`` (``pytest -m vm``) or ``BERTH_VM=1``. Without either they are deselected (not
skipped): a run that was not asked for them neither runs nor reports them.

* ``vm_lab_factory(count)``: boot a VM lab with a fresh name (``pt<pid>-v<n>``); every lab made
  is torn down when the session ends, even after failures; labs of dead pytest processes are
  torn down at session start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from provisioner.lab.vmlab import VmLab
from tests.lab.optin import deselect_unless_asked, session_labs

VmLabFactory = Callable[[int], VmLab]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    deselect_unless_asked(config, items, "vm", "BERTH_VM")


@pytest.fixture(scope="session")
def vm_lab_factory() -> Iterator[VmLabFactory]:
    with session_labs(VmLab, "v") as make:
        yield make
