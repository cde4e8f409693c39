"""Pure parts of the cluster phases: desired Node state and its patch, the bundle id, the
bundle and state-file operations against recorded facts, and the verify report formats."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from berth.api.resources import NODES
from berth.apiserver.config import load_config
from berth.client import errors as api_errors
from provisioner.artifacts.berth_bundle import Bundle, bundle_id
from provisioner.clusterapi import Retry, until_reachable
from provisioner.commands import Shell, Upload, sha256_hex
from provisioner.connectors.base import HostName, HostTarget
from provisioner.errors import PhaseError
from provisioner.facts.files import PathInfo, PathState
from provisioner.nodestate import (
    CONTROL_PLANE_TAINT,
    MANAGED_LABELS,
    MANAGED_TAINTS,
    DesiredNode,
    desired_nodes,
    node_patch,
)
from provisioner.operations.base import evaluate
from provisioner.operations.cluster import (
    BundleInstalled,
    Capacity,
    DirEntries,
    HostCapacity,
    StateFile,
)
from provisioner.phases.cluster.hostside import _yaml, apiserver_config, prepare_bundle
from provisioner.phases.cluster.nodes import _reconcile, nodes_after
from provisioner.phases.cluster.removal import forget_host, record_hosts, recorded_hosts
from provisioner.spec import load_spec
from provisioner.state import ClusterState
from provisioner.templating import render
from provisioner.verify.hosts import CheckResult
from provisioner.verify.run import VerifyReport
from tests.harness.fake_client import FakeClient
from tests.harness.op_context import op_context

SPEC = """\
apiVersion: berth.dev/v1alpha1
kind: Cluster
metadata: {name: unit}
spec:
  hosts:
    - {name: cp, address: 10.0.0.1, roles: [control-plane]}
    - {name: both, address: 10.0.0.2, roles: [control-plane, worker]}
    - {name: cp3, address: 10.0.0.4, roles: [control-plane]}
    - name: w
      address: 10.0.0.3
      roles: [worker]
      labels: {tier: gold}
      taints: [{key: dedicated, value: db, effect: NoSchedule}]
  datastore: {type: etcd}
"""


def test_control_plane_only_hosts_are_tainted_and_hosts_with_both_roles_are_not(
    tmp_path: Path,
) -> None:
    (tmp_path / "c.yaml").write_text(SPEC)
    nodes = {n.name: n for n in desired_nodes(load_spec(tmp_path / "c.yaml"))}
    assert nodes["cp"].taints == ((CONTROL_PLANE_TAINT["key"], "", "NoSchedule"),)
    assert nodes["both"].taints == ()
    assert set(nodes["both"].labels) == {
        "node-role.kubernetes.io/control-plane",
        "node-role.kubernetes.io/worker",
    }
    assert nodes["w"].labels["tier"] == "gold"
    assert nodes["w"].taints == (("dedicated", "db", "NoSchedule"),)


def test_node_patch_adds_removes_managed_labels_and_keeps_foreign_taints() -> None:
    node = {
        "metadata": {
            "labels": {"old": "x", "kubernetes.io/hostname": "w", "mine": "1"},
            "annotations": {MANAGED_LABELS: "old,mine", MANAGED_TAINTS: "gone"},
        },
        "spec": {
            "taints": [
                {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
                {"key": "gone", "value": "", "effect": "NoExecute"},
            ]
        },
    }
    want = DesiredNode("w", {"mine": "2"}, (("dedicated", "db", "NoSchedule"),))
    result = node_patch(node, want)
    assert result.patch["metadata"]["labels"] == {"mine": "2", "old": None}
    assert result.patch["spec"]["taints"] == [
        {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
        {"key": "dedicated", "value": "db", "effect": "NoSchedule"},
    ]
    assert result.patch["metadata"]["annotations"] == {
        MANAGED_LABELS: "mine",
        MANAGED_TAINTS: "dedicated",
    }


def test_node_patch_is_empty_for_a_node_already_right() -> None:
    want = DesiredNode("w", {"a": ""}, (("k", "v", "NoSchedule"),))
    node = {
        "metadata": {
            "labels": {"a": ""},
            "annotations": {MANAGED_LABELS: "a", MANAGED_TAINTS: "k"},
        },
        "spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]},
    }
    result = node_patch(node, want)
    assert result.patch == {}
    assert result.changes == []


def test_bundle_id_follows_the_sources_in_worktree_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BERTH_BUNDLE_SOURCE", "worktree")
    (tmp_path / "berth").mkdir()
    (tmp_path / "berth" / "a.py").write_text("x = 1\n")
    first = bundle_id(version="1.0", source=tmp_path / "berth", pins=("aiohttp==1",))
    assert first.startswith("1.0-")
    assert bundle_id(version="1.0", source=tmp_path / "berth", pins=("aiohttp==1",)) == first
    assert bundle_id(version="1.0", source=tmp_path / "berth", pins=("aiohttp==2",)) != first
    (tmp_path / "berth" / "a.py").write_text("x = 2\n")
    assert bundle_id(version="1.0", source=tmp_path / "berth", pins=("aiohttp==1",)) != first


def test_bundle_is_uploaded_and_unpacked_only_when_its_marker_is_missing(tmp_path: Path) -> None:
    tar = tmp_path / "b.tar"
    tar.write_bytes(b"tar bytes")
    op = BundleInstalled(Bundle("1.0-abc", tar))
    marker = PathInfo((op.marker,))
    missing = evaluate(op, op_context({marker: {op.marker: None}}))
    upload, unpack = missing.commands
    assert isinstance(upload, Upload)
    assert upload.content == b"tar bytes"
    assert upload.mode == 0o600
    assert isinstance(unpack, Shell)
    assert "mv -T /opt/berth/versions/1.0-abc.partial /opt/berth/versions/1.0-abc" in (
        unpack.render()
    )
    present = PathState("file", 0o644, "root", "root", 0)
    assert evaluate(op, op_context({marker: {op.marker: present}})).commands == ()


def test_state_file_uploads_the_state_content_and_is_a_noop_when_equal(tmp_path: Path) -> None:
    source = tmp_path / "k.key"
    op = StateFile("/etc/berth/pki/k.key", source, 0o600)
    info = PathInfo((op.path,))
    planned = evaluate(op, op_context({info: {op.path: None}}))
    assert planned.commands == (Upload(b"", op.path, 0o600),)  # planned before PKI exists
    source.write_bytes(b"secret")
    same = PathState("file", 0o600, "root", "root", 6, sha256=sha256_hex(b"secret"))
    assert evaluate(op, op_context({info: {op.path: same}})).commands == ()
    wide = PathState("file", 0o644, "root", "root", 6, sha256=sha256_hex(b"secret"))
    fixed = evaluate(op, op_context({info: {op.path: wide}})).commands
    assert fixed == (Shell("chmod", "0600", op.path),)


def test_capacity_parse() -> None:
    assert Capacity().parse("2\n24576000\n", 0) == HostCapacity(2, 24576000)


def test_dir_entries_parse() -> None:
    fact = DirEntries("/opt/berth/versions")
    assert fact.parse("b\na\n", 0) == ("a", "b")
    assert fact.parse("", 3) is None


def test_verify_report_json_and_junit_name_the_failures() -> None:
    report = VerifyReport(
        [
            CheckResult("unit berth-agent.service active+enabled", "n2", False, "NOT active"),
            CheckResult("node n1 Ready", "(cluster)", True),
        ]
    )
    assert not report.ok
    data = json.loads(report.to_json())
    assert data["ok"] is False
    assert data["checks"][0]["host"] == "n2"
    root = ET.fromstring(report.to_junit())
    failures = root.findall(".//failure")
    assert len(failures) == 1
    assert failures[0].get("message") == "NOT active"
    with pytest.raises(Exception, match=r"\[n2\] unit berth-agent.service active\+enabled"):
        report.raise_if_failed()


def test_a_spec_asking_for_another_release_is_refused(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(SPEC.replace("spec:\n", "spec:\n  version: 9.9.9\n", 1))
    data = SimpleNamespace(spec=load_spec(tmp_path / "c.yaml"), cache_dir=tmp_path, dry_run=True)
    with pytest.raises(PhaseError, match=r"asks for berth 9\.9\.9"):
        prepare_bundle(data)


def test_hosts_that_left_the_spec_stay_recorded_until_cleaned(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(SPEC)
    spec = load_spec(tmp_path / "c.yaml")
    state = ClusterState.open("unit", state_dir=tmp_path / "state")
    record_hosts(state, spec)
    assert set(recorded_hosts(state)) == {"cp", "both", "cp3", "w"}
    without_w = SPEC.replace("    - name: w\n", "    - name: w-gone\n", 1)
    (tmp_path / "d.yaml").write_text(without_w)
    record_hosts(state, load_spec(tmp_path / "d.yaml"))
    assert set(recorded_hosts(state)) == {"cp", "both", "cp3", "w", "w-gone"}
    assert recorded_hosts(state)["w"].address == "10.0.0.3"
    forget_host(state, "w")
    assert "w" not in recorded_hosts(state)
    assert (state.root / "hosts.json").stat().st_mode & 0o777 == 0o600


def test_planning_a_new_cluster_predicts_every_node_without_an_api(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(SPEC)
    data = SimpleNamespace(
        spec=load_spec(tmp_path / "c.yaml"), cache_dir=tmp_path, dry_run=True,
        state_dir=tmp_path / "state",
    )  # fmt: skip
    lines: list[str] = []
    assert nodes_after(data, lines.append) == 4
    assert lines[0].startswith("node cp: register, label node-role.kubernetes.io/control-plane")
    assert not (tmp_path / "state" / "unit" / "hosts.json").exists()  # planning writes nothing


def test_a_node_patch_left_unanswered_is_sent_again_under_the_phase_retry_policy(
    tmp_path: Path,
) -> None:
    """An API server slow under load answers a Node's label patch after the client's timeout:
    apply sends the same patch again (it sets values: a second copy changes nothing more),
    under the same policy as the phase's other steps: for as long as the retry window lasts,
    not a fixed number of attempts (three, once)."""
    (tmp_path / "c.yaml").write_text(SPEC)
    spec = load_spec(tmp_path / "c.yaml")
    data = SimpleNamespace(spec=spec, dry_run=False, state_dir=tmp_path / "state")
    client = FakeClient()
    for host in spec.hosts:
        client.seed(NODES, {"metadata": {"name": host.name}})
    for _ in range(4):
        client.fail_next(
            "patch", NODES, api_errors.Unreachable("PATCH /api/v1/nodes/cp: timed out")
        )
    lines: list[str] = []
    window = Retry(within=60.0, pause=0.01)
    assert asyncio.run(_reconcile(data, lines.append, cast(Any, client), window)) == 4
    labels = {n["metadata"]["name"]: n["metadata"].get("labels", {}) for n in client.objects(NODES)}
    assert "node-role.kubernetes.io/control-plane" in labels["cp"]
    assert labels["w"]["tier"] == "gold"


def test_a_node_patch_gives_up_when_the_window_closes_and_never_resends_an_answer(
    tmp_path: Path,
) -> None:
    (tmp_path / "c.yaml").write_text(SPEC)
    lines: list[str] = []
    spec = load_spec(tmp_path / "c.yaml")
    data = SimpleNamespace(spec=spec, dry_run=False, state_dir=tmp_path / "state")
    client = FakeClient()
    for host in spec.hosts:
        client.seed(NODES, {"metadata": {"name": host.name}})
    for _ in range(1000):  # more than fit into the window below
        client.fail_next("patch", NODES, api_errors.Unreachable("connection refused"))
    with pytest.raises(api_errors.Unreachable):
        asyncio.run(
            _reconcile(data, lines.append, cast(Any, client), Retry(within=0.05, pause=0.01))
        )
    client = FakeClient()
    for host in spec.hosts:
        client.seed(NODES, {"metadata": {"name": host.name}})
    client.fail_next("patch", NODES, api_errors.Forbidden(403, "Forbidden", "no"))
    with pytest.raises(api_errors.Forbidden):
        asyncio.run(
            _reconcile(data, lines.append, cast(Any, client), Retry(within=60.0, pause=0.01))
        )
    assert len(client.writes("patch", NODES)) == 0


def test_pod_eviction_timeout_reaches_the_api_server_and_controller_manager(
    tmp_path: Path,
) -> None:
    """Issue 19.9: spec.podEvictionTimeout (default 300, upstream's tolerations) becomes the
    API server's DefaultTolerationSeconds and the controller manager's fallback."""
    host = HostTarget(HostName("cp"), "10.0.0.1")
    (tmp_path / "c.yaml").write_text(SPEC)
    default = load_spec(tmp_path / "c.yaml")
    assert default.spec.pod_eviction_timeout == 300
    assert apiserver_config(default, host)["defaultTolerationSeconds"] == {
        "notReady": 300,
        "unreachable": 300,
    }
    (tmp_path / "c.yaml").write_text(SPEC + "  podEvictionTimeout: 20\n")
    short = load_spec(tmp_path / "c.yaml")
    assert apiserver_config(short, host)["defaultTolerationSeconds"] == {
        "notReady": 20,
        "unreachable": 20,
    }
    unit = render(
        "berth-controller-manager.service.j2",
        {"cluster": "c", "host": "cp", "site": "/s", "kubeconfig": "k", "pod_cidr": "p",
         "node_cidr_mask_size": 24, "pki": "/pki", "pod_eviction_timeout": 20,
         "controller_manager_metrics_port": 10252},
    )  # fmt: skip
    assert "--default-toleration-seconds 20" in unit
    assert "--metrics-port 10252" in unit


def test_event_ttl_reaches_the_api_server_config(tmp_path: Path) -> None:
    """spec.eventTTL (seconds, default upstream's 1 h) is what the API server reads from the
    config file berth writes, not only a key in it."""
    host = HostTarget(HostName("cp"), "10.0.0.1")
    for extra, expected in (("", 3600), ("  eventTTL: 600\n", 600)):
        (tmp_path / "c.yaml").write_text(SPEC + extra)
        config = apiserver_config(load_spec(tmp_path / "c.yaml"), host)
        written = tmp_path / "apiserver.yaml"
        written.write_bytes(_yaml(config))
        assert load_config(written).event_ttl == expected


def test_the_create_if_absent_steps_after_the_nodes_outlast_a_short_api_outage() -> None:
    attempts: list[int] = []

    async def flaky_step() -> int:
        attempts.append(1)
        if len(attempts) < 3:
            raise api_errors.Unreachable("GET /api/v1/namespaces/kube-system/services/kube-dns")
        return 1

    assert asyncio.run(until_reachable(flaky_step, Retry(within=5.0, pause=0.01))) == 1
    assert len(attempts) == 3


def test_the_steps_after_the_nodes_give_up_on_a_lasting_outage_and_never_retry_answers() -> None:
    async def down() -> int:
        raise api_errors.Unreachable("connection refused")

    with pytest.raises(api_errors.Unreachable):
        asyncio.run(until_reachable(down, Retry(within=0.05, pause=0.01)))
    answered: list[int] = []

    async def forbidden() -> int:
        answered.append(1)
        raise api_errors.Forbidden(403, "Forbidden", "no")

    with pytest.raises(api_errors.Forbidden):
        asyncio.run(until_reachable(forbidden, Retry(within=5.0, pause=0.01)))
    assert len(answered) == 1
