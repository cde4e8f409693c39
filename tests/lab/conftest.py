"""Lab fixtures for every ``tests/lab/test_*.py``.

* ``lab`` (session): one 3-host lab (n1 control plane + worker, n2, n3 workers) shared by the
  tests of one pytest process (each xdist worker of ``make test`` boots its own, on first use).
  Tests that fault a host must undo the fault before they return.
* ``lab_factory`` (session): ``lab_factory(count)`` boots another lab with a fresh unique name;
  every lab it made is torn down when the session ends, even after failures.

Lab names embed this pytest process' PID, so concurrent pytest runs on the machine (and the
parallel workers of one run) never collide.
Labs left behind by pytest processes that no longer exist (a crashed or killed run) are torn down
at session start.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from provisioner.lab import Lab
from tests.lab.clusters import tear_down_labs
from tests.lab.optin import reap_abandoned_labs
from tests.lab.workloads import blackhole_routes

LabFactory = Callable[..., Lab]


LAB_TEST_TIMEOUT = 1200
"""pytest-timeout's bound for a lab test that sets none (pyproject's 300 s is for the rest).

pytest-timeout counts a test's fixture setup: the first test of a lab module carries the
module's lab boot and ``berth apply``, which took 235-350 s in full ``make test`` runs on the
loaded machine (test_wheel's setup 264 s and test_certs_renew's renew 258 s ran within a minute
of 300 s). It is a guard against hangs, not a speed check: every wait inside has its own bound."""

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(_HERE) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(LAB_TEST_TIMEOUT))


@pytest.fixture(scope="session")
def lab_factory() -> Iterator[LabFactory]:
    """Boot labs with unique names: ``lab_factory(count, *, subnet_cidr=None, timeout=180,
    unified_cgroups=True) -> Lab``.

    Clusters berth applies run real pod networks (runtime runc): for the whole session this
    machine drops traffic to the default pod and service CIDRs (blackhole routes, held by each
    worker and removed by the last holder), so a stray packet to a pod or ClusterIP can never
    leave by the machine's default route."""
    with blackhole_routes():
        yield from _lab_factory()


def _lab_factory() -> Iterator[LabFactory]:
    reap_abandoned_labs()
    counter = itertools.count(1)
    made: list[Lab] = []

    def make(
        count: int = 3,
        *,
        subnet_cidr: str | None = None,
        # until every host's sshd answers: seconds on a quiet machine, but the hosts boot
        # while other workers' labs apply clusters (make test); a bound against hangs only
        timeout: float = 180.0,
        unified_cgroups: bool = True,
        releases: Sequence[str] | None = None,
    ) -> Lab:
        lab = Lab(f"pt{os.getpid()}-{next(counter)}")
        made.append(lab)  # before up: a half-made lab is torn down too
        lab.up(
            count,
            subnet_cidr=subnet_cidr,
            replace=True,
            timeout=timeout,
            unified_cgroups=unified_cgroups,
            releases=releases,
        )
        return lab

    yield make
    tear_down_labs(made)


@pytest.fixture(scope="session")
def lab(lab_factory: LabFactory) -> Lab:
    """A running 3-host lab shared by the session (restore any fault you inject)."""
    return lab_factory(3)
