from pathlib import Path

import pytest

from berth.lb.config import Backend, ConfigError, HealthConfig, LBConfig


def test_full_config_parses() -> None:
    config = LBConfig.from_mapping(
        {
            "listen": {"address": "127.0.0.1", "port": 6444},
            "backends": ["10.0.0.1:6443", "10.0.0.2:6443", "10.0.0.1:6443", "[::1]:6443"],
            "connectTimeoutSeconds": 0.5,
            "health": {
                "mode": "https",
                "intervalSeconds": 0.5,
                "fall": 3,
                "rise": 2,
                "caFile": "/etc/berth/pki/ca.crt",
                "certFile": "/c.crt",
                "keyFile": "/c.key",
            },
        }
    )
    assert config.backends == (
        Backend("10.0.0.1", 6443),
        Backend("10.0.0.2", 6443),
        Backend("::1", 6443),
    ), "duplicates dropped, order kept, IPv6 brackets stripped"
    assert str(config.backends[2]) == "[::1]:6443"
    assert config.connect_timeout == 0.5
    assert (config.health.mode, config.health.fall, config.health.rise) == ("https", 3, 2)
    assert config.health.ca_file == Path("/etc/berth/pki/ca.crt")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"backends": []}, "backends: a non-empty list"),
        ({"backends": ["nohost"]}, "is not HOST:PORT"),
        ({"backends": ["a:70000"]}, "is not HOST:PORT"),
        ({"backends": ["a:1"], "listen": {"address": "localhost"}}, "listen.address"),
        ({"backends": ["a:1"], "health": {"mode": "udp"}}, "health.mode"),
        ({"backends": ["a:1"], "health": {"mode": "https"}}, "health.caFile: required"),
        ({"backends": ["a:1"], "health": {"certFile": "/x"}}, "go together"),
        ({"backends": ["a:1"], "health": {"fall": 0}}, "must be >= 1"),
        ({"backends": ["a:1"], "health": {"intervalSeconds": 0}}, "must be > 0"),
        ({"backends": ["a:1"], "connectTimeoutSeconds": "1"}, "expected a number"),
        ({"backends": ["a:1"], "bogus": 1}, "unknown field(s): bogus"),
    ],
)
def test_invalid_configs_name_the_field(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LBConfig.from_mapping(raw)


def test_load_prefixes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "lb.yaml"
    path.write_text("backends: [x]\n")
    with pytest.raises(ConfigError, match=f"^{path}: backends"):
        LBConfig.load(path)


def test_to_mapping_round_trips() -> None:
    config = LBConfig(
        backends=(Backend("10.0.0.1", 6443), Backend("::1", 6443)),
        listen_port=6444,
        health=HealthConfig(
            mode="https", ca_file=Path("/ca"), cert_file=Path("/c"), key_file=Path("/k")
        ),
    )
    assert LBConfig.from_mapping(config.to_mapping()) == config
    plain = LBConfig(backends=(Backend("10.0.0.1", 6443),))
    assert "caFile" not in plain.to_mapping()["health"]
    assert LBConfig.from_mapping(plain.to_mapping()) == plain
