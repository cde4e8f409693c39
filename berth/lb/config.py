"""The load balancer's configuration (a small YAML file).

Example::

    listen: {address: 127.0.0.1, port: 6444}
    backends: ["10.231.1.11:6443", "10.231.1.12:6443", "10.231.1.13:6443"]
    connectTimeoutSeconds: 1.0
    health:
      mode: https                 # tcp | https (GET /readyz, needs the files below)
      intervalSeconds: 1.0
      timeoutSeconds: 1.0
      fall: 2                     # consecutive failed checks before a backend is down
      rise: 1                     # consecutive passed checks before it is up again
      caFile: /etc/berth/pki/ca.crt
      certFile: /etc/berth/pki/agent-client.crt
      keyFile: /etc/berth/pki/agent-client.key
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

HealthMode = Literal["tcp", "https"]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field."""


@dataclass(frozen=True, slots=True)
class Backend:
    """One API server, ``host:port``."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Backend:
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"backends: {text!r} is not HOST:PORT")
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class HealthConfig:
    mode: HealthMode = "tcp"
    interval: float = 1.0
    timeout: float = 1.0
    fall: int = 2
    rise: int = 1
    path: str = "/readyz"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True, slots=True)
class LBConfig:
    backends: tuple[Backend, ...]
    listen_address: str = "127.0.0.1"
    listen_port: int = 6444
    connect_timeout: float = 1.0
    health: HealthConfig = field(default_factory=HealthConfig)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> LBConfig:
        """Validate a parsed YAML document; every problem raises :class:`ConfigError`."""
        known = {"listen", "backends", "connectTimeoutSeconds", "health"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"unknown field(s): {', '.join(unknown)}")
        backends = raw.get("backends")
        if not isinstance(backends, list) or not backends:
            raise ConfigError("backends: a non-empty list of HOST:PORT is required")
        listen = raw.get("listen") or {}
        address = str(listen.get("address", "127.0.0.1"))
        try:
            ipaddress.ip_address(address)
        except ValueError as error:
            raise ConfigError(f"listen.address: {address!r} is not an IP address") from error
        port = _number(listen.get("port", 6444), "listen.port", integer=True)
        if not 0 <= port < 65536:
            raise ConfigError("listen.port: must be 0..65535")
        return cls(
            backends=tuple(dict.fromkeys(Backend.parse(str(b)) for b in backends)),
            listen_address=address,
            listen_port=int(port),
            connect_timeout=_positive(
                raw.get("connectTimeoutSeconds", 1.0), "connectTimeoutSeconds"
            ),
            health=_health(raw.get("health") or {}),
        )

    def to_mapping(self) -> dict[str, Any]:
        """The YAML document :meth:`from_mapping` reads (what a provisioner writes to the node)."""
        health: dict[str, Any] = {
            "mode": self.health.mode,
            "intervalSeconds": self.health.interval,
            "timeoutSeconds": self.health.timeout,
            "fall": self.health.fall,
            "rise": self.health.rise,
            "path": self.health.path,
        }
        for key, value in (
            ("caFile", self.health.ca_file),
            ("certFile", self.health.cert_file),
            ("keyFile", self.health.key_file),
        ):
            if value is not None:
                health[key] = str(value)
        return {
            "listen": {"address": self.listen_address, "port": self.listen_port},
            "backends": [str(b) for b in self.backends],
            "connectTimeoutSeconds": self.connect_timeout,
            "health": health,
        }

    @classmethod
    def load(cls, path: Path) -> LBConfig:
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"{path}: {error}") from error
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping")
        try:
            return cls.from_mapping(raw)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from error


def _number(value: Any, name: str, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if integer and not isinstance(value, int):
        raise ConfigError(f"{name}: expected an integer, got {value!r}")
    return float(value) if not integer else value


def _positive(value: Any, name: str) -> float:
    number = _number(value, name)
    if number <= 0:
        raise ConfigError(f"{name}: must be > 0")
    return number


def _health(raw: Mapping[str, Any]) -> HealthConfig:
    mode = raw.get("mode", "tcp")
    if mode not in ("tcp", "https"):
        raise ConfigError(f"health.mode: {mode!r} is not tcp or https")
    files = {
        key: Path(raw[key]) if raw.get(key) else None for key in ("caFile", "certFile", "keyFile")
    }
    if mode == "https" and files["caFile"] is None:
        raise ConfigError("health.caFile: required with mode https (the API server's CA)")
    if (files["certFile"] is None) != (files["keyFile"] is None):
        raise ConfigError("health.certFile and health.keyFile go together")
    fall = int(_number(raw.get("fall", 2), "health.fall", integer=True))
    rise = int(_number(raw.get("rise", 1), "health.rise", integer=True))
    if fall < 1 or rise < 1:
        raise ConfigError("health.fall and health.rise must be >= 1")
    return HealthConfig(
        mode=mode,
        interval=_positive(raw.get("intervalSeconds", 1.0), "health.intervalSeconds"),
        timeout=_positive(raw.get("timeoutSeconds", 1.0), "health.timeoutSeconds"),
        fall=fall,
        rise=rise,
        path=str(raw.get("path", "/readyz")),
        ca_file=files["caFile"],
        cert_file=files["certFile"],
        key_file=files["keyFile"],
    )
