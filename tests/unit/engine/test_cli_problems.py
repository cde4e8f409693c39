"""`berth plan` prints each problem once (issue 19, point 4): an unreachable host used to be
printed by the connect stage, again as a preflight event, and a third time by the error."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.engine.test_cli import run
from tests.unit.keyfiles import write_identity


def test_plan_names_each_unreachable_host_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def refuse(address: tuple[str, int], timeout: float | None = None) -> object:
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr("socket.create_connection", refuse)
    write_identity(tmp_path / "id")
    spec = tmp_path / "c.yaml"
    spec.write_text(
        """apiVersion: berth.dev/v1alpha1
kind: Cluster
metadata: {name: once}
spec:
  ssh: {identityFile: id, hostKeyPolicy: accept-new, retries: 0}
  hosts:
    - {name: n1, address: 10.0.0.1, roles: [control-plane, worker]}
    - {name: n2, address: 10.0.0.2, roles: [worker]}
"""
    )
    code, out, err = run(monkeypatch, capsys, "plan", "-i", str(spec))
    assert code == 4
    both = out + err
    for host, address in (("n1", "10.0.0.1"), ("n2", "10.0.0.2")):
        assert both.count(f"could not connect to {address}:22") == 1, both
        assert f"[preflight] {host}: unreachable: could not connect to {address}:22" in err
    assert "preflight found 2 problem(s)" in err
