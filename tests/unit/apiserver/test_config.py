from __future__ import annotations

from pathlib import Path

import pytest

from berth.apiserver.config import ConfigError, load_config, parse_args

GOOD = """
bindAddress: 0.0.0.0
port: 6443
advertiseAddress: 10.0.0.5
tls: {certFile: pki/apiserver.crt, keyFile: pki/apiserver.key, clientCAFile: /etc/ca.crt}
datastore: {type: sqlite, path: state.db}
serviceCIDR: 10.96.0.0/16
nodePortRange: 31000-31999
secretsEncryptionKeyFile: secrets.key
agentClient: {certFile: pki/agent.crt, keyFile: pki/agent.key}
"""


def test_load_config_resolves_relative_paths(tmp_path: Path) -> None:
    f = tmp_path / "apiserver.yaml"
    f.write_text(GOOD)
    c = load_config(f)
    assert c.tls_cert_file == tmp_path / "pki/apiserver.crt"
    assert c.client_ca_file == Path("/etc/ca.crt")
    assert (c.datastore, c.datastore_path) == ("sqlite", tmp_path / "state.db")
    assert c.node_port_range == (31000, 31999)
    assert c.advertise_address == "10.0.0.5"
    assert c.agent_client_key_file == tmp_path / "pki/agent.key"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("clientCAFile: /etc/ca.crt", "clientCAFile: ''"), "tls.clientCAFile is required"),
        (("type: sqlite, path: state.db", "type: etcd"), "datastore.type must be memory or sqlite"),
        (("type: sqlite, path: state.db", "type: sqlite"), "datastore.path is required"),
        (("31000-31999", "31999-31000"), "not a valid port range"),
        (("31000-31999", "lots"), "nodePortRange must look like 30000-32767"),
    ],
)
def test_config_errors_say_what_is_wrong(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    f = tmp_path / "apiserver.yaml"
    f.write_text(GOOD.replace(*change))
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    assert str(f) in str(exc.value)
    assert message in str(exc.value)


def test_flags_override_the_file(tmp_path: Path) -> None:
    f = tmp_path / "apiserver.yaml"
    f.write_text(GOOD)
    c = parse_args(["--config", str(f), "--port", "7443", "--datastore", "memory"])
    assert (c.port, c.datastore, c.datastore_path) == (7443, "memory", None)
    with pytest.raises(ConfigError):
        parse_args(["--port", "1"])
