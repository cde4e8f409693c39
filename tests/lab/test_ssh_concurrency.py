"""The SSH connector under the load of a parallel apply: large uploads to 3 hosts at once, two
per host on the same connection, interleaved with commands (the persistent shell and channels
with stdin). Both deadlocks this caught waited forever: paramiko's SFTP client shared by two
threads, and a command's stdin written before its output was read."""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from provisioner.commands import Shell
from provisioner.connectors.base import HostKeyPolicy, HostName, HostTarget
from provisioner.connectors.ssh import SSHConnector
from provisioner.errors import OperationError
from provisioner.lab import Lab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(240)]
SIZE = 24 << 20
ROUNDS = 2
BOUND = 90.0  # seconds for all rounds; they take ~3 s on the lab, the deadlocks never ended


def _connector(lab: Lab, name: str) -> SSHConnector:
    host = lab.host(name)
    return SSHConnector(
        HostTarget(
            name=HostName(name),
            address=host.address,
            identity_file=lab.key_path,
            known_hosts=lab.known_hosts_path,
            host_key_policy=HostKeyPolicy.STRICT,
            connect_timeout=15,  # a handshake with a busy lab host
            retries=1,
        )
    ).connect()


def test_parallel_large_uploads_and_commands_finish(lab: Lab) -> None:
    connectors = [_connector(lab, h.name) for h in lab.hosts]
    blob = os.urandom(SIZE)
    digest = hashlib.sha256(blob).hexdigest()
    stdin = os.urandom(4 << 20)

    def work(connector: SSHConnector, slot: int) -> tuple[str, str, int]:
        path = f"/tmp/berth-stress-{slot}"
        connector.put(blob, path, mode=0o600)
        shown = connector.run(f"sha256sum {path} && rm -f {path}").check(connector.host, "sum")
        # base64 writes while it reads: its output fills the SSH window long before the 4 MiB
        # of stdin are sent
        encoded = connector.run("base64 -w0", stdin=stdin, timeout=60).check(
            connector.host, "base64"
        )
        return shown.stdout.split()[0], connector.host, len(encoded.stdout)

    started = time.monotonic()
    try:
        for _ in range(ROUNDS):
            with ThreadPoolExecutor(2 * len(connectors)) as pool:
                jobs = [pool.submit(work, c, slot) for slot in range(2) for c in connectors]
                results = [job.result(timeout=BOUND) for job in jobs]
            assert {r[0] for r in results} == {digest}
            assert {r[2] for r in results} == {(len(stdin) + 2) // 3 * 4}
            assert sorted(r[1] for r in results) == sorted(2 * [h.name for h in lab.hosts])
    finally:
        for connector in connectors:
            connector.close()
    assert time.monotonic() - started < BOUND


def test_a_command_that_ignores_its_stdin_is_not_a_lost_connection(lab: Lab) -> None:
    connector = _connector(lab, lab.hosts[0].name)
    try:
        result = connector.run("echo done", stdin=b"x" * (8 << 20), timeout=30)
        assert (result.exit_code, result.stdout) == (0, "done\n")
        assert connector.run("echo still connected").stdout == "still connected\n"
    finally:
        connector.close()


def test_a_command_over_its_timeout_names_host_and_command(lab: Lab) -> None:
    connector = _connector(lab, lab.hosts[0].name)
    connector.command_timeout = 1.0
    try:
        with pytest.raises(OperationError, match=rf"{lab.hosts[0].name}: .*sleep 30"):
            connector.run(Shell("sleep", "30"))
        connector.command_timeout = 30.0
        assert connector.run("echo next").stdout == "next\n"  # a fresh shell, in step
        with pytest.raises(OperationError, match="timed out after 1s: sleep 30"):
            connector.run("sleep 30", stdin=b"", timeout=1.0)
    finally:
        connector.close()
