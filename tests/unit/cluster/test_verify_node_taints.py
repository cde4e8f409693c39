"""verify's node listing waits, as for Ready, until a node that came back has lost the lifecycle
controller's not-ready/unreachable taints: the smoke workload needs a schedulable node (CI: a
slow VM's node was Ready with the unreachable taint still on, and the smoke check failed)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

from provisioner.spec import load_spec
from provisioner.verify import cluster
from tests.harness.verify_clock import FakeClock

SPEC = """\
apiVersion: berth.dev/v1alpha1
kind: Cluster
metadata: {name: c}
spec:
  hosts:
    - {name: n1, address: 10.0.0.1, roles: [control-plane, worker]}
"""


def _node(taints: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "metadata": {"name": "n1", "labels": {}},
        "spec": {"taints": taints},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


class _Listing:
    """Answers each LIST of Nodes with the next snapshot (the last one from then on)."""

    def __init__(self, *snapshots: dict[str, Any]) -> None:
        self.snapshots = list(snapshots)
        self.lists = 0

    async def list(self, resource: object) -> Any:
        self.lists += 1
        item = self.snapshots[min(self.lists, len(self.snapshots)) - 1]
        return type("Listed", (), {"items": [item]})()


def test_a_ready_node_still_tainted_unreachable_is_waited_for(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(SPEC)
    spec = load_spec(tmp_path / "c.yaml")
    tainted = _node([{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}])
    client = _Listing(tainted, tainted, _node([]))
    clock = FakeClock()
    results, nodes = asyncio.run(cluster._node_checks(cast(Any, client), spec, clock=clock))
    assert client.lists == 3
    assert cluster._schedulable(nodes["n1"])
    assert all(r.ok for r in results if r.name == "node n1 Ready")


def test_a_node_tainted_by_the_operator_is_not_waited_for(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(SPEC)
    spec = load_spec(tmp_path / "c.yaml")
    client = _Listing(_node([{"key": "dedicated", "effect": "NoSchedule"}]), _node([]))
    asyncio.run(cluster._node_checks(cast(Any, client), spec, clock=FakeClock()))
    assert client.lists == 1
