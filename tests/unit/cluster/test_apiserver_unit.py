"""The API server's systemd unit as rendered for a control-plane host."""

from __future__ import annotations

from pathlib import Path

from provisioner import hostlayout as layout
from provisioner.operations.systemd import UnitFile
from provisioner.phases.cluster import hostside
from tests.unit.cluster.test_ha_wiring import _data
from tests.unit.cluster.test_vip_wiring import vip_spec


def test_the_api_server_runs_with_two_malloc_arenas(tmp_path: Path) -> None:
    """Memory: its SQLite threads would each get a glibc arena (bench/footprint.py)."""
    data = _data(tmp_path, vip_spec(tmp_path))
    ops = hostside.control_plane_ops(data, data.inventory.host("cp1"))
    unit = next(op for op in ops if isinstance(op, UnitFile) and op.name == layout.APISERVER)
    lines = unit.content.decode().splitlines()
    assert "Environment=MALLOC_ARENA_MAX=2" in lines
    assert any(line.startswith("ExecStart=/usr/bin/python3 -m berth.apiserver") for line in lines)
