"""CRDs are loaded when an API server starts: their resources are served at once, and a CRD
stored without its names status (a server stopped between the two writes) is settled."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from berth.api.resources import CRD_RESOURCE
from berth.apiserver.crd.strategy import prepare_crd_create
from tests.harness.apiserver import ServerHandle, running_server

from .helpers import Raw

pytestmark = pytest.mark.timeout(120)

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def _crd(plural: str, kind: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.restart.example.com"},
        "spec": {
            "group": "restart.example.com",
            "scope": "Namespaced",
            "names": {"plural": plural, "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


def _admin(srv: ServerHandle) -> Raw:
    return Raw(srv, srv.client_cert("admin", ["system:masters"]))


def test_crds_are_served_after_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with running_server(tmp_path / "one", datastore="sqlite", sqlite_path=db) as srv:
        raw = _admin(srv)
        try:
            status, body = raw.json("POST", CRDS, _crd("things", "Thing"))
            assert status == 201, body
            base = "/apis/restart.example.com/v1/namespaces/default/things"
            status, body = raw.json("POST", base, {"metadata": {"name": "t1"}, "x": 1})
            assert status == 201, body
        finally:
            raw.close()
        # As if the server had stopped right after storing a CRD, before its status.
        half = copy.deepcopy(_crd("others", "Other"))
        prepare_crd_create(half)  # defaults, and a status without names or conditions
        half["metadata"]["finalizers"] = ["customresourcecleanup.apiextensions.k8s.io"]

        async def store_half() -> None:
            key = CRD_RESOURCE.key("", half["metadata"]["name"])
            await srv.server.store.create(key, srv.server.codec.encode(key, half))

        srv.call(store_half())
    with running_server(tmp_path / "two", datastore="sqlite", sqlite_path=db) as srv:
        raw = _admin(srv)
        try:
            status, body = raw.json(
                "GET", "/apis/restart.example.com/v1/namespaces/default/things/t1"
            )
            assert (status, body.get("x")) == (200, 1)
            status, body = raw.json("GET", "/apis/restart.example.com/v1/namespaces/default/others")
            assert status == 200, body
            status, crd = raw.json("GET", f"{CRDS}/others.restart.example.com")
            conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
            assert conds == {"NamesAccepted": "True", "Established": "True"}
        finally:
            raw.close()
