"""How ``make test`` spreads the suite over parallel pytest-xdist workers.

``make test`` runs ``pytest -n 4 --dist loadfile``: a test file is the unit of work, so a lab
module's module-scoped cluster is booted once, on one worker, and independent lab modules run
side by side on their own labs (they mostly wait: hosts booting, SSH, applies, polling).

Files start longest first (:data:`EXPECTED_SECONDS`): the long lab modules overlap each other and
the many short files fill the gaps at the end; a long module started last would be the run's
tail. A lab module missing from the table (a new one) counts as long, so it starts early too.
Without xdist (plain ``pytest``) nothing here changes the order.
"""

from __future__ import annotations

from typing import Any

import pytest

EXPECTED_SECONDS = {
    # measured on the 2-core machine, 4 workers (setup and teardown included), rounded
    "tests/lab/test_cluster_workloads.py": 330,
    "tests/lab/test_ha_cluster.py": 250,
    "tests/lab/test_upgrade.py": 220,
    "tests/lab/test_batch.py": 200,
    "tests/lab/test_e2e.py": 180,
    "tests/lab/test_ha.py": 160,
    "tests/lab/test_node_loss.py": 140,
    "tests/lab/test_apply_faults.py": 120,
    "tests/lab/test_cluster_dns.py": 100,
    "tests/lab/test_security.py": 90,
    "tests/lab/test_certs_renew.py": 80,
    "tests/lab/test_engine.py": 80,
    "tests/lab/test_streams.py": 70,
    "tests/lab/test_wheel.py": 70,
    "tests/lab/test_lab.py": 70,
    "tests/lab/test_security_psa.py": 50,
    "tests/lab/test_concurrent_apply.py": 50,
    "tests/lab/test_connector_contract.py": 40,
    "tests/lab/test_workloads.py": 40,
    "tests/lab/test_ssh_concurrency.py": 30,
}
NEW_LAB_MODULE_SECONDS = 200
"""A lab module not in the table yet: each boots and applies its own cluster (minutes)."""


def expected_seconds(path: str) -> int:
    """How long the test file at ``path`` (relative to the repository) is expected to take."""
    if path in EXPECTED_SECONDS:
        return EXPECTED_SECONDS[path]
    return NEW_LAB_MODULE_SECONDS if path.startswith("tests/lab/") else 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):
        return  # not an xdist worker: keep pytest's own order
    # a stable sort: tests keep their order within a file, short files their collection order
    items.sort(key=lambda item: -expected_seconds(item.nodeid.split("::", 1)[0]))


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadfile":
        return None
    # imported here: only an xdist run imports xdist
    from tests.xdist_scheduling import LongestFirstFileScheduling  # noqa: PLC0415

    return LongestFirstFileScheduling(config, log)
