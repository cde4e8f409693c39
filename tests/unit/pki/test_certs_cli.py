"""`berth certs ensure|status|renew` through the real entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.cli import main as cli_main
from tests.unit.pki.conftest import HA


def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.argv", ["berth", *argv])
    monkeypatch.setattr(cli_main._err, "soft_wrap", True)
    with pytest.raises(SystemExit) as exited:
        cli_main.main()
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 0), out, err


@pytest.fixture
def spec_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("BERTH_STATE_PASSPHRASE", raising=False)
    path = tmp_path / "ha.yaml"
    path.write_text(HA)
    return path


def test_ensure_status_renew(
    spec_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = tmp_path / "states"
    common = ["-i", str(spec_file), "--state-dir", str(base)]
    code, out, err = run(monkeypatch, capsys, "certs", "ensure", *common)
    assert code == 0, err
    assert "apiserver" in out
    assert "created" in out
    assert "BERTH_STATE_PASSPHRASE is not set" in err
    assert "PRIVATE KEY" not in out + err
    assert (base / "ha" / "kubeconfigs" / "admin.conf").exists()

    code, out, err = run(monkeypatch, capsys, "certs", "status", "--check", *common)
    assert code == 0, err
    for name in ("ca", "etcd-ca", "apiserver", "agent-client-w1", "kubeconfigs/admin.conf"):
        assert f"│ {name} " in out
    assert "IP:10.96.0.1" in out
    assert "days left" in out

    admin_before = (base / "ha" / "pki" / "admin.crt").read_bytes()
    code, out, _ = run(monkeypatch, capsys, "certs", "renew", "--local-only", *common)
    assert code == 0
    assert "reissued" in out
    assert "renewal requested" in out
    assert (base / "ha" / "pki" / "admin.crt").read_bytes() != admin_before


def test_status_check_fails_on_a_missing_certificate(
    spec_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    common = ["-i", str(spec_file), "--state-dir", str(tmp_path / "states")]
    assert run(monkeypatch, capsys, "certs", "ensure", *common)[0] == 0
    (tmp_path / "states" / "ha" / "pki" / "proxy.crt").unlink()
    code, _, err = run(monkeypatch, capsys, "certs", "status", "--check", *common)
    assert code == 1
    assert "warning: proxy: missing" in err
    assert run(monkeypatch, capsys, "certs", "status", *common)[0] == 0


def test_dry_run_writes_nothing(
    spec_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = tmp_path / "states"
    code, _, err = run(
        monkeypatch,
        capsys,
        "certs",
        "ensure",
        "--dry-run",
        "-i",
        str(spec_file),
        "--state-dir",
        str(base),
    )
    assert code == 0, err
    assert "dry run: results are in" in err
    assert not (base / "ha" / "pki").exists()
