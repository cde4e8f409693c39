"""berth-vip's host-side pieces: the interface the VIP belongs on, the ``ip`` commands, the
gratuitous ARP frames and the config file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from berth.vip.addresses import AddressError, IpAddresses, interface_for
from berth.vip.arp import gratuitous_frames, parse_mac
from berth.vip.config import ConfigError, VipConfig

IP_ADDR = (
    "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n"
    "2: host0@if7    inet 10.231.1.11/24 brd 10.231.1.255 scope global host0\\       valid_lft"
    " forever preferred_lft forever\n"
    "3: eth1    inet 192.168.5.4/16 brd 192.168.255.255 scope global eth1\\ valid_lft forever\n"
)


class FakeIp:
    def __init__(self, out: str = "", code: int = 0, err: str = "") -> None:
        self.out, self.code, self.err = out, code, err
        self.argv: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> tuple[int, str, str]:
        self.argv.append(list(argv))
        return self.code, self.out, self.err


def test_the_vip_goes_on_the_interface_whose_subnet_contains_it() -> None:
    assert interface_for("10.231.1.200", FakeIp(IP_ADDR)) == "host0"
    assert interface_for("192.168.9.9", FakeIp(IP_ADDR)) == "eth1"


def test_a_vip_outside_every_subnet_is_refused_with_what_to_do() -> None:
    with pytest.raises(AddressError) as caught:
        interface_for("172.16.0.5", FakeIp(IP_ADDR))
    message = str(caught.value)
    assert "lies in no subnet of this host's interfaces" in message
    assert "host0 10.231.1.11/24" in message
    assert "apiServer.vipInterface" in message


def test_add_and_remove_a_host_route_sized_address_and_tolerate_no_ops() -> None:
    ip = FakeIp()
    addresses = IpAddresses("10.231.1.200", "host0", ip)
    addresses.add()
    addresses.remove()
    assert ip.argv == [
        ["ip", "addr", "add", "10.231.1.200/32", "dev", "host0"],
        ["ip", "addr", "del", "10.231.1.200/32", "dev", "host0"],
    ]
    IpAddresses("10.231.1.200", "host0", FakeIp(code=2, err="RTNETLINK answers: File exists")).add()
    IpAddresses(
        "10.231.1.200",
        "host0",
        FakeIp(code=2, err="RTNETLINK answers: Cannot assign requested address"),
    ).remove()
    with pytest.raises(AddressError, match="Operation not permitted"):
        IpAddresses("10.231.1.200", "host0", FakeIp(code=2, err="Operation not permitted")).add()


def test_present_looks_for_the_exact_address() -> None:
    shown = "2: host0    inet 10.231.1.200/32 scope global host0\\ valid_lft forever\n"
    assert IpAddresses("10.231.1.200", "host0", FakeIp(shown)).present()
    assert not IpAddresses("10.231.1.20", "host0", FakeIp(shown)).present()


def test_gratuitous_arp_frames_announce_the_vip_at_our_mac() -> None:
    mac = parse_mac("02:42:ac:11:00:02")
    request, reply = gratuitous_frames(mac, "10.231.1.200")
    vip = bytes([10, 231, 1, 200])
    for frame, op, target_mac in ((request, 1, b"\0" * 6), (reply, 2, b"\xff" * 6)):
        assert len(frame) == 42
        assert frame[:6] == b"\xff" * 6  # broadcast
        assert frame[6:12] == mac
        assert frame[12:14] == b"\x08\x06"  # ARP
        assert frame[14:20] == b"\x00\x01\x08\x00\x06\x04"  # Ethernet, IPv4, lengths 6 and 4
        assert frame[20:22] == op.to_bytes(2, "big")
        assert frame[22:28] == mac
        assert frame[28:32] == vip  # sender: the VIP ...
        assert frame[32:38] == target_mac
        assert frame[38:42] == vip  # ... and target: the VIP (gratuitous)


def test_the_config_round_trips_and_refuses_unsafe_timing(tmp_path: Path) -> None:
    config = VipConfig(address="10.0.0.200", kubeconfig=Path("/k"), identity="n1")
    assert VipConfig.from_mapping(config.to_mapping()) == config
    with pytest.raises(ConfigError, match="renewDeadlineSeconds < leaseDurationSeconds"):
        VipConfig.from_mapping({**config.to_mapping(), "renewDeadlineSeconds": 4})
    with pytest.raises(ConfigError, match="not IPv4"):
        VipConfig.from_mapping({**config.to_mapping(), "address": "fd00::1"})
    with pytest.raises(ConfigError, match="identity: required"):
        VipConfig.from_mapping({"address": "10.0.0.200", "kubeconfig": "/k"})
    path = tmp_path / "vip.yaml"
    path.write_text("address: 10.0.0.200\nkubeconfig: /k\nidentity: n2\ninterface: eth0\n")
    loaded = VipConfig.load(path)
    assert (loaded.identity, loaded.interface, loaded.lease_duration) == ("n2", "eth0", 4.0)
