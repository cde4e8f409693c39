"""Fixtures: one real API server per test module, both kubectl versions, the Python client."""

from __future__ import annotations

import glob
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tests.harness.apiserver import ServerHandle, running_server

from .helpers import Kubectl, Raw

ROOT = Path(__file__).resolve().parents[3]
KUBECTL_120_DIR = ROOT / ".cache" / "kubectl-1.20"
KUBECTL_132 = Path("/usr/bin/kubectl")


def _kubectl_120() -> Path:
    """kubectl 1.20.2 from Debian's ``kubernetes-client`` .deb, extracted (never installed)
    into ``.cache/kubectl-1.20`` once."""
    binary = KUBECTL_120_DIR / "usr" / "bin" / "kubectl"
    if binary.exists():
        return binary
    with tempfile.TemporaryDirectory() as tmp:
        download = ["apt-get", "download", "kubernetes-client"]
        fetched = subprocess.run(download, cwd=tmp, check=False, capture_output=True, timeout=600)
        if fetched.returncode != 0:
            # A fresh machine may have no package lists yet.
            subprocess.run(
                ["apt-get", "update", "-qq"], check=True, capture_output=True, timeout=600
            )
            subprocess.run(download, cwd=tmp, check=True, capture_output=True, timeout=600)
        debs = glob.glob(f"{tmp}/kubernetes-client_*.deb")
        assert debs, "apt-get download kubernetes-client produced no .deb"
        staging = KUBECTL_120_DIR.with_suffix(".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        subprocess.run(["dpkg-deb", "-x", debs[0], str(staging)], check=True, timeout=120)
        staging.rename(KUBECTL_120_DIR)
    return binary


@pytest.fixture(scope="session")
def kubectl_binaries() -> dict[str, Path]:
    binary = _kubectl_120()
    out = subprocess.run(
        [str(binary), "version", "--client", "--short"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert "v1.20.2" in out.stdout
    return {"1.32": KUBECTL_132, "1.20": binary}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    with running_server(tmp_path_factory.mktemp("apiserver"), bookmark_interval=1.0) as srv:
        yield srv


@pytest.fixture(scope="module")
def admin_kubeconfig(server: ServerHandle) -> Path:
    return server.kubeconfig("admin", groups=["system:masters"])


@pytest.fixture(scope="module")
def api(admin_kubeconfig: Path) -> Iterator[k8s.ApiClient]:
    cfg = k8s.Configuration()
    load_kube_config: Any = k8s_config.load_kube_config
    load_kube_config(config_file=str(admin_kubeconfig), client_configuration=cfg)
    with k8s.ApiClient(cfg) as api_client:
        yield api_client


@pytest.fixture(scope="module", params=["1.32", "1.20"])
def kubectl_version(request: pytest.FixtureRequest) -> str:
    """The kubectl versions a module's tests run with; a module testing the server rather
    than the clients overrides this fixture with one version."""
    return str(request.param)


@pytest.fixture(scope="module")
def kubectl(
    kubectl_version: str,
    kubectl_binaries: dict[str, Path],
    admin_kubeconfig: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Kubectl:
    """Unmodified kubectl of ``kubectl_version`` as the admin, with a HOME of its own."""
    home = tmp_path_factory.mktemp(f"home-{kubectl_version}")
    return make_kubectl(kubectl_binaries, kubectl_version, admin_kubeconfig, home)


@pytest.fixture(scope="module")
def raw(server: ServerHandle) -> Iterator[Raw]:
    r = Raw(server, server.client_cert("admin", ["system:masters"]))
    yield r
    r.close()


def make_kubectl(binaries: dict[str, Path], version: str, kubeconfig: Path, home: Path) -> Kubectl:
    return Kubectl(binaries[version], kubeconfig, home, version)
