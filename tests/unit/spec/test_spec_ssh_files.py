"""SSH key files the spec names are checked where it names them (issue 19, point 4): `berth
validate` (and every command that connects) reports a missing, directory, public or encrypted
identity file and an unusable known_hosts file as FILE:LINE:COL lines, exit 3, one per problem."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from provisioner.errors import SpecError
from provisioner.spec import load_spec
from tests.unit.keyfiles import write_identity
from tests.unit.spec.test_spec_cli import run

HOSTS = """\
  hosts:
    - name: n1
      address: 10.0.0.1
      roles: [control-plane, worker]
"""


def write_spec(tmp_path: Path, ssh: str, hosts: str = HOSTS) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(
        "apiVersion: berth.dev/v1alpha1\nkind: Cluster\nmetadata: {name: t}\nspec:\n"
        f"  ssh:\n{ssh}{hosts}"
    )
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec(path, ssh_files=True)
    return caught.value.problems


def test_a_missing_identity_file_is_located(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "    identityFile: keys/id\n    hostKeyPolicy: accept-new\n")
    assert problems(path) == [
        f"{path}:6:19: spec.ssh.identityFile: identity file {tmp_path}/keys/id does not exist "
        "(got 'keys/id'); hint: give the private key (not the .pub file), unencrypted; relative "
        "paths resolve against the spec file's directory; ~ works"
    ]
    # library users that never connect (kubeconfig, certs status) still load it
    assert load_spec(path).name == "t"


def test_a_directory_as_identity_file_is_located(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    path = write_spec(tmp_path, "    identityFile: keys\n    hostKeyPolicy: accept-new\n")
    (line,) = problems(path)
    assert line.startswith(f"{path}:6:19: spec.ssh.identityFile: identity file {tmp_path}/keys ")
    assert "is a directory, not a file" in line


def test_a_public_key_or_junk_as_identity_file_is_located(tmp_path: Path) -> None:
    (tmp_path / "id.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA x@y\n")
    (tmp_path / "junk").write_text("not a key\n")
    path = write_spec(
        tmp_path,
        "    identityFile: id.pub\n    hostKeyPolicy: accept-new\n",
        HOSTS + "      ssh: {identityFile: junk}\n",
    )
    assert [line.split(": ", 2)[:2] for line in problems(path)] == [
        [f"{path}:6:19", "spec.ssh.identityFile"],
        [f"{path}:12:27", "spec.hosts[0].ssh.identityFile"],
    ]
    first, second = problems(path)
    assert "holds a public key, not the private key" in first
    assert "is not an OpenSSH or PEM private key" in second


def test_an_encrypted_identity_file_is_located(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "id").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    path = write_spec(tmp_path, "    identityFile: id\n    hostKeyPolicy: accept-new\n")
    (line,) = problems(path)
    assert "is encrypted; berth cannot ask for its passphrase" in line
    assert "secret" not in line


def test_a_jump_host_identity_file_is_checked_too(tmp_path: Path) -> None:
    write_identity(tmp_path / "id")
    path = write_spec(
        tmp_path,
        "    identityFile: id\n    hostKeyPolicy: accept-new\n"
        "    jumpHost: {address: 10.0.0.9, identityFile: bastion}\n",
    )
    (line,) = problems(path)
    assert line.startswith(f"{path}:8:49: spec.ssh.jumpHost.identityFile: identity file ")


def test_a_missing_known_hosts_file_fails_when_strict_and_is_fine_with_accept_new(
    tmp_path: Path,
) -> None:
    write_identity(tmp_path / "id")
    strict = write_spec(tmp_path, "    identityFile: id\n    knownHostsFile: kh\n")
    (line,) = problems(strict)
    assert line.startswith(
        f"{strict}:7:21: spec.ssh.knownHostsFile: known_hosts file {tmp_path}/kh does not exist "
        "and hostKeyPolicy is strict: no host key is pinned, every connection fails"
    )
    assert "set hostKeyPolicy: accept-new" in line
    accept_new = write_spec(
        tmp_path, "    identityFile: id\n    knownHostsFile: kh\n    hostKeyPolicy: accept-new\n"
    )
    assert load_spec(accept_new, ssh_files=True).name == "t"  # accept-new creates it


def test_a_directory_as_known_hosts_file_is_located(tmp_path: Path) -> None:
    write_identity(tmp_path / "id")
    (tmp_path / "kh").mkdir()
    path = write_spec(
        tmp_path, "    identityFile: id\n    knownHostsFile: kh\n    hostKeyPolicy: accept-new\n"
    )
    (line,) = problems(path)
    assert line.startswith(f"{path}:7:21: spec.ssh.knownHostsFile: known_hosts file ")
    assert "is a directory, not a file" in line


def test_usable_files_pass(tmp_path: Path) -> None:
    write_identity(tmp_path / "id")
    (tmp_path / "kh").write_text("")
    path = write_spec(tmp_path, "    identityFile: id\n    knownHostsFile: kh\n")
    assert load_spec(path, ssh_files=True).name == "t"


def test_validate_exits_3_with_one_line_per_problem(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "keydir").mkdir()
    path = write_spec(
        tmp_path,
        "    identityFile: missing\n    knownHostsFile: kh\n",
        HOSTS + "      ssh: {identityFile: keydir}\n",
    )
    code, out, err = run(monkeypatch, capsys, "validate", "-i", str(path))
    assert code == 3
    assert out == ""
    located = [
        line for line in err.splitlines() if re.match(rf"^{re.escape(str(path))}:\d+:\d+: ", line)
    ]
    assert [line.split(": ")[1] for line in located] == [
        "spec.ssh.identityFile",
        "spec.ssh.knownHostsFile",
        "spec.hosts[0].ssh.identityFile",
    ]
    assert "3 problem(s) in the cluster spec" in err
    # on a machine that does not apply the spec (CI), the files can be left out of the check
    code, out, err = run(monkeypatch, capsys, "validate", "--no-ssh-files", "-i", str(path))
    assert code == 0
    assert "note: knownHostsFile" in err


def test_plan_refuses_a_missing_identity_file_before_connecting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("plan connected although the spec names no usable key")

    monkeypatch.setattr("socket.create_connection", no_network)
    monkeypatch.setenv("BERTH_STATE_DIR", str(tmp_path / "state"))
    path = write_spec(tmp_path, "    identityFile: missing\n    hostKeyPolicy: accept-new\n")
    code, _, err = run(monkeypatch, capsys, "plan", "-i", str(path))
    assert code == 3
    assert err.count("identity file") == 1
    assert "sshd" not in err


def test_a_plain_openssh_key_is_told_without_paramiko_and_others_still_by_it(
    tmp_path: Path,
) -> None:
    # the fast path accepts only what paramiko accepts too: unencrypted OpenSSH keys; an
    # encrypted one, a PEM key or junk in OpenSSH armour go to paramiko (and its messages)
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from provisioner.spec.files import _identity_problem, _plain_openssh_key  # noqa: PLC0415

    plain = write_identity(tmp_path / "plain")
    assert _plain_openssh_key(plain.read_bytes())
    key = ed25519.Ed25519PrivateKey.generate()
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(b"secret"),
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    armoured_junk = (
        b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    for data in (encrypted, pem, armoured_junk):
        assert not _plain_openssh_key(data)
    (tmp_path / "encrypted").write_bytes(encrypted)
    found = _identity_problem(tmp_path / "encrypted")
    assert found is not None
    assert "is encrypted" in found[0]
    (tmp_path / "junk").write_bytes(armoured_junk)
    found = _identity_problem(tmp_path / "junk")
    assert found is not None
    assert "not an OpenSSH or PEM private key" in found[0]
    code = (
        "import sys; from pathlib import Path; from provisioner.spec.files import "
        f"_identity_problem as p; assert p(Path({str(plain)!r})) is None; "
        "assert 'paramiko' not in sys.modules, 'paramiko imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
