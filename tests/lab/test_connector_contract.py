"""One contract for every connector backend: local, fake, and SSH against a lab host, directly
and through the connection multiplexer (``provisioner.connectors.mux``).

The fake serves canned outputs, so for commands it is held to the *shape* of the contract (it
returns what it was told and records what it was asked); local and SSH run real commands.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from provisioner.commands import Raw, Shell
from provisioner.connectors.base import (
    CommandResult,
    Connector,
    HostKeyPolicy,
    HostName,
    HostTarget,
    JumpHost,
)
from provisioner.connectors.local import LocalConnector
from provisioner.connectors.mux import Mux, MuxConnector
from provisioner.connectors.mux import request as request_mux
from provisioner.connectors.ssh import SSHConnector
from provisioner.errors import ConnectError, OperationError
from provisioner.lab import Lab
from tests.harness.fake_connector import FakeConnector

BACKENDS = [
    "local", "fake", pytest.param("ssh", marks=pytest.mark.lab),
    pytest.param("mux", marks=pytest.mark.lab),
]  # fmt: skip
RUN_BACKENDS = [
    "local",
    pytest.param("ssh", marks=pytest.mark.lab),
    pytest.param("mux", marks=pytest.mark.lab),
]


def ssh_target(lab: Lab, host: str) -> HostTarget:
    entry = lab.host(host)
    return HostTarget(
        name=HostName(host),
        address=entry.address,
        identity_file=lab.key_path,
        known_hosts=lab.known_hosts_path,
        host_key_policy=HostKeyPolicy.STRICT,
        connect_timeout=15,  # a handshake with a busy lab host (other labs apply meanwhile)
        retries=1,
    )


@pytest.fixture
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Connector, str]]:
    """A connector and a scratch directory that exists on its host."""
    kind = request.param
    if kind == "local":
        yield LocalConnector("local"), str(tmp_path)
    elif kind == "fake":
        fake = FakeConnector("fake", responses=[("exit 3", CommandResult(3, "out", "err"))])
        yield fake, "/scratch"
    else:
        lab: Lab = request.getfixturevalue("lab")
        directory = tmp_path / "mux"
        connector: Connector = (
            SSHConnector(ssh_target(lab, "n1")).connect()
            if kind == "ssh"
            else Mux(60, directory).connect(ssh_target(lab, "n1"))
        )
        assert isinstance(connector, MuxConnector if kind == "mux" else SSHConnector)
        workdir = connector.run("mktemp -d").check("n1", "mktemp").stdout.strip()
        yield connector, workdir
        connector.run(Shell("rm", "-rf", "--", workdir))
        connector.close()
        if kind == "mux":
            request_mux(directory, "stop")


@pytest.mark.parametrize("backend", RUN_BACKENDS, indirect=True)
def test_run_returns_exit_code_and_separate_streams(backend: tuple[Connector, str]) -> None:
    connector, _ = backend
    assert connector.run("printf out; printf err >&2; exit 3") == CommandResult(3, "out", "err")


@pytest.mark.parametrize("backend", RUN_BACKENDS, indirect=True)
def test_run_feeds_stdin_and_keeps_arguments_intact(backend: tuple[Connector, str]) -> None:
    connector, _ = backend
    odd = "a b;$(echo pwned)'\"\\"
    result = connector.run(Shell("cat", Raw("&&"), "printf", "%s", odd), stdin=b"in\n")
    assert result.stdout == "in\n" + odd


@pytest.mark.parametrize("backend", RUN_BACKENDS, indirect=True)
def test_large_output_on_both_streams_does_not_deadlock(backend: tuple[Connector, str]) -> None:
    connector, _ = backend
    result = connector.run("head -c 3000000 /dev/zero | tr '\\0' o; head -c 3000000 /dev/zero >&2")
    assert (len(result.stdout), len(result.stderr)) == (3_000_000, 3_000_000)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_put_is_atomic_with_mode_and_get_reads_it_back(backend: tuple[Connector, str]) -> None:
    connector, workdir = backend
    path = f"{workdir}/app.conf"
    connector.put(b"one\n", path, mode=0o600, owner="root", group="root")
    connector.put(b"two\n", path, mode=0o640)
    assert connector.get(path) == b"two\n"
    if isinstance(connector, FakeConnector):
        assert [u.mode for u in connector.uploads] == [0o600, 0o640]
        return
    listing = connector.run(Shell("ls", "-A", workdir)).stdout.split()
    assert listing == ["app.conf"]  # no temporary files left behind
    mode = connector.run(Shell("stat", "-c", "%a", path)).stdout.strip()
    assert int(mode, 8) == stat.S_IMODE(0o640)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_get_of_a_missing_file_raises_file_not_found(backend: tuple[Connector, str]) -> None:
    connector, workdir = backend
    with pytest.raises(FileNotFoundError):
        connector.get(f"{workdir}/missing")


@pytest.mark.parametrize("backend", RUN_BACKENDS, indirect=True)
def test_put_into_a_missing_directory_is_an_operation_error(backend: tuple[Connector, str]) -> None:
    connector, workdir = backend
    with pytest.raises(OperationError, match="does not exist"):
        connector.put(b"x", f"{workdir}/nope/x.conf")


@pytest.mark.parametrize("backend", RUN_BACKENDS, indirect=True)
def test_commands_are_isolated_from_each_other(backend: tuple[Connector, str]) -> None:
    connector, workdir = backend
    assert connector.run(f"cd {workdir}; X=1; exit 7").exit_code == 7
    assert connector.run('echo "${X:-unset}"').stdout == "unset\n"  # nothing leaks
    assert connector.run("pwd").stdout.strip() != workdir
    assert connector.run("cat; echo after").stdout == "after\n"  # stdin is empty, not the next
    assert connector.run("printf 'no newline'") == CommandResult(0, "no newline", "")


@pytest.mark.parametrize("backend", RUN_BACKENDS, indirect=True)
def test_calls_from_several_threads_at_once(backend: tuple[Connector, str]) -> None:
    connector, workdir = backend

    def one(i: int) -> tuple[str, bytes]:
        connector.put(f"{i}\n".encode(), f"{workdir}/f{i}")
        return connector.run(f"sleep 0.2; echo {i}").stdout, connector.get(f"{workdir}/f{i}")

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, range(12)))
    assert results == [(f"{i}\n", f"{i}\n".encode()) for i in range(12)]


@pytest.mark.parametrize("backend", RUN_BACKENDS, indirect=True)
def test_a_syntax_error_is_reported_and_the_next_command_works(
    backend: tuple[Connector, str],
) -> None:
    connector, _ = backend
    broken = connector.run("if then fi (")
    assert broken.exit_code == 2
    assert "syntax error" in broken.stderr.lower()
    assert connector.run("echo fine") == CommandResult(0, "fine\n", "")


# ---- SSH-only behaviour: pinning on first use, jump hosts, retries ----------------------------


@pytest.mark.lab
def test_accept_new_pins_on_first_use_then_strict_accepts(lab: Lab, tmp_path: Path) -> None:
    pins = tmp_path / "state" / "known_hosts"
    target = replace(
        ssh_target(lab, "n2"), known_hosts=pins, host_key_policy=HostKeyPolicy.ACCEPT_NEW
    )
    with closing(SSHConnector(target).connect()) as first:
        assert first.run("hostname").stdout.strip() == "n2"
    assert pins.read_text().startswith(f"{lab.host('n2').address} ssh-ed25519 ")
    strict = replace(target, host_key_policy=HostKeyPolicy.STRICT)
    with closing(SSHConnector(strict).connect()) as again:
        assert again.run("hostname").stdout.strip() == "n2"


@pytest.mark.lab
def test_jump_host_reaches_the_target_through_a_direct_tcpip_channel(lab: Lab) -> None:
    jump = JumpHost(lab.host("n1").address, identity_file=lab.key_path)
    target = replace(ssh_target(lab, "n3"), jump=jump)
    with closing(SSHConnector(target).connect()) as connector:
        assert connector.run("hostname").stdout.strip() == "n3"
        # the target sees the connection coming from the jump host, not from this machine
        peer = connector.run("echo $SSH_CONNECTION").stdout.split()[0]
        assert peer == lab.host("n1").address


@pytest.mark.lab
def test_connect_retries_then_names_host_and_attempts(lab: Lab) -> None:
    target = replace(ssh_target(lab, "n1"), port=2, retries=2, connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(ConnectError) as caught:
        SSHConnector(target).connect()
    assert caught.value.message.startswith(
        f"n1: could not connect to {lab.host('n1').address}:2 as root (ConnectionRefusedError"
    )
    assert caught.value.message.endswith("gave up after 3 attempt(s))")
    assert "id_ed25519" not in caught.value.message  # never the credentials
    assert time.monotonic() - started < 10


@pytest.mark.lab
def test_the_next_run_reaches_the_host_over_the_kept_connection(lab: Lab, tmp_path: Path) -> None:
    directory = tmp_path / "mux"
    target = ssh_target(lab, "n2")
    seen = []
    try:
        for _ in range(2):  # two runs, each with its own Mux as each berth process has
            with closing(Mux(60, directory).connect(target)) as connector:
                seen.append(connector.run("echo $SSH_CONNECTION").stdout.split())
        # the same TCP connection (client port) both times: no new handshake, no new sshd
        assert seen[0] == seen[1]
        # without persistence, a connection of its own
        with closing(SSHConnector(target).connect()) as direct:
            assert direct.run("echo $SSH_CONNECTION").stdout.split()[1] != seen[0][1]
    finally:
        request_mux(directory, "stop")
