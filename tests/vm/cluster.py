"""A berth cluster on a VM lab, as the VM tests drive it: berth with the cluster's own state
dir, kubectl as the admin, commands on a host over SSH, and boot ids to tell a reboot."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import paramiko
import yaml

from provisioner.lab import run
from provisioner.lab.vmlab import VmLab
from tests.lab.clusters import BERTH, kubectl


class VmCluster:
    """A VM lab and the cluster applied on it (spec and state under ``work``)."""

    def __init__(self, lab: VmLab, work: Path) -> None:
        self.lab = lab
        self.work = work
        document = yaml.safe_load(lab.spec_path.read_text())
        document["spec"]["ssh"]["identityFile"] = str(lab.key_path)
        document["spec"]["ssh"]["knownHostsFile"] = str(lab.known_hosts_path)
        self.spec.write_text(yaml.safe_dump(document, sort_keys=False))

    @property
    def spec(self) -> Path:
        """The lab's spec with absolute key paths."""
        return self.work / "cluster.yaml"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig ``berth apply`` wrote."""
        return self.work / "state" / self.lab.name / "kubeconfigs" / "admin.conf"

    def ssh(self, command: str, *, host: str = "n1", timeout: float = 60.0) -> str:
        """``command``'s output on ``host``; the test fails on a non-zero exit."""
        status, out, err = run(self.lab, host, command, timeout=timeout)
        assert status == 0, f"{host}: {command}: exit {status}: {err}"
        return out.strip()

    def boot_id(self, host: str = "n1") -> str | None:
        """The host's boot id; None while it is down or booting (no SSH yet)."""
        try:
            return self.ssh("cat /proc/sys/kernel/random/boot_id", host=host, timeout=20)
        except (OSError, AssertionError, EOFError, paramiko.SSHException):
            return None

    def berth(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run berth with this cluster's state dir; emulated hosts are slow: 30 min at most."""
        env = {**os.environ, "BERTH_STATE_DIR": str(self.work / "state")}
        return subprocess.run(
            [*BERTH, *args], capture_output=True, text=True, env=env, timeout=1800, check=False
        )

    def get(self, *args: str) -> Any:
        """``kubectl get ... -o json``, parsed; fails the test on a non-zero exit."""
        got = kubectl(self.kubeconfig, "get", *args, "-o", "json")
        assert got.returncode == 0, f"kubectl get {' '.join(args)}: {got.stderr[-2000:]}"
        return json.loads(got.stdout)

    def node_ready(self, name: str) -> bool:
        """Whether node ``name`` is Ready (False while the API server does not answer)."""
        got = kubectl(
            self.kubeconfig,
            "get", "node", name, "-o",
            'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
        )  # fmt: skip
        return got.returncode == 0 and got.stdout.strip() == "True"
