"""The SSH connector's connection logic with paramiko faked (the only place it is): the host key
is checked before we authenticate, transient failures are retried, and messages name the host
without credentials."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from provisioner.connectors import ssh
from provisioner.connectors.base import HostKeyPolicy, HostName, HostTarget
from provisioner.errors import ConnectError


def _pem(seed: int) -> str:
    private = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    return private.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()


def _key(seed: int) -> paramiko.Ed25519Key:
    return paramiko.Ed25519Key.from_private_key(io.StringIO(_pem(seed)))


class FakeTransport:
    """Records what the connector asks of paramiko.Transport."""

    server_key = _key(1)
    instances: list[FakeTransport] = []

    def __init__(self, sock: Any) -> None:
        self.calls: list[str] = []
        self.active = False
        FakeTransport.instances.append(self)

    def global_request(self, kind: str, data: Any = None, wait: bool = True) -> None:
        self.calls.append(f"request:{kind}")

    def start_client(self, timeout: float | None = None) -> None:
        self.calls.append("start_client")
        self.active = True

    def get_remote_server_key(self) -> paramiko.PKey:
        return self.server_key

    def auth_publickey(self, user: str, key: paramiko.PKey) -> list[str]:
        self.calls.append(f"auth:{user}")
        return []

    def is_active(self) -> bool:
        return self.active

    def close(self) -> None:
        self.calls.append("close")
        self.active = False


@pytest.fixture
def fake_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    state: dict[str, Any] = {"refusals": 0, "dials": 0}

    def dial(address: tuple[str, int], timeout: float | None = None) -> object:
        state["dials"] += 1
        if state["refusals"] > 0:
            state["refusals"] -= 1
            raise ConnectionRefusedError(111, "Connection refused")
        return object()

    FakeTransport.instances = []
    monkeypatch.setattr("socket.create_connection", dial)
    monkeypatch.setattr("paramiko.Transport", FakeTransport)
    monkeypatch.setattr(ssh, "_backoff", lambda attempt: 0.0)
    identity = tmp_path / "id_ed25519"
    identity.write_text(_pem(9))
    identity.chmod(0o600)
    state["identity"] = identity
    return state


def _target(tmp_path: Path, identity: Path, **overrides: Any) -> HostTarget:
    known = tmp_path / "known_hosts"
    return HostTarget(
        name=HostName("n1"),
        address="10.0.0.1",
        identity_file=identity,
        known_hosts=known,
        **overrides,
    )


def test_pinned_key_then_authentication(fake_network: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "known_hosts").write_text(
        f"10.0.0.1 ssh-ed25519 {FakeTransport.server_key.get_base64()}\n"
    )
    ssh.SSHConnector(_target(tmp_path, fake_network["identity"])).connect()
    assert FakeTransport.instances[0].calls[:2] == ["start_client", "auth:root"]


def test_changed_key_is_refused_before_we_authenticate(
    fake_network: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "known_hosts").write_text(f"10.0.0.1 ssh-ed25519 {_key(2).get_base64()}\n")
    with pytest.raises(ConnectError, match="HOST KEY CHANGED"):
        ssh.SSHConnector(_target(tmp_path, fake_network["identity"])).connect()
    calls = FakeTransport.instances[0].calls
    assert not [c for c in calls if c.startswith("auth:")]  # no signature for an impostor
    assert calls[-1] == "close"
    assert fake_network["dials"] == 1  # a host-key problem is not retried


def test_refused_connections_are_retried(fake_network: dict[str, Any], tmp_path: Path) -> None:
    fake_network["refusals"] = 2
    target = _target(tmp_path, fake_network["identity"], retries=3,
                     host_key_policy=HostKeyPolicy.ACCEPT_NEW)  # fmt: skip
    ssh.SSHConnector(target).connect()
    assert fake_network["dials"] == 3
    assert (tmp_path / "known_hosts").read_text().startswith("10.0.0.1 ssh-ed25519 ")


def test_gives_up_naming_host_and_attempts_never_the_key(
    fake_network: dict[str, Any], tmp_path: Path
) -> None:
    fake_network["refusals"] = 10
    target = _target(tmp_path, fake_network["identity"], retries=2)
    with pytest.raises(ConnectError) as caught:
        ssh.SSHConnector(target).connect()
    message = caught.value.message
    assert message == (
        "n1: could not connect to 10.0.0.1:22 as root (ConnectionRefusedError: [Errno 111] "
        "Connection refused; gave up after 3 attempt(s))"
    )
    assert "id_ed25519" not in message
    assert "PRIVATE KEY" not in message


def test_missing_identity_file_is_named(fake_network: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "known_hosts").write_text(
        f"10.0.0.1 ssh-ed25519 {FakeTransport.server_key.get_base64()}\n"
    )
    target = _target(tmp_path, tmp_path / "nope")
    with pytest.raises(ConnectError, match=r"n1: identity file .*/nope does not exist"):
        ssh.SSHConnector(target).connect()


# -- local file problems are reported once, never retried (issue 19, point 4) ------------------


def _pinned(tmp_path: Path) -> None:
    (tmp_path / "known_hosts").write_text(
        f"10.0.0.1 ssh-ed25519 {FakeTransport.server_key.get_base64()}\n"
    )


def test_a_directory_as_identity_file_is_one_error_without_retry(
    fake_network: dict[str, Any], tmp_path: Path
) -> None:
    _pinned(tmp_path)
    (tmp_path / "keydir").mkdir()
    target = _target(tmp_path, tmp_path / "keydir", retries=3)
    with pytest.raises(ConnectError) as caught:
        ssh.SSHConnector(target).connect()
    assert (
        caught.value.message == f"n1: cannot read identity file {tmp_path}/keydir: Is a directory"
    )
    assert "sshd" not in (caught.value.hint or "")
    assert fake_network["dials"] == 1


def test_an_encrypted_identity_file_is_one_error_without_retry(
    fake_network: dict[str, Any], tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
        BestAvailableEncryption,
    )

    _pinned(tmp_path)
    encrypted = tmp_path / "id_encrypted"
    encrypted.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.OpenSSH, BestAvailableEncryption(b"pw")
        )
    )
    with pytest.raises(ConnectError, match="is encrypted; berth cannot ask for its passphrase"):
        ssh.SSHConnector(_target(tmp_path, encrypted, retries=3)).connect()
    assert fake_network["dials"] == 1


def test_a_directory_as_known_hosts_is_a_connect_error_naming_it(
    fake_network: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "known_hosts").mkdir()
    with pytest.raises(ConnectError) as caught:
        ssh.SSHConnector(_target(tmp_path, fake_network["identity"]))
    assert caught.value.message == (
        f"n1: cannot read known_hosts file {tmp_path}/known_hosts: Is a directory"
    )
    assert fake_network["dials"] == 0


def test_a_host_key_that_cannot_be_pinned_is_not_retried(
    fake_network: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "blocker").write_text("a file where a directory should be")
    target = HostTarget(
        name=HostName("n1"),
        address="10.0.0.1",
        identity_file=fake_network["identity"],
        known_hosts=tmp_path / "blocker" / "known_hosts",
        host_key_policy=HostKeyPolicy.ACCEPT_NEW,
        retries=3,
    )
    with pytest.raises(ConnectError, match=r"^n1: cannot pin its host key into .*blocker"):
        ssh.SSHConnector(target).connect()
    assert fake_network["dials"] == 1
