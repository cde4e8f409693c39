"""`berth plan/apply/preflight` argument handling, through the real entry point (no hosts are
contacted: every case fails before connecting)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioner.cli import main as cli_main
from provisioner.cli.main import main
from tests.unit.keyfiles import write_identity

ROOT = Path(__file__).resolve().parents[3]
SPEC = ROOT / "inventories" / "single-node.yaml"


def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.argv", ["berth", *argv])
    monkeypatch.setattr(cli_main._err, "soft_wrap", True)
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 0), out, err


@pytest.fixture(autouse=True)
def _isolated_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BERTH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("BERTH_CACHE_DIR", str(tmp_path / "cache"))
    # the example spec's identity file, ~/.ssh/id_ed25519, must exist: plan/apply check it
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write_identity(tmp_path / "home" / ".ssh" / "id_ed25519")


def test_unknown_phase_is_a_usage_error_listing_the_phases(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        monkeypatch, capsys, "plan", "-i", str(SPEC), "--phases", "demo", "--skip", "nope"
    )
    assert code == 2
    assert "unknown phase 'nope'; phases are: preflight, artifacts, demo" in err


def test_unknown_phase_set_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(monkeypatch, capsys, "plan", "-i", str(SPEC), "--phases", "nope")
    assert code == 2
    assert "unknown phase set 'nope'" in err


def test_apply_needs_a_plan_or_a_spec(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(monkeypatch, capsys, "apply")
    assert code == 2
    assert "give a saved PLAN or --inventory/-i SPEC" in err


def test_unreadable_plan_is_a_state_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bogus = tmp_path / "plan.json"
    bogus.write_text("{not json")
    code, _, err = run(monkeypatch, capsys, "apply", str(bogus))
    assert code == 9
    assert f"{bogus}: not a readable berth plan" in err


def test_a_changed_spec_refuses_a_saved_plan(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "cluster.yaml"
    spec.write_text(SPEC.read_text())
    plan = tmp_path / "plan.json"
    plan.write_text(
        '{"format": 1, "cluster": "single", "phase_set": "demo", "phases": ["demo"], '
        f'"hosts": ["node1"], "spec_path": "{spec}", "spec_digest": "0", "ops": []}}'
    )
    code, _, err = run(monkeypatch, capsys, "apply", str(plan))
    assert code == 9
    assert f"{spec}: the spec changed since the plan was made" in err
    assert "hint: run `berth plan` again" in err


def test_json_output_ends_with_a_failed_event(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "cluster.yaml"
    spec.write_text(SPEC.read_text())
    plan = tmp_path / "plan.json"
    plan.write_text(
        '{"format": 1, "cluster": "single", "phase_set": "demo", "phases": ["demo"], '
        f'"hosts": ["node1"], "spec_path": "{spec}", "spec_digest": "0", "ops": []}}'
    )
    code, out, _ = run(monkeypatch, capsys, "apply", str(plan), "--output", "json")
    assert code == 9
    last = json.loads(out.splitlines()[-1])
    assert last["kind"] == "failed"
    assert last["data"]["exit_code"] == 9
    assert last["data"]["lines"][0] == f"{spec}: the spec changed since the plan was made"
