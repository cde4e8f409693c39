"""Agent config: explicit nodes, a simulated fleet, relative paths, and located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.agent.config import AgentConfigError, load_config


def test_nodes_and_simulated_fleet(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        "kubeconfig: kc\n"
        "nodes:\n"
        "  - {name: real, address: 192.0.2.5, kubeconfig: real.kc, labels: {zone: a},\n"
        "     taints: [{key: k, value: v, effect: NoSchedule}]}\n"
        "simulate: {count: 3, namePrefix: sim-, capacity: {cpu: '2', memory: 1Gi, pods: '10'}}\n"
        "server: {port: 10260, certFile: tls.crt, keyFile: tls.key, clientCAFile: ca.crt}\n"
        "startDelay: 0.5\n"
    )
    config = load_config(cfg)
    assert config.kubeconfig == str(tmp_path / "kc")
    assert [n.name for n in config.nodes] == ["real", "sim-0", "sim-1", "sim-2"]
    real = config.nodes[0]
    assert real.kubeconfig == str(tmp_path / "real.kc")
    assert real.address == "192.0.2.5"
    assert real.taints == [{"key": "k", "value": "v", "effect": "NoSchedule"}]
    assert config.nodes[1].capacity == {"cpu": "2", "memory": "1Gi", "pods": "10"}
    assert config.nodes[1].kubeconfig == ""
    assert config.server is not None
    assert config.server.port == 10260
    assert config.server.cert_file == str(tmp_path / "tls.crt")
    assert config.start_delay == 0.5
    assert config.runtime == "simulated"


def test_runc_runtime_settings(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        "kubeconfig: kc\nruntime: runc\nnodes: [{name: n1}]\n"
        "runc: {stateDir: /srv/rt, insecureRegistries: [10.0.0.1:5000],\n"
        "       registryCAs: {Reg.Example:5443: PEM}}\n"
    )
    config = load_config(cfg)
    assert config.runtime == "runc"
    assert config.runc.state_dir == "/srv/rt"
    assert config.runc.runc_root == "/run/berth/runc"
    assert config.runc.insecure_registries == ("10.0.0.1:5000",)
    assert config.runc.registry_cas == {"reg.example:5443": "PEM"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nodes: [{name: a}]\n", "kubeconfig is required"),
        ("kubeconfig: kc\n", "no nodes"),
        ("kubeconfig: kc\nnodes: [{address: 1.2.3.4}]\n", r"nodes\[0\]: name is required"),
        ("kubeconfig: kc\nruntime: docker\nnodes: [{name: a}]\n", "not a runtime"),
        ("kubeconfig: kc\nruntime: runc\nsimulate: {count: 2}\n", "exactly one node"),
    ],
)
def test_errors_name_the_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(text)
    with pytest.raises(AgentConfigError, match=message) as err:
        load_config(cfg)
    assert str(cfg) in str(err.value)
