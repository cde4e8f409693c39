"""An unmodified kopf operator against berth: standalone, and with kopf's peering CRDs.

The operator (written to a file and run with ``kopf run``, as a user would) answers a
custom object's creation by patching its status, and records its deletion handler running;
kopf's own machinery (finalizers, annotations, status patches, events, watches) must all work.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.harness.apiserver import ServerHandle
from tests.harness.polling import wait_for

from .helpers import Raw

pytestmark = pytest.mark.timeout(240)

CRD_BASE = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
KOPF = Path(sys.executable).parent / "kopf"

OPERATOR = """
import os
import pathlib

import kopf


@kopf.on.create("kopf.example.com", "v1", "greetings")
def greet(spec, name, patch, **_):
    patch.status["message"] = f"hello {spec['who']}"
    return {"greeted": name}


@kopf.on.delete("kopf.example.com", "v1", "greetings")
def farewell(name, **_):
    pathlib.Path(os.environ["MARKERS"], name).write_text("deleted")
"""


def crd(
    group: str, plural: str, kind: str, scope: str, status_schema: dict[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"who": {"type": "string"}},
                                },
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


PRESERVE = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def peering_crd(plural: str, kind: str, scope: str) -> dict[str, Any]:
    """kopf's peering CRDs as its repository ships them (``peering.yaml``): no status
    subresource, a schema of a status that keeps anything."""
    version = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": {"type": "object", "properties": {"status": PRESERVE}}},
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kopf.dev"},
        "spec": {
            "scope": scope,
            "group": "kopf.dev",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [version],
        },
    }


def create_crd(raw: Raw, body: dict[str, Any]) -> None:
    status, out = raw.json("POST", CRD_BASE, body)
    assert status == 201, out
    group = body["spec"]["group"]
    plural = body["spec"]["names"]["plural"]

    def served() -> bool:
        status, doc = raw.json("GET", f"/apis/{group}/v1")
        return status == 200 and any(r["name"] == plural for r in doc["resources"])

    wait_for(f"{plural} served", served, timeout=5)


@pytest.fixture(scope="module")
def greetings(raw: Raw) -> None:
    create_crd(raw, crd("kopf.example.com", "greetings", "Greeting", "Namespaced", PRESERVE))


@pytest.fixture
def operator(
    server: ServerHandle, admin_kubeconfig: Path, tmp_path: Path, greetings: None
) -> Iterator[Callable[..., Path]]:
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []

    def start(*args: str) -> Path:
        op = tmp_path / "operator.py"
        op.write_text(OPERATOR)
        markers = tmp_path / "markers"
        markers.mkdir(exist_ok=True)
        log = open(tmp_path / "kopf.log", "wb")  # noqa: SIM115
        logs.append(log)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "KUBECONFIG": str(admin_kubeconfig),
            "MARKERS": str(markers),
        }
        procs.append(
            subprocess.Popen(
                [str(KOPF), "run", "--verbose", *args, str(op)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp_path,
            )
        )
        return markers

    yield start
    for p in procs:
        p.terminate()
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    for f in logs:
        f.close()
    log = tmp_path / "kopf.log"
    if log.exists():
        text = log.read_text(errors="replace")
        # kopf reports API failures it retried as errors: there must be none
        assert "Traceback" not in text, text[-4000:]


def _namespace(raw: Raw, name: str) -> str:
    status, _ = raw.json("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert status == 201
    return name


def _round_trip(raw: Raw, ns: str, markers: Path) -> None:
    base = f"/apis/kopf.example.com/v1/namespaces/{ns}/greetings"
    body = {
        "apiVersion": "kopf.example.com/v1",
        "kind": "Greeting",
        "metadata": {"name": "g1"},
        "spec": {"who": "berth"},
    }
    status, out = raw.json("POST", base, body)
    assert status == 201, out

    def greeted() -> Any:
        _, obj = raw.json("GET", f"{base}/g1")
        st = obj.get("status") or {}
        return obj if st.get("message") == "hello berth" else None

    obj = wait_for("the create handler's status patch", greeted)
    assert obj["status"]["greet"] == {"greeted": "g1"}
    assert any(f.startswith("kopf.zalando.org/") for f in obj["metadata"]["finalizers"])
    assert "kopf.zalando.org/last-handled-configuration" in obj["metadata"]["annotations"]
    status, _ = raw.json("DELETE", f"{base}/g1")
    assert status == 200
    wait_for("the delete handler", (markers / "g1").exists)

    def gone() -> bool:
        status, _ = raw.json("GET", f"{base}/g1")
        return status == 404

    wait_for("kopf to release its finalizer", gone)


def test_kopf_standalone(raw: Raw, operator: Callable[..., Path]) -> None:
    ns = _namespace(raw, "kopf-standalone")
    markers = operator("--standalone", "--namespace", ns)
    time.sleep(2)  # kopf lists and starts watching
    _round_trip(raw, ns, markers)


def test_kopf_with_peering(raw: Raw, operator: Callable[..., Path]) -> None:
    create_crd(raw, peering_crd("kopfpeerings", "KopfPeering", "Namespaced"))
    create_crd(raw, peering_crd("clusterkopfpeerings", "ClusterKopfPeering", "Cluster"))
    ns = _namespace(raw, "kopf-peering")
    status, _ = raw.json(
        "POST",
        f"/apis/kopf.dev/v1/namespaces/{ns}/kopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "default"}},
    )
    assert status == 201
    markers = operator("--peering", "default", "--namespace", ns)

    def peer_registered() -> bool:
        _, obj = raw.json("GET", f"/apis/kopf.dev/v1/namespaces/{ns}/kopfpeerings/default")
        return bool(obj.get("status"))

    wait_for("the operator to announce itself in the peering object", peer_registered)
    _round_trip(raw, ns, markers)
