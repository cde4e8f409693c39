"""`berth upgrade --timeline`: every step of a rolling upgrade on each host (and the datastore
snapshot) is timed, and the timeline names every host and step; a failed gate is a failed step."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from provisioner.output.record import CLUSTER, RunRecord
from provisioner.output.timeline import write_timeline
from provisioner.upgrade.runner import UpgradeHalted, Upgrader
from provisioner.upgrade.timing import TimedOps
from tests.unit.upgrade.test_runner import HOSTS, NEW, FakeCluster

SVG = "{http://www.w3.org/2000/svg}"


def _upgrader(cluster: FakeCluster, record: RunRecord, tmp_path: Path) -> Upgrader:
    return Upgrader(
        TimedOps(cluster, record), hosts=HOSTS, journal_dir=tmp_path / "journal",
        snapshot_dir=tmp_path / "snapshots", max_unavailable=1,
    )  # fmt: skip


def test_an_upgrade_timeline_names_every_host_and_step(tmp_path: Path) -> None:
    record = RunRecord()
    _upgrader(FakeCluster(), record, tmp_path).upgrade()
    steps = ["snapshot", "cordon", "drain", "install", "switch", "gate", "uncordon", "remove"]
    turns = {(s.host, s.phase) for s in record.spans()}
    assert (CLUSTER, "snapshot") in turns
    for host in (h.name for h in HOSTS):
        for step in steps[1:6]:
            assert (host, step) in turns, (host, step)
    path = write_timeline(record, tmp_path / "upgrade.svg", title="upgrade")
    root = ET.parse(path).getroot()
    texts = {t.text for t in root.iter(f"{SVG}text")}
    assert {h.name for h in HOSTS} | {CLUSTER} <= texts
    legend = {t.attrib["data-phase"] for t in root.iter(f"{SVG}text") if "data-phase" in t.attrib}
    assert legend == {p for _, p in turns}
    assert set(steps[:6]) <= legend
    assert all(s.ok for s in record.spans())


def test_a_failed_gate_is_a_failed_step(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.broken.add(("cp1", NEW))
    record = RunRecord()
    with pytest.raises(UpgradeHalted):
        _upgrader(cluster, record, tmp_path).upgrade()
    failed = [(s.host, s.phase) for s in record.spans() if not s.ok]
    assert failed == [("cp1", "gate")]
