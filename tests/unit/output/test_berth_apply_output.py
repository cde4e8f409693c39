"""`berth apply`'s default output through the real command line (:mod:`tests.unit.output.berth_cli`:
the command's own spec loading, lock, planning and choice of reporter; only the connector is
local): on a pseudo-terminal one live display that redraws as the run goes and ends in the
summary table; on a pipe (a CI log) plain lines without a single control sequence."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.unit.keyfiles import write_identity
from tests.unit.output.berth_cli import write_spec
from tests.unit.output.run import BERTH, in_pipe, in_terminal, plain
from tests.unit.output.scenario import HOSTS, SLOW_HOST, SLOW_SECONDS

REDRAW = "\x1b[1A\x1b[2K"  # cursor up one line and erase it: the display redraws in place
CURSOR_MOVES = re.compile(r"\x1b\[\d*[ABCDHJK]")


class Berth:
    """``berth`` with its own state, cache and spec under ``tmp_path``."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "hosts"
        self.spec = write_spec(tmp_path / "spec.yaml", write_identity(tmp_path / "id_ed25519"))
        self.env = {
            "BERTH_STATE_DIR": str(tmp_path / "state"),
            "BERTH_CACHE_DIR": str(tmp_path / "cache"),
        }

    def apply_args(self, *extra: str) -> tuple[str, ...]:
        return (str(self.root), "apply", "-i", str(self.spec), "--phases", "scenario", *extra)


@pytest.fixture
def berth(tmp_path: Path) -> Berth:
    return Berth(tmp_path)


def _table(lines: list[str]) -> list[list[str]]:
    """The summary table's rows (after its header and rule), split into columns."""
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["host", "changed"])
    assert lines[header].split() == ["host", "changed", "ok", "failed", "time"]
    assert set(lines[header + 1].strip()) == {"─"}
    return [line.split() for line in lines[header + 2 : header + 2 + len(HOSTS) + 1]]


def test_on_a_terminal_the_live_display_updates_then_ends_in_the_table(berth: Berth) -> None:
    code, raw = in_terminal(*berth.apply_args("--yes"), command=BERTH, env=berth.env, timeout=120)
    assert code == 0, raw[-3000:]
    assert raw.count(REDRAW) >= 10, raw[-3000:]  # redrawn several times a second

    # the frames between redraws: the slow phase's hosts-done count only grows, to 3/3
    frames = [plain(f) for f in raw.split(REDRAW)]
    seen = [int(m.group(1)) for f in frames if (m := re.search(r"slow\s+(\d)/3 hosts", f))]
    assert len(seen) >= 3, seen
    assert seen[0] < 3, seen
    assert seen[-1] == 3, seen
    assert seen == sorted(seen), seen
    # while the slow host is the last one, the frame names its operation in flight
    assert any(re.search(rf"{SLOW_HOST}: sleep {SLOW_SECONDS}s \(\d\.\ds\)", f) for f in frames)
    assert any(re.search(r"berth apply: 3 host\(s\), \d+\.\ds", f) for f in frames)

    # after the last frame: the apply's summary line and the table, a row per host
    rest = plain(raw.rsplit(REDRAW, 1)[1]).splitlines()
    assert any(
        line.startswith("apply: 10 change(s), 6 operation(s) already in place on 3 host(s)")
        for line in rest
    ), rest
    rows = _table(rest)
    assert [r[:4] for r in rows] == [
        *([h, "3", "2", "0"] for h in HOSTS), ["(cluster)", "1", "0", "0"],
    ]  # fmt: skip
    assert float(rows[HOSTS.index(SLOW_HOST)][4].rstrip("s")) >= SLOW_SECONDS
    assert (berth.root / "h2" / "app.conf").read_text() == "h2\n"  # it really applied


def test_without_a_terminal_it_prints_plain_lines_then_the_table(berth: Berth) -> None:
    timeline = berth.root.parent / "run.svg"
    result = in_pipe(
        *berth.apply_args("--yes", "--timeline", str(timeline)),
        command=BERTH, env=berth.env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert not CURSOR_MOVES.search(out), repr(out)
    assert "\x1b" not in out, repr(out)
    assert "\r" not in out, repr(out)
    lines = out.splitlines()
    # one line when a stage or phase ends, in the order they ran, each with its hosts and time
    ends = [line for line in lines if re.fullmatch(r"\[\w+\] (3/3 hosts|\(cluster\)), .*", line)]
    assert [line.split("]")[0] for line in ends] == [
        "[connecting", "[plan", "[preflight", "[files", "[slow", "[summary",
    ], ends  # fmt: skip
    assert re.fullmatch(r"\[slow\] 3/3 hosts, 3 changed, \d+\.\ds: Wait on the hosts", ends[4])
    assert "apply: 10 change(s), 6 operation(s) already in place on 3 host(s)" in lines
    assert [r[:4] for r in _table(lines)] == [
        *([h, "3", "2", "0"] for h in HOSTS), ["(cluster)", "1", "0", "0"],
    ]  # fmt: skip
    # --timeline: a bar for every host in the SVG
    svg = ET.parse(timeline).getroot()
    texts = {t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")}
    assert set(HOSTS) <= texts, texts


def test_a_failed_apply_names_host_operation_output_and_hint_and_exits_6(berth: Berth) -> None:
    result = in_pipe(
        *berth.apply_args("--yes", "--fail-scenario"), command=BERTH, env=berth.env, timeout=120
    )
    assert result.returncode == 6, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [r[:4] for r in _table(lines)] == [
        ["h1", "3", "3", "0"], ["h2", "3", "2", "1"], ["h3", "3", "3", "0"],
        ["(cluster)", "1", "0", "0"],
    ]  # fmt: skip
    failed = lines.index("FAILED h2 [broken] service berth-broken")
    assert "failed (exit 3): broken.service: disk full" in lines[failed + 1]
    assert lines[failed + 2].startswith("hint: fix the cause and run `berth apply` again")
    assert "\x1b" not in result.stdout
