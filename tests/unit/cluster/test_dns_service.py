"""The kube-dns Service the nodes phase keeps: created once at the spec's clusterDNS."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest

from berth.api.resources import SERVICES
from berth.client import errors as api_errors
from berth.client.http import HttpClient
from provisioner.phases.cluster.dns import ensure_dns_service
from provisioner.spec import load_spec
from tests.harness.fake_client import FakeClient

from .test_runc_nodes import SPEC


def test_kube_dns_is_created_once_and_a_wrong_address_is_reported(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(SPEC)
    spec = load_spec(tmp_path / "c.yaml")
    api = FakeClient()
    client = cast(HttpClient, api)
    said: list[str] = []

    async def body() -> None:
        assert await ensure_dns_service(client, spec, dry_run=True, report=said.append) == 1
        assert api.objects(SERVICES) == [], "a dry run writes nothing"
        assert await ensure_dns_service(client, spec, dry_run=False, report=said.append) == 1
        (svc,) = api.objects(SERVICES)
        assert (svc["metadata"]["namespace"], svc["metadata"]["name"]) == (
            "kube-system",
            "kube-dns",
        )
        assert svc["spec"]["clusterIP"] == str(spec.spec.network.cluster_dns)
        assert "selector" not in svc["spec"]
        ports: list[dict[str, Any]] = svc["spec"]["ports"]
        assert {(p["port"], p["protocol"]) for p in ports} == {(53, "UDP"), (53, "TCP")}
        assert await ensure_dns_service(client, spec, dry_run=False, report=said.append) == 0
        svc["spec"]["clusterIP"] = "10.96.0.99"
        await api.update(SERVICES, svc)
        assert await ensure_dns_service(client, spec, dry_run=False, report=said.append) == 0
        assert "delete the Service" in said[-1]

    asyncio.run(body())


def test_planning_with_no_api_up_predicts_the_service_and_applying_fails(tmp_path: Path) -> None:
    # an admin kubeconfig outlives a destroyed cluster: planning a new one must not need its API
    (tmp_path / "c.yaml").write_text(SPEC)
    spec = load_spec(tmp_path / "c.yaml")

    class Down(FakeClient):
        async def get(self, *args: Any, **kwargs: Any) -> Any:
            raise api_errors.Unreachable("GET kube-dns: connection refused")

    client = cast(HttpClient, Down())
    said: list[str] = []

    async def body() -> None:
        assert await ensure_dns_service(client, spec, dry_run=True, report=said.append) == 1
        assert said == [f"service kube-system/kube-dns: create at {spec.spec.network.cluster_dns}"]
        with pytest.raises(api_errors.Unreachable):
            await ensure_dns_service(client, spec, dry_run=False, report=said.append)

    asyncio.run(body())
