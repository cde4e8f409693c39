"""Helpers shared by lab tests: tearing labs down (tests/lab and tests/chaos fixtures), applying
a real cluster from the lab's own spec and driving it with kubectl (test_security.py,
test_security_psa.py, test_cluster_workloads.py; :class:`LabCluster` for test_ingress.py,
test_loadbalancer.py and test_cluster_dns.py), and an admin client for one API server of an
HA cluster (test_ha_cluster.py, tests/chaos)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

import yaml
from kubernetes import client
from kubernetes import config as kconfig

from provisioner.errors import LabError
from provisioner.lab import Lab
from provisioner.smoke_image import smoke_image

BERTH = [sys.executable, "-m", "provisioner.cli.main"]
T = TypeVar("T")


def tear_down_labs(made: list[Lab]) -> None:
    """Bring every lab in ``made`` down, newest first, trying all before failing on any."""
    problems = []
    for lab in reversed(made):
        try:
            lab.down()
        except LabError as exc:
            problems.append(f"{lab.name}: {exc.message}")
    assert not problems, f"lab teardown failed: {problems}"


def wait_for(what: str, check: Callable[[], T | None], *, timeout: float) -> T:
    """Poll ``check`` (twice a second) until it returns something truthy.

    An exception from ``check`` counts as "not yet", like a falsy answer: what a lab test polls
    is usually on its way (a pod still starting that ``kubectl exec`` cannot enter yet, a file
    not written yet, a 409/5xx or a refused connection while a component restarts), and on a
    loaded machine that window is long enough to be hit. A real error still fails the test, at
    the deadline, with the last exception shown and chained."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # "not yet" (see the docstring); shown at the deadline
            last, error = None, exc
        else:
            error = None
            if last:
                return last
        time.sleep(0.5)
    if error is not None:
        raise AssertionError(
            f"timed out after {timeout:.0f}s waiting for {what} "
            f"(last attempt raised {type(error).__name__}: {error})"
        ) from error
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def kubectl(
    kubeconfig: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``kubectl`` (one minute at most); the caller judges the exit code."""
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args],
        input=stdin, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def apply_lab_spec(
    lab: Lab, work: Path, edit: Callable[[dict[str, Any]], None] | None = None
) -> Path:
    """``berth apply`` the spec ``berth lab up`` wrote (keys made absolute, then ``edit``
    applied to the document), state under ``work``; return the admin kubeconfig."""
    document = yaml.safe_load(lab.spec_path.read_text())
    if edit is not None:
        edit(document)
    document["spec"]["ssh"]["identityFile"] = str(lab.key_path)
    document["spec"]["ssh"]["knownHostsFile"] = str(lab.known_hosts_path)
    spec = work / "cluster.yaml"
    spec.write_text(yaml.safe_dump(document, sort_keys=False))
    state = work / "state"
    env = {**os.environ, "BERTH_STATE_DIR": str(state)}
    applied = subprocess.run(
        [*BERTH, "apply", "-i", str(spec), "--yes"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stdout[-4000:] + applied.stderr[-2000:]
    return state / lab.name / "kubeconfigs" / "admin.conf"


@dataclass
class LabCluster:
    """A cluster ``berth apply`` made from a lab's own spec (state under ``work``), driven as
    the admin with kubectl and on its hosts with ssh; ``image`` is the smoke image the lab's
    nodes hold (pods use it with imagePullPolicy Never). Modules subclass it for their own
    probes."""

    lab: Lab
    work: Path
    kubeconfig: Path
    image: str

    @classmethod
    def apply(cls, lab: Lab, work: Path) -> Self:
        """``berth apply`` the lab's spec (timed, for the log) and return the cluster."""
        started = time.monotonic()
        kubeconfig = apply_lab_spec(lab, work)
        elapsed = time.monotonic() - started
        print(f"berth apply ({len(lab.hosts)} hosts, runc): {elapsed:.1f}s")
        return cls(lab, work, kubeconfig, smoke_image().reference)

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        """kubectl's output; the test fails on a non-zero exit."""
        result = kubectl(self.kubeconfig, *args, stdin=stdin)
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr[-2000:]}"
        return result.stdout

    def ssh(self, host: str, command: str) -> subprocess.CompletedProcess[str]:
        """Run ``command`` on ``host`` (two minutes at most); the caller judges the exit."""
        return subprocess.run(
            self.lab.ssh_argv(host, [command]),
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    @property
    def addresses(self) -> list[str]:
        """The hosts' addresses on the lab bridge, in host order."""
        return [h.address for h in self.lab.hosts]


def web_pod_spec(image: str, page: str, *, verbose: bool = False) -> dict[str, Any]:
    """A pod spec (tolerating every NoSchedule taint) whose busybox httpd serves, on its port
    ``http`` (8080), the page the shell command ``page`` prints (written once at start);
    Ready once the port is open. ``verbose`` makes httpd log each request's client address."""
    httpd = "httpd -f -vv" if verbose else "httpd -f"
    serve = f"{page} > /www/index.html && exec {httpd} -p 8080 -h /www"
    return {
        "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {
                "name": "web",
                "image": image,
                "imagePullPolicy": "Never",
                "command": ["/bin/sh", "-c", serve],
                "ports": [{"containerPort": 8080, "name": "http"}],
                "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1},
                "volumeMounts": [{"name": "www", "mountPath": "/www"}],
            }
        ],
        "volumes": [{"name": "www", "emptyDir": {}}],
    }


def admin_client_for(
    admin_kubeconfig: Path, address: str, workdir: Path, host: str
) -> client.ApiClient:
    """An admin client dialling the API server at ``address`` directly (not the spec's
    endpoint), without retries (failures must be seen, not hidden); its kubeconfig is written
    to ``workdir/admin-<host>.conf``."""
    doc = yaml.safe_load(admin_kubeconfig.read_text())
    for entry in doc["clusters"]:
        entry["cluster"]["server"] = f"https://{address}:6443"
    path = workdir / f"admin-{host}.conf"
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    configuration = client.Configuration()
    kconfig.load_kube_config(str(path), client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.retries = 0
    return client.ApiClient(configuration)
