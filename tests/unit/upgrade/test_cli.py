"""`berth upgrade` argument checks that run before any host is contacted."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import berth
from provisioner.cli.main import app
from provisioner.errors import SpecError
from tests.unit.keyfiles import write_identity

SPEC = """\
apiVersion: berth.dev/v1alpha1
kind: Cluster
metadata: {{name: demo}}
spec:
  version: {version}
  ssh: {{user: root, identityFile: id, hostKeyPolicy: accept-new}}
  hosts:
    - {{name: cp1, address: 10.231.9.11, roles: [control-plane, worker]}}
  datastore: {{type: sqlite}}
"""


def run(tmp_path: Path, version: str, *args: str) -> BaseException | None:
    spec = tmp_path / "cluster.yaml"
    spec.write_text(SPEC.format(version=version))
    write_identity(tmp_path / "id")
    result = CliRunner().invoke(
        app, ["upgrade", "-i", str(spec), "--state-dir", str(tmp_path / "state"), *args]
    )
    return result.exception


def test_to_must_be_this_berths_own_release(tmp_path: Path) -> None:
    error = run(tmp_path, "9.9.9", "--to", "9.9.9", "--yes")
    assert isinstance(error, SpecError)
    assert error.problems == [
        f"--to 9.9.9: this is berth {berth.__version__}, which can only install itself"
    ]


def test_the_spec_must_name_the_same_release(tmp_path: Path) -> None:
    error = run(tmp_path, "0.0.1", "--to", berth.__version__, "--yes")
    assert isinstance(error, SpecError)
    assert "spec.version: is 0.0.1, but --to asks for" in error.problems[0]
    assert error.hint == f"set spec.version: {berth.__version__} in the spec, then run the upgrade"


@pytest.mark.parametrize("args", [["--yes"], ["--to", "not-a-version"]])
def test_a_release_is_required_and_must_parse(tmp_path: Path, args: list[str]) -> None:
    error = run(tmp_path, berth.__version__, *args)
    assert isinstance(error, SystemExit)
    assert error.code == 2


class _FakeOps:
    """Stands in for SshClusterOps: hosts cp1, w1, w2 running the previous release."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        from tests.unit.upgrade.test_runner import FakeCluster  # noqa: PLC0415 - test helper

        self.fake = FakeCluster()

    def __enter__(self) -> object:
        return self.fake

    def __exit__(self, *exc: object) -> None:
        return None


def test_plan_to_shows_the_same_upgrade_plan_as_upgrade_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("provisioner.cli.upgrade.SshClusterOps", _FakeOps)
    spec = tmp_path / "cluster.yaml"
    spec.write_text(SPEC.format(version=berth.__version__))
    write_identity(tmp_path / "id")
    common = ["-i", str(spec), "--state-dir", str(tmp_path / "state"), "--to", berth.__version__]
    via_plan = CliRunner().invoke(app, ["plan", *common])
    via_upgrade = CliRunner().invoke(app, ["upgrade", "--plan", *common])
    assert via_plan.exit_code == 0, via_plan.output
    assert via_plan.output == via_upgrade.output
    assert "cp1: runs 0.1.0-aaaaaaaaaaaa" in via_plan.output
    assert "w2" in via_plan.output
