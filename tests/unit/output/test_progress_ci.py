"""`berth apply`'s default output without a terminal (a CI log): plain lines, a line when a phase
starts and one when it ends, no control sequences, then the summary table; on failure, the
failing host, phase, operation, the command's output and a hint."""

from __future__ import annotations

import re
from pathlib import Path

from tests.unit.output.run import in_pipe
from tests.unit.output.scenario import SLOW_SECONDS


def test_without_a_terminal_the_output_is_plain_lines(tmp_path: Path) -> None:
    result = in_pipe(str(tmp_path / "hosts"))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "\x1b" not in out
    assert "\r" not in out
    lines = out.splitlines()
    # Durations are matched as any number (a loaded machine stretches every one of them: h3's
    # 2.6 s sleep took 3.3 s in a CI run), then the slow ones checked to be at least the sleep.
    patterns = [
        r"\[connecting\] 3/3 hosts, \d+\.\ds",
        r"\[preflight\] 3/3 hosts, \d+\.\ds",
        r"\[plan\] 3/3 hosts, \d+\.\ds",
        r"  \[files\] 6 change\(s\) on 3 host\(s\)",
        r"  \[slow\] 3 change\(s\) on 3 host\(s\)",
        r"  \[summary\] 1 change\(s\) on 1 host\(s\)",
        r"plan: 10 change\(s\) on 4 host\(s\), 6 operation\(s\) already in place",
        r"\[files\] 3/3 hosts, 6 changed, \d+\.\ds: Write files",
        r"\[slow\] 3/3 hosts, 3 changed, (?P<slow>\d+\.\d)s: Wait on the hosts",
        r"\[summary\] \(cluster\): wrote the summary",
        r"\[summary\] \(cluster\), 1 changed, \d+\.\ds: Sum up on the operator's side",
        r"apply: 10 change\(s\), 6 operation\(s\) already in place on 3 host\(s\)",
        r"host +changed +ok +failed +time",
        r"─+",
        r"h1 +3 +2 +0 +\d+\.\ds",
        r"h2 +3 +2 +0 +\d+\.\ds",
        r"h3 +3 +2 +0 +(?P<h3>\d+\.\d)s",
        r"\(cluster\) +1 +0 +0 +\d+\.\ds",
    ]
    assert len(lines) == len(patterns), out
    times: dict[str, float] = {}
    for line, pattern in zip(lines, patterns, strict=True):
        match = re.fullmatch(pattern, line)
        assert match, (line, pattern)
        times.update((k, float(v)) for k, v in match.groupdict().items())
    # the slow phase and h3's row show where the time went: h3's sleep, at least
    assert times["slow"] >= SLOW_SECONDS, out
    assert times["h3"] >= SLOW_SECONDS, out


def test_a_failure_names_host_phase_operation_output_and_a_hint(tmp_path: Path) -> None:
    result = in_pipe(str(tmp_path / "hosts"), "--fail")
    assert result.returncode == 6, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    table = lines.index(next(line for line in lines if line.split()[:2] == ["host", "changed"]))
    assert [line.split()[:4] for line in lines[table + 2 : table + 5]] == [
        ["h1", "3", "3", "0"], ["h2", "3", "2", "1"], ["h3", "3", "3", "0"],
    ]  # fmt: skip
    assert lines[table + 5].split()[:4] == ["(cluster)", "1", "0", "0"]
    failure = lines[table + 6 :]
    assert failure[0] == "FAILED h2 [broken] service berth-broken"
    assert "failed (exit 3): broken.service: disk full" in failure[1]
    assert failure[2].startswith("hint: fix the cause and run `berth apply` again")
