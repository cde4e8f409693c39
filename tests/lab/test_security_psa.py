"""Pod Security Admission on a real cluster (issue 13): under the spec's default policy a pod
that mounts the host's ``/`` is refused by the API server, with upstream's message through
unmodified kubectl, while an ordinary pod still runs (with a ``restricted`` warning).

One lab host (control plane and worker, runc), the spec as ``berth lab up`` writes it with no
``podSecurity`` section: the secure default comes from the spec model.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.smoke_image import smoke_image
from tests.lab import clusters
from tests.lab.conftest import LabFactory

pytestmark = pytest.mark.lab


@dataclass
class Cluster:
    kubeconfig: Path
    image: str

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return clusters.kubectl(self.kubeconfig, *args, stdin=stdin)


@pytest.fixture(scope="module")
def cluster(lab_factory: LabFactory, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    lab = lab_factory(1)
    work = tmp_path_factory.mktemp("security-psa")
    document = yaml.safe_load(lab.spec_path.read_text())
    assert "podSecurity" not in document["spec"], "the default policy must come from the model"
    return Cluster(clusters.apply_lab_spec(lab, work), smoke_image().reference)


def _pod(name: str, image: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["/bin/sh", "-c", "exec sleep 3600"],
                    **({"volumeMounts": [{"name": "root", "mountPath": "/host"}]} if spec else {}),
                }
            ],
            **spec,
        },
    }


def test_a_pod_mounting_the_hosts_root_is_refused_by_default(cluster: Cluster) -> None:
    hostile = _pod(
        "take-the-node", cluster.image, volumes=[{"name": "root", "hostPath": {"path": "/"}}]
    )
    refused = cluster.kubectl("apply", "-f", "-", stdin=json.dumps(hostile))
    assert refused.returncode != 0, refused.stdout
    assert (
        'pods "take-the-node" is forbidden: violates PodSecurity "baseline:latest":'
        ' hostPath volumes (volume "root")'
    ) in refused.stderr
    missing = cluster.kubectl("get", "pod", "take-the-node")
    assert missing.returncode != 0
    assert "NotFound" in missing.stderr


def test_an_ordinary_pod_still_runs_with_a_restricted_warning(cluster: Cluster) -> None:
    created = cluster.kubectl("apply", "-f", "-", stdin=json.dumps(_pod("ordinary", cluster.image)))
    assert created.returncode == 0, created.stderr
    assert 'Warning: would violate PodSecurity "restricted:latest"' in created.stderr
    deadline = time.monotonic() + 120
    phase = ""
    while time.monotonic() < deadline:
        got = cluster.kubectl("get", "pod", "ordinary", "-o", "jsonpath={.status.phase}")
        phase = got.stdout.strip()
        if phase == "Running":
            break
        time.sleep(1)
    assert phase == "Running"
