"""Template errors are located; the JSON reporter writes one parseable event per line."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import jinja2
import pytest
from rich.console import Console

from provisioner.errors import TemplateError
from provisioner.reporting import COMMANDS, NOOPS, OPS, ConsoleReporter, Event, JsonReporter
from provisioner.templating import render


def test_renders_with_strict_undefined(tmp_path: Path) -> None:
    (tmp_path / "a.j2").write_text("x={{ x }}\n")
    assert render("a.j2", {"x": 1}, root=tmp_path) == "x=1\n"


def test_a_template_is_compiled_once_per_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled: list[str] = []
    compile_ = jinja2.Environment.compile

    def counting(self: jinja2.Environment, source: Any, *args: Any, **kwargs: Any) -> Any:
        compiled.append(str(source))
        return compile_(self, source, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    (tmp_path / "host.j2").write_text("host={{ host }}\n")
    # one compile for many hosts: each gets its own context
    assert [render("host.j2", {"host": f"n{i}"}, root=tmp_path) for i in range(3)] == [
        "host=n0\n", "host=n1\n", "host=n2\n",
    ]  # fmt: skip
    assert compiled == ["host={{ host }}\n"]


def test_a_changed_template_is_rendered_from_its_new_source(tmp_path: Path) -> None:
    template = tmp_path / "conf.j2"
    template.write_text("port={{ port }}\n")
    assert render("conf.j2", {"port": 1}, root=tmp_path) == "port=1\n"
    # same length, same second: only the content tells the cached compile is stale
    template.write_text("PORT={{ port }}\n")
    assert render("conf.j2", {"port": 1}, root=tmp_path) == "PORT=1\n"
    template.write_text("{{ undefined_now }}\n")
    with pytest.raises(TemplateError, match="undefined_now"):
        render("conf.j2", {"port": 1}, root=tmp_path)
    template.unlink()
    with pytest.raises(TemplateError, match=r"template conf\.j2 not found"):
        render("conf.j2", {"port": 1}, root=tmp_path)


def test_templates_of_two_roots_do_not_mix(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "t.j2").write_text(f"{name}={{{{ x }}}}\n")
    assert render("t.j2", {"x": 1}, root=tmp_path / "a") == "a=1\n"
    assert render("t.j2", {"x": 1}, root=tmp_path / "b") == "b=1\n"


def test_undefined_variable_names_template_line_and_context(tmp_path: Path) -> None:
    (tmp_path / "unit.j2").write_text("[Unit]\nDescription={{ name }}\nAfter={{ after }}\n\n")
    with pytest.raises(TemplateError) as caught:
        render("unit.j2", {"name": "api"}, root=tmp_path)
    message = caught.value.message
    assert message.startswith(
        f"template {tmp_path}/unit.j2:3: UndefinedError: 'after' is undefined"
    )
    assert ">    3 | After={{ after }}" in message
    assert "     2 | Description={{ name }}" in message


def test_syntax_error_is_located(tmp_path: Path) -> None:
    (tmp_path / "bad.j2").write_text("ok\n{% if x %}\nno end\n")
    with pytest.raises(TemplateError, match=r"bad\.j2:\d: TemplateSyntaxError"):
        render("bad.j2", {"x": True}, root=tmp_path)


def test_json_reporter_writes_one_event_per_line() -> None:
    stream = io.StringIO()
    reporter = JsonReporter(stream)
    reporter.emit(Event("change", "demo", "n1", "file /etc/x", {"commands": ["upload /etc/x"]}))
    reporter.emit(Event("summary", message="plan: 1 change(s)"))
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert events[0] == {
        "kind": "change",
        "phase": "demo",
        "host": "n1",
        "message": "file /etc/x",
        "data": {"commands": ["upload /etc/x"]},
    }
    assert events[1]["kind"] == "summary"


@dataclasses.dataclass
class _Inner:
    path: Path
    modes: tuple[int, ...]


def test_json_reporter_lines_are_what_asdict_gives() -> None:
    # the reporter builds the event's dict itself (no deep copy): every line must stay what
    # json.dumps(asdict(event), sort_keys=True, default=str) wrote before
    events = [
        Event("noop", "demo", "n1", "directory /etc/x exists"),
        Event("change", "demo", "n1", "file /x", {"commands": ["a", "b"], "diff": None}),
        Event("end", "plan", "n2", "plan", {"ok": True, "seconds": 0.25, "z": {"b": 1, "a": 2}}),
        Event(
            "x",
            data={
                "inner": _Inner(Path("/p"), (1, 2)),
                "nested": [[_Inner(Path("/q"), ())]],
                "path": Path("/r"),
                "tuple": (1, "2"),
            },
        ),
    ]
    stream = io.StringIO()
    reporter = JsonReporter(stream)
    for event in events:
        reporter.emit(event)
    expected = [json.dumps(dataclasses.asdict(e), sort_keys=True, default=str) for e in events]
    assert stream.getvalue().splitlines() == expected


def test_console_lines_are_prefixed_with_phase_and_host() -> None:
    out = io.StringIO()
    reporter = ConsoleReporter(Console(file=out, width=200, color_system=None))
    reporter.emit(Event("change", "demo", "n1", "file /etc/[x]", {"commands": ["chmod 0600 /a"]}))
    reporter.emit(Event("noop", "demo", "n1", "hidden unless verbose"))
    assert out.getvalue().splitlines() == ["[demo] n1: file /etc/[x]", "    $ chmod 0600 /a"]


def test_progress_counts_hosts_per_phase() -> None:
    out = io.StringIO()
    reporter = ConsoleReporter(
        Console(file=out, width=120, color_system=None, force_terminal=False), progress=True
    )
    reporter.emit(Event("phase", "demo", message="Install", data={"total": 2}))
    for host in ("n1", "n2"):
        reporter.emit(Event("start", "demo", host, "demo"))
        reporter.emit(Event("end", "demo", host, "demo", {"ok": True, "seconds": 0.1}))
    reporter.emit(Event("summary", message="apply: 2 change(s)"))
    text = out.getvalue()
    assert "[demo]" in text
    assert "2/2 hosts" in text
    assert text.rstrip().endswith("apply: 2 change(s)")


def test_verbosity_levels_of_the_line_reporter() -> None:
    def lines(verbosity: int) -> list[str]:
        out = io.StringIO()
        reporter = ConsoleReporter(
            Console(file=out, width=200, color_system=None), verbosity=verbosity
        )
        reporter.emit(Event("running", "demo", "n1", "file /etc/x"))
        reporter.emit(Event("done", "demo", "n1", "file /etc/x", {"commands": ["upload /etc/x"]}))
        reporter.emit(Event("noop", "demo", "n1", "user demo: exists"))
        reporter.emit(Event("end", "demo", "n1", "demo", {"ok": True, "seconds": 0.1}))
        return out.getvalue().splitlines()

    assert lines(OPS) == ["[demo] n1: file /etc/x"]
    assert lines(COMMANDS) == ["[demo] n1: file /etc/x", "    $ upload /etc/x"]
    assert lines(NOOPS) == [
        "[demo] n1: file /etc/x", "    $ upload /etc/x", "[demo] n1: user demo: exists",
    ]  # fmt: skip
