"""`--timeline FILE.svg`: a per-host, per-phase timeline of a run, drawn from the engine's
events: a row per host, a bar per host and phase (its width the time taken), a legend naming
every phase, and a failed turn outlined."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from provisioner.engine.runner import HostsFailed
from provisioner.output.record import CLUSTER, RunRecord, Span
from provisioner.output.timeline import render_svg, write_timeline
from tests.unit.output import scenario

SVG = "{http://www.w3.org/2000/svg}"
STAGES = ["connecting", "preflight", "plan"]


def _bars(root: ET.Element) -> dict[tuple[str, str], float]:
    """(host, phase) -> bar width, from each bar's title ``host [phase] 1.23s``."""
    bars = {}
    for rect in root.iter(f"{SVG}rect"):
        title = rect.find(f"{SVG}title")
        if title is not None and title.text:
            match = re.fullmatch(r"(\S+) \[(\S+)\] [\d.]+s( FAILED)?", title.text)
            assert match, title.text
            bars[match.group(1), match.group(2)] = float(rect.attrib["width"])
    return bars


def test_an_apply_draws_every_host_and_phase(tmp_path: Path) -> None:
    record = RunRecord()
    scenario.apply(tmp_path / "hosts", record)
    path = write_timeline(record, tmp_path / "run.svg", title="scenario apply")
    root = ET.parse(path).getroot()  # well-formed SVG
    assert root.tag == f"{SVG}svg"
    texts = [t.text for t in root.iter(f"{SVG}text")]
    phases = [*STAGES, "files", "slow", "summary"]
    for host in [*scenario.HOSTS, CLUSTER]:
        assert host in texts
    legend = [t.attrib["data-phase"] for t in root.iter(f"{SVG}text") if "data-phase" in t.attrib]
    assert legend == phases
    bars = _bars(root)
    assert set(bars) == {(h, p) for h in scenario.HOSTS for p in phases[:-1]} | {
        (CLUSTER, "summary")
    }
    # where the time went: the slow host's bar in the slow phase is far the widest
    assert bars["h3", "slow"] > 5 * bars["h1", "slow"]
    assert bars["h3", "slow"] == max(bars.values())


def test_a_failed_turn_is_outlined_and_titled(tmp_path: Path) -> None:
    record = RunRecord()
    with pytest.raises(HostsFailed):
        scenario.apply(tmp_path / "hosts", record, fail=True)
    root = ET.fromstring(render_svg(record.spans(), hosts=[], phases=[], title="failed"))
    failed = [
        r for r in root.iter(f"{SVG}rect") if r.attrib.get("stroke") == "#d62728"
    ]  # fmt: skip
    assert len(failed) == 1
    title = failed[0].find(f"{SVG}title")
    assert title is not None
    assert title.text is not None
    assert title.text.startswith("h2 [broken]")
    assert title.text.endswith("FAILED")


def test_names_are_escaped_and_an_empty_run_is_still_an_svg() -> None:
    spans = [Span("a<b>&c", "host\"'<x>", 0.0, 1.5)]
    root = ET.fromstring(render_svg(spans, hosts=[], phases=[], title="<t>"))
    assert "host\"'<x>" in [t.text for t in root.iter(f"{SVG}text")]
    assert ET.fromstring(render_svg([], hosts=[], phases=[], title="empty")).tag == f"{SVG}svg"
