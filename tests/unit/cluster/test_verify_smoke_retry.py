"""verify's smoke workload on an API server that drops requests (an HA control plane under
load, the VIP moving): unanswered writes are sent again, a write that committed without an
answer is not an error, and what still fails is a failed check, not a traceback."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from berth.client import errors as api_errors
from berth.client.http import HttpClient
from provisioner import clusterapi
from provisioner.verify import cluster as verify_cluster

Obj = dict[str, Any]


class DroppingApi:
    """Commits every create but leaves the first answer for each name unsent (Unreachable);
    the first read of each pod goes unanswered too. Pods run on the node they name."""

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.objects: dict[str, Obj] = {}
        self.creates: list[str] = []
        self.dropped: set[str] = set()

    def _drop_once(self, key: str) -> None:
        if self.down:
            raise api_errors.Unreachable("connection refused")
        if key not in self.dropped:
            self.dropped.add(key)
            raise api_errors.Unreachable(f"no answer for {key}")

    async def create(self, resource: Any, body: Obj, namespace: str | None = None) -> Obj:
        name = body["metadata"]["name"]
        self.creates.append(name)
        if self.down:
            raise api_errors.Unreachable("connection refused")
        if name in self.objects:
            raise api_errors.AlreadyExists(409, "AlreadyExists", f"{name} exists")
        self.objects[name] = body
        self._drop_once(f"create {name}")
        return body

    async def get(self, resource: Any, name: str, namespace: str | None = None) -> Obj:
        self._drop_once(f"get {name}")
        pod = self.objects[name]
        node = name.split("-")[1]  # smoke-NODE-RUN: the scheduler's part, done here
        return {**pod, "spec": {**pod["spec"], "nodeName": node}, "status": {"phase": "Succeeded"}}

    async def delete(self, resource: Any, name: str, **_: Any) -> None:
        self.objects.pop(name, None)


def _nodes() -> dict[str, Obj]:
    ready = {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {}}
    return {n: {"metadata": {"name": n}, "spec": {}, "status": ready} for n in ("n1", "n2")}


@pytest.fixture(autouse=True)
def quick_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify_cluster, "SMOKE_RETRY", clusterapi.Retry(within=2.0, pause=0.01))


def test_smoke_writes_are_resent_and_a_committed_unanswered_create_is_fine() -> None:
    api = DroppingApi()
    results = asyncio.run(
        verify_cluster._smoke(cast(HttpClient, api), _nodes(), image=None, probe=None)
    )
    assert [r.ok for r in results] == [True, True], results
    # every create was sent twice (the first answer lost), the second met AlreadyExists
    assert sorted(set(api.creates)) == sorted(api.creates[::2])
    assert len(api.creates) == 2 * len(set(api.creates)) == 6


def test_an_api_server_that_stays_away_is_a_failed_check_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = DroppingApi(down=True)
    with pytest.raises(api_errors.Unreachable):
        asyncio.run(verify_cluster._smoke(cast(HttpClient, api), _nodes(), image=None, probe=None))

    async def node_checks(client: Any, spec: Any) -> tuple[list[Any], dict[str, Obj]]:
        return [], _nodes()

    async def nothing(*_: Any, **__: Any) -> list[Any]:
        return []

    monkeypatch.setattr(verify_cluster, "_node_checks", node_checks)
    monkeypatch.setattr(verify_cluster, "_leader_checks", nothing)
    monkeypatch.setattr(verify_cluster, "_readyz", lambda *_: [])
    monkeypatch.setattr(verify_cluster, "_metrics", lambda *_: [])
    monkeypatch.setattr(verify_cluster, "ingress_checks", lambda *_: [])
    monkeypatch.setattr(verify_cluster, "admin_client", lambda *_, **__: _Closing(api))
    spec = cast(Any, type("Spec", (), {"api_server_url": "https://vip:6443", "spec": None})())
    spec.spec = type("S", (), {"runtime": "simulated"})()
    results = asyncio.run(verify_cluster._all(cast(Any, None), spec, smoke=True, probe=None))
    failed = [r for r in results if not r.ok]
    assert [r.name for r in failed] == ["smoke workload"]
    assert "Unreachable" in failed[0].detail


class _Closing:
    def __init__(self, api: DroppingApi) -> None:
        self.api = api

    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)

    async def close(self) -> None:
        pass
