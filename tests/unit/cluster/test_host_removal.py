"""A host that left the spec is removed through the run's ``remove_hosts`` (``berth destroy``'s
teardown, handed in by whoever built the run): the nodes phase does not import the engine."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from provisioner.connectors.base import HostTarget
from provisioner.phases.cluster.context import state_of
from provisioner.phases.cluster.removal import record_hosts, remove_host
from tests.unit.cluster.test_ha_wiring import _data
from tests.unit.etcd_phase.test_etcd_phase import make_spec


@dataclasses.dataclass
class Removed:
    ok: bool

    def lines(self) -> list[str]:
        return ["verified clean"] if self.ok else ["NOT clean: /opt/berth"]


def test_a_recorded_host_is_removed_through_the_runs_remover(tmp_path: Path) -> None:
    before = _data(tmp_path, make_spec(["cp1", "cp2", "cp3", "w1"], tmp_path))
    record_hosts(state_of(before), before.spec)
    calls: list[tuple[str, list[str], Path]] = []

    def remove(cluster: str, targets: Sequence[HostTarget], cache_dir: Path) -> Removed:
        calls.append((cluster, [t.name for t in targets], cache_dir))
        return Removed(ok=len(calls) == 1)

    after = dataclasses.replace(
        _data(tmp_path, make_spec(["cp1", "cp2", "cp3"], tmp_path)),
        remove_hosts=remove,
    )
    lines: list[str] = []
    assert remove_host(after, "w1", lines.append)
    assert calls == [("ha", ["w1"], after.cache_dir)]
    assert lines == ["host w1: verified clean"]
    assert not remove_host(after, "w1", lines.append)  # not clean: stays recorded, says why
    assert lines[-1] == "host w1: NOT clean: /opt/berth"


def test_a_run_that_cannot_remove_hosts_says_to_destroy_them(tmp_path: Path) -> None:
    data = _data(tmp_path, make_spec(["cp1", "cp2", "cp3", "w1"], tmp_path))
    record_hosts(state_of(data), data.spec)
    lines: list[str] = []
    assert not remove_host(data, "w1", lines.append)
    assert lines == ["host w1: this run cannot remove hosts; clean it with `berth destroy`"]
