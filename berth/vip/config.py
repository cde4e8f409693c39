"""berth-vip's configuration (a small YAML file written by ``berth apply``).

Example::

    address: 10.231.1.200       # the VIP (IPv4)
    interface: null             # null: the interface whose subnet contains the VIP
    kubeconfig: /etc/berth/kubeconfigs/vip.conf   # dials this host's own API server
    identity: n1
    lease: {name: berth-vip, namespace: kube-system}
    leaseDurationSeconds: 4
    renewDeadlineSeconds: 3
    retryPeriodSeconds: 0.5
    announceIntervalSeconds: 2

Timing: a candidate takes over once it has seen the lease unrenewed for
``leaseDurationSeconds`` (and checks every ``retryPeriodSeconds``), so a powered-off holder is
replaced within about ``leaseDurationSeconds + 2 * retryPeriodSeconds`` plus one etcd leader
election. A holder that cannot renew for ``renewDeadlineSeconds`` drops the address, before
anyone else may take it (``renewDeadline < leaseDuration``).

The defaults (4 s / 3 s / 0.5 s, near kube-vip's 5 / 3 / 1) move the VIP within about 5 s of a
power cut. They were 2 s / 1.5 s / 0.25 s: on a busy control plane (lab hosts sharing two
cores at load ~45) renewals through the holder's own API server missed a 1.5 s deadline about
every 20 s, so the VIP flapped between hosts with gaps of up to 19 s and clients through it saw
refused connections. A 3 s renew deadline rides out such stalls; a dead holder still loses the
address within 4-5 s.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field."""


@dataclass(frozen=True, slots=True)
class VipConfig:
    address: str
    kubeconfig: Path
    identity: str
    interface: str | None = None
    lease_name: str = "berth-vip"
    lease_namespace: str = "kube-system"
    lease_duration: float = 4.0
    renew_deadline: float = 3.0
    retry_period: float = 0.5
    announce_interval: float = 2.0

    def __post_init__(self) -> None:
        try:
            ip = ipaddress.ip_address(self.address)
        except ValueError as exc:
            raise ConfigError(f"address: {self.address!r} is not an IP address") from exc
        if ip.version != 4:
            raise ConfigError(f"address: {self.address} is not IPv4 (ARP announces IPv4 only)")
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ConfigError(
                "need 0 < retryPeriodSeconds < renewDeadlineSeconds < leaseDurationSeconds"
            )
        if self.lease_duration != int(self.lease_duration):
            raise ConfigError("leaseDurationSeconds: a Lease holds whole seconds")
        if self.announce_interval <= 0:
            raise ConfigError("announceIntervalSeconds: must be positive")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> VipConfig:
        lease = raw.get("lease") or {}
        try:
            return cls(
                address=str(raw["address"]),
                kubeconfig=Path(str(raw["kubeconfig"])),
                identity=str(raw["identity"]),
                interface=str(raw["interface"]) if raw.get("interface") else None,
                lease_name=str(lease.get("name", "berth-vip")),
                lease_namespace=str(lease.get("namespace", "kube-system")),
                lease_duration=float(raw.get("leaseDurationSeconds", 4)),
                renew_deadline=float(raw.get("renewDeadlineSeconds", 3.0)),
                retry_period=float(raw.get("retryPeriodSeconds", 0.5)),
                announce_interval=float(raw.get("announceIntervalSeconds", 2)),
            )
        except KeyError as exc:
            raise ConfigError(f"{exc.args[0]}: required") from exc
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(str(exc)) from exc

    @classmethod
    def load(cls, path: Path) -> VipConfig:
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping")
        return cls.from_mapping(raw)

    def to_mapping(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "interface": self.interface,
            "kubeconfig": str(self.kubeconfig),
            "identity": self.identity,
            "lease": {"name": self.lease_name, "namespace": self.lease_namespace},
            "leaseDurationSeconds": int(self.lease_duration),
            "renewDeadlineSeconds": self.renew_deadline,
            "retryPeriodSeconds": self.retry_period,
            "announceIntervalSeconds": self.announce_interval,
        }
