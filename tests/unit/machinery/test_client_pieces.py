"""Client building blocks without a server: kubeconfig loading, selectors, merge patch,
quantities, and the fake API's server semantics that controllers rely on."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
import yaml

from berth.client import errors
from berth.client.fake import FakeClient
from berth.client.kubeconfig import KubeconfigError, load_kubeconfig
from berth.client.patches import merge_patch
from berth.client.resources import DEPLOYMENTS, PODS, for_kind, split_key
from berth.client.selectors import (
    from_label_selector,
    parse_field_selector,
    parse_label_selector,
)
from berth.machinery.objects import milli, whole


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


def test_label_and_field_selectors() -> None:
    sel = parse_label_selector("app=web,tier!=db,env in (a,b),!legacy,zone")
    assert sel.matches({"app": "web", "env": "a", "zone": "z"})
    assert not sel.matches({"app": "web", "env": "c", "zone": "z"})
    assert not sel.matches({"app": "web", "env": "a", "zone": "z", "legacy": "1"})
    assert not sel.matches({"app": "web", "env": "a", "zone": "z", "tier": "db"})
    assert parse_label_selector("").matches({})
    structured = from_label_selector(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "v", "operator": "NotIn", "values": ["1"]}],
        }
    )
    assert structured.matches({"app": "web", "v": "2"})
    assert not structured.matches({"app": "web", "v": "1"})
    fields = parse_field_selector("spec.nodeName=n1,status.phase!=Failed")
    assert fields.matches({"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    assert not fields.matches({"spec": {"nodeName": "n1"}, "status": {"phase": "Failed"}})


def test_merge_patch_rfc7386() -> None:
    target = {"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]}
    assert merge_patch(target, {"b": {"c": None, "e": 4}, "l": [3], "a": None}) == {
        "b": {"d": 3, "e": 4},
        "l": [3],
    }
    assert target["b"] == {"c": 2, "d": 3}, "the target is not modified"


def test_quantities() -> None:
    assert milli("250m") == 250
    assert milli("1.5") == 1500
    assert milli(2) == 2000
    assert whole("128Mi") == 128 * 2**20
    assert whole("1G") == 10**9
    with pytest.raises(ValueError, match="invalid quantity"):
        whole("12 apples")


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
