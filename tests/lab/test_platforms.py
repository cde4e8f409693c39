"""Hosts as users have them: clusters mixing Debian 12 (python 3.11) and Debian 13 (3.13).

One lab of three hosts: n1 boots Debian 12 (bookworm), n2 and n3 Debian 13 (trixie). Each host
is shipped the berth bundle of its own python3 and the .debs of its own release (runc, CNI
plugins, nftables); ``berth apply`` ends with ``berth verify`` (smoke pods on runc on every
node, a Service reaching every pod, DNS, the API checks), so a passing apply is the proof.

* a control plane on Debian 12 with a Debian 13 worker, then torn down clean;
* the reverse on the same hosts: a control plane on Debian 13 with workers on 13 and 12.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.lab import Lab
from tests.lab.clusters import BERTH, apply_lab_spec, kubectl
from tests.lab.conftest import LabFactory

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(900)]

RELEASES = ["bookworm", "trixie", "trixie"]


@pytest.fixture(scope="module")
def mixed_lab(lab_factory: LabFactory) -> Lab:
    return lab_factory(3, releases=RELEASES)


def _ssh(lab: Lab, host: str, command: str) -> str:
    done = subprocess.run(
        [*lab.ssh_argv(host), command], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _hosts(roles: dict[str, list[str]]) -> Any:
    def edit(document: dict[str, Any]) -> None:
        hosts = {h["name"]: h for h in document["spec"]["hosts"]}
        document["spec"]["hosts"] = [{**hosts[name], "roles": r} for name, r in roles.items()]

    return edit


def _destroy(work: Path) -> None:
    env = {**os.environ, "BERTH_STATE_DIR": str(work / "state")}
    done = subprocess.run(
        [*BERTH, "destroy", "-i", str(work / "cluster.yaml"), "--yes"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def _nodes(admin: Path) -> set[str]:
    out = kubectl(admin, "get", "nodes", "-o", "yaml")
    assert out.returncode == 0, out.stderr
    return {n["metadata"]["name"] for n in yaml.safe_load(out.stdout)["items"]}


def test_the_lab_boots_each_release_with_its_own_python(mixed_lab: Lab) -> None:
    assert "bookworm" in _ssh(mixed_lab, "n1", "grep CODENAME /etc/os-release")
    assert _ssh(mixed_lab, "n1", "python3 -V").startswith("Python 3.11.")
    assert "trixie" in _ssh(mixed_lab, "n2", "grep CODENAME /etc/os-release")
    assert _ssh(mixed_lab, "n2", "python3 -V").startswith("Python 3.13.")


def test_control_plane_on_12_and_a_worker_on_13_then_torn_down_clean(
    mixed_lab: Lab, tmp_path: Path
) -> None:
    roles = {"n1": ["control-plane", "worker"], "n2": ["worker"]}
    admin = apply_lab_spec(mixed_lab, tmp_path, _hosts(roles))
    assert _nodes(admin) == {"n1", "n2"}
    # each host runs the bundle built for its own python3, from its own release's packages
    assert "cpython-313" in _ssh(mixed_lab, "n2", "ls /opt/berth/current/site/berth/__pycache__")
    assert "cpython-311" in _ssh(mixed_lab, "n1", "ls /opt/berth/current/site/berth/__pycache__")
    assert "1.1.15" in _ssh(mixed_lab, "n2", "dpkg-query -W -f '${Version}' runc")
    assert "1.1.5" in _ssh(mixed_lab, "n1", "dpkg-query -W -f '${Version}' runc")
    _destroy(tmp_path)
    for host in ("n1", "n2"):
        left = _ssh(
            mixed_lab,
            host,
            "test -e /opt/berth && echo /opt/berth; systemctl list-units 'berth-*' --all"
            " --no-legend --plain",
        )
        assert left == "", f"{host} kept: {left}"


def test_control_plane_on_13_with_workers_on_13_and_12(mixed_lab: Lab, tmp_path: Path) -> None:
    roles = {"n2": ["control-plane", "worker"], "n3": ["worker"], "n1": ["worker"]}
    admin = apply_lab_spec(mixed_lab, tmp_path, _hosts(roles))
    assert _nodes(admin) == {"n1", "n2", "n3"}
    _destroy(tmp_path)
