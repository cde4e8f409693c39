"""Golden tables for every operation: (args, host state) -> exact commands, or a no-op reason.

Each ``golden/<Operation>/<case>.yaml`` holds either ``op`` + ``args`` or a list ``ops`` applied in
order with one shared run state, the simulated ``host`` state, optionally the starting ``run``
state, and the expected ``commands`` (as :meth:`describe` prints them), ``noop`` reason or
``error``. Every case is then applied to the simulated host and planned again: the second run must
yield nothing ("run twice, the second yields nothing").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.commands import sha256_hex
from provisioner.connectors.base import HostName
from provisioner.errors import OperationError
from provisioner.operations import files, kernel, packages, systemd, users
from provisioner.operations.base import HostRun, OpContext, Operation, Outcome, evaluate
from tests.unit.operations.simhost import SimHost

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(GOLDEN.glob("*/*.yaml"))
OPS: dict[str, type[Operation]] = {
    cls.__name__: cls
    for module in (files, systemd, packages, users, kernel)
    for cls in vars(module).values()
    if isinstance(cls, type) and issubclass(cls, Operation) and cls is not Operation
}


def _arg(key: str, value: Any, tmp: Path) -> Any:
    if key == "content":
        return str(value).encode()
    if key == "mode":
        return int(str(value), 8)
    if key == "debs":
        debs = []
        for d in value:
            source = tmp / f"{d['name']}.deb"
            body = f"Package: {d['name']}\nVersion: {d['version']}\n".encode()
            source.write_bytes(body)
            debs.append(packages.Deb(d["name"], d["version"], sha256_hex(body), source))
        return tuple(debs)
    if isinstance(value, list):
        return tuple(value)
    return value


def _build(spec: dict[str, Any], tmp: Path) -> Operation:
    args = {k: _arg(k, v, tmp) for k, v in (spec.get("args") or {}).items()}
    return OPS[spec["op"]](**args)


def _plan(host: SimHost, ops: list[Operation], run: HostRun) -> list[Outcome]:
    outcomes = []
    for op in ops:
        ctx = OpContext(HostName("sim"), host.facts(op.facts()), run)
        outcome = evaluate(op, ctx)
        for command in outcome.commands:
            host.execute(command)
        outcomes.append(outcome)
    return outcomes


def test_every_operation_has_golden_cases() -> None:
    covered = {case.parent.name for case in CASES}
    assert set(OPS) <= covered, f"operations without golden cases: {sorted(set(OPS) - covered)}"


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.stem}" for c in CASES])
def test_golden(case: Path, tmp_path: Path) -> None:
    data = yaml.safe_load(case.read_text())
    specs = data.get("ops") or [{"op": case.parent.name, "args": data.get("args")}]
    ops = [_build(spec, tmp_path) for spec in specs]
    host = SimHost.from_data(data.get("host") or {})
    start = data.get("run") or {}
    run = HostRun(set(start.get("changed", [])), bool(start.get("pending_daemon_reload")))
    if "error" in data:
        with pytest.raises(OperationError, match=data["error"]):
            _plan(host, ops, run)
        return

    outcomes = _plan(host, ops, run)

    assert [c.describe() for o in outcomes for c in o.commands] == data.get("commands", [])
    if "noop" in data:
        assert [o.noop_reason for o in outcomes] == [data["noop"]]
    if "pending_daemon_reload_after" in data:
        assert run.pending_daemon_reload is data["pending_daemon_reload_after"]
    second = _plan(host, ops, HostRun())
    assert [c.describe() for o in second for c in o.commands] == []
    assert all(o.noop_reason for o in second)


def test_debs_shipped_as_one_tar_land_under_their_digests_and_the_tar_is_gone(
    tmp_path: Path,
) -> None:
    host = SimHost.from_data({})
    debs = _arg(
        "debs", [{"name": "hello", "version": "1"}, {"name": "tree", "version": "2"}], tmp_path
    )
    op = packages.DebPackages(debs)
    _plan(host, [op], HostRun())
    shipped = {
        p: e.content for p, e in host.paths.items() if p.startswith(packages.ARTIFACT_DIR + "/")
    }
    assert shipped == {d.remote_path: d.source.read_bytes() for d in debs}


@pytest.mark.parametrize("name", ["../../etc/passwd", "a b", "-rf", "x;reboot", "UPPER", ""])
def test_an_unsynced_mark_is_never_made_from_a_name_that_is_not_a_package_name(name: str) -> None:
    # the marks are files named after packages: a name that is a path (or an option, or shell
    # syntax) would touch and then remove a file outside the marks' directory
    with pytest.raises(ValueError, match="not a package name"):
        packages.install_synced(("/var/lib/berth/artifacts/x.deb",), (name,))
