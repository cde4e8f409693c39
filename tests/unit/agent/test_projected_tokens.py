"""Projected service-account token volumes on the node: the agent requests a token bound to
the pod (with the node's identity), writes it with the CA and namespace into the volume, and
renews it once 80% of its lifetime has passed, as the kubelet does."""

from __future__ import annotations

from typing import Any

import pytest

from berth.api.resources import CONFIGMAPS, PODS, SERVICEACCOUNTS
from berth.machinery.controller import Retry
from tests.unit.agent.rig import Rig, run


def _api_access(expiration: int = 3607) -> dict[str, Any]:
    return {
        "name": "kube-api-access-x7k2p",
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": expiration, "path": "token"}},
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}
                        ]
                    }
                },
            ],
        },
    }


def _rig() -> Rig:
    r = Rig()
    r.api.seed(SERVICEACCOUNTS, {"metadata": {"name": "default", "namespace": "default"}})
    r.api.seed(
        CONFIGMAPS,
        {
            "metadata": {"name": "kube-root-ca.crt", "namespace": "default"},
            "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n"},
        },
    )
    return r


def test_token_is_requested_bound_to_the_pod_and_written() -> None:
    async def body() -> None:
        r = _rig()
        r.add(serviceAccountName="default", volumes=[_api_access()])
        await r.sync()
        sandbox = r.runtime.sandbox_of("default", "p")
        assert sandbox is not None
        files = sandbox.volume_files["kube-api-access-x7k2p"]
        assert files == {
            "token": b"fake-token-1",
            "ca.crt": b"-----BEGIN CERTIFICATE-----\n",
            "namespace": b"default",
        }
        (request,) = [a for a in r.api.actions if a.verb == "token"]
        assert request.name == "default"
        assert request.namespace == "default"
        assert request.body is not None
        spec = request.body["spec"]
        assert spec["expirationSeconds"] == 3607
        ref = spec["boundObjectRef"]
        assert (ref["kind"], ref["name"]) == ("Pod", "p")
        assert ref["uid"]

    run(body())


def test_token_is_renewed_at_80_percent_of_its_lifetime() -> None:
    async def body() -> None:
        r = _rig()
        r.add(serviceAccountName="default", volumes=[_api_access(expiration=1000)])
        await r.sync()
        r.clock.advance(700)  # 70%: still the first token
        await r.sync()
        assert r.api.tokens_issued == 1
        r.clock.advance(110)  # 81%
        await r.sync()
        assert r.api.tokens_issued == 2
        sandbox = r.runtime.sandbox_of("default", "p")
        assert sandbox is not None
        assert sandbox.volume_files["kube-api-access-x7k2p"]["token"] == b"fake-token-2"

    run(body())


def test_missing_root_ca_is_a_failed_mount() -> None:
    async def body() -> None:
        r = Rig()
        r.api.seed(SERVICEACCOUNTS, {"metadata": {"name": "default", "namespace": "default"}})
        r.add(serviceAccountName="default", volumes=[_api_access()])
        with pytest.raises(Retry, match=r"kube-root-ca\.crt"):
            await r.sync()
        assert "FailedMount" in r.events()
        assert r.runtime.sandbox_of("default", "p") is None

    run(body())


def test_adopted_pod_gets_fresh_tokens() -> None:
    """After an agent restart the token files are the previous agent's: rewrite them."""

    async def body() -> None:
        r = _rig()
        r.add(serviceAccountName="default", volumes=[_api_access()])
        await r.sync()
        pod = r.api.stored(PODS, "default/p")
        assert pod is not None
        r.manager.tokens.forget(pod["metadata"]["uid"])  # what a restarted agent knows
        await r.sync()
        assert r.api.tokens_issued == 2
        sandbox = r.runtime.sandbox_of("default", "p")
        assert sandbox is not None
        assert sandbox.volume_files["kube-api-access-x7k2p"]["token"] == b"fake-token-2"

    run(body())
