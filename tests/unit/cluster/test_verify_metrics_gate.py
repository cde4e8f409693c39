"""``berth verify``'s /metrics checks wait for a component that is still starting: right after an
apply an agent has registered its Node (and runs pods) before its own server listens."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from provisioner.spec.load import parse_spec
from provisioner.verify import cluster

SPEC = (
    "apiVersion: berth.dev/v1alpha1\nkind: Cluster\nmetadata: {name: v}\nspec:\n"
    "  ssh: {user: root, identityFile: id}\n"
    "  hosts:\n    - {name: n1, address: 10.0.0.11, roles: [control-plane, worker]}\n"
)
NODE = {
    "n1": {
        "status": {
            "addresses": [{"type": "InternalIP", "address": "10.0.0.11"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        }
    }
}


@pytest.fixture
def endpoints(monkeypatch: pytest.MonkeyPatch) -> dict[int, int]:
    """Each port refuses this many more connections before it answers with every figure."""
    refusals: dict[int, int] = {}

    def get_text(_ctx: ssl.SSLContext, _address: str, port: int, _path: str, _name: str) -> str:
        if refusals.get(port, 0) > 0:
            refusals[port] -= 1
            raise ConnectionRefusedError(111, "Connection refused")
        figures = [f for names in cluster.METRIC_FIGURES.values() for f in names]
        return "".join(f"# TYPE {f} counter\n" for f in figures)

    monkeypatch.setattr(cluster, "_get_text", get_text)
    monkeypatch.setattr(
        cluster, "load_kubeconfig", lambda _path: SimpleNamespace(ssl_context=lambda: None)
    )
    monkeypatch.setattr(cluster, "METRICS_RETRY_EVERY", 0.01)
    return refusals


def _run(tmp_path: Path, **kwargs: Any) -> dict[str, bool]:
    (tmp_path / "id").write_text("key")
    spec = parse_spec(SPEC, source=tmp_path / "cluster.yaml")
    results = cluster._metrics(tmp_path / "admin.conf", spec, NODE, **kwargs)
    return {r.name: r.ok for r in results}


def test_an_agent_still_starting_passes_once_it_listens(
    tmp_path: Path, endpoints: dict[int, int]
) -> None:
    endpoints[10250] = 5
    assert _run(tmp_path, within=30) == {
        "API server on n1 /metrics answers": True,
        "agent on n1 /metrics answers": True,
    }
    assert endpoints[10250] == 0


def test_an_endpoint_that_never_answers_fails_at_the_deadline(
    tmp_path: Path, endpoints: dict[int, int]
) -> None:
    endpoints[10250] = 10**9
    assert _run(tmp_path, within=0.2) == {
        "API server on n1 /metrics answers": True,
        "agent on n1 /metrics answers": False,
    }


def test_a_node_that_just_registered_passes_once_it_is_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify follows the apply at once: a node that is not Ready at the first listing passes
    once it is (it used to fail on that first listing)."""
    (tmp_path / "id").write_text("key")
    spec = parse_spec(SPEC, source=tmp_path / "cluster.yaml")
    ready = [False, False, True]
    listings: list[bool] = []

    class Nodes:
        async def list(self, _resource: Any) -> SimpleNamespace:
            now = ready[min(len(listings), len(ready) - 1)]
            listings.append(now)
            status = "True" if now else "False"
            node = {
                "metadata": {
                    "name": "n1",
                    "labels": {
                        "node-role.kubernetes.io/control-plane": "",
                        "node-role.kubernetes.io/worker": "",
                    },
                },
                "spec": {},
                "status": {"conditions": [{"type": "Ready", "status": status}]},
            }
            return SimpleNamespace(items=[node])

    async def no_wait(_seconds: float) -> None:
        return None

    monkeypatch.setattr(asyncio, "sleep", no_wait)
    results, _nodes = asyncio.run(cluster._node_checks(Nodes(), spec))  # type: ignore[arg-type]
    assert {r.name: r.ok for r in results}["node n1 Ready"]
    assert listings == [False, False, True]
