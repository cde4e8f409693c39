"""Jobs and CronJobs on a real berth cluster (issue 16), driven with unmodified kubectl.

One 1-host lab (control plane and a runc node on the same host), one cluster for the module:

* a Job with completions=5 and parallelism=2 runs exactly five pods, never more than two at
  once, and completes;
* a Job whose pods exit 3 stops at its backoffLimit (with the back-off between attempts);
* ``kill -9`` of the controller manager in the middle of a Job, with pods finishing while it
  is down: the Job still ends with exactly ``completions`` successes and no pod is left
  holding the tracking finalizer;
* a CronJob fires on its schedule and, with ``concurrencyPolicy: Forbid``, skips the next
  time while its Job still runs.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from provisioner.lab import Lab
from provisioner.smoke_image import smoke_image
from tests.lab import clusters
from tests.lab.conftest import LabFactory
from tests.lab.workloads import Node

pytestmark = pytest.mark.lab
T = TypeVar("T")
TRACKING = "batch.kubernetes.io/job-tracking"


@dataclass
class Cluster:
    lab: Lab
    kubeconfig: Path
    image: str
    host: Node

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = clusters.kubectl(self.kubeconfig, *args, stdin=stdin)
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr[-2000:]}"
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def job_pods(self, job: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.json(
            "get", "pods", "-l", f"batch.kubernetes.io/job-name={job}"
        )["items"]
        return items


def wait_for(what: str, check: Callable[[], T | None], *, timeout: float = 180.0) -> T:
    return clusters.wait_for(what, check, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(lab_factory: LabFactory, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    lab = lab_factory(1)
    work = tmp_path_factory.mktemp("batch")
    kubeconfig = clusters.apply_lab_spec(lab, work)
    host = lab.hosts[0]
    return Cluster(
        lab, kubeconfig, smoke_image().reference, Node(lab, host.name, host.address, "", "")
    )


def _job(name: str, image: str, script: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"template": _template(image, script), **spec},
    }


def _template(image: str, script: str) -> dict[str, Any]:
    return {
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
            "containers": [
                {
                    "name": "work",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["/bin/sh", "-c", script],
                }
            ],
        }
    }


def _condition(job: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c["type"] == type_ and c["status"] == "True":
            return dict(c)
    return None


def _finished(c: Cluster, name: str, type_: str, timeout: float = 240) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        job: dict[str, Any] = c.json("get", "job", name)
        return job if _condition(job, type_) else None

    return wait_for(f"job {name} {type_}", check, timeout=timeout)


def test_completions_five_parallelism_two_finish_exactly_five(cluster: Cluster) -> None:
    c = cluster
    c.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(
        _job("five", c.image, "sleep 3", completions=5, parallelism=2)))  # fmt: skip
    most = 0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        job = c.json("get", "job", "five")
        running = [
            p for p in c.job_pods("five") if (p.get("status") or {}).get("phase") == "Running"
        ]
        most = max(most, len(running))
        if _condition(job, "Complete"):
            break
        time.sleep(0.5)
    job = _finished(c, "five", "Complete", timeout=5)
    assert job["status"]["succeeded"] == 5
    assert job["status"].get("failed", 0) == 0
    pods = c.job_pods("five")
    assert len(pods) == 5
    assert all(p["status"]["phase"] == "Succeeded" for p in pods)
    assert most <= 2
    out = c.kubectl("wait", "--for=condition=complete", "job/five", "--timeout=10s").stdout
    assert "condition met" in out


def test_failing_job_stops_at_its_backoff_limit(cluster: Cluster) -> None:
    c = cluster
    c.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(
        _job("doomed", c.image, "exit 3", backoffLimit=2)))  # fmt: skip
    job = _finished(c, "doomed", "Failed")
    failed = _condition(job, "Failed")
    assert failed is not None
    assert failed["reason"] == "BackoffLimitExceeded"
    assert job["status"]["failed"] == 3
    time.sleep(12)  # longer than the first back-off step: no fourth attempt comes
    pods = c.job_pods("doomed")
    assert len(pods) == 3
    assert all(p["status"]["phase"] == "Failed" for p in pods)
    starts = sorted(p["status"]["startTime"] for p in pods)
    assert starts[0] < starts[1] < starts[2]


def test_controller_manager_kill_mid_job_loses_and_doubles_nothing(cluster: Cluster) -> None:
    c = cluster
    c.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(
        _job("steady", c.image, "sleep 6", completions=6, parallelism=3)))  # fmt: skip

    def under_way() -> bool:
        # three pods started and at least one still running: mid-job. (Not "three Running at
        # once": under load the third pod can start more than the 6 s after the first that it
        # takes that one to finish, and the poll never sees all three together.)
        phases = [(p.get("status") or {}).get("phase") for p in c.job_pods("steady")]
        started = sum(1 for phase in phases if phase in ("Running", "Succeeded"))
        return started >= 3 and "Running" in phases

    wait_for("three pods started, one still running", under_way)
    c.host.ssh("systemctl kill -s KILL berth-controller-manager.service")
    # The three pods finish while no controller manager runs (systemd restarts it after 2 s,
    # and the new process waits for the old leader's lease to run out).
    job = _finished(c, "steady", "Complete", timeout=300)
    assert job["status"]["succeeded"] == 6
    assert job["status"].get("failed", 0) == 0
    assert not job["status"].get("uncountedTerminatedPods")
    pods = c.job_pods("steady")
    assert len(pods) == 6
    assert all(p["status"]["phase"] == "Succeeded" for p in pods)
    assert all(TRACKING not in (p["metadata"].get("finalizers") or []) for p in pods)
    restarts = c.host.ssh("systemctl show -p NRestarts berth-controller-manager.service")
    assert restarts.stdout.decode().strip() != "NRestarts=0"


def test_cronjob_fires_and_honours_forbid(cluster: Cluster) -> None:
    c = cluster
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "tick", "namespace": "default"},
        "spec": {
            "schedule": "* * * * *",
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {"spec": {"template": _template(c.image, "sleep 150")}},
        },
    }
    c.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(cronjob))

    def jobs() -> list[dict[str, Any]]:
        items = c.json("get", "jobs")["items"]
        return [j for j in items if j["metadata"]["name"].startswith("tick-")]

    # up to a minute until the schedule's next minute, then controller and pod work (CPU)
    (first,) = wait_for("the first scheduled Job", jobs, timeout=150)
    minutes = int(first["metadata"]["name"].rsplit("-", 1)[1])
    assert first["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]

    def skipped() -> bool:
        events = c.json("get", "events", "--field-selector", "involvedObject.name=tick")
        return any(e["reason"] == "JobAlreadyActive" for e in events["items"])

    wait_for("the next time skipped (Forbid)", skipped, timeout=150)
    assert [j["metadata"]["name"] for j in jobs()] == [f"tick-{minutes}"]
    cj = c.json("get", "cronjob", "tick")
    assert [a["name"] for a in cj["status"]["active"]] == [f"tick-{minutes}"]
    c.kubectl("delete", "cronjob", "tick")
