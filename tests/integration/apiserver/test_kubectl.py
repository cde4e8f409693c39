"""Unmodified kubectl (1.32 from /usr/bin and 1.20.2 from Debian) against the real API server.

Each test checks what a user would see on the terminal. Both versions share one server; each
version works in its own namespace and on its own nodes.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from tests.harness.apiserver import ServerHandle

from .helpers import Kubectl, Watch, apps_api, core_api, deployment, node, pod, table

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def ns(kubectl: Kubectl, api: k8s.ApiClient) -> str:
    name = "v" + kubectl.version.replace(".", "")
    core = core_api(api)
    core.create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture(scope="module")
def nodes(kubectl: Kubectl, api: k8s.ApiClient) -> tuple[str, str]:
    """Two nodes per kubectl version: a ready control plane and a not-ready worker."""
    suffix = kubectl.version.replace(".", "")
    core = core_api(api)
    cp, worker = f"cp-{suffix}", f"worker-{suffix}"
    core.create_node(node(cp, ready=True, ip="10.0.0.1", roles=("control-plane",)))
    core.create_node(node(worker, ready=False, ip="10.0.0.2"))
    return cp, worker


def test_version(kubectl: Kubectl) -> None:
    out = kubectl("version")
    assert "Server Version" in out
    assert "v1.32.0+berth" in out
    if kubectl.version == "1.20":
        assert 'GitVersion:"v1.20.2"' in out


def test_get_nodes_shows_status_roles_and_version(kubectl: Kubectl, nodes: tuple[str, str]) -> None:
    cp, worker = nodes
    rows = table(kubectl("get", "nodes"))
    assert rows[0] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    by_name = {r[0]: r for r in rows[1:]}
    assert by_name[cp][1:3] == ["Ready", "control-plane"]
    assert by_name[cp][4] == "v0.1.0"
    assert by_name[worker][1:3] == ["NotReady", "<none>"]
    assert by_name[cp][3].endswith(("s", "m"))
    wide = table(kubectl("get", "nodes", "-o", "wide"))
    assert wide[0][:7] == [
        "NAME",
        "STATUS",
        "ROLES",
        "AGE",
        "VERSION",
        "INTERNAL-IP",
        "EXTERNAL-IP",
    ]
    wide_by_name = {r[0]: r for r in wide[1:]}
    assert wide_by_name[cp][5] == "10.0.0.1"
    assert "Debian GNU/Linux 12 (bookworm)" in wide_by_name[cp]


def test_get_pods_all_namespaces_wide(
    kubectl: Kubectl, ns: str, nodes: tuple[str, str], api: k8s.ApiClient
) -> None:
    core = core_api(api)
    core.create_namespaced_pod(ns, pod("wide-1", labels={"app": "a"}, node_name=nodes[0]))
    core.create_namespaced_pod(ns, pod("wide-2", labels={"app": "b"}, containers=2))
    core.patch_namespaced_pod_status(
        "wide-1", ns, {"status": {"phase": "Running", "podIP": "10.244.1.7"}}
    )
    rows = table(kubectl("get", "pods", "-A", "-o", "wide"))
    assert rows[0] == [
        "NAMESPACE",
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED NODE",
        "READINESS GATES",
    ]
    by_name = {r[1]: r for r in rows[1:] if r[0] == ns}
    assert by_name["wide-1"][2:5] == ["0/1", "Running", "0"]
    assert by_name["wide-1"][6:8] == ["10.244.1.7", nodes[0]]
    assert by_name["wide-2"][2:4] == ["0/2", "Pending"]
    assert by_name["wide-2"][6:8] == ["<none>", "<none>"]


def test_get_output_formats_and_selectors(
    kubectl: Kubectl, ns: str, nodes: tuple[str, str], api: k8s.ApiClient
) -> None:
    core = core_api(api)
    core.create_namespaced_pod(
        ns, pod("sel-a", labels={"app": "web", "tier": "front"}, node_name=nodes[0])
    )
    core.create_namespaced_pod(ns, pod("sel-b", labels={"app": "web", "tier": "back"}))
    core.create_namespaced_pod(ns, pod("sel-c", labels={"app": "db"}))
    doc = yaml.safe_load(kubectl("get", "pod", "sel-a", "-n", ns, "-o", "yaml"))
    assert doc["kind"] == "Pod"
    assert doc["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert doc["spec"]["containers"][0]["image"] == "busybox:1.36"
    listed = json.loads(kubectl("get", "pods", "-n", ns, "-l", "app=web", "-o", "json"))
    assert listed["kind"] == "List"
    assert sorted(i["metadata"]["name"] for i in listed["items"]) == ["sel-a", "sel-b"]
    names = kubectl("get", "pods", "-n", ns, "-l", "app=web,tier!=front", "-o", "name").split()
    assert names == ["pod/sel-b"]
    names = kubectl("get", "pods", "-n", ns, "-l", "tier in (front,back)", "-o", "name").split()
    assert names == ["pod/sel-a", "pod/sel-b"]
    names = kubectl("get", "pods", "-n", ns, "-l", "!tier", "-o", "name").split()
    assert "pod/sel-c" in names
    assert "pod/sel-a" not in names
    names = kubectl(
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        "app",
        "--field-selector",
        f"spec.nodeName={nodes[0]}",
        "-o",
        "name",
    ).split()
    # other tests' pods in the namespace may match too (wide-1 is on the same node): only
    # this test's three are judged, so the result does not depend on the test order
    assert [n for n in names if n.startswith("pod/sel-")] == ["pod/sel-a"]
    names = kubectl(
        "get", "pods", "-n", ns, "--field-selector", "metadata.name=sel-c", "-o", "name"
    ).split()
    assert names == ["pod/sel-c"]
    missing = kubectl.run("get", "pod", "nope", "-n", ns)
    assert missing.returncode == 1
    assert 'pods "nope" not found' in missing.stderr


MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: nginx
        image: IMAGE
        ports: [{containerPort: 80}]
      - name: sidecar
        image: busybox:1.36
"""


def _manifest(replicas: int, image: str) -> str:
    return MANIFEST.replace("REPLICAS", str(replicas)).replace("IMAGE", image)


def test_apply_create_change_and_reapply(
    kubectl: Kubectl, ns: str, api: k8s.ApiClient, tmp_path: Path
) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(_manifest(2, "nginx:1.19"))
    assert kubectl("apply", "-n", ns, "-f", str(path)).strip() == "deployment.apps/web created"
    apps = apps_api(api)
    first = apps.read_namespaced_deployment("web", ns)
    assert first.metadata.generation == 1
    path.write_text(_manifest(3, "nginx:1.20"))
    assert kubectl("apply", "-n", ns, "-f", str(path)).strip() == "deployment.apps/web configured"
    d = apps.read_namespaced_deployment("web", ns)
    assert d.spec.replicas == 3
    nginx = d.spec.template.spec.containers[0]
    # The strategic merge patch merged containers by name: ports survived, order kept.
    assert (nginx.name, nginx.image) == ("nginx", "nginx:1.20")
    assert [p.container_port for p in nginx.ports] == [80]
    assert [c.name for c in d.spec.template.spec.containers] == ["nginx", "sidecar"]
    assert d.metadata.generation == 2
    assert kubectl("apply", "-n", ns, "-f", str(path)).strip() == "deployment.apps/web unchanged"
    assert (
        apps.read_namespaced_deployment("web", ns).metadata.resource_version
        == d.metadata.resource_version
    )
    rows = table(kubectl("get", "deploy", "-n", ns, "-o", "wide"))
    assert rows[0] == [
        "NAME",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "AGE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
    ]
    assert rows[1][:4] == ["web", "0/3", "0", "0"]
    assert rows[1][5:] == ["nginx,sidecar", "nginx:1.20,busybox:1.36", "app=web"]
    # Drop the sidecar and add an env var: kubectl sends `$patch: delete` for the removed
    # container and merges env by name.
    without_sidecar = _manifest(3, "nginx:1.20").split("      - name: sidecar")[0]
    path.write_text(
        without_sidecar.replace(
            "ports: [{containerPort: 80}]",
            "ports: [{containerPort: 80}]\n        env: [{name: MODE, value: fast}]",
        )
    )
    assert kubectl("apply", "-n", ns, "-f", str(path)).strip() == "deployment.apps/web configured"
    d = apps.read_namespaced_deployment("web", ns)
    containers = d.spec.template.spec.containers
    assert [c.name for c in containers] == ["nginx"]
    assert [(e.name, e.value) for e in containers[0].env] == [("MODE", "fast")]
    assert [p.container_port for p in containers[0].ports] == [80]


def test_create_and_delete(kubectl: Kubectl, ns: str, tmp_path: Path) -> None:
    assert kubectl(
        "create", "configmap", "settings", "-n", ns, "--from-literal=mode=fast"
    ).strip() == ("configmap/settings created")
    again = kubectl.run("create", "configmap", "settings", "-n", ns, "--from-literal=mode=fast")
    assert again.returncode == 1
    assert 'configmaps "settings" already exists' in again.stderr
    path = tmp_path / "svc.json"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "front"},
                "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80}]},
            }
        )
    )
    assert kubectl("create", "-n", ns, "-f", str(path)).strip() == "service/front created"
    rows = table(kubectl("get", "svc", "front", "-n", ns))
    assert rows[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert rows[1][1] == "NodePort"
    assert rows[1][2].startswith("10.")
    port, node_port = rows[1][4].removesuffix("/TCP").split(":")
    assert port == "80"
    assert 30000 <= int(node_port) <= 32767
    assert (
        kubectl("delete", "configmap", "settings", "-n", ns).strip()
        == 'configmap "settings" deleted'
    )
    gone = kubectl.run("get", "configmap", "settings", "-n", ns)
    assert 'configmaps "settings" not found' in gone.stderr
    assert kubectl("delete", "-n", ns, "-f", str(path)).strip() == 'service "front" deleted'


def test_create_typed_generators(kubectl: Kubectl, ns: str, api: k8s.ApiClient) -> None:
    """kubectl 1.32 sends these as protobuf; 1.20 as JSON. Both must store the same object."""
    out = kubectl(
        "create", "deployment", "gen", "-n", ns, "--image=nginx:1.25", "--replicas=3", "--port=8080"
    )
    assert out.strip() == "deployment.apps/gen created"
    d = apps_api(api).read_namespaced_deployment("gen", ns)
    assert d.spec.replicas == 3
    assert d.spec.selector.match_labels == {"app": "gen"}
    c = d.spec.template.spec.containers[0]
    assert (c.name, c.image, c.ports[0].container_port) == ("nginx", "nginx:1.25", 8080)
    assert c.ports[0].host_port is None  # Go's zero values do not leak into the object
    assert d.spec.template.metadata.creation_timestamp is None
    kubectl("create", "role", "gen-reader", "-n", ns, "--verb=get,list", "--resource=pods")
    kubectl("create", "rolebinding", "gen-reader", "-n", ns, "--role=gen-reader", "--user=dana")
    rb = json.loads(kubectl("get", "rolebinding", "gen-reader", "-n", ns, "-o", "json"))
    assert rb["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "gen-reader",
    }
    assert rb["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "dana"}
    ]
    rows = table(kubectl("get", "rolebinding", "gen-reader", "-n", ns))
    assert rows[1][:2] == ["gen-reader", "Role/gen-reader"]


def test_get_watch_sees_a_change(kubectl: Kubectl, ns: str, api: k8s.ApiClient) -> None:
    core = core_api(api)
    # A marker already there: once kubectl prints it, its list is done and its watch starts
    # from that list's resourceVersion, so every later change reaches it (no sleeps).
    core.create_namespaced_pod(ns, pod("watch-marker", labels={"watched": "yes"}))
    lines: list[str] = []
    listed = threading.Event()
    seen = threading.Event()
    with subprocess.Popen(
        [str(kubectl.binary), "get", "pods", "-n", ns, "-w", "-l", "watched=yes"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=kubectl.env(),
    ) as proc:

        def reader() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if "watch-marker" in line:
                    listed.set()
                if "watched-pod" in line and "Terminating" in line:
                    seen.set()

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        try:
            assert listed.wait(30), f"kubectl get -w printed: {lines!r}"
            core.create_namespaced_pod(
                ns, pod("watched-pod", labels={"watched": "yes"}, node_name="somewhere")
            )
            core.delete_namespaced_pod("watched-pod", ns)  # bound: graceful, shows Terminating
            assert seen.wait(30), f"kubectl get -w printed: {lines!r}"
        finally:
            proc.kill()
            t.join(5)
    assert table(lines[0])[0][:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    rows = [table(line)[0] for line in lines if "watched-pod" in line]
    assert rows[0][:3] == ["watched-pod", "0/1", "Pending"]
    assert rows[-1][:3] == ["watched-pod", "0/1", "Terminating"]
    assert sum(1 for line in lines if line.startswith("NAME")) == 1


def test_describe_pod_and_node(
    kubectl: Kubectl, ns: str, nodes: tuple[str, str], api: k8s.ApiClient
) -> None:
    core = core_api(api)
    core.create_namespaced_pod(ns, pod("described", labels={"app": "d"}, node_name=nodes[0]))
    core.create_namespaced_event(
        ns,
        {
            "metadata": {"name": "described.1"},
            "involvedObject": {
                "kind": "Pod",
                "name": "described",
                "namespace": ns,
                "uid": core.read_namespaced_pod("described", ns).metadata.uid,
            },
            "reason": "Scheduled",
            "message": "Successfully assigned to the node",
            "type": "Normal",
            "source": {"component": "berth-scheduler"},
        },
    )
    out = kubectl("describe", "pod", "described", "-n", ns)
    assert "Name:" in out
    assert "described" in out
    assert f"Node:         {nodes[0]}" in out or f"Node:             {nodes[0]}" in out
    assert "Labels:" in out
    assert "app=d" in out
    assert "Successfully assigned to the node" in out
    node_out = kubectl("describe", "node", nodes[0])
    assert f"Name:               {nodes[0]}" in node_out
    assert "InternalIP:  10.0.0.1" in node_out


def test_scale(kubectl: Kubectl, ns: str, api: k8s.ApiClient) -> None:
    apps = apps_api(api)
    apps.create_namespaced_deployment(ns, deployment("scaled", replicas=1))
    assert kubectl("scale", "deployment", "scaled", "-n", ns, "--replicas=4").strip() == (
        "deployment.apps/scaled scaled"
    )
    d = apps.read_namespaced_deployment("scaled", ns)
    assert d.spec.replicas == 4
    assert d.metadata.generation == 2
    rows = table(kubectl("get", "deploy", "scaled", "-n", ns))
    assert rows[1][1] == "0/4"


def test_cordon_and_uncordon(kubectl: Kubectl, nodes: tuple[str, str]) -> None:
    cp = nodes[0]
    assert kubectl("cordon", cp).strip() == f"node/{cp} cordoned"
    rows = table(kubectl("get", "node", cp))
    assert rows[1][1] == "Ready,SchedulingDisabled"
    assert kubectl("uncordon", cp).strip() == f"node/{cp} uncordoned"
    rows = table(kubectl("get", "node", cp))
    assert rows[1][1] == "Ready"


@pytest.fixture
def agent_confirms_deletions(api: k8s.ApiClient, nodes: tuple[str, str]) -> Iterator[None]:
    """Stand-in node agent: once a pod on the worker is marked for deletion, confirm it."""
    core = core_api(api)
    stop = threading.Event()

    def run() -> None:
        w = Watch()
        while not stop.is_set():
            for ev in w.stream(
                core.list_pod_for_all_namespaces,
                field_selector=f"spec.nodeName={nodes[1]}",
                timeout_seconds=1,
            ):
                p = ev["object"]
                # Each 1s stream starts with a fresh list (ADDED), so nothing is missed.
                if ev["type"] in ("ADDED", "MODIFIED") and p.metadata.deletion_timestamp:
                    try:
                        core.delete_namespaced_pod(
                            p.metadata.name, p.metadata.namespace, grace_period_seconds=0
                        )
                    except k8s.ApiException as exc:
                        if exc.status != 404:
                            raise

    t = threading.Thread(target=run, daemon=True)
    t.start()
    yield
    stop.set()
    t.join(10)


def test_drain_evicts_pods(
    kubectl: Kubectl,
    ns: str,
    nodes: tuple[str, str],
    api: k8s.ApiClient,
    agent_confirms_deletions: None,
) -> None:
    core = core_api(api)
    worker = nodes[1]
    for name in ("drain-1", "drain-2"):
        core.create_namespaced_pod(ns, pod(name, node_name=worker))
    r = kubectl.run("drain", worker, "--force", "--ignore-daemonsets", "--timeout=60s")
    assert r.returncode == 0, r.stderr
    assert f"node/{worker} cordoned" in r.stdout + r.stderr
    assert f"evicting pod {ns}/drain-1" in r.stdout + r.stderr
    assert "pod/drain-2 evicted" in r.stdout
    # kubectl 1.20 words the final line "evicted" when it used the eviction API.
    final = "drained" if kubectl.version == "1.32" else "evicted"
    assert f"node/{worker} {final}" in r.stdout
    left = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={worker}").items
    assert left == []
    assert core.read_node(worker).spec.unschedulable is True
    kubectl("uncordon", worker)


def test_label_and_annotate(kubectl: Kubectl, ns: str, api: k8s.ApiClient) -> None:
    core = core_api(api)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "tagged"}, "data": {"k": "v"}})
    assert (
        kubectl("label", "configmap", "tagged", "-n", ns, "tier=gold").strip()
        == "configmap/tagged labeled"
    )
    assert kubectl("annotate", "configmap", "tagged", "-n", ns, "owner=team-a").strip() == (
        "configmap/tagged annotated"
    )
    rows = table(kubectl("get", "configmap", "tagged", "-n", ns, "--show-labels"))
    assert rows[0][-1] == "LABELS"
    assert rows[1][-1] == "tier=gold"
    cm = core.read_namespaced_config_map("tagged", ns)
    assert cm.metadata.annotations == {"owner": "team-a"}
    removed = kubectl("label", "configmap", "tagged", "-n", ns, "tier-").strip()
    assert removed == (
        "configmap/tagged unlabeled" if kubectl.version == "1.32" else "configmap/tagged labeled"
    )
    assert core.read_namespaced_config_map("tagged", ns).metadata.labels in (None, {})


def test_edit_with_kube_editor(
    kubectl: Kubectl, ns: str, api: k8s.ApiClient, tmp_path: Path
) -> None:
    core = core_api(api)
    core.create_namespaced_config_map(
        ns, {"metadata": {"name": "edited"}, "data": {"color": "blue"}}
    )
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/color: blue/color: green/' \"$1\"\n")
    editor.chmod(0o755)
    out = kubectl("edit", "configmap", "edited", "-n", ns, env={"KUBE_EDITOR": str(editor)})
    assert out.strip() == "configmap/edited edited"
    assert core.read_namespaced_config_map("edited", ns).data == {"color": "green"}


def test_auth_can_i(kubectl: Kubectl, ns: str, server: ServerHandle, tmp_path: Path) -> None:
    assert kubectl("auth", "can-i", "create", "pods", "-n", ns).strip() == "yes"
    alice = kubectl.with_kubeconfig(server.kubeconfig(f"alice-{kubectl.version}", groups=()))
    denied = alice.run("auth", "can-i", "list", "pods", "-n", ns)
    assert (denied.returncode, denied.stdout.strip()) == (1, "no")
    forbidden = alice.run("get", "pods", "-n", ns)
    assert forbidden.returncode == 1
    assert f'User "alice-{kubectl.version}" cannot list resource "pods"' in forbidden.stderr
    rbac = tmp_path / "rbac.yaml"
    rbac.write_text(f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: pod-reader, namespace: {ns}}}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: alice-reads, namespace: {ns}}}
subjects:
- {{kind: User, name: alice-{kubectl.version}, apiGroup: rbac.authorization.k8s.io}}
roleRef: {{kind: Role, name: pod-reader, apiGroup: rbac.authorization.k8s.io}}
""")
    kubectl("apply", "-f", str(rbac))
    deadline = time.monotonic() + 60  # each kubectl run is slow on a loaded machine
    while alice.run("auth", "can-i", "list", "pods", "-n", ns).stdout.strip() != "yes":
        assert time.monotonic() < deadline, "the RoleBinding never took effect"
        time.sleep(0.2)
    assert alice.run("auth", "can-i", "delete", "pods", "-n", ns).stdout.strip() == "no"
    assert alice.run("auth", "can-i", "list", "pods", "-n", "default").stdout.strip() == "no"
    assert alice.run("get", "pods", "-n", ns).returncode == 0
