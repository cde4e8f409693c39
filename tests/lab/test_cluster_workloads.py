"""Real workloads on a berth cluster, driven with unmodified kubectl (issue 7).

One 3-host lab, one cluster for the module (tests run in file order; each leaves the cluster
usable for the next):

* ``berth apply`` alone makes runc nodes (the default ``spec.runtime``): runc, the CNI plugins
  and nftables shipped as .debs, agents as ``KillMode=process`` units keeping the node's routes
  and service rules, and the verify smoke image (busybox) in every node's image store — its
  verify ran real smoke pods behind a ClusterIP Service;
* a 3-replica Deployment of the smoke image spreads over the nodes; every replica answers its
  ClusterIP from every node and its NodePort from this machine; a pod on one node reaches a pod
  on another by pod IP;
* a 3-replica StatefulSet comes up in order, a deleted pod returns by name; a partitioned
  rolling update replaces only the pods at or above the partition, the rest when it is 0;
* a killed container process is restarted and counted; a crashing container ends in
  CrashLoopBackOff; 100 pods that exit at once end Succeeded or Failed per their exit code;
  ``kubectl logs`` (plain, -f, --previous, --tail) shows what it printed;
* pull failures are reported on the pod (ErrImagePull, ImagePullBackOff, ErrImageNeverPull);
  ``berth images load`` gives every node an image no registry serves (policy Never honoured);
* restarting every agent keeps pods running without duplicates;
* a claim of the default class (berth-local, WaitForFirstConsumer) binds once a pod uses it,
  its directory is made on the pod's node, a successor pod reads what the first wrote (pinned
  to that node, read-only mount honoured); reclaim Delete removes the directory with the
  claim, Retain keeps it; every node publishes the room of its volumes' filesystem; a
  StatefulSet pod gets its own claim from the set's volumeClaimTemplates and, deleted, comes
  back on its volume's node reading what it wrote;
* deleting everything leaves no container, netns, veth, IP allocation or nft rule behind;
  ``berth.runtime reset`` after an agent stopped cleans its host; ``berth destroy
  --keep-packages`` of nodes with running pods leaves every host verified clean, with runc
  and nftables still installed (so the checks below can still ask them).

Safety: blackhole routes for the pod and service CIDRs exist on this machine for the whole
session (tests/lab/conftest.py); only lab bridge addresses are contacted.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import shlex
import subprocess
import sys
import tarfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from berth.api.quantity import parse_quantity
from berth.runtime.sandbox import netns_name
from provisioner.lab import Lab
from provisioner.output.record import CLUSTER
from provisioner.phases.sets import cluster_phases
from provisioner.smoke_image import smoke_image
from provisioner.workflow import select
from tests.harness.apiserver import TestPKI
from tests.harness.ports import free_port
from tests.lab import clusters
from tests.lab.conftest import LabFactory
from tests.lab.workloads import (
    HTTP_COUNTER,
    Node,
    Registry,
    build_busybox_layout,
    count_responders,
)

pytestmark = pytest.mark.lab

BERTH = [sys.executable, "-m", "provisioner.cli.main"]
REPO = Path(__file__).resolve().parents[2]
SITE = "/opt/berth/current/site"
AGENT_UNIT = "berth-agent"
RUNC = "runc --root /run/berth/runc"
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], *, timeout: float = 90.0) -> T:
    return clusters.wait_for(what, check, timeout=timeout)


@dataclass
class Cluster:
    lab: Lab
    workdir: Path
    spec: Path
    state_dir: Path
    image: str
    nodes: dict[str, Node]
    registries: dict[str, str] = field(default_factory=dict)  # name -> host:port
    applied: str = ""
    """What the cold ``berth apply`` printed (its default output: plain lines, no terminal)."""

    @property
    def timeline(self) -> Path:
        """The cold apply's ``--timeline`` SVG."""
        return self.workdir / "apply-timeline.svg"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / self.lab.name / "kubeconfigs" / "admin.conf"

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr[-2000:]}")
        return result

    def apply(self, *objects: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(objects))

    def pods(self, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["get", "pods", "-o", "json"] + (["-l", selector] if selector else [])
        items: list[dict[str, Any]] = json.loads(self.kubectl(*args).stdout)["items"]
        return items

    def pod(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.kubectl("get", "pod", name, "-o", "json").stdout)
        return found

    def berth(self, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "BERTH_STATE_DIR": str(self.state_dir)}
        return subprocess.run(
            [*BERTH, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
        )


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    first: dict[str, Any] = statuses[0]
    return first


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _ready_pod(c: Cluster, name: str) -> dict[str, Any] | None:
    pod = c.pod(name)
    return pod if _ready(pod) else None


def _waiting_reason(pod: dict[str, Any]) -> str:
    return str(((_container(pod).get("state") or {}).get("waiting") or {}).get("reason") or "")


@contextmanager
def _registries(lab: Lab, work: Path) -> Iterator[dict[str, Registry]]:
    """Three docker-registries on the lab bridge, each holding ``lab/busybox:1``: ``plain``
    (HTTP), ``private`` (HTTPS, a certificate from a private CA) and ``unlisted`` (HTTPS from
    the same CA, but absent from the spec: its certificate must be refused)."""
    pki = TestPKI(work / "registry-pki")
    cert, key = pki.issue("registry", common_name="registry", server=True, ips=[lab.gateway])
    layout = work / "registry-layout"
    ref = build_busybox_layout(layout)
    started: dict[str, Registry] = {}
    try:
        for name, tls in (("plain", None), ("private", (cert, key, pki.ca_cert)),
                          ("unlisted", (cert, key, pki.ca_cert))):  # fmt: skip
            started[name] = Registry(lab.gateway, work / f"registry-{name}", tls=tls)
            started[name].push(layout, ref, "lab/busybox:1")
        yield started
    finally:
        for registry in started.values():
            registry.stop()


@pytest.fixture(scope="module")
def cluster(lab_factory: LabFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """``berth apply`` alone: runc nodes (the default runtime) with the smoke image loaded, and
    the spec's registries: one plain-HTTP, one HTTPS signed by a private CA."""
    lab = lab_factory(3)
    work = tmp_path_factory.mktemp("cluster-workloads")
    with _registries(lab, work) as registries:
        yield _applied(lab, work, registries)


def _applied(lab: Lab, work: Path, registries: dict[str, Registry]) -> Cluster:
    document = yaml.safe_load(lab.spec_path.read_text())
    document["spec"]["ssh"]["identityFile"] = str(lab.key_path)
    document["spec"]["ssh"]["knownHostsFile"] = str(lab.known_hosts_path)
    assert "runtime" not in document["spec"], "runc must be the default"
    document["spec"]["registries"] = [
        {"host": registries["plain"].host, "insecure": True},
        {"host": registries["private"].host, "caFile": "registry-pki/ca.crt"},
    ]
    spec = work / "cluster.yaml"
    spec.write_text(yaml.safe_dump(document, sort_keys=False))
    nodes = {h.name: Node(lab, h.name, h.address, "", "") for h in lab.hosts}
    c = Cluster(lab, work, spec, work / "state", smoke_image().reference, nodes)
    c.registries = {name: registry.host for name, registry in registries.items()}
    started = time.monotonic()
    applied = c.berth("apply", "-i", str(spec), "--yes", "--timeline", str(c.timeline))
    assert applied.returncode == 0, applied.stdout[-4000:] + applied.stderr[-2000:]
    print(f"berth apply (3 hosts, runc, cold): {time.monotonic() - started:.1f}s")
    c.applied = applied.stdout
    assert "smoke Service" in applied.stdout  # verify reached every smoke pod through a Service
    items = json.loads(c.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    runtimes = sorted(n["status"]["nodeInfo"]["containerRuntimeVersion"] for n in items)
    assert len(runtimes) == 3
    assert all(r.startswith("runc://") for r in runtimes), runtimes
    return c


# -- the apply's timeline --------------------------------------------------------------------

SVG = "{http://www.w3.org/2000/svg}"
STAGES = {"connecting", "plan", "preflight"}
ENDED = re.compile(r"\[([\w/-]+)\] (?:(\d+)/(\d+) hosts|\(cluster\)),.*")
"""A phase's (or stage's) line in the plain output, printed when its last host is done."""


def test_the_apply_timeline_names_every_host_and_phase(cluster: Cluster) -> None:
    """``berth apply --timeline``: a row per host (and the operator side), a legend entry per
    stage and phase the apply went through, and a bar per host in each, with its seconds."""
    root = ET.parse(cluster.timeline).getroot()  # well-formed XML
    assert root.tag == f"{SVG}svg"
    ended = {m.group(1): m for line in cluster.applied.splitlines() if (m := ENDED.fullmatch(line))}
    installed = set(ended) - STAGES
    paths = {p.path for p in select(cluster_phases(), only=(), skip=())}
    assert installed <= paths, installed - paths
    assert {"artifacts", "pki", "datastore", "control-plane", "agents", "nodes", "verify"} <= (
        installed
    ), sorted(ended)
    assert set(ended) >= STAGES, sorted(ended)

    texts = {t.text for t in root.iter(f"{SVG}text")}
    hosts = [h.name for h in cluster.lab.hosts]
    assert {*hosts, CLUSTER} <= texts, texts
    legend = [t.attrib["data-phase"] for t in root.iter(f"{SVG}text") if "data-phase" in t.attrib]
    assert sorted(legend) == sorted(ended), (legend, sorted(ended))
    # the legend lists the install phases in the order the phase set runs them
    order = [p.path for p in select(cluster_phases(), only=(), skip=())]
    ran = [p for p in legend if p in installed]
    assert ran == sorted(ran, key=order.index), ran

    bars: dict[str, set[str]] = {}
    for rect in root.iter(f"{SVG}rect"):
        title = rect.find(f"{SVG}title")
        if title is not None and title.text:
            match = re.fullmatch(r"(\S+) \[(\S+)\] (\d+\.\d\d)s", title.text)
            assert match, title.text  # no turn failed
            assert float(rect.attrib["width"]) >= 1.0
            bars.setdefault(match.group(2), set()).add(match.group(1))
    for phase, line in ended.items():
        if line.group(2) is None:  # an operator-side step
            assert bars[phase] == {CLUSTER}, (phase, bars.get(phase))
        else:  # "[phase] n/n hosts": a bar for each of the n hosts, all of them lab hosts
            assert line.group(2) == line.group(3), line.group(0)
            on_hosts = bars[phase] - {CLUSTER}  # a phase may also have an operator-side step
            assert len(on_hosts) == int(line.group(3)), (phase, bars.get(phase))
            assert on_hosts <= set(hosts), (phase, bars[phase])
    assert bars["pki"] == set(hosts)  # every host gets its certificates


# -- the Deployment and its Service ---------------------------------------------------------

WEB_LABELS = {"app": "web"}


def _web(image: str) -> list[dict[str, Any]]:
    serve = "hostname > /www/index.html && exec httpd -f -v -p 8080 -h /www"
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": WEB_LABELS},
            "template": {
                "metadata": {"labels": WEB_LABELS},
                "spec": {
                    "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
                    "terminationGracePeriodSeconds": 2,
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["/bin/sh", "-c", serve],
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "readinessProbe": {
                                "httpGet": {"path": "/", "port": "http"},
                                "periodSeconds": 2,
                            },
                            "volumeMounts": [
                                {"name": "www", "mountPath": "/www"},
                                {"name": "about", "mountPath": "/www/cfg", "readOnly": True},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "www", "emptyDir": {}},
                        {
                            "name": "about",
                            "configMap": {
                                "name": "web-about",
                                "items": [{"key": "about", "path": "about.txt"}],
                            },
                        },
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "type": "NodePort",
            "selector": WEB_LABELS,
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "web-about", "namespace": "default"},
        "data": {"about": "served from a ConfigMap", "unused": "not projected"},
    }
    return [config_map, deployment, service]


def _web_pods(c: Cluster) -> list[dict[str, Any]]:
    def ready() -> list[dict[str, Any]] | None:
        pods = [p for p in c.pods("app=web") if not p["metadata"].get("deletionTimestamp")]
        ok = len(pods) == 3 and all(_ready(p) and p["status"].get("podIP") for p in pods)
        return pods if ok else None

    return wait_for("3 ready web replicas", ready, timeout=120)


def _service(c: Cluster) -> tuple[str, int]:
    svc = json.loads(c.kubectl("get", "service", "web", "-o", "json").stdout)
    return svc["spec"]["clusterIP"], int(svc["spec"]["ports"][0]["nodePort"])


def _answers_from(node: Node, url: str, n: int) -> dict[str, int]:
    result: dict[str, int] = node.python(HTTP_COUNTER.format(n=n, url=url))
    return result


def test_deployment_spreads_over_the_nodes(cluster: Cluster) -> None:
    started = time.monotonic()
    cluster.apply(*_web(cluster.image))
    pods = _web_pods(cluster)
    print(f"3 replicas ready in {time.monotonic() - started:.1f}s")
    assert sorted(p["spec"]["nodeName"] for p in pods) == ["n1", "n2", "n3"]
    for pod in pods:
        ip = pod["status"]["podIP"]
        node = cluster.nodes[pod["spec"]["nodeName"]]
        cidr = json.loads(cluster.kubectl("get", "node", node.name, "-o", "json").stdout)
        prefix = cidr["spec"]["podCIDR"].rsplit(".", 2)[0]
        assert ip.startswith(prefix + "."), f"{ip} not in {node.name}'s podCIDR"
        assert _container(pod)["containerID"].startswith("runc://")
    # the runtime's id of the image (its config digest), the same for every replica
    image_ids = {_container(p)["imageID"] for p in pods}
    assert len(image_ids) == 1, image_ids
    assert image_ids.pop().startswith("sha256:")


def test_every_replica_answers_its_cluster_ip_from_every_node(cluster: Cluster) -> None:
    names = {p["metadata"]["name"] for p in _web_pods(cluster)}
    cluster_ip, _ = _service(cluster)
    for node in cluster.nodes.values():
        answers = _answers_from(node, f"http://{cluster_ip}/", 40)
        assert set(answers) == names, (node.name, answers)


def test_every_replica_answers_its_node_port_from_this_machine(cluster: Cluster) -> None:
    names = {p["metadata"]["name"] for p in _web_pods(cluster)}
    _, node_port = _service(cluster)
    for node in cluster.nodes.values():
        answers = count_responders(f"http://{node.address}:{node_port}/", 40)
        assert set(answers) == names, (node.name, answers)


def test_pod_reaches_pods_on_other_nodes_by_pod_ip_and_cluster_ip(cluster: Cluster) -> None:
    pods = {p["spec"]["nodeName"]: p for p in _web_pods(cluster)}
    a, b = pods["n1"], pods["n2"]
    node = cluster.nodes["n1"]
    code = (
        "import json, urllib.request\n"
        f"print(json.dumps(urllib.request.urlopen('http://{b['status']['podIP']}:8080/', "
        "timeout=3).read().decode().strip()))"
    )
    answer = node.python(code, netns=netns_name(a["metadata"]["uid"]))
    assert answer == b["metadata"]["name"]
    cluster_ip, _ = _service(cluster)
    url = f"http://{cluster_ip}/"
    from_pod = node.python(
        HTTP_COUNTER.format(n=40, url=url), netns=netns_name(a["metadata"]["uid"])
    )
    # the pod reaches every replica (its own included: hairpin) through the ClusterIP
    assert set(from_pod) == {p["metadata"]["name"] for p in pods.values()}, from_pod


def test_config_map_volume_is_projected_into_every_replica(cluster: Cluster) -> None:
    for pod in _web_pods(cluster):
        node = cluster.nodes[pod["spec"]["nodeName"]]
        base = f"http://{pod['status']['podIP']}:8080/cfg"
        code = (
            "import json, urllib.request, urllib.error\n"
            f"about = urllib.request.urlopen('{base}/about.txt', timeout=3).read().decode()\n"
            "try:\n"
            f"    urllib.request.urlopen('{base}/unused', timeout=3); unused = 200\n"
            "except urllib.error.HTTPError as e:\n"
            "    unused = e.code\n"
            "print(json.dumps([about, unused]))"
        )
        assert node.python(code) == ["served from a ConfigMap", 404]


def test_every_replica_gets_a_service_account_token_the_api_server_accepts(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The kube-api-access volume on a runc node: the token the agent requested for the pod,
    the cluster CA and the namespace; the token authenticates as the pod's account."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    ca = admin["clusters"][0]["cluster"]["certificate-authority-data"]
    for pod in _web_pods(cluster):
        volume = next(
            v["name"] for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-")
        )
        mounts = pod["spec"]["containers"][0]["volumeMounts"]
        assert {"name": volume, "readOnly": True, "mountPath": SA_MOUNT} in mounts
        node = cluster.nodes[pod["spec"]["nodeName"]]
        where = f"/var/lib/berth/runtime/pods/{pod['metadata']['uid']}/volumes/{volume}"
        files = node.python(
            "import json, os\n"
            f"d = {where!r}\n"
            "print(json.dumps({f: open(os.path.join(d, f)).read() for f in os.listdir(d)"
            " if not f.startswith('.')}))"
        )
        assert sorted(files) == ["ca.crt", "namespace", "token"]
        assert files["namespace"] == "default"
        assert base64.b64decode(ca).decode() == files["ca.crt"]
        token_config = tmp_path / f"token-{pod['metadata']['name']}.conf"
        token_config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": admin["clusters"],
                    "users": [{"name": "pod", "user": {"token": files["token"]}}],
                    "contexts": [
                        {"name": "pod", "context": {"cluster": admin["clusters"][0]["name"],
                                                    "user": "pod"}}
                    ],
                    "current-context": "pod",
                }
            )
        )  # fmt: skip
        out = subprocess.run(
            ["kubectl", "--kubeconfig", str(token_config), "get", "secrets", "-n", "kube-system"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert out.returncode != 0
        assert 'User "system:serviceaccount:default:default"' in out.stderr, out.stderr


def test_killed_container_process_is_restarted_and_counted(cluster: Cluster) -> None:
    pod = next(p for p in _web_pods(cluster) if p["spec"]["nodeName"] == "n2")
    name = pod["metadata"]["name"]
    cid = _container(pod)["containerID"].removeprefix("runc://")
    node = cluster.nodes["n2"]
    state = json.loads(node.ssh(f"{RUNC} state {cid}").stdout)
    node.ssh(f"kill -9 {int(state['pid'])}")

    def restarted() -> dict[str, Any] | None:
        current = cluster.pod(name)
        status = _container(current)
        return current if status.get("restartCount") == 1 and _ready(current) else None

    after = wait_for(f"{name} restarted", restarted, timeout=120)
    status = _container(after)
    assert status["lastState"]["terminated"]["exitCode"] == 137
    assert status["containerID"] != f"runc://{cid}"


# -- a StatefulSet -------------------------------------------------------------------------


def _statefulset(image: str) -> dict[str, Any]:
    # each pod turns Ready two seconds after it starts: the next one must not exist before
    ready_later = "sleep 2; touch /tmp/ready; exec sleep 3600"
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {
            "replicas": 3,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db", "test": "workloads"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [
                        {
                            "name": "main",
                            "image": image,
                            "command": ["/bin/sh", "-c", ready_later],
                            "readinessProbe": {
                                "exec": {"command": ["test", "-e", "/tmp/ready"]},
                                "periodSeconds": 1,
                            },
                        }
                    ],
                },
            },
        },
    }


def _ready_since(pod: dict[str, Any]) -> str:
    return next(
        str(c["lastTransitionTime"])
        for c in pod["status"]["conditions"]
        if c["type"] == "Ready" and c["status"] == "True"
    )


def test_statefulset_comes_up_in_order_and_a_deleted_pod_returns_by_name(
    cluster: Cluster,
) -> None:
    cluster.apply(_statefulset(cluster.image))
    cluster.kubectl("rollout", "status", "statefulset/db", "--timeout=180s", timeout=200)
    pods = {p["metadata"]["name"]: p for p in cluster.pods("app=db")}
    assert sorted(pods) == ["db-0", "db-1", "db-2"]
    for before, after in (("db-0", "db-1"), ("db-1", "db-2")):
        # RFC 3339 UTC stamps compare as strings
        assert pods[after]["metadata"]["creationTimestamp"] >= _ready_since(pods[before])
    assert all(_ready(p) for p in pods.values())
    assert pods["db-1"]["spec"]["hostname"] == "db-1"
    assert pods["db-1"]["spec"]["subdomain"] == "db"
    old_uid = pods["db-1"]["metadata"]["uid"]
    cluster.kubectl("delete", "pod", "db-1", "--wait=false")

    def back() -> dict[str, Any] | None:
        found = [p for p in cluster.pods("app=db") if p["metadata"]["name"] == "db-1"]
        fresh = [p for p in found if p["metadata"]["uid"] != old_uid and _ready(p)]
        return fresh[0] if fresh else None

    again = wait_for("db-1 back under its name", back, timeout=120)
    assert again["status"]["phase"] == "Running"
    cluster.kubectl("delete", "statefulset", "db", "--wait=true", timeout=120)
    wait_for("db pods gone", lambda: not cluster.pods("app=db") or None, timeout=120)


def test_statefulset_partitioned_rolling_update_stops_at_the_partition(cluster: Cluster) -> None:
    sts = _statefulset(cluster.image)
    sts["metadata"]["name"] = "tier"
    sts["spec"]["serviceName"] = "tier"
    sts["spec"]["selector"] = {"matchLabels": {"app": "tier"}}
    sts["spec"]["template"]["metadata"]["labels"] = {"app": "tier", "test": "workloads"}
    sts["spec"]["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}
    cluster.apply(sts)
    cluster.kubectl("rollout", "status", "statefulset/tier", "--timeout=180s", timeout=200)
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in cluster.pods("app=tier")}
    assert sorted(before) == ["tier-0", "tier-1", "tier-2"]
    cluster.kubectl("set", "env", "statefulset/tier", "RELEASE=2")
    out = cluster.kubectl(
        "rollout", "status", "statefulset/tier", "--timeout=180s", timeout=200
    ).stdout
    assert "partitioned roll out complete: 1 new pods have been updated" in out, out

    def release(pod: dict[str, Any]) -> str:
        env = pod["spec"]["containers"][0].get("env") or []
        return next((e["value"] for e in env if e["name"] == "RELEASE"), "1")

    time.sleep(5)  # the controller has had time to go past the partition if it would
    pods = {p["metadata"]["name"]: p for p in cluster.pods("app=tier")}
    assert {n: release(p) for n, p in pods.items()} == {"tier-0": "1", "tier-1": "1", "tier-2": "2"}
    assert pods["tier-2"]["metadata"]["uid"] != before["tier-2"]
    for name in ("tier-0", "tier-1"):  # below the partition: never restarted
        assert pods[name]["metadata"]["uid"] == before[name]
    assert all(_ready(p) for p in pods.values())
    status = _get(cluster, "statefulset", "tier")["status"]
    assert status["updatedReplicas"] == 1
    assert status["currentRevision"] != status["updateRevision"]
    hashes = {n: p["metadata"]["labels"]["controller-revision-hash"] for n, p in pods.items()}
    assert hashes["tier-2"] == status["updateRevision"]
    assert hashes["tier-0"] == hashes["tier-1"] == status["currentRevision"]

    cluster.kubectl("patch", "statefulset/tier", "-p",
                    '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}')  # fmt: skip
    cluster.kubectl("rollout", "status", "statefulset/tier", "--timeout=180s", timeout=200)
    pods = {p["metadata"]["name"]: p for p in cluster.pods("app=tier")}
    assert {n: release(p) for n, p in pods.items()} == dict.fromkeys(before, "2")
    cluster.kubectl("delete", "statefulset", "tier", "--wait=true", timeout=120)
    wait_for("tier pods gone", lambda: not cluster.pods("app=tier") or None, timeout=120)


# -- crash loops and logs -------------------------------------------------------------------


def _bare_pod(name: str, image: str, command: str, **extra: Any) -> dict[str, Any]:
    container = {"name": "main", "image": image, "command": ["/bin/sh", "-c", command]}
    container.update(extra)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"test": "workloads"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
            "containers": [container],
        },
    }


def test_crashing_container_ends_in_crash_loop_back_off_with_its_logs(cluster: Cluster) -> None:
    crash = "echo run-$(cat /proc/uptime | cut -d' ' -f1); echo oops >&2; exit 3"
    cluster.apply(_bare_pod("crasher", cluster.image, crash))

    def looping() -> dict[str, Any] | None:
        pod = cluster.pod("crasher")
        crashed = _waiting_reason(pod) == "CrashLoopBackOff"
        return pod if crashed and _container(pod).get("restartCount", 0) >= 1 else None

    pod = wait_for("crasher in CrashLoopBackOff", looping, timeout=120)
    status = _container(pod)
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert pod["status"]["phase"] == "Running"
    logs = cluster.kubectl("logs", "crasher").stdout
    assert "oops" in logs
    assert logs.startswith("run-")
    previous = cluster.kubectl("logs", "crasher", "--previous").stdout
    assert previous.startswith("run-")
    tail = cluster.kubectl("logs", "crasher", "--tail=1").stdout.splitlines()
    assert len(tail) == 1
    assert tail[0] in logs.splitlines()


SHORT_LIVED = 100


def _short_lived(index: int, image: str) -> dict[str, Any]:
    code = 3 if index % 2 else 0
    pod = _bare_pod(f"short-{index}", image, f"echo hi; exit {code}")
    pod["metadata"]["labels"] = {"test": "short-lived", "expect": str(code)}
    pod["spec"]["restartPolicy"] = "Never"
    return pod


def test_short_lived_pods_end_in_the_phase_their_exit_code_says(cluster: Cluster) -> None:
    """Issue 19.8: 100 pods created at once whose container prints and exits at once (exit 0
    and exit 3 mixed), most before the agent first looks and while their shims race to write
    the exit files on three busy nodes: each ends Succeeded (0) or Failed (3) with its own
    code and a finishedAt, never Failed with ContainerStatusUnknown."""
    pods = [_short_lived(i, cluster.image) for i in range(SHORT_LIVED)]
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(pods), timeout=120)

    def all_terminal() -> list[dict[str, Any]] | None:
        found = cluster.pods("test=short-lived")
        done = [p for p in found if p["status"].get("phase") in ("Succeeded", "Failed")]
        return found if len(done) == SHORT_LIVED else None

    started = time.monotonic()
    found = wait_for(f"{SHORT_LIVED} short-lived pods terminal", all_terminal, timeout=300)
    print(f"{SHORT_LIVED} short-lived pods terminal in {time.monotonic() - started:.1f}s")
    wrong = {}
    for pod in found:
        expect = int(pod["metadata"]["labels"]["expect"])
        term = _container(pod).get("state", {}).get("terminated") or {}
        seen = (pod["status"]["phase"], term.get("exitCode"), term.get("reason"))
        wanted = ("Succeeded", 0, "Completed") if expect == 0 else ("Failed", 3, "Error")
        if seen != wanted or not term.get("finishedAt"):
            wrong[pod["metadata"]["name"]] = (*seen, term.get("finishedAt"))
    assert not wrong, f"{len(wrong)} pods ended wrongly: {wrong}"
    assert len({p["spec"]["nodeName"] for p in found}) == 3, "spread over the three nodes"
    cluster.kubectl("delete", "pods", "-l", "test=short-lived", "--wait=true", timeout=180)


def test_logs_follow_streams_new_lines(cluster: Cluster) -> None:
    ticker = "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.3; done"
    cluster.apply(_bare_pod("ticker", cluster.image, ticker))
    wait_for("ticker running", lambda: _ready(cluster.pod("ticker")), timeout=120)
    proc = subprocess.Popen(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "logs", "-f", "ticker"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    # Read the stream until it has brought 6 lines (not "whatever came in 3 s": kubectl's start
    # and the stream's setup are CPU work, and a loaded machine took most of those 3 s).
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    pumping = threading.Thread(target=pump, daemon=True)
    pumping.start()
    out = ""
    deadline = time.monotonic() + 90
    try:
        while out.count("tick-") < 6 and (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:  # kubectl ended
                break
            out += line
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        pumping.join(timeout=30)  # kubectl gone: the pump reads EOF and ends
        assert proc.stdout is not None
        proc.stdout.close()  # left open, its finalizer's ResourceWarning failed the test
    ticks = [int(line.split("-")[1]) for line in out.splitlines() if line.startswith("tick-")]
    assert len(ticks) >= 6, out
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks))), "in order, none lost"

    def newer_tail() -> list[int] | None:
        later = cluster.kubectl("logs", "ticker", "--tail=3").stdout.splitlines()
        numbers = [int(line.split("-")[1]) for line in later]
        return numbers if numbers and numbers[-1] > ticks[-1] else None

    # a few more ticks after the stream stopped (polled: the pod's loop is slow under load)
    numbers = wait_for("--tail shows lines newer than the stream's", newer_tail, timeout=60)
    assert len(numbers) == 3
    assert numbers == list(range(numbers[0], numbers[0] + 3))


# -- resource metrics and autoscaling ---------------------------------------------------------

BURN_SECONDS = 45


def _burner(image: str) -> list[dict[str, Any]]:
    """A Deployment whose pods burn a core for BURN_SECONDS after they start, then idle, and
    an HPA on it (50% of a 100m request; scale-down window 10 s so the test need not wait
    upstream's 300 s)."""
    burn = (
        f"end=$(( $(date +%s) + {BURN_SECONDS} )); "
        "while [ $(date +%s) -lt $end ]; do :; done; exec sleep 100000"
    )
    labels = {"app": "burner", "test": "workloads"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "burner", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "burner"}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [
                        {
                            "name": "burn",
                            "image": image,
                            "command": ["/bin/sh", "-c", burn],
                            "resources": {"requests": {"cpu": "100m", "memory": "16Mi"}},
                        }
                    ],
                },
            },
        },
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "burner", "namespace": "default"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "burner"},
            "minReplicas": 1,
            "maxReplicas": 2,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 50},
                    },
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 10}},
        },
    }
    return [deployment, hpa]


def _top_rows(c: Cluster, *args: str) -> list[list[str]] | None:
    result = c.kubectl("top", *args, check=False)
    if result.returncode != 0:
        return None
    return [line.split() for line in result.stdout.splitlines()[1:] if line.strip()]


def _burner_replicas(c: Cluster, n: int) -> bool | None:
    d = json.loads(c.kubectl("get", "deployment", "burner", "-o", "json").stdout)
    return True if d["spec"]["replicas"] == n else None


def test_top_answers_soon_after_pods_start_and_the_hpa_follows_cpu_load(
    cluster: Cluster,
) -> None:
    cluster.apply(*_burner(cluster.image))
    pod = wait_for(
        "burner running", lambda: next(iter(cluster.pods("app=burner")), None), timeout=60
    )
    wait_for("burner running", lambda: _running_pod(cluster, pod["metadata"]["name"]), timeout=60)
    started = time.monotonic()
    nodes = wait_for("kubectl top nodes", lambda: _top_rows(cluster, "nodes"), timeout=30)
    assert len(nodes) == 3, nodes  # every runc node answers
    rows = wait_for(
        "kubectl top pods",
        lambda: _top_rows(cluster, "pods", "-l", "app=burner", "--containers"),
        timeout=max(1.0, 30 - (time.monotonic() - started)),
    )
    assert time.monotonic() - started <= 30
    # POD NAME CPU MEMORY: the burner's one container burns most of a core
    assert rows[0][1] == "burn"
    assert rows[0][2].endswith("m")
    assert int(rows[0][2][:-1]) > 100, rows  # above its request (the machine is shared)
    assert rows[0][3].endswith("Mi") or rows[0][3].endswith("Ki"), rows
    # far above 50% of 100m: the HPA scales to its max (2), then back to 1 once the burning
    # stops and the 10 s scale-down window has passed
    wait_for("HPA scaled burner up to 2", lambda: _burner_replicas(cluster, 2), timeout=90)
    wait_for("HPA scaled burner back to 1", lambda: _burner_replicas(cluster, 1), timeout=150)
    hpa = json.loads(cluster.kubectl("get", "hpa", "burner", "-o", "json").stdout)
    conditions = {x["type"]: x for x in hpa["status"]["conditions"]}
    assert conditions["ScalingActive"]["status"] == "True"
    events = json.loads(cluster.kubectl("get", "events", "-o", "json").stdout)["items"]
    rescales = [
        e["message"]
        for e in events
        if e.get("reason") == "SuccessfulRescale" and e["involvedObject"]["name"] == "burner"
    ]
    assert "New size: 2; reason: cpu resource utilization (percentage of request) above target" in (
        rescales
    ), rescales
    assert "New size: 1; reason: All metrics below target" in rescales, rescales
    cluster.kubectl("delete", "hpa", "burner")
    cluster.kubectl("delete", "deployment", "burner", "--wait=false")


# -- images ---------------------------------------------------------------------------------


def _closed_port(address: str) -> int:
    """A port nothing listens on at ``address`` (a lab bridge address)."""
    return free_port(address)


def test_pull_errors_are_reported_on_the_pod(cluster: Cluster) -> None:
    # a "registry" on the lab bridge that refuses connections: the pull fails on every try
    missing = f"{cluster.lab.gateway}:{_closed_port(cluster.lab.gateway)}/lab/missing:1"
    cluster.apply(
        _bare_pod("missing", missing, "true", imagePullPolicy="Always"),
        _bare_pod("never", "airgap.local/absent:1", "true", imagePullPolicy="Never"),
    )

    def reason(name: str, wanted: str) -> Callable[[], dict[str, Any] | None]:
        def check() -> dict[str, Any] | None:
            pod = cluster.pod(name)
            return pod if _waiting_reason(pod) == wanted else None

        return check

    pod = wait_for("ImagePullBackOff", reason("missing", "ImagePullBackOff"), timeout=120)
    assert pod["status"]["phase"] == "Pending"
    assert _container(pod)["restartCount"] == 0
    events = cluster.kubectl(
        "get", "events", "--field-selector", "involvedObject.name=missing", "-o", "json"
    ).stdout
    messages = [e["message"] for e in json.loads(events)["items"] if e["reason"] == "Failed"]
    assert any("lab/missing:1" in m for m in messages), messages
    pod = wait_for("ErrImageNeverPull", reason("never", "ErrImageNeverPull"), timeout=120)
    message = _container(pod)["state"]["waiting"]["message"]
    assert "imagePullPolicy is Never" in message


def test_images_come_from_the_registries_the_spec_trusts(cluster: Cluster) -> None:
    """Pulled over plain HTTP only from the registry the spec marks insecure, over HTTPS from
    the one whose private CA the spec gives; the same CA's certificate on a registry the spec
    does not list is refused (trust is per registry, not added to the whole node)."""
    cluster.apply(*(
        _bare_pod(f"from-{name}", f"{cluster.registries[name]}/lab/busybox:1", "sleep 3600",
                  imagePullPolicy="Always")
        for name in ("plain", "private", "unlisted")
    ))  # fmt: skip
    for name in ("plain", "private"):
        pod = wait_for(f"from-{name} running", partial(_running_pod, cluster, f"from-{name}"))
        assert "running" in _container(pod)["state"], pod["status"]

    def refused() -> dict[str, Any] | None:
        pod = cluster.pod("from-unlisted")
        return pod if _waiting_reason(pod) in ("ErrImagePull", "ImagePullBackOff") else None

    pod = wait_for("from-unlisted refused", refused, timeout=120)
    events = cluster.kubectl(
        "get", "events", "--field-selector", "involvedObject.name=from-unlisted", "-o", "json"
    ).stdout
    messages = [e["message"] for e in json.loads(events)["items"] if e["reason"] == "Failed"]
    assert any("CERTIFICATE_VERIFY_FAILED" in m for m in messages), (messages, pod["status"])
    for name in ("plain", "private", "unlisted"):
        cluster.kubectl("delete", "pod", f"from-{name}", "--wait=false")


def _running_pod(c: Cluster, name: str) -> dict[str, Any] | None:
    pod = c.pod(name)
    return pod if (pod.get("status") or {}).get("phase") == "Running" else None


def test_images_load_serves_air_gapped_nodes(cluster: Cluster) -> None:
    layout = cluster.workdir / "airgap-layout"
    ref = build_busybox_layout(layout, ref_name="airgap")
    archive = cluster.workdir / "airgap.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(layout, arcname=".")
    started = time.monotonic()
    loaded = cluster.berth(
        "images", "load", str(archive), "-i", str(cluster.spec), "--as", "airgap.local/web:1"
    )
    elapsed = time.monotonic() - started
    assert loaded.returncode == 0, loaded.stdout[-2000:] + loaded.stderr[-2000:]
    assert sorted(line.split(":")[0] for line in loaded.stdout.splitlines()) == ["n1", "n2", "n3"]
    print(f"berth images load: 3 nodes in {elapsed:.1f}s ({archive.stat().st_size} bytes)")
    assert ref == "airgap"
    pods = []
    for node_name in cluster.nodes:
        pod = _bare_pod(
            f"airgap-{node_name}",
            "airgap.local/web:1",
            "exec httpd -f -p 8080 -h /www",
            imagePullPolicy="Never",
        )
        pod["spec"]["nodeName"] = node_name
        pods.append(pod)
    cluster.apply(*pods)
    for node_name, node in cluster.nodes.items():
        pod = wait_for(
            f"airgap-{node_name} ready", partial(_ready_pod, cluster, f"airgap-{node_name}")
        )
        code = (
            "import json, urllib.request\n"
            f"print(json.dumps(urllib.request.urlopen('http://{pod['status']['podIP']}:8080/', "
            "timeout=3).read().decode().strip()))"
        )
        assert node.python(code) == "busybox"


# -- agent restarts and clean deletion -------------------------------------------------------


def _agent_pid(node: Node) -> int:
    return int(node.ssh(f"systemctl show -p MainPID --value {AGENT_UNIT}").stdout.decode())


def _agent_restarted(node: Node, old_pid: int) -> bool:
    return _agent_pid(node) not in (0, old_pid)


def _runc_ids(node: Node, uids: set[str]) -> list[str]:
    """runc's containers of the pods ``uids`` on ``node`` (ids are ``<pod uid>_<name>_<n>``)."""
    ids = node.ssh(f"{RUNC} list -q").stdout.decode().split()
    return sorted(i for i in ids if i.split("_")[0] in uids)


def test_restarting_the_agents_keeps_pods_running_without_duplicates(cluster: Cluster) -> None:
    before = {p["metadata"]["name"]: p for p in _web_pods(cluster)}
    uids = {p["metadata"]["uid"] for p in before.values()}
    containers = {name: _runc_ids(node, uids) for name, node in cluster.nodes.items()}
    for node in cluster.nodes.values():
        pid = _agent_pid(node)
        node.ssh(f"kill -TERM {pid}")
        wait_for(f"{node.name}'s agent back", partial(_agent_restarted, node, pid), timeout=90)
    time.sleep(5.0)  # the restarted agents adopt, reconcile and report
    after = {p["metadata"]["name"]: p for p in _web_pods(cluster)}
    assert sorted(after) == sorted(before)
    for name, pod in after.items():
        assert _container(pod)["containerID"] == _container(before[name])["containerID"]
        assert _container(pod)["restartCount"] == _container(before[name])["restartCount"]
        assert pod["status"]["podIP"] == before[name]["status"]["podIP"]
    assert {name: _runc_ids(node, uids) for name, node in cluster.nodes.items()} == containers
    cluster_ip, _ = _service(cluster)
    answers = _answers_from(cluster.nodes["n3"], f"http://{cluster_ip}/", 30)
    assert set(answers) == set(after)


# A client on a node requesting a URL back to back until STOP exists, then printing its
# outcomes: {"ok": n, "<error kind>": n}. No retries: every failed request counts.
LOAD_CLIENT = """
import collections, json, os, sys, urllib.error, urllib.request
url, stop = sys.argv[1], sys.argv[2]
counts = collections.Counter()
while not os.path.exists(stop):
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            reply.read()
        counts["ok"] += 1
    except Exception as error:
        cause = error.reason if isinstance(error, urllib.error.URLError) else error
        counts[type(cause).__name__] += 1
print(json.dumps(counts))
"""


QUICK_LABELS = {"app": "quick"}
# httpd in the background and a TERM trap: the replica stops serving the moment it is signalled
QUICK_SERVE = "hostname > /tmp/index.html; httpd -f -p 8080 -h /tmp & trap 'exit 0' TERM; wait"


def _quick(image: str) -> list[dict[str, Any]]:
    container = {
        "name": "quick", "image": image, "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh", "-c", QUICK_SERVE],
        "ports": [{"containerPort": 8080, "name": "http"}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
    }  # fmt: skip
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "quick", "namespace": "default"},
        "spec": {
            "replicas": 2, "selector": {"matchLabels": QUICK_LABELS},
            "template": {"metadata": {"labels": QUICK_LABELS}, "spec": {
                "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
                "terminationGracePeriodSeconds": 10, "containers": [container],
            }},
        },
    }  # fmt: skip
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "quick", "namespace": "default"},
        "spec": {"selector": QUICK_LABELS, "ports": [{"port": 80, "targetPort": "http"}]},
    }  # fmt: skip
    return [deployment, service]


def _quick_pods(c: Cluster) -> list[dict[str, Any]]:
    def ready() -> list[dict[str, Any]] | None:
        pods = [p for p in c.pods("app=quick") if not p["metadata"].get("deletionTimestamp")]
        ok = len(pods) == 2 and all(_ready(p) and p["status"].get("podIP") for p in pods)
        return pods if ok else None

    return wait_for("2 ready quick replicas", ready, timeout=120)


def _pod_gone(c: Cluster, name: str) -> bool:
    return c.kubectl("get", "pod", name, "--ignore-not-found", "-o", "name").stdout.strip() == ""


def test_deleting_replicas_under_load_fails_no_request(cluster: Cluster) -> None:
    """A replica that exits the moment it is signalled: the agent holds the signal until the
    Services no longer route to the pod, plus a margin for slower nodes' proxies, so a client
    hammering the ClusterIP without retries never meets a replica that is gone, even from a
    node whose proxy lags (Kubernetes users add ``preStop: sleep`` for this)."""
    cluster.apply(*_quick(cluster.image))
    before = _quick_pods(cluster)
    svc = json.loads(cluster.kubectl("get", "service", "quick", "-o", "json").stdout)
    url = f"http://{svc['spec']['clusterIP']}/"
    client = cluster.nodes["n1"]
    log, stop = "/tmp/berth-load-client.json", "/tmp/berth-load-client.stop"
    client.ssh(
        f"rm -f {log} {stop}; setsid nohup python3 -c {shlex.quote(LOAD_CLIENT)} "
        f"{url} {stop} >{log} 2>&1 </dev/null &"
    )
    try:
        time.sleep(1)  # under way before the first deletion
        for pod in before:
            name = pod["metadata"]["name"]
            # the client's node is slow to follow: its service proxy (in the agent) is frozen
            # for the first half second of the deletion, as on a busy node
            agent = _agent_pid(client)
            client.ssh(f"kill -STOP {agent}")
            try:
                started = time.monotonic()
                cluster.kubectl("delete", "pod", name, "--wait=false")
                time.sleep(0.5)
            finally:
                client.ssh(f"kill -CONT {agent}")
            wait_for(f"{name} gone", partial(_pod_gone, cluster, name))
            print(f"{name} deleted in {time.monotonic() - started:.1f}s")
            _quick_pods(cluster)  # its replacement is ready before the next one goes
    finally:
        client.ssh(f"touch {stop}")
    counts: dict[str, int] = wait_for(
        "the load client's counts",
        lambda: json.loads(client.ssh(f"cat {log}").stdout or b"null"),
        timeout=60,  # its last request (2 s bound), then a Python exit on a loaded host
    )
    print(f"load client through 2 deletions: {counts}")
    assert set(counts) == {"ok"}, counts
    assert counts["ok"] > 100, counts
    after = {p["metadata"]["name"] for p in _quick_pods(cluster)}
    assert after.isdisjoint(p["metadata"]["name"] for p in before)
    cluster.kubectl("delete", "deployment,service", "quick", "--wait=true", timeout=90)
    wait_for("the quick pods gone", lambda: not cluster.pods("app=quick") or None, timeout=120)


# -- persistent volumes (issue 16): the default class makes node-local directories ----------

VOLUMES_DIR = "/var/lib/berth/volumes"


def _claim(name: str, storage_class: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "64Mi"}},
    }
    if storage_class:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def _volume_pod(
    name: str, image: str, claim: str, command: str, *, read_only: bool = False
) -> dict[str, Any]:
    pod = _bare_pod(name, image, command, volumeMounts=[{"name": "data", "mountPath": "/data"}])
    pod["spec"]["restartPolicy"] = "Never"
    pod["spec"]["volumes"] = [
        {"name": "data", "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}}
    ]
    return pod


def _get(c: Cluster, *args: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(c.kubectl("get", *args, "-o", "json").stdout)
    return found


def _finished(c: Cluster, name: str) -> dict[str, Any] | None:
    pod = c.pod(name)
    return pod if pod["status"].get("phase") in ("Succeeded", "Failed") else None


def _has_dir(node: Node, path: str) -> bool:
    return node.ssh(f"test -d {shlex.quote(path)}", check=False).returncode == 0


def _written_then_read(c: Cluster, claim: str, storage_class: str | None) -> tuple[str, str]:
    """A writer pod puts a file in the claim's volume; its successor (read-only mount) reads
    it. Returns the volume's name and node."""
    c.apply(_claim(claim, storage_class))
    pending = _get(c, "pvc", claim)
    assert pending["status"]["phase"] == "Pending"  # WaitForFirstConsumer: no pod yet
    assert not pending["spec"].get("volumeName")
    writer, reader = f"{claim}-writer", f"{claim}-reader"
    c.apply(_volume_pod(writer, c.image, claim, "echo kept-by-$(hostname) > /data/note"))
    done = wait_for(f"{writer} finished", partial(_finished, c, writer), timeout=120)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    bound = _get(c, "pvc", claim)
    assert bound["status"]["phase"] == "Bound"
    node = done["spec"]["nodeName"]
    assert bound["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == node
    volume = bound["spec"]["volumeName"]
    pv = _get(c, "pv", volume)
    terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == [node]
    assert _has_dir(c.nodes[node], f"{VOLUMES_DIR}/{volume}")
    c.kubectl("delete", "pod", writer)
    probe = "cat /data/note; touch /data/other 2>/dev/null && echo writable || echo read-only"
    c.apply(_volume_pod(reader, c.image, claim, probe, read_only=True))
    read = wait_for(f"{reader} finished", partial(_finished, c, reader), timeout=120)
    assert read["spec"]["nodeName"] == node  # the volume's node affinity brought it back
    assert c.kubectl("logs", reader).stdout.split() == [f"kept-by-{writer}", "read-only"]
    c.kubectl("delete", "pod", reader)
    return volume, node


def test_local_volume_outlives_its_pod_and_is_removed_with_its_claim(cluster: Cluster) -> None:
    volume, node = _written_then_read(cluster, "notes", None)
    row = cluster.kubectl("get", "pv", volume, "--no-headers").stdout.split()
    assert row[1:5] == ["64Mi", "RWO", "Delete", "Bound"]
    assert row[5:7] == ["default/notes", "berth-local"]
    cluster.kubectl("delete", "pvc", "notes")
    path = f"{VOLUMES_DIR}/{volume}"

    def cleaned() -> bool | None:
        gone = cluster.kubectl("get", "pv", volume, check=False).returncode != 0
        return (gone and not _has_dir(cluster.nodes[node], path)) or None

    wait_for(f"{volume} and {path} removed (reclaim Delete)", cleaned, timeout=90)


def test_retained_local_volume_keeps_its_data(cluster: Cluster) -> None:
    cluster.apply(
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": "local-retain"},
            "provisioner": "berth.io/local",
            "reclaimPolicy": "Retain",
            "volumeBindingMode": "WaitForFirstConsumer",
        }
    )
    volume, node = _written_then_read(cluster, "ledger", "local-retain")
    cluster.kubectl("delete", "pvc", "ledger")

    def released() -> bool | None:
        return _get(cluster, "pv", volume)["status"]["phase"] == "Released" or None

    wait_for(f"{volume} Released", released, timeout=120)
    cluster.kubectl("delete", "pv", volume, "--wait=false")

    def pv_gone() -> bool | None:
        return cluster.kubectl("get", "pv", volume, check=False).returncode != 0 or None

    wait_for(f"{volume} object removed", pv_gone, timeout=90)
    note = cluster.nodes[node].ssh(f"cat {VOLUMES_DIR}/{volume}/note").stdout.decode()
    assert note.strip() == "kept-by-ledger-writer"
    cluster.nodes[node].ssh(f"rm -rf {VOLUMES_DIR}/{volume}")
    cluster.kubectl("delete", "storageclass", "local-retain")


def _statefulset_with_claims(image: str) -> dict[str, Any]:
    # every start appends a line (this pod's name and a random id) to a file in its claim's
    # volume and prints the whole file: a replacement shows what the pod before it wrote
    append_and_show = (
        'echo "$(hostname) $(cat /proc/sys/kernel/random/uuid)" >> /data/starts; '
        "cat /data/starts; exec sleep 3600"
    )
    sts = _statefulset(image)
    sts["metadata"]["name"] = "vault"
    spec = sts["spec"]
    spec["replicas"], spec["serviceName"] = 2, "vault"
    spec["selector"] = {"matchLabels": {"app": "vault"}}
    spec["template"]["metadata"]["labels"] = {"app": "vault", "test": "workloads"}
    container = spec["template"]["spec"]["containers"][0]
    container["command"] = ["/bin/sh", "-c", append_and_show]
    container.pop("readinessProbe")
    container["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    template = _claim("data")  # no class: the default, berth-local
    del template["apiVersion"], template["kind"], template["metadata"]["namespace"]
    spec["volumeClaimTemplates"] = [template]
    return sts


def test_statefulset_pod_returns_to_its_claim_and_reads_what_it_wrote(cluster: Cluster) -> None:
    cluster.apply(_statefulset_with_claims(cluster.image))
    cluster.kubectl("rollout", "status", "statefulset/vault", "--timeout=180s", timeout=200)
    pods = {p["metadata"]["name"]: p for p in cluster.pods("app=vault")}
    assert sorted(pods) == ["vault-0", "vault-1"]
    volumes: dict[str, tuple[str, str]] = {}  # pod -> (volume, node)
    for name, pod in pods.items():
        claim = _get(cluster, "pvc", f"data-{name}")
        assert claim["status"]["phase"] == "Bound"
        assert claim["spec"]["storageClassName"] == "berth-local"
        node, volume = pod["spec"]["nodeName"], claim["spec"]["volumeName"]
        assert claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == node
        assert _has_dir(cluster.nodes[node], f"{VOLUMES_DIR}/{volume}")
        volumes[name] = (volume, node)
    assert len({volume for volume, _ in volumes.values()}) == 2
    # each runc node publishes the room of its local volumes' filesystem (what the scheduler
    # and the binder compare a claim's request with), the real df of the host
    for _volume, node in volumes.values():
        annotations = _get(cluster, "node", node)["metadata"]["annotations"]
        size = parse_quantity(annotations["berth.io/local-volumes-capacity"]).value()
        free = parse_quantity(annotations["berth.io/local-volumes-available"]).value()
        df = cluster.nodes[node].ssh(f"df -B1 --output=size,avail {VOLUMES_DIR}").stdout
        real_size, real_free = (int(x) for x in df.decode().split()[-2:])
        assert 0 < free <= size <= real_size
        assert abs(free - real_free) <= max(real_size // 50, 256 << 20), (free, real_free)
    first = cluster.kubectl("logs", "vault-1").stdout.splitlines()
    assert len(first) == 1, first
    assert first[0].split()[0] == "vault-1", first

    old_uid = pods["vault-1"]["metadata"]["uid"]
    cluster.kubectl("delete", "pod", "vault-1", "--wait=false")

    def back() -> dict[str, Any] | None:
        found = [p for p in cluster.pods("app=vault") if p["metadata"]["name"] == "vault-1"]
        fresh = [p for p in found if p["metadata"]["uid"] != old_uid and _ready(p)]
        return fresh[0] if fresh else None

    again = wait_for("vault-1 back under its name", back, timeout=120)
    volume, node = volumes["vault-1"]
    assert again["spec"]["nodeName"] == node  # the volume's node affinity brought it back
    claim = _get(cluster, "pvc", "data-vault-1")
    assert claim["spec"]["volumeName"] == volume
    # the replacement found the first pod's line in the volume, and added its own
    second = cluster.kubectl("logs", "vault-1").stdout.splitlines()
    assert len(second) == 2, (first, second)
    assert second[0] == first[0], (first, second)
    assert second[1] != first[0]

    cluster.kubectl("delete", "statefulset", "vault", "--wait=true", timeout=120)
    wait_for("vault pods gone", lambda: not cluster.pods("app=vault") or None, timeout=120)
    # whenDeleted: Retain (the default) kept the claims; deleting them deletes their volumes
    cluster.kubectl("delete", "pvc", "-l", "app=vault")

    def cleaned() -> bool | None:
        for volume, node in volumes.values():
            if cluster.kubectl("get", "pv", volume, check=False).returncode == 0:
                return None
            if _has_dir(cluster.nodes[node], f"{VOLUMES_DIR}/{volume}"):
                return None
        return True

    wait_for("the vault volumes and their directories removed", cleaned, timeout=90)


def test_deleting_everything_leaves_nothing_behind(cluster: Cluster) -> None:
    cluster_ip, node_port = _service(cluster)
    cluster.kubectl("delete", "deployment", "web", "--wait=false")
    cluster.kubectl("delete", "service", "web", "--wait=false")
    cluster.kubectl("delete", "pods", "-l", "test=workloads", "--wait=false")
    wait_for("every pod gone", lambda: not cluster.pods() or None, timeout=120)
    for node in cluster.nodes.values():
        deadline = time.monotonic() + 30
        while _leftovers(node, cluster_ip, node_port) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _leftovers(node, cluster_ip, node_port) == {}, node.name


def _leftovers(node: Node, cluster_ip: str, node_port: int) -> dict[str, str]:
    """What pods or the deleted service left on the host, by kind (empty when clean)."""

    def sh(command: str) -> str:
        return node.ssh(command).stdout.decode().strip()

    found = {
        "containers": sh(f"{RUNC} list -q"),
        "netns": sh("ip netns list"),
        "veth": sh("ip -o link show type veth | grep -v ': eth0@' || true"),
        "ip allocations": sh(
            "ls /var/lib/cni/networks/*/ | grep -v -e '^last_reserved_ip' -e '^lock$' "
            "-e ':$' -e '^$' || true"
        ),
        "sandboxes": sh(
            "ls /var/lib/berth/runtime/pods /var/lib/berth/runtime/containers "
            "| grep -v -e ':$' -e '^$' || true"
        ),
    }
    rules = sh("nft list table ip berth")
    if cluster_ip in rules or f" {node_port} " in rules:
        found["nft"] = "service web still in the berth table"
    return {k: v for k, v in found.items() if v}


def test_node_reset_after_the_agent_stops_leaves_the_host_clean(cluster: Cluster) -> None:
    node = cluster.nodes["n3"]
    pod = _bare_pod("leftover", cluster.image, "exec httpd -f -p 8080 -h /www")
    pod["spec"]["nodeName"] = "n3"
    cluster.apply(pod)
    uid = wait_for("leftover ready", partial(_ready_pod, cluster, "leftover"))["metadata"]["uid"]
    node.ssh(f"systemctl stop {AGENT_UNIT}")
    assert _runc_ids(node, {uid}), "KillMode=process: the container outlives its agent"
    out = node.ssh(f"PYTHONPATH={SITE} python3 -m berth.runtime reset").stdout
    report = json.loads(out)
    assert report["pods"] == [uid]
    assert report["bridge"] is True
    assert report["routes"] >= 3  # to n1's and n2's pods + the service CIDR

    def sh(command: str) -> str:
        return node.ssh(command, check=False).stdout.decode().strip()

    assert sh(f"{RUNC} list -q") == ""
    assert sh("ip netns list") == ""
    assert sh("ip -o link show type veth | grep -v ': eth0@'") == ""
    assert sh("ls /var/lib/cni/networks/*/ | grep -v -e '^last_reserved_ip' -e '^lock$'") == ""
    assert sh("ip route show proto 199") == ""
    assert node.ssh("nft list table ip berth", check=False).returncode != 0
    assert node.ssh("ip link show cni0", check=False).returncode != 0
    # the stopped agent's control group empties (KillMode=process left its shims and the shim
    # zygote there; a zygote left serving kept the unit loaded after destroy removed its file)
    procs = f"/sys/fs/cgroup/system.slice/{AGENT_UNIT}.service/cgroup.procs"
    wait_for("the stopped agent's control group empty", lambda: sh(f"cat {procs}") == "" or None)
    again = json.loads(node.ssh(f"PYTHONPATH={SITE} python3 -m berth.runtime reset").stdout)
    assert again == {"pods": [], "containers": [], "zygotes": [], "routes": 0, "bridge": False}
    cluster.kubectl("delete", "pod", "leftover", "--force", "--grace-period=0")


def test_destroy_leaves_runc_nodes_with_pods_clean(cluster: Cluster) -> None:
    pods = []
    for name in cluster.nodes:
        pod = _bare_pod(f"last-{name}", cluster.image, "exec httpd -f -p 8080 -h /www")
        pod["spec"]["nodeName"] = name
        pods.append(pod)
    cluster.apply(*pods)
    for name in cluster.nodes:
        if name != "n3":  # n3's agent was stopped by the previous test: its pod stays Pending
            wait_for(f"last-{name} ready", partial(_ready_pod, cluster, f"last-{name}"))
    # the packages berth installed stay: runc and nft below still answer for what is left
    destroyed = cluster.berth("destroy", "-i", str(cluster.spec), "--yes", "--keep-packages")
    assert destroyed.returncode == 0, destroyed.stdout[-3000:] + destroyed.stderr[-2000:]
    assert sorted(line for line in destroyed.stdout.splitlines() if "verified clean" in line)
    for node in cluster.nodes.values():
        status = node.ssh("dpkg-query -W -f='${db:Status-Status}' runc nftables").stdout
        assert status == b"installedinstalled", (node.name, status)
        assert node.ssh(f"{RUNC} list -q", check=False).stdout.strip() == b"", node.name
        assert node.ssh("ip netns list").stdout.strip() == b"", node.name
        assert node.ssh("ip route show proto 199").stdout.strip() == b"", node.name
        assert node.ssh("nft list table ip berth", check=False).returncode != 0, node.name
        assert node.ssh("ip link show cni0", check=False).returncode != 0, node.name
        assert node.ssh("ls /var/lib/cni/networks/berth", check=False).returncode != 0
