"""Client building blocks without a server: kubeconfig loading, resource lookup and keys, and
the fake API's server semantics that controllers rely on (selectors, patches and quantities
are tested with :mod:`berth.api` in tests/unit/api)."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
import yaml

from berth.api.resources import DEPLOYMENTS, PODS, for_kind
from berth.client import errors
from berth.client.keys import split_key
from berth.client.kubeconfig import KubeconfigError, load_kubeconfig
from tests.harness.fake_client import FakeClient


def kubeconfig(tmp: Path, **user: str) -> Path:
    doc = {
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": "https://127.0.0.1:6443/",
                    "certificate-authority-data": base64.b64encode(b"CA").decode(),
                },
            }
        ],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path = tmp / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_kubeconfig_embedded_data_and_relative_files(tmp_path: Path) -> None:
    (tmp_path / "client.key").write_bytes(b"KEY")
    path = kubeconfig(
        tmp_path,
        **{
            "client-certificate-data": base64.b64encode(b"CERT").decode(),
            "client-key": "client.key",
        },
    )
    creds = load_kubeconfig(path)
    assert creds.server == "https://127.0.0.1:6443"
    assert (creds.ca_pem, creds.cert_pem, creds.key_pem) == (b"CA", b"CERT", b"KEY")


def test_kubeconfig_errors_name_the_file_and_what_is_missing(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, **{"client-certificate-data": "Q0VSVA=="})
    with pytest.raises(KubeconfigError, match=r"kubeconfig: user: needs client-key-data"):
        load_kubeconfig(path)
    with pytest.raises(KubeconfigError, match="cannot read"):
        load_kubeconfig(tmp_path / "missing")


def test_resource_lookup_and_keys() -> None:
    assert for_kind("apps/v1", "Deployment") == DEPLOYMENTS
    assert for_kind("v1", "Pod") == PODS
    assert split_key("ns/name") == ("ns", "name")
    assert split_key("node-1") == (None, "node-1")
    assert DEPLOYMENTS.object_path("web", "default", "scale") == (
        "/apis/apps/v1/namespaces/default/deployments/web/scale"
    )


def test_fake_api_server_semantics() -> None:
    async def body() -> None:
        api = FakeClient()
        d = await api.create(
            DEPLOYMENTS, {"metadata": {"name": "d", "namespace": "x"}, "spec": {"replicas": 1}}
        )
        assert d["metadata"]["generation"] == 1
        d = await api.patch(DEPLOYMENTS, "d", {"status": {"replicas": 5}}, namespace="x")
        assert "replicas" not in d.get("status", {}), "the main resource ignores status"
        d = await api.patch(DEPLOYMENTS, "d", {"spec": {"replicas": 2}}, namespace="x")
        assert d["metadata"]["generation"] == 2
        d = await api.patch(
            DEPLOYMENTS, "d", {"status": {"replicas": 2}}, namespace="x", subresource="status"
        )
        assert d["metadata"]["generation"] == 2
        stale = dict(d, metadata=dict(d["metadata"], resourceVersion="1"))
        with pytest.raises(errors.Conflict):
            await api.update(DEPLOYMENTS, stale)
        scale = await api.get(DEPLOYMENTS, "d", namespace="x", subresource="scale")
        assert scale["spec"]["replicas"] == 2
        with pytest.raises(errors.AlreadyExists):
            await api.create(DEPLOYMENTS, {"metadata": {"name": "d", "namespace": "x"}})

    asyncio.run(body())
