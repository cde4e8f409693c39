"""`berth apply`'s default output on a terminal: one live display that redraws as the run goes
(a line per phase, hosts done/total, elapsed, the operation in flight on a slow host), ending
in the summary table per host."""

from __future__ import annotations

import re
from pathlib import Path

from tests.unit.output.run import in_terminal, plain
from tests.unit.output.scenario import SLOW_HOST, SLOW_SECONDS

REDRAW = "\x1b[1A\x1b[2K"  # cursor up one line and erase it: the display redraws in place


def test_the_live_display_updates_then_ends_in_the_summary_table(tmp_path: Path) -> None:
    code, raw = in_terminal(str(tmp_path / "hosts"))
    assert code == 0, raw[-3000:]
    assert raw.count(REDRAW) >= 10  # redrawn several times a second while the phase runs
    assert "[summary] (cluster): wrote the summary" in plain(raw)  # operator-side lines shown

    # the frames: between redraws, each shows every phase line as it was then
    frames = [plain(f) for f in raw.split(REDRAW) if "slow" in plain(f)]
    counts = [re.search(r"slow\s+(\d)/3 hosts", f) for f in frames]
    seen = [int(m.group(1)) for m in counts if m]
    assert seen[0] < 3, seen
    assert seen[-1] == 3, seen
    assert seen == sorted(seen), seen
    # while only the slow host is left, its operation in flight is named with its time (2 s
    # or more into its 2.6 s sleep; the times are only bounded from below: a loaded machine
    # stretches them and redraws less often)
    in_flight = rf"{SLOW_HOST}: sleep {SLOW_SECONDS}s \((?:[2-9]|\d\d+)\.\ds\)"
    assert any(re.search(in_flight, f) for f in frames), frames[-3:]
    assert any(re.search(r"berth apply: 3 host\(s\), [1-9]\d*\.\ds", f) for f in frames)

    # after the last frame: the apply's summary and the table, one row per host
    tail = plain(raw.rsplit(REDRAW, 1)[1]).strip().splitlines()
    last_frame, rest = tail[:7], tail[7:]
    assert all("✓" in line for line in last_frame[1:]), last_frame
    assert last_frame[-1].split()[:3] == ["✓", "summary", "(cluster)"]
    assert rest[0].startswith("apply: 10 change(s), 6 operation(s) already in place on 3 host(s)")
    assert rest[1].split() == ["host", "changed", "ok", "failed", "time"]
    rows = [line.split() for line in rest[3:]]
    assert [r[:4] for r in rows] == [
        *([h, "3", "2", "0"] for h in ("h1", "h2", "h3")), ["(cluster)", "1", "0", "0"],
    ]  # fmt: skip
    assert float(rows[2][4].rstrip("s")) >= SLOW_SECONDS  # h3's time: where the time went
