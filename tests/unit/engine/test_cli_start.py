"""What ``berth apply`` loads before it contacts a host: only its own command area, and none of
the heavy modules the no-op path does not use (issue 18: most of a no-op's CPU was the start).

Each check runs a fresh interpreter, so an earlier test's imports cannot hide a regression."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[3]

NOT_FOR_APPLY = (
    "invoke",  # paramiko's optional ssh-config helper (imports unittest.mock, asyncio)
    "unittest",
    "cryptography.x509",  # the PKI and CA-bundle checks
    "provisioner.pki",
    "provisioner.destroy",
    "provisioner.upgrade",
    "provisioner.snapshot",
    "provisioner.lab",
    "provisioner.phases.cluster",
    "berth.lb",
    "berth.ingress",
    "provisioner.output.timeline",  # only with --timeline: its XML escaping loads http, ssl
    "http",
    "ssl",
)


def _ssh_modules(loaded: set[str]) -> list[str]:
    """The SSH code among ``loaded``: paramiko and berth's paramiko connector."""
    return sorted(
        name for name in loaded
        if name == "paramiko" or name.startswith(("paramiko.", "provisioner.connectors.ssh"))
    )  # fmt: skip


def _modules_after(code: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_apply_with_the_demo_phases_loads_none_of_the_heavy_modules() -> None:
    loaded = _modules_after(
        "from provisioner.cli import main as m\n"
        "m.build_app(m.areas_for(['apply', '-i', 'x.yaml', '--phases', 'demo']))\n"
        "from provisioner.phases.sets import PHASE_SETS\n"
        "PHASE_SETS['demo']()\n"
        "import provisioner.connectors.ssh, provisioner.spec\n"
    )
    assert "provisioner.cli.engine" in loaded
    assert "paramiko" in loaded
    heavy = sorted(
        name for name in loaded for prefix in NOT_FOR_APPLY
        if name == prefix or name.startswith(prefix + ".")
    )  # fmt: skip
    assert heavy == []


def test_apply_through_the_connection_multiplexer_loads_no_paramiko() -> None:
    # the multiplexer holds the SSH connections: a run that talks to it needs no SSH code, and
    # the spec's identity-file check tells a plain OpenSSH key without paramiko
    loaded = _modules_after(
        "from provisioner.cli import main as m\n"
        "m.build_app(m.areas_for(['apply', '-i', 'x.yaml', '--phases', 'demo']))\n"
        "from provisioner.phases.sets import PHASE_SETS\n"
        "PHASE_SETS['demo']()\n"
        "import provisioner.connectors.mux, provisioner.spec, provisioner.verify.run\n"
    )
    assert "provisioner.connectors.mux" in loaded
    assert _ssh_modules(loaded) == []


def test_a_command_run_through_the_multiplexer_loads_no_paramiko() -> None:
    # MuxConnector.run read the default command timeout from the SSH connector's module, which
    # loaded paramiko (~0.1 s of CPU, with every host's thread waiting on the import lock)
    loaded = _modules_after(
        "from pathlib import Path\n"
        "from provisioner.connectors import mux\n"
        "from provisioner.connectors.base import HostName, HostTarget\n"
        "seen = []\n"
        "def call(header, payload, **kw):\n"
        "    seen.append(kw['timeout'])\n"
        "    return {'exit': 0, 'stdout': 'ok', 'stderr': ''}, b''\n"
        "c = mux.MuxConnector(HostTarget(HostName('n1'), '10.0.0.1'), mux.Mux(60, Path('/x')))\n"
        "c._call = call\n"
        "assert c.run('true').stdout == 'ok'\n"
        "assert seen == [1800.0], seen\n"
    )
    assert "provisioner.connectors.mux" in loaded
    assert _ssh_modules(loaded) == []


def test_apply_with_json_output_loads_no_rich() -> None:
    # rich draws the progress display and colours errors: the JSON stream of a run that
    # succeeds needs neither (it was ~30 ms of every start)
    loaded = _modules_after(
        "from provisioner.cli import main as m\n"
        "m.build_app(m.areas_for(['apply', '-i', 'x.yaml', '--output', 'json']))\n"
        "from provisioner.cli.engine import _apply_reporter\n"
        "from provisioner.output.record import RunRecord\n"
        "from provisioner.phases.sets import PHASE_SETS\n"
        "from provisioner.reporting import Event\n"
        "PHASE_SETS['demo']()\n"
        "_apply_reporter('json', 0, RunRecord()).emit(Event('summary', message='plan'))\n"
        "import provisioner.connectors.mux, provisioner.spec\n"
    )
    assert "provisioner.cli.engine" in loaded
    assert sorted(n for n in loaded if n == "rich" or n.startswith("rich.")) == []


def test_paramiko_without_invoke_leaves_invoke_importable_afterwards() -> None:
    loaded = _modules_after(
        "from provisioner.sshlib import paramiko\n"
        "assert paramiko.config.invoke is None, 'paramiko saw invoke'\n"
        "import invoke\n"
        "assert invoke.Context is not None\n"
    )
    assert "invoke" in loaded


@pytest.mark.parametrize(
    ("argv", "areas"),
    [
        (["apply", "-i", "c.yaml"], ("engine",)),
        (["-v", "plan"], ("engine",)),
        (["certs", "status"], ("certs",)),
        (["lab", "up", "3"], ("lab",)),
        (["state", "unlock"], ("locking",)),
        (["inventory", "from-vagrant"], ("spec",)),
        ([], tuple(cli_main.AREAS)),
        (["--help"], tuple(cli_main.AREAS)),
        (["aply"], tuple(cli_main.AREAS)),  # a typo: usage and suggestions from every area
    ],
)
def test_a_command_line_loads_the_area_of_its_command(
    argv: list[str], areas: tuple[str, ...]
) -> None:
    assert cli_main.areas_for(argv) == areas


def test_the_area_table_names_exactly_the_commands_each_area_registers() -> None:
    for area, commands in cli_main.AREAS.items():
        alone = cli_main.build_app([area])
        names = {c.name or c.callback.__name__ for c in alone.registered_commands if c.callback}
        names |= {g.name for g in alone.registered_groups if g.name}
        assert names - {"version"} == set(commands), area
    whole = cli_main.build_app()
    every = {c.name or c.callback.__name__ for c in whole.registered_commands if c.callback}
    every |= {g.name for g in whole.registered_groups if g.name}
    assert every - {"version"} == {c for cs in cli_main.AREAS.values() for c in cs}


def test_the_routed_command_runs_as_the_whole_one_would(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.argv", ["berth", "apply"])
    with pytest.raises(SystemExit) as exited:
        cli_main.main()
    assert exited.value.code == 2  # usage: neither a plan nor -i
    assert "give a saved PLAN or --inventory/-i SPEC" in capsys.readouterr().err
