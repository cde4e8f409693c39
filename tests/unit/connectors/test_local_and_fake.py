"""The local connector (rooted in a temp dir) and the fake connector honour the contract."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from provisioner.commands import Raw, Shell
from provisioner.connectors.base import CommandResult, Connector
from provisioner.connectors.local import LocalConnector
from provisioner.errors import ConnectError, OperationError
from tests.harness.fake_connector import FakeConnector


def test_both_satisfy_the_protocol(tmp_path: Path) -> None:
    assert isinstance(LocalConnector(root=tmp_path), Connector)
    assert isinstance(FakeConnector(), Connector)


def test_local_run_returns_exit_code_and_both_streams() -> None:
    result = LocalConnector().run(Shell("sh", "-c", "printf out; printf err >&2; exit 3"))
    assert result == CommandResult(3, "out", "err")


def test_local_run_passes_stdin_and_quotes_arguments() -> None:
    result = LocalConnector().run(Shell("cat", Raw("&&"), "echo", "a b;$(c)"), stdin=b"in\n")
    assert result.stdout == "in\na b;$(c)\n"


def test_local_put_is_atomic_and_sets_mode(tmp_path: Path) -> None:
    conn = LocalConnector(root=tmp_path)
    (tmp_path / "etc").mkdir()
    conn.put(b"one", "/etc/x.conf", mode=0o600, owner="root", group="root")
    conn.put(b"two", "/etc/x.conf", mode=0o640)
    target = tmp_path / "etc" / "x.conf"
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(os.listdir(tmp_path / "etc")) == ["x.conf"]  # no temp files left
    assert conn.get("/etc/x.conf") == b"two"


def test_local_put_into_missing_directory_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(OperationError, match="directory /missing does not exist"):
        LocalConnector("n1", root=tmp_path).put(b"x", "/missing/x.conf")
    assert list(tmp_path.iterdir()) == []


def test_check_names_host_and_stderr() -> None:
    with pytest.raises(OperationError, match=r"n1: dpkg -i failed \(exit 2\): broken"):
        CommandResult(2, "", "broken\n").check("n1", "dpkg -i")


def test_fake_records_and_serves_canned_outputs() -> None:
    fake = FakeConnector(
        "n1", responses=[("systemctl", CommandResult(0, "active\n", ""))], files={"/a": b"1"}
    )
    assert fake.run(Shell("systemctl", "is-active", "x")).stdout == "active\n"
    assert fake.run("true") == CommandResult(0, "", "")
    fake.put(b"2", "/b", mode=0o600)
    assert fake.commands == ["systemctl is-active x", "true"]
    assert fake.get("/b") == b"2"
    assert fake.uploads[0].mode == 0o600
    fake.close()
    with pytest.raises(ConnectError, match="n1: connection is closed"):
        fake.run("true")
