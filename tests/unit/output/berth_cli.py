"""The real ``berth`` command line on the output scenario's hosts, with no machine to reach.

Run as ``python -m tests.unit.output.berth_cli ROOT ARGS...``: everything after ``ROOT`` goes
to ``berth`` itself (``apply -i SPEC --phases scenario --yes`` ...), except
``--fail-scenario``, which adds the scenario's phase that fails on one host.

Only two things differ from an operator's ``berth``: the phase set ``scenario``
(:func:`tests.unit.output.scenario.phases`, writing under ``ROOT``) is offered next to
``cluster`` and ``demo``, and the engine reaches each host through
:class:`~provisioner.connectors.local.LocalConnector` instead of SSH. Spec loading, the cluster
lock, planning, the choice of reporter (live display on a terminal, plain lines without), the
summary table, ``--timeline`` and the exit codes are the command's own.
"""

from __future__ import annotations

import sys
from pathlib import Path

from provisioner.cli import engine as cli_engine
from provisioner.cli.main import main as berth
from provisioner.connectors.base import Connector, HostTarget
from provisioner.connectors.local import LocalConnector
from provisioner.phases.sets import PHASE_SETS
from tests.unit.output.scenario import phases

SPEC = """\
apiVersion: berth.dev/v1alpha1
kind: Cluster
metadata:
  name: scenario
spec:
  ssh:
    identityFile: {identity}
  hosts:
    - {{name: h1, address: 192.0.2.1, roles: [control-plane, worker]}}
    - {{name: h2, address: 192.0.2.2, roles: [worker]}}
    - {{name: h3, address: 192.0.2.3, roles: [worker]}}
"""
"""A three-host spec for the scenario's hosts (the addresses are never contacted)."""


def write_spec(path: Path, identity: Path) -> Path:
    path.write_text(SPEC.format(identity=identity))
    return path


def _local(target: HostTarget) -> Connector:
    return LocalConnector(target.name)


def main() -> None:
    root, args = Path(sys.argv[1]), sys.argv[2:]
    fail = "--fail-scenario" in args  # the scenario's phase that fails on one host
    PHASE_SETS["scenario"] = lambda: phases(root, fail=fail)
    args = [a for a in args if a != "--fail-scenario"]
    # the command takes its connect function from the module's name `connect_fn`: local hosts
    setattr(cli_engine, "connect_fn", lambda persist, no_persist: _local)  # noqa: B010
    sys.argv = ["berth", *args]
    berth()


if __name__ == "__main__":
    main()
