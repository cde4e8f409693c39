"""A StatefulSet that keeps its data in a berth-local volume, for lab tests whose faults it must
outlive (tests/lab/test_upgrade.py, tests/lab/test_ha_cluster.py; issue 16).

Its one pod, ``ledger-0``, appends a line (its name and a random id) to ``/data/starts`` in its
claim's volume each time it starts, and prints the file: the file on the node's disk is the
record of every start, and a replacement's log shows what the pods before it wrote.

A berth-local volume is a directory on one node, and its PersistentVolume is pinned there by
``nodeAffinity``: an evicted ``ledger-0`` can only come back on that node, so while a drain
keeps the node cordoned its replacement waits, unscheduled (as upstream with a local PV).
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.lab import Lab, run
from provisioner.smoke_image import smoke_image
from tests.lab import clusters

NAME = "ledger"
POD = f"{NAME}-0"
CLAIM = f"data-{POD}"
VOLUMES_DIR = "/var/lib/berth/volumes"

# a shell as PID 1 ignores an untrapped SIGTERM: trap it so an eviction ends the pod at once
APPEND_AND_WAIT = (
    'echo "$(hostname) $(cat /proc/sys/kernel/random/uuid)" >> /data/starts; '
    "cat /data/starts; trap 'exit 0' TERM; while true; do sleep 1; done"
)


def statefulset(*, placement: dict[str, Any]) -> dict[str, Any]:
    """The ``ledger`` StatefulSet; ``placement`` is merged into its pod spec (a nodeSelector or
    an affinity that keeps it off hosts the test faults in other ways)."""
    labels = {"app": NAME}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": NAME, "namespace": "default"},
        "spec": {
            "replicas": 1,
            "serviceName": NAME,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    **placement,
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "ledger",
                            "image": smoke_image().reference,
                            "imagePullPolicy": "Never",
                            "command": ["/bin/sh", "-c", APPEND_AND_WAIT],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                },
            },
            # no storageClassName: the cluster's default class, berth-local (WFFC)
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "16Mi"}},
                    },
                }
            ],
        },
    }


@dataclass(frozen=True)
class Record:
    """Where ``ledger-0`` runs and what its volume holds."""

    uid: str
    node: str
    volume: str
    starts: list[str]
    """The lines of ``/data/starts`` read from the node's disk (one per start)."""


@dataclass
class Ledger:
    lab: Lab
    kubeconfig: Path

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        result = clusters.kubectl(self.kubeconfig, *args, stdin=stdin)
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr[-2000:]}"
        return result.stdout

    def get(self, *args: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json"))
        return found

    def create(self, *, placement: dict[str, Any]) -> Record:
        """Create the StatefulSet; its first pod's record once it has written it."""
        self.kubectl("apply", "-f", "-", stdin=json.dumps(statefulset(placement=placement)))
        record = self.wait_running(timeout=180)
        assert len(record.starts) == 1, record
        return record

    def _running_pod(self, other_than: str | None) -> dict[str, Any] | None:
        result = clusters.kubectl(self.kubeconfig, "get", "pod", POD, "-o", "json")
        if result.returncode != 0:
            return None  # not (re)created yet, or the API is switching over
        pod: dict[str, Any] = json.loads(result.stdout)
        if pod["metadata"]["uid"] == other_than or pod["metadata"].get("deletionTimestamp"):
            return None
        conditions = (pod.get("status") or {}).get("conditions") or []
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        return pod if ready else None

    def wait_running(self, *, other_than: str | None = None, timeout: float) -> Record:
        """``ledger-0`` Ready (a pod other than uid ``other_than``) and its record."""
        try:
            pod = clusters.wait_for(
                f"{POD} Ready", lambda: self._running_pod(other_than), timeout=timeout
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnose()}") from None
        claim = self.get("pvc", CLAIM)
        assert claim["status"]["phase"] == "Bound", claim["status"]
        volume = str(claim["spec"]["volumeName"])
        node = str(pod["spec"]["nodeName"])

        def written() -> list[str] | None:
            # the container appends right after it starts: wait for this pod's line
            lines = self.starts(node, volume)
            return lines if lines and lines[-1].startswith(f"{POD} ") else None

        starts = clusters.wait_for(f"{POD}'s line in its volume", written, timeout=90)
        return Record(str(pod["metadata"]["uid"]), node, volume, starts)

    def diagnose(self) -> str:
        """What the cluster says about the ledger (for a failure message)."""
        parts = []
        for args in (
            ("get", "pods,pvc,pv,nodes", "-o", "wide"),
            ("describe", "pod", POD),
            ("get", "events", "-A", "--sort-by=.lastTimestamp"),
        ):
            out = clusters.kubectl(self.kubeconfig, *args)
            parts.append(f"$ kubectl {' '.join(args)}\n{out.stdout[-6000:]}{out.stderr[-500:]}")
        for host in self.lab.hosts:
            _code, journal, _err = run(
                self.lab,
                host.name,
                "journalctl -u berth-agent -u berth-scheduler -u berth-controller-manager "
                "--no-pager -n 4000 | grep -i -e ledger -e 'data-ledger' | tail -40",
            )
            parts.append(f"{host.name} journal:\n{journal}")
        return "\n".join(parts)

    def starts(self, node: str, volume: str) -> list[str]:
        path = shlex.quote(f"{VOLUMES_DIR}/{volume}/starts")
        code, out, err = run(self.lab, node, f"cat {path}")
        assert code == 0, f"{node}: cat {path}: {err}"
        return out.splitlines()

    def pinned_node(self, volume: str) -> list[str]:
        """The nodes the volume's nodeAffinity allows (the local provisioner names one)."""
        terms = self.get("pv", volume)["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        return [str(v) for t in terms for e in t["matchExpressions"] for v in e["values"]]

    def delete(self, record: Record) -> None:
        """Delete the StatefulSet and its claim (whenDeleted Retain kept it), and wait until
        the volume and its directory are gone (reclaim Delete)."""
        self.kubectl("delete", "statefulset", NAME, "--wait=true", "--timeout=120s")
        self.kubectl("delete", "pvc", CLAIM, "--wait=false")
        path = shlex.quote(f"{VOLUMES_DIR}/{record.volume}")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            gone = clusters.kubectl(self.kubeconfig, "get", "pv", record.volume).returncode != 0
            if gone and run(self.lab, record.node, f"test -e {path}")[0] != 0:
                return
            time.sleep(1)
        raise AssertionError(f"{record.volume} or {path} still there after 120 s")
