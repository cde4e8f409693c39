"""The shipped entry points as separate processes, the way hosts run them:
``python -m berth.controllers`` (two replicas, leader-elected), ``python -m berth.scheduler``
and ``python -m berth.agent --config`` (a two-node simulated fleet) roll out a Deployment that
``kubectl rollout status`` sees finish."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from berth.api.resources import DEPLOYMENTS, LEASES, NODES
from berth.client.http import HttpClient
from tests.harness.apiserver import ServerHandle

from .cluster import KUBECTL, deployment


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=err)


def test_entry_points_run_a_deployment(server: ServerHandle, tmp_path: Path) -> None:
    kubeconfig = server.kubeconfig("admin", groups=["system:masters"])
    agent_cfg = tmp_path / "agent.yaml"
    agent_cfg.write_text(
        yaml.safe_dump(
            {
                "kubeconfig": str(kubeconfig),
                "simulate": {"count": 2, "namePrefix": "proc-"},
                "renewIntervalSeconds": 1,
            }
        )
    )
    # The components run under their own identities, as in a cluster: their least-privilege
    # roles must carry leader election and every controller's work.
    cm = ["--kubeconfig", str(server.kubeconfig("system:kube-controller-manager", groups=[]))]
    scheduler = ["--kubeconfig", str(server.kubeconfig("system:kube-scheduler", groups=[]))]
    common = [
        "--lease-duration",
        "4",
        "--renew-deadline",
        "3",
        "--retry-period",
        "0.5",
    ]
    procs = [
        spawn(
            ["-m", "berth.controllers", *cm, *common, "--identity", "cm-a"],
            tmp_path / "cm-a.log",
        ),
        spawn(
            ["-m", "berth.controllers", *cm, *common, "--identity", "cm-b"],
            tmp_path / "cm-b.log",
        ),
        spawn(["-m", "berth.scheduler", *scheduler, *common], tmp_path / "scheduler.log"),
        spawn(["-m", "berth.agent", "--config", str(agent_cfg)], tmp_path / "agent.log"),
    ]
    try:
        asyncio.run(_drive(server, kubeconfig, tmp_path))
        for p in procs:
            assert p.poll() is None, (tmp_path / "agent.log").read_text()[-2000:]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    logs = {p.name: p.read_text() for p in tmp_path.glob("*.log")}
    assert "Traceback" not in "".join(logs.values()), logs
    for name in ("cm-a.log", "cm-b.log", "scheduler.log"):
        assert "Forbidden" not in logs[name], logs[name]  # an RBAC denial of a component


async def _drive(server: ServerHandle, kubeconfig: Path, tmp: Path) -> None:
    api = HttpClient.from_kubeconfig(kubeconfig)
    try:
        for _ in range(100):
            if len((await api.list(NODES)).items) == 2:
                break
            await asyncio.sleep(0.1)
        await api.create(DEPLOYMENTS, deployment("proc", replicas=2))
        env: dict[str, Any] = {"HOME": str(tmp), "KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin"}
        proc = await asyncio.create_subprocess_exec(
            KUBECTL,
            "rollout",
            "status",
            "deployment/proc",
            "--timeout=60s",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 90)
        assert proc.returncode == 0, err.decode()
        assert b"successfully rolled out" in out
        lease = await api.get(LEASES, "kube-controller-manager", namespace="kube-system")
        assert lease["spec"]["holderIdentity"] in ("cm-a", "cm-b")
        node_lease = await api.get(LEASES, "proc-0", namespace="kube-node-lease")
        assert node_lease["spec"]["holderIdentity"] == "proc-0"
    finally:
        await api.close()
        await asyncio.sleep(0.3)
