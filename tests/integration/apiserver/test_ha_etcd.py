"""Two ``python -m berth.apiserver`` processes on one real etcd (mTLS, 127.0.0.1): Services
created concurrently through both never share a ClusterIP or NodePort, a watch on one sees
writes made through the other, kubectl works against both, a CRD created through one is
served by the other, the ``kubernetes`` Endpoints list
both, and when one is killed the other keeps serving."""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from berth.store.config import DatastoreConfig
from tests.harness.apiserver import ServerFiles, ServerProcess, prepare, start_process
from tests.integration.store.etcd_server import EtcdProcess, TLSFiles, make_tls, start_etcd

from .helpers import Kubectl, Raw, Watch, core_api, table

pytestmark = pytest.mark.timeout(180)

SERVICE_CIDR = "10.96.0.0/26"  # 62 host addresses: .1 is kubernetes', 61 to hand out
NODE_PORTS = (30000, 30039)
KUBECTL = Path("/usr/bin/kubectl")  # 40 ports: small ranges make the two servers collide often


@dataclass
class Pair:
    etcd: EtcdProcess
    a: ServerProcess
    b: ServerProcess

    def __iter__(self) -> Iterator[ServerProcess]:
        return iter((self.a, self.b))

    def stop(self) -> None:
        for proc in (self.a, self.b):
            if proc.process.poll() is None:
                proc.process.send_signal(signal.SIGTERM)
                try:
                    proc.process.wait(15)
                except Exception:
                    proc.process.kill()
                    proc.process.wait()
            if proc.process.stdout is not None:
                proc.process.stdout.close()
        self.etcd.stop()


def _start_pair(directory: Path) -> Pair:
    tls: TLSFiles = make_tls(directory / "etcd-pki")
    etcd = start_etcd(directory / "etcd", tls=tls)
    datastore = DatastoreConfig.from_mapping(
        {
            "type": "etcd",
            "endpoints": [etcd.url],
            "caFile": str(tls.ca),
            "certFile": str(tls.client_cert),
            "keyFile": str(tls.client_key),
        }
    )
    first = prepare(directory / "a", datastore=datastore, encryption_key=b"k" * 32)
    config = dataclasses.replace(
        first.config, service_cidr=SERVICE_CIDR, node_port_range=NODE_PORTS
    )
    first = ServerFiles(first.directory, first.pki, config)
    (directory / "b").mkdir()
    # One cluster: one CA, one serving certificate, one secrets key; two processes.
    second = ServerFiles(directory / "b", first.pki, config)
    try:
        a = start_process(first)
        b = start_process(second)
    except BaseException:
        etcd.stop()
        raise
    return Pair(etcd, a, b)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    p = _start_pair(tmp_path_factory.mktemp("ha"))
    try:
        yield p
    finally:
        p.stop()


def _admin(pair: Pair) -> tuple[Path, Path]:
    """One admin client certificate (both servers trust the one CA)."""
    return pair.a.files.pki.issue("ha-admin", common_name="admin", organizations=["system:masters"])


def _raw(proc: ServerProcess, cert: tuple[Path, Path]) -> Raw:
    return Raw(None, cert, ca=proc.files.pki.ca_cert, port=_port(proc))


def _core(proc: ServerProcess) -> Any:
    new_client: Any = k8s_config.new_client_from_config
    return core_api(new_client(str(proc.kubeconfig())))


def _service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]},
    }


def test_services_created_through_both_servers_never_share_an_address_or_port(
    pair: Pair,
) -> None:
    cert = _admin(pair)

    def create(i: int) -> tuple[int, Any]:
        raw = _raw(pair.a if i % 2 else pair.b, cert)
        try:
            return raw.json("POST", "/api/v1/namespaces/default/services", _service(f"svc-{i:02d}"))
        finally:
            raw.close()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(create, range(40)))
    assert [status for status, _ in answers] == [201] * 40, answers
    ips = [body["spec"]["clusterIP"] for _, body in answers]
    ports = [body["spec"]["ports"][0]["nodePort"] for _, body in answers]
    assert len(set(ips)) == 40
    assert sorted(ports) == list(range(NODE_PORTS[0], NODE_PORTS[1] + 1))
    # The range is full for both servers, whichever handed out what.
    for proc in (pair.a, pair.b):
        raw = _raw(proc, cert)
        status, body = raw.json("POST", "/api/v1/namespaces/default/services", _service("more"))
        raw.close()
        assert status == 500
        assert "range is full" in body["message"]
    # Deleting through one server frees the port for the other.
    raw_a, raw_b = _raw(pair.a, cert), _raw(pair.b, cert)
    status, _ = raw_a.json("DELETE", "/api/v1/namespaces/default/services/svc-07")
    assert status == 200
    status, body = raw_b.json("POST", "/api/v1/namespaces/default/services", _service("late"))
    assert status == 201, body
    assert body["spec"]["ports"][0]["nodePort"] == ports[7]
    raw_a.close()
    raw_b.close()


def test_a_watch_on_one_server_sees_writes_through_the_other(pair: Pair) -> None:
    api_a, api_b = _core(pair.a), _core(pair.b)
    start = api_a.list_namespaced_config_map("default").metadata.resource_version
    seen: list[str] = []
    arrived = threading.Event()

    def follow() -> None:
        stream = Watch().stream(
            api_a.list_namespaced_config_map,
            "default",
            resource_version=start,
            timeout_seconds=20,
        )
        for event in stream:
            seen.append(f"{event['type']} {event['object'].metadata.name}")
            if len(seen) == 2:
                arrived.set()
                return

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    made = api_b.create_namespaced_config_map(
        "default", k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="from-b"), data={"k": "1"})
    )
    api_b.delete_namespaced_config_map("from-b", "default")
    assert arrived.wait(15), seen
    assert seen == ["ADDED from-b", "DELETED from-b"]
    # resourceVersions come from etcd: one numbering for both servers.
    assert int(made.metadata.resource_version) > int(start)


def test_kubectl_against_both_servers(pair: Pair, tmp_path: Path) -> None:
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared}\ndata: {who: b}\n"
    )
    through_a = Kubectl(KUBECTL, pair.a.kubeconfig(), tmp_path / "home-a", "1.32")
    through_b = Kubectl(KUBECTL, pair.b.kubeconfig(), tmp_path / "home-b", "1.32")
    assert "created" in through_b("apply", "-f", str(manifest))
    assert through_a("get", "configmap", "shared", "-o", "jsonpath={.data.who}") == "b"
    rows_a = table(through_a("get", "services", "-n", "default"))
    rows_b = table(through_b("get", "services", "-n", "default"))
    assert rows_a[0][:2] == ["NAME", "TYPE"]
    assert [r[0] for r in rows_a] == [r[0] for r in rows_b]
    out = through_b("get", "leases", "-n", "kube-system", "-o", "name")
    assert sorted(out.split()) == sorted(f"lease.coordination.k8s.io/{_lease(p)}" for p in pair)


def _crd(group: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {"size": {"type": "integer", "default": 1}},
            }
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gizmos.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "gizmos", "kind": "Gizmo"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def _serves(raw: Raw, group: str) -> bool:
    status, doc = raw.json("GET", f"/apis/{group}/v1")
    return status == 200 and any(r["name"] == "gizmos" for r in doc["resources"])


def test_a_crd_created_through_one_server_is_served_by_the_other(pair: Pair) -> None:
    cert = _admin(pair)
    raw_a, raw_b = _raw(pair.a, cert), _raw(pair.b, cert)
    try:
        _crd_through_both(raw_a, raw_b)
    finally:
        raw_a.close()
        raw_b.close()


def _crd_through_both(raw_a: Raw, raw_b: Raw) -> None:
    group = "ha.example.com"
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    status, body = raw_a.json("POST", crds, _crd(group))
    assert status == 201, body
    created = time.monotonic()
    while not _serves(raw_b, group):  # b learns it from the watch on etcd
        # from the watch on etcd, so within seconds (a relist would take a period): 5 s, as
        # 1 s was a quiet machine's figure
        assert time.monotonic() - created < 5.0, "b did not serve the CRD within 5 s"
        time.sleep(0.02)
    base = f"/apis/{group}/v1/namespaces/default/gizmos"
    status, body = raw_b.json("POST", base, {"metadata": {"name": "g1"}, "spec": {}})
    assert status == 201, body
    assert body["spec"] == {"size": 1}  # b validates and defaults with the CRD's schema
    status, body = raw_a.json("GET", f"{base}/g1")
    assert (status, body["apiVersion"]) == (200, f"{group}/v1")
    # deleted through b: its objects go, and a stops serving it
    status, _ = raw_b.json("DELETE", f"{crds}/gizmos.{group}")
    assert status == 200
    deadline = time.monotonic() + 30  # an API server on a loaded machine
    while _serves(raw_a, group) or raw_a.json("GET", f"{crds}/gizmos.{group}")[0] != 404:
        assert time.monotonic() < deadline, "the CRD was not deleted"
        time.sleep(0.05)
    assert raw_b.json("GET", base)[0] == 404


def test_killing_one_server_leaves_the_other_serving(tmp_path: Path) -> None:
    p = _start_pair(tmp_path)
    try:
        api_b = _core(p.b)
        assert _wait_endpoints(api_b, [p.a, p.b])
        api_b.create_namespaced_config_map(
            "default", k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="before"))
        )
        p.a.process.kill()  # kill -9: no Lease withdrawal, no goodbye
        p.a.process.wait(10)
        started = time.monotonic()
        api_b.create_namespaced_config_map(
            "default", k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="after"))
        )
        names = {cm.metadata.name for cm in api_b.list_namespaced_config_map("default").items}
        assert {"before", "after"} <= names
        made = api_b.create_namespaced_service("default", _service("survivor"))
        assert made.spec.cluster_ip
        assert time.monotonic() - started < 5
        # a comes back on its old port and rejoins; a clean stop (SIGTERM) then takes it out
        # of the kubernetes Endpoints at once (a kill -9 would wait for its Lease to expire).
        if p.a.process.stdout is not None:
            p.a.process.stdout.close()
        p.a = start_process(p.a.files, port=_port(p.a))
        assert _wait_endpoints(api_b, [p.a, p.b])
        p.a.process.send_signal(signal.SIGTERM)
        assert p.a.process.wait(10) == 0
        # "at once": well before the Lease would expire; 6 s (was 2 s) leaves room for the
        # survivor's watch and reconcile on a loaded machine
        assert _wait_endpoints(api_b, [p.b], within=6.0)
    finally:
        p.stop()


def _port(proc: ServerProcess) -> int:
    return int(proc.files.url.rsplit(":", 1)[1])


def _lease(proc: ServerProcess) -> str:
    return f"apiserver-127-0-0-1-{_port(proc)}"


def _wait_endpoints(api: Any, procs: list[ServerProcess], within: float = 60.0) -> bool:
    """True once the kubernetes Endpoints list exactly the ports of ``procs``."""
    wanted = sorted(_port(p) for p in procs)
    deadline = time.monotonic() + within
    while True:
        ep = api.read_namespaced_endpoints("kubernetes", "default")
        listed = sorted(port.port for s in ep.subsets or [] for port in s.ports)
        if listed == wanted:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def test_readyz_fails_while_the_datastore_does_not_answer(tmp_path: Path) -> None:
    p = _start_pair(tmp_path)
    try:
        cert = _admin(p)
        raws = [_raw(proc, cert) for proc in p]
        assert [raw.request("GET", "/readyz")[0] for raw in raws] == [200, 200]
        p.etcd.stop()
        # load balancers in front of these servers now send clients elsewhere
        assert [raw.request("GET", "/readyz")[0] for raw in raws] == [503, 503]
        assert [raw.request("GET", "/livez")[0] for raw in raws] == [200, 200]
        for raw in raws:
            raw.close()
    finally:
        p.stop()
