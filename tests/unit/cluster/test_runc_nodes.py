"""What makes cluster hosts real container nodes (``spec.runtime: runc``): the agent's config,
the smoke image and its loading, the node teardown in ``berth destroy``, and the verify smoke
workload's pods and Service probe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from berth.agent.config import load_config
from berth.runtime.images import ImageService
from berth.runtime.store import ContentStore
from provisioner import hostlayout as layout
from provisioner.commands import Shell, Upload
from provisioner.connectors.base import CommandResult, HostName, HostTarget
from provisioner.facts.files import PathInfo, PathState
from provisioner.images import read_archive
from provisioner.operations.base import evaluate
from provisioner.operations.cluster import (
    CNI_STATE,
    HostCapacity,
    ImageLoaded,
    NodeLeftovers,
    NodeReset,
    image_record_path,
)
from provisioner.phases.cluster.hostside import agent_config
from provisioner.smoke_image import smoke_image
from provisioner.spec import load_spec
from provisioner.verify.cluster import _smoke_pod, service_result
from provisioner.verify.run import ssh_probe
from tests.harness.apiserver import TestPKI
from tests.harness.op_context import op_context

SPEC = """\
apiVersion: berth.dev/v1alpha1
kind: Cluster
metadata: {name: unit}
spec:
  hosts:
    - {name: n1, address: 10.0.0.1, roles: [control-plane, worker]}
  network: {podCIDR: 10.50.0.0/16, serviceCIDR: 10.60.0.0/16, clusterDNS: 10.60.0.10}
"""
SITE_BERTH = f"{layout.SITE}/berth"
PRESENT = PathState("file", 0o600, "root", "root", 1)


def _host() -> HostTarget:
    return HostTarget(name=HostName("n1"), address="10.0.0.1", roles=("control-plane",))


def test_runc_is_the_default_and_its_agent_config_loads(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(SPEC)
    spec = load_spec(tmp_path / "c.yaml")
    assert spec.spec.runtime == "runc"
    config = agent_config(spec, _host(), HostCapacity(2, 1024))
    (tmp_path / "agent.yaml").write_text(json.dumps({**config, "kubeconfig": "k"}))
    loaded = load_config(tmp_path / "agent.yaml")  # the agent accepts what the phase writes
    assert loaded.runtime == "runc"
    assert loaded.runc.state_dir == layout.RUNTIME_STATE
    assert loaded.runc.runc_root == layout.RUNC_ROOT
    assert loaded.network.cluster_cidr == "10.50.0.0/16"
    assert loaded.network.service_cidr == "10.60.0.0/16"
    assert loaded.network.cluster_dns == "10.60.0.10"


def test_spec_registries_reach_the_agent_config(tmp_path: Path) -> None:
    pki = TestPKI(tmp_path / "pki")
    (tmp_path / "c.yaml").write_text(
        SPEC + "  registries:\n"
        "    - {host: 10.0.0.9:5000, insecure: true}\n"
        "    - {host: Registry.Example:5443, caFile: pki/ca.crt}\n"
        "    - {host: public.example}\n"
    )
    config = agent_config(load_spec(tmp_path / "c.yaml"), _host(), HostCapacity(2, 1024))
    (tmp_path / "agent.yaml").write_text(json.dumps({**config, "kubeconfig": "k"}))
    loaded = load_config(tmp_path / "agent.yaml")
    assert loaded.runc.insecure_registries == ("10.0.0.9:5000",)
    assert loaded.runc.registry_cas == {"registry.example:5443": pki.ca_cert.read_text()}
    plain = agent_config(load_spec(_written(tmp_path / "p.yaml", SPEC)), _host(),
                         HostCapacity(2, 1024))  # fmt: skip
    assert set(plain["runc"]) == {"stateDir", "runcRoot", "volumesDir"}
    assert loaded.runc.volumes_dir == "/var/lib/berth/volumes"


def _written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_simulated_nodes_get_no_runc_section_and_only_the_dns_settings(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(SPEC + "  runtime: simulated\n")
    config = agent_config(load_spec(tmp_path / "c.yaml"), _host(), HostCapacity(2, 1024))
    assert config["runtime"] == "simulated"
    assert "runc" not in config
    # every node runs berth-dns, which reads these from the agent's config
    assert set(config["network"]) == {"clusterDNS", "clusterDomain"}


def test_smoke_image_is_reproducible_and_imports_where_the_phase_looks(tmp_path: Path) -> None:
    image = smoke_image()
    assert smoke_image().reference == image.reference
    archive = tmp_path / "smoke.tar"
    archive.write_bytes(image.archive)
    assert read_archive(archive).ref_names == (image.ref_name,)
    state = tmp_path / "runtime"
    service = ImageService(ContentStore(state / "images"))
    imported = service.import_layout(archive, ref_name=image.ref_name, as_reference=image.reference)
    assert imported.config.cmd[0] == "/bin/smoke-serve"  # httpd behind a SIGTERM trap
    assert (service.rootfs_snapshot(imported) / "bin/smoke-serve").is_file()
    assert (service.rootfs_snapshot(imported) / "bin/httpd").is_symlink()
    recorded = image_record_path(image.reference).removeprefix(layout.RUNTIME_STATE)
    assert (state / recorded.lstrip("/")).is_file()


def test_image_is_loaded_only_when_the_node_has_no_record_of_it() -> None:
    op = ImageLoaded("berth.local/verify-smoke:abc", b"archive", "smoke")
    info = PathInfo((op.record,))
    assert evaluate(op, op_context({info: {op.record: PRESENT}})).commands == ()
    mkdir, upload, load = evaluate(op, op_context({info: {op.record: None}})).commands
    assert isinstance(mkdir, Shell)
    assert isinstance(upload, Upload)
    assert upload.content == b"archive"
    assert upload.mode == 0o600
    assert isinstance(load, Shell)
    rendered = load.render()
    assert "berth.runtime --state-dir /var/lib/berth/runtime load " + upload.path in rendered
    assert "--reference berth.local/verify-smoke:abc --ref-name smoke" in rendered
    assert rendered.endswith(f"rm -f -- {upload.path}")


def _reset(purge: bool, leftovers: tuple[str, ...], installed: bool = True) -> tuple[str, ...]:
    facts = {
        NodeLeftovers(): leftovers,
        PathInfo((SITE_BERTH,)): {SITE_BERTH: PRESENT if installed else None},
    }
    commands = evaluate(NodeReset(purge), op_context(facts)).commands
    assert all(isinstance(c, Shell) for c in commands)
    return tuple(c.render() for c in commands if isinstance(c, Shell))


def test_node_reset_runs_only_when_something_is_left() -> None:
    assert _reset(True, ()) == ()
    reset, remove = _reset(True, ("pod bridge cni0", f"state {CNI_STATE}"))
    assert "berth.runtime --state-dir /var/lib/berth/runtime --runc-root /run/berth/runc" in reset
    assert reset.split(">")[0].rstrip().endswith("reset --purge")
    assert remove == f"rm -rf -- {CNI_STATE}"
    # --keep-data: the runtime's state (images) stays; the IPAM bookkeeping goes
    assert _reset(False, (f"state {layout.RUNTIME_STATE}",)) == ()
    reset, remove = _reset(False, (f"state {layout.RUNTIME_STATE}", f"state {CNI_STATE}"))
    assert "--purge" not in reset
    assert remove == f"rm -rf -- {CNI_STATE}"
    (kept,) = _reset(False, ("nftables table ip berth",))
    assert "--purge" not in kept
    # berth's code already gone: only what needs no berth is removed
    assert _reset(True, ("pod bridge cni0", f"state {CNI_STATE}"), installed=False) == (
        f"rm -rf -- {CNI_STATE}",
    )


def test_node_leftovers_parse_one_item_a_line() -> None:
    assert NodeLeftovers().parse("pod bridge cni0\n\nhost-gw routes (proto 199)\n", 0) == (
        "pod bridge cni0",
        "host-gw routes (proto 199)",
    )


def test_runc_smoke_pod_serves_its_node_name_from_the_preloaded_image() -> None:
    pod = _smoke_pod("smoke-n2-abc", "n2", "abc", "berth.local/verify-smoke:1")
    (container,) = pod["spec"]["containers"]
    assert container["imagePullPolicy"] == "Never"
    assert "echo n2 > /tmp/www/index.html" in container["command"][-1]
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "n2"}
    assert "restartPolicy" not in pod["spec"]  # httpd keeps running (default Always)
    simulated = _smoke_pod("smoke-n2-abc", "n2", "abc", None)
    assert simulated["spec"]["restartPolicy"] == "Never"


class _FakeConnector:
    def __init__(self, result: CommandResult) -> None:
        self.result = result
        self.commands: list[str] = []
        self.closed = False

    def run(self, command: str, *, timeout: float | None = None) -> CommandResult:
        self.commands.append(command)
        return self.result

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (CommandResult(0, '{"n1": 3, "n2": 1}', ""), {"n1": 3, "n2": 1}),
        (CommandResult(1, "", "python3: not found"), {"error: python3: not found": 1}),
    ],
)
def test_ssh_probe_runs_the_counter_on_the_named_host(
    result: CommandResult, expected: dict[str, int]
) -> None:
    fake = _FakeConnector(result)
    seen: list[str] = []

    def connect(target: HostTarget) -> Any:
        seen.append(target.name)
        return fake

    probe = ssh_probe([_host()], connect)
    assert probe("n1", "http://10.60.0.5/", 2) == expected
    assert seen == ["n1"]
    assert fake.closed
    assert fake.commands[0].startswith("python3 -c ")
    assert fake.commands[0].endswith(" http://10.60.0.5/ 2")


def test_the_smoke_service_check_says_how_long_each_nodes_probe_took() -> None:
    """The seconds a node waited for every pod are in the check's detail (apply prints it):
    the evidence for how long ``PROBE_WITHIN`` must be."""
    backends = {"n1", "n2"}
    answered = service_result("n3", "10.96.0.9", backends, {"n1": 3, "n2": 2}, 1.3)
    assert answered.ok
    assert answered.name == "smoke Service 10.96.0.9 reaches every pod"
    assert answered.host == "n3"
    assert answered.detail == "n1x3 n2x2; every pod answered in 1.3 s"
    counts = {"n1": 40, "error: TimeoutError": 7}
    silent = service_result("n3", "10.96.0.9", backends, counts, 90.4)
    assert not silent.ok
    assert silent.detail == ("error: TimeoutErrorx7 n1x40; no answer from the pod on n2 in 90.4 s")
