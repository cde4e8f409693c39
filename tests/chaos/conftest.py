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

from collections.abc import Callable, Iterator

import pytest

from provisioner.lab import Lab
from tests.lab.optin import deselect_unless_asked, session_labs

LabFactory = Callable[[int], Lab]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    deselect_unless_asked(config, items, "chaos", "BERTH_CHAOS")


@pytest.fixture(scope="session")
def chaos_lab() -> Iterator[LabFactory]:
    with session_labs(Lab, "c") as make:
        yield make
