"""`berth --version` names the release and the commit: git's HEAD in a checkout, the commit a
wheel recorded when it was built, or ``unknown``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from provisioner import build_info
from provisioner.cli import main as cli_main
from provisioner.cli.main import main

ROOT = Path(__file__).resolve().parents[3]


def _version_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    monkeypatch.setattr("sys.argv", ["berth", "--version"])
    monkeypatch.setattr(cli_main._err, "soft_wrap", True)
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code in (0, None)
    return capsys.readouterr().out.strip()


def test_in_a_checkout_the_version_names_heads_commit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    line = _version_line(monkeypatch, capsys)
    assert line.startswith(f"berth {build_info.release()} (commit {head}")
    assert line.endswith(")")


def test_installed_the_version_is_the_recorded_commit_or_unknown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(build_info, "checkout_root", lambda: None)
    monkeypatch.setattr(build_info, "recorded_commit", lambda: "0123abcd")
    assert _version_line(monkeypatch, capsys) == f"berth {build_info.release()} (commit 0123abcd)"
    monkeypatch.setattr(build_info, "recorded_commit", lambda: None)
    assert _version_line(monkeypatch, capsys) == f"berth {build_info.release()} (commit unknown)"
