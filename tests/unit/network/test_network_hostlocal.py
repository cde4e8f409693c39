"""host-local's store, kept by berth: its order, its file format, and what a hostile or torn
directory does to it (nothing is handed out twice, nothing outside the directory touched)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from berth.network import netlink
from berth.network.hostlocal import HostLocalStore, IpamError


def store(
    tmp_path: Path, subnet: str = "10.244.1.0/24", gateway: str = "10.244.1.1"
) -> HostLocalStore:
    return HostLocalStore(tmp_path, "berth", subnet, gateway)


def files(s: HostLocalStore) -> list[str]:
    return sorted(p.name for p in s.dir.iterdir())


def test_round_robin_from_the_last_reserved_skipping_the_gateway_and_wrapping(
    tmp_path: Path,
) -> None:
    s = store(tmp_path, "10.244.1.0/29", "10.244.1.1")  # .1 (gateway) .. .6
    got = [s.allocate(f"p{i}", "eth0") for i in range(5)]
    assert got == ["10.244.1.2", "10.244.1.3", "10.244.1.4", "10.244.1.5", "10.244.1.6"]
    with pytest.raises(IpamError, match="no IP addresses available"):
        s.allocate("p5", "eth0")
    assert s.release("p1", "eth0", "10.244.1.3")
    assert s.release("p3", "eth0")  # no hint: found by owner
    # after .6 it wraps round: .2 is taken, .3 free (the gateway .1 never offered)
    assert s.allocate("p6", "eth0") == "10.244.1.3"
    assert s.allocate("p7", "eth0") == "10.244.1.5"
    assert files(s) == [f"10.244.1.{i}" for i in range(2, 7)] + ["last_reserved_ip.0", "lock"]
    assert (s.dir / "10.244.1.5").read_bytes() == b"p7\r\neth0"


def test_an_owner_gets_one_address_and_release_is_idempotent(tmp_path: Path) -> None:
    s = store(tmp_path)
    ip = s.allocate("pod", "eth0")
    with pytest.raises(IpamError, match="duplicate allocation"):
        s.allocate("pod", "eth0")
    assert s.release("pod", "eth0", ip)
    assert not s.release("pod", "eth0", ip)
    assert not s.release("pod", "eth0")


def test_requested_addresses(tmp_path: Path) -> None:
    s = store(tmp_path)
    assert s.allocate("a", "eth0", "10.244.1.77") == "10.244.1.77"
    for bad, why in (
        ("10.244.1.77", "already allocated"),
        ("10.244.1.1", "not available"),  # the gateway
        ("10.244.1.0", "not available"),
        ("10.244.1.255", "not available"),
        ("10.244.2.5", "not available"),
        ("../../etc/passwd", "not an IPv4 address"),
        ("10.244.1.7/24", "not an IPv4 address"),
    ):
        with pytest.raises(IpamError, match=why):
            s.allocate("b", "eth0", bad)
    assert files(s) == ["10.244.1.77", "last_reserved_ip.0", "lock"]


def test_the_plugins_older_format_is_released_and_a_hint_owned_by_another_is_not(
    tmp_path: Path,
) -> None:
    s = store(tmp_path)
    s.dir.mkdir(parents=True)
    (s.dir / "10.244.1.9").write_bytes(b"old-pod\n")  # id alone (and a trailing newline)
    (s.dir / "10.244.1.10").write_bytes(b"other\r\neth0")
    assert not s.release("mine", "eth0", "10.244.1.10")
    assert (s.dir / "10.244.1.10").exists()
    assert s.release("old-pod", "eth0", "10.244.1.9")
    assert not (s.dir / "10.244.1.9").exists()


def test_a_hostile_or_torn_directory(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.dir.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.write_bytes(b"victim\r\neth0")
    (s.dir / "10.244.1.2").symlink_to(outside)  # a link named as an address
    (s.dir / "10.244.1.3").mkdir()  # a directory named as one
    (s.dir / "10.244.1.4").write_bytes(b"\xff\xfe not utf-8")
    (s.dir / "10.244.1.5").write_bytes(b"")  # torn by a crash of an older writer
    (s.dir / "last_reserved_ip.0").write_bytes(b"../../etc\n")
    # a planted temporary file name (this process's) is replaced, not written through
    (s.dir / f".berth-tmp-{os.getpid()}-10.244.1.6").symlink_to(outside)
    (s.dir / f".berth-tmp-{os.getpid()}-last").symlink_to(outside)
    # every one of them counts as taken; the first free address is handed out
    assert s.allocate("victim", "eth0") == "10.244.1.6"
    # the symlink's target is not released (nor read as this owner's), only real files
    assert s.release("victim", "eth0")
    assert outside.read_bytes() == b"victim\r\neth0"
    assert (s.dir / "10.244.1.2").is_symlink()
    assert not list(s.dir.glob(".berth-tmp-*"))
    assert not (s.dir / "10.244.1.6").exists()
    # a last-reserved address outside the range restarts at the range's start
    (s.dir / "last_reserved_ip.0").write_text("192.168.0.1")
    assert s.allocate("next", "eth0") == "10.244.1.6"


@pytest.mark.parametrize(
    ("container_id", "ifname"),
    [
        ("a\r\nb", "eth0"),
        ("../x", "eth0"),
        ("", "eth0"),
        ("p", "eth0\r\n"),
        ("p", "a/b"),
        ("p", ""),
    ],
)
def test_owners_that_would_break_the_file_format_are_refused(
    tmp_path: Path, container_id: str, ifname: str
) -> None:
    s = store(tmp_path)
    with pytest.raises(IpamError, match="not a safe IPAM owner"):
        s.allocate(container_id, ifname)
    with pytest.raises(IpamError, match="not a safe IPAM owner"):
        s.release(container_id, ifname)
    assert not s.dir.exists()


def test_bad_networks_are_refused(tmp_path: Path) -> None:
    for name in ("../etc", "a/b", ".", ""):
        with pytest.raises(IpamError):
            HostLocalStore(tmp_path, name, "10.244.1.0/24", "10.244.1.1")
    with pytest.raises(IpamError, match="no room"):
        store(tmp_path, "10.244.1.0/31", "10.244.1.0")


def test_concurrent_writers_never_share_an_address(tmp_path: Path) -> None:
    stores = [store(tmp_path) for _ in range(4)]  # separate opens of one lock, as processes
    got: list[str] = []
    lock = threading.Lock()

    def grab(s: HostLocalStore, worker: int) -> None:
        for i in range(15):
            ip = s.allocate(f"w{worker}-{i}", "eth0")
            with lock:
                got.append(ip)

    threads = [threading.Thread(target=grab, args=(s, w)) for w, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 60
    assert len(set(got)) == 60
    assert not [n for n in os.listdir(stores[0].dir) if n.startswith(".berth-tmp")]


@given(st.binary(max_size=200))
def test_attribute_parsing_never_reads_past_the_buffer(data: bytes) -> None:
    attrs = netlink.parse_attrs(data)
    assert sum(len(v) for v in attrs.values()) <= len(data)


def test_attributes_round_trip() -> None:
    body = netlink.attr(3, b"eth0\0") + netlink.nested(18, netlink.attr(1, b"veth"))
    attrs = netlink.parse_attrs(body)
    assert attrs[3] == b"eth0\0"
    assert netlink.parse_attrs(attrs[18]) == {1: b"veth"}


@pytest.mark.parametrize("name", ["", "a" * 16, "a/b", "a b", "a:b", ".", "..", "et\0h", "über"])
def test_link_names_the_kernel_would_refuse_are_refused_first(name: str) -> None:
    with pytest.raises(ValueError, match="invalid interface name"):
        netlink.check_ifname(name)
