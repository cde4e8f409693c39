"""Host-key pinning: strict refuses unknown and changed keys; accept-new pins on first use."""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from provisioner.connectors.base import HostKeyPolicy
from provisioner.connectors.known_hosts import KnownHosts, fingerprint
from provisioner.connectors.ssh import verify_host_key
from provisioner.errors import ConnectError


def _ed25519(seed: int) -> paramiko.PKey:

    private = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem))


def _verify(known: KnownHosts, key: paramiko.PKey, policy: HostKeyPolicy) -> None:
    verify_host_key(
        host="n1", address="10.231.0.11", port=22, offered=key, known=known, policy=policy
    )


def test_fingerprint_matches_openssh_format() -> None:
    key = _ed25519(1)
    expected = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    assert fingerprint(key) == "SHA256:" + expected


def test_strict_refuses_unknown_key_and_names_the_fix(tmp_path: Path) -> None:
    known = KnownHosts(tmp_path / "known_hosts")
    with pytest.raises(ConnectError) as caught:
        _verify(known, _ed25519(1), HostKeyPolicy.STRICT)
    assert "n1 (10.231.0.11:22)" in caught.value.message
    assert fingerprint(_ed25519(1)) in caught.value.message
    assert caught.value.hint is not None
    assert "accept-new" in caught.value.hint
    assert not (tmp_path / "known_hosts").exists()


def test_accept_new_pins_then_accepts_then_refuses_a_changed_key(tmp_path: Path) -> None:
    path = tmp_path / "state" / "known_hosts"
    _verify(KnownHosts(path), _ed25519(1), HostKeyPolicy.ACCEPT_NEW)
    assert path.read_text().startswith("10.231.0.11 ssh-ed25519 ")
    _verify(KnownHosts(path), _ed25519(1), HostKeyPolicy.STRICT)  # pinned now: accepted
    with pytest.raises(ConnectError) as caught:
        _verify(KnownHosts(path), _ed25519(2), HostKeyPolicy.ACCEPT_NEW)
    message = caught.value.message
    assert "HOST KEY CHANGED" in message
    assert fingerprint(_ed25519(1)) in message
    assert fingerprint(_ed25519(2)) in message
    assert caught.value.hint is not None
    assert f"ssh-keygen -f {path} -R" in caught.value.hint


def test_pins_are_found_by_spec_name_and_non_default_port(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    key = _ed25519(3)
    path.write_text(f"n1 {key.get_name()} {key.get_base64()}\n")
    _verify(KnownHosts(path), key, HostKeyPolicy.STRICT)
    KnownHosts(path).pin("[10.0.0.1]:2222", key)
    verify_host_key(
        host="other", address="10.0.0.1", port=2222, offered=key, known=KnownHosts(path),
        policy=HostKeyPolicy.STRICT,
    )  # fmt: skip


def test_connections_share_one_reading_of_an_unchanged_known_hosts_file(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    key = _ed25519(1)
    path.write_text(f"10.231.0.11 {key.get_name()} {key.get_base64()}\n")
    first = KnownHosts.shared(path)
    assert KnownHosts.shared(path) is first  # unchanged: not parsed again
    _verify(KnownHosts.shared(path), key, HostKeyPolicy.STRICT)


def test_a_changed_known_hosts_file_is_read_again_never_served_stale(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    old, new = _ed25519(1), _ed25519(2)
    path.write_text(f"10.231.0.11 {old.get_name()} {old.get_base64()}\n")
    first = KnownHosts.shared(path)
    # re-keyed by another tool (same size, so only the inode or time tells them apart)
    replacement = tmp_path / "known_hosts.new"
    replacement.write_text(f"10.231.0.11 {new.get_name()} {new.get_base64()}\n")
    replacement.replace(path)
    again = KnownHosts.shared(path)
    assert again is not first
    _verify(again, new, HostKeyPolicy.STRICT)
    with pytest.raises(ConnectError):
        _verify(KnownHosts.shared(path), old, HostKeyPolicy.STRICT)


def test_a_pin_made_through_the_shared_reading_is_seen_by_the_next_connection(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "known_hosts"
    _verify(KnownHosts.shared(path), _ed25519(1), HostKeyPolicy.ACCEPT_NEW)  # no file yet
    verify_host_key(
        host="n2", address="10.231.0.12", port=22, offered=_ed25519(2),
        known=KnownHosts.shared(path), policy=HostKeyPolicy.ACCEPT_NEW,
    )  # fmt: skip
    for address, key in (("10.231.0.11", _ed25519(1)), ("10.231.0.12", _ed25519(2))):
        verify_host_key(
            host="n", address=address, port=22, offered=key,
            known=KnownHosts.shared(path), policy=HostKeyPolicy.STRICT,
        )  # fmt: skip
