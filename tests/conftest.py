"""How ``make test`` spreads the suite over parallel pytest-xdist workers.

``make test`` runs ``pytest -n 3 --dist loadfile``: a test file is the unit of work, so a lab
module's module-scoped cluster is booted once, on one worker, and independent lab modules run
side by side on their own labs (they mostly wait: hosts booting, SSH, applies, polling).

Files start longest first (:data:`EXPECTED_SECONDS`): the long lab modules overlap each other and
the many short files fill the gaps at the end; a long module started last would be the run's
tail. A lab module missing from the table (a new one) counts as long, so it starts early too.
Without xdist (plain ``pytest``) nothing here changes the order.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest

EXPECTED_SECONDS = {
    # per file, setup and teardown included, from a 3-4 worker run on the shared 2-core
    # machine (busy: every figure is ~3x a quiet run's); only the order matters. Files not
    # listed take under ~20 s, or are new lab modules (below).
    "tests/vm/test_vm_smoke.py": 900,  # one QEMU VM under TCG: boot, apply, power cut, verify
    "tests/lab/test_e2e.py": 750,
    "tests/lab/test_ha_cluster.py": 700,
    "tests/lab/test_upgrade.py": 600,
    "tests/lab/test_platforms.py": 600,  # two clusters, one after the other
    "tests/lab/test_cluster_workloads.py": 580,
    "tests/lab/test_ha.py": 340,
    "tests/lab/test_wheel.py": 300,
    "tests/lab/test_certs_renew.py": 270,
    "tests/lab/test_batch.py": 260,
    "tests/lab/test_security.py": 210,
    "tests/lab/test_cluster_dns.py": 200,
    "tests/lab/test_node_loss.py": 200,
    "tests/lab/test_lab.py": 170,
    "tests/lab/test_apply_faults.py": 160,
    "tests/lab/test_streams.py": 160,
    "tests/lab/test_engine.py": 150,
    "tests/lab/test_security_psa.py": 110,
    "tests/lab/test_workloads.py": 100,
    "tests/integration/controlplane/test_jobs.py": 90,
    "tests/integration/controlplane/test_deployments.py": 80,
    "tests/unit/spec/test_spec_yaml_fuzz.py": 70,
    "tests/lab/test_concurrent_apply.py": 60,
    "tests/integration/apiserver/test_kubectl.py": 55,
    "tests/integration/controlplane/test_storage.py": 50,
    "tests/integration/controlplane/test_statefulset_volumes.py": 50,
    "tests/integration/controlplane/test_nodes_and_kubectl.py": 45,
    "tests/integration/controlplane/test_workloads.py": 45,
    "tests/integration/apiserver/test_ha_etcd.py": 40,
    "tests/integration/controlplane/test_statefulsets.py": 35,
    "tests/unit/spec/test_spec_fuzz.py": 35,
    "tests/unit/vip/test_vip_holder.py": 30,
    "tests/integration/apiserver/test_crd.py": 30,
    "tests/integration/store/test_store_equivalence.py": 30,
    "tests/integration/apiserver/test_guardrails.py": 30,
    "tests/integration/apiserver/test_fuzz.py": 30,
    "tests/lab/test_ssh_concurrency.py": 25,
    "tests/unit/connectors/test_dead_peer.py": 25,
    "tests/unit/vip/test_vip_host_side.py": 25,
    "tests/integration/test_vagrantfile.py": 25,
    "tests/integration/apiserver/test_streams.py": 25,
    "tests/integration/lb/test_lb_failover.py": 20,
}
NEW_LAB_MODULE_SECONDS = 300
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


@pytest.fixture(scope="session", autouse=True)
def _connection_multiplexer_of_this_session(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """berth runs the tests start keep their SSH connections (the default) in a multiplexer of
    this test session, not the user's, and it is stopped when the session ends."""
    from provisioner.connectors import mux  # noqa: PLC0415

    directory = tmp_path_factory.mktemp("mux") / "sock-dir"
    saved = os.environ.get(mux.DIR_ENV)
    os.environ[mux.DIR_ENV] = str(directory)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, EOFError, mux.MuxUnsafe):
            mux.request(directory, "stop")
        if saved is None:
            os.environ.pop(mux.DIR_ENV, None)
        else:
            os.environ[mux.DIR_ENV] = saved
