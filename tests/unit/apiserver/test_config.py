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
    assert (c.datastore.type, c.datastore.path) == ("sqlite", tmp_path / "state.db")
    assert c.node_port_range == (31000, 31999)
    assert c.advertise_address == "10.0.0.5"
    assert c.agent_client_key_file == tmp_path / "pki/agent.key"


def test_pod_security_defaults_to_baseline_enforced_and_takes_the_file(tmp_path: Path) -> None:
    f = tmp_path / "apiserver.yaml"
    f.write_text(GOOD)
    defaults = load_config(f).pod_security
    assert str(defaults.defaults.enforce) == "baseline:latest"
    assert str(defaults.defaults.warn) == "restricted:latest"
    assert defaults.exempt_namespaces == ("kube-system",)
    f.write_text(
        GOOD
        + "podSecurity: {enforce: restricted, enforceVersion: v1.30,"
        + " exemptions: {usernames: [ci], runtimeClasses: [kata], namespaces: []}}\n"
    )
    chosen = load_config(f).pod_security
    assert str(chosen.defaults.enforce) == "restricted:v1.30"
    assert str(chosen.defaults.audit) == "restricted:latest"
    assert (chosen.exempt_usernames, chosen.exempt_runtime_classes) == (("ci",), ("kata",))
    assert chosen.exempt_namespaces == ()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("clientCAFile: /etc/ca.crt", "clientCAFile: ''"), "tls.clientCAFile is required"),
        (("type: sqlite, path: state.db", "type: etc"), "datastore.type: must be one of"),
        (("type: sqlite, path: state.db", "type: etcd"), "datastore.endpoints: required"),
        (("type: sqlite, path: state.db", "type: sqlite"), "datastore.path: required"),
        (("path: state.db", "path: state.db, nodes: 3"), "datastore.nodes: unknown field"),
        (("31000-31999", "31999-31000"), "not a valid port range"),
        (("31000-31999", "lots"), "nodePortRange must look like 30000-32767"),
        (("secrets.key", "secrets.key\npodSecurity: {enforce: strict}"), "podSecurity.enforce"),
        (
            ("secrets.key", "secrets.key\npodSecurity: {warnVersion: '1.3'}"),
            "podSecurity.warnVersion",
        ),
        (("secrets.key", "secrets.key\npodSecurity: {enforcing: baseline}"), "not a setting"),
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
    assert (c.port, c.datastore.type, c.datastore.path) == (7443, "memory", None)
    c = parse_args(["--config", str(f), "--datastore", "etcd:http://127.0.0.1:2379"])
    assert (c.datastore.type, c.datastore.endpoints) == ("etcd", ("http://127.0.0.1:2379",))
    with pytest.raises(ConfigError, match="--datastore must be"):
        parse_args(["--config", str(f), "--datastore", "sqlite"])
    with pytest.raises(ConfigError):
        parse_args(["--port", "1"])


def test_etcd_datastore_goes_through_the_store_config(tmp_path: Path) -> None:
    f = tmp_path / "apiserver.yaml"
    etcd = (
        "type: etcd, endpoints: [https://10.0.0.1:2379, https://10.0.0.2:2379],"
        " caFile: pki/etcd-ca.crt, certFile: pki/etcd.crt, keyFile: /etc/etcd.key"
    )
    f.write_text(GOOD.replace("type: sqlite, path: state.db", etcd))
    c = load_config(f)
    assert c.datastore.type == "etcd"
    assert c.datastore.endpoints == ("https://10.0.0.1:2379", "https://10.0.0.2:2379")
    assert c.datastore.tls is not None
    assert c.datastore.tls.ca_file == tmp_path / "pki/etcd-ca.crt"
    assert c.datastore.tls.cert_file == tmp_path / "pki/etcd.crt"
    assert c.datastore.tls.key_file == Path("/etc/etcd.key")


def test_etcd_over_https_without_a_ca_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "apiserver.yaml"
    f.write_text(
        GOOD.replace("type: sqlite, path: state.db", "type: etcd, endpoints: [https://a:1]")
    )
    with pytest.raises(ConfigError, match=r"apiserver.yaml: datastore.caFile: required"):
        load_config(f)


def test_event_ttl_defaults_to_an_hour_and_takes_seconds_or_go_durations(tmp_path: Path) -> None:
    f = tmp_path / "apiserver.yaml"
    f.write_text(GOOD)
    assert load_config(f).event_ttl == 3600
    for value, seconds in (("90", 90), ("2h", 7200), ("1h30m", 5400), ("1h0m0s", 3600)):
        f.write_text(GOOD + f"eventTTL: '{value}'\n")
        assert load_config(f).event_ttl == seconds
    f.write_text(GOOD + "eventTTL: 45\n")
    assert load_config(f).event_ttl == 45
    assert parse_args(["--config", str(f), "--event-ttl", "10m"]).event_ttl == 600
    for bad in ("0", "-5", "1d", "", "h", "5 m", "9999999h", "true"):
        f.write_text(GOOD + f"eventTTL: '{bad}'\n")
        with pytest.raises(ConfigError, match="eventTTL: must be seconds or a duration"):
            load_config(f)
    with pytest.raises(ConfigError, match="--event-ttl"):
        parse_args(
            [
                "--tls-cert-file",
                "c",
                "--tls-private-key-file",
                "k",
                "--client-ca-file",
                "a",
                "--event-ttl",
                "soon",
            ]
        )
