"""berth-ingress on runc nodes: the unit, its kubeconfig, HAProxy among the node packages, and
the ``berth verify`` check against a real HAProxy the controller's proxy runs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from berth.api.ingress import default_class
from berth.api.resources import INGRESSCLASSES
from berth.client.http import HttpClient
from berth.ingress.haproxy import Listen
from berth.ingress.proxy import HaproxyProxy
from berth.ingress.routes import Routes
from provisioner import footprint
from provisioner import hostlayout as layout
from provisioner.commands import Shell
from provisioner.connectors.base import HostName
from provisioner.facts.base import FactSet
from provisioner.facts.files import PathInfo, PathState
from provisioner.facts.packages import Packages
from provisioner.facts.system import Machine, MachineInfo
from provisioner.facts.systemd import UnitState, UnitStates
from provisioner.operations.base import Operation, evaluate
from provisioner.operations.packages import DebPackages
from provisioner.operations.systemd import Service, UnitFile
from provisioner.phases.cluster import hostside
from provisioner.phases.cluster.ingressclass import ensure_ingress_class
from provisioner.spec import ClusterSpec
from provisioner.spec.load import parse_spec
from provisioner.verify.ingress import ingress_checks
from provisioner.workflow.inventory import inventory_from_spec
from tests.harness.fake_client import FakeClient
from tests.harness.op_context import op_context
from tests.harness.ports import free_port
from tests.unit.cluster.test_ha_wiring import Data


def _spec(tmp_path: Path, runtime: str) -> ClusterSpec:
    (tmp_path / "id").write_text("key")
    text = (
        "apiVersion: berth.dev/v1alpha1\nkind: Cluster\nmetadata: {name: i}\nspec:\n"
        "  ssh: {user: root, identityFile: id}\n"
        f"  runtime: {runtime}\n"
        "  hosts:\n    - {name: cp1, address: 10.0.0.11, roles: [control-plane, worker]}\n"
    )
    return parse_spec(text, source=tmp_path / "cluster.yaml")


def test_runc_nodes_run_berth_ingress_with_its_own_kubeconfig(tmp_path: Path) -> None:
    assert "haproxy" in layout.NODE_PACKAGES
    assert layout.INGRESS in layout.TEARDOWN_UNITS
    spec = _spec(tmp_path, "runc")
    data = Data(spec, inventory_from_spec(spec), tmp_path / "cache", tmp_path / "state")
    ops = hostside.ingress_ops(data, data.inventory.host("cp1"))
    unit = next(op for op in ops if isinstance(op, UnitFile))
    assert unit.name == layout.INGRESS
    assert (
        b"ExecStart=/usr/bin/python3 -m berth.ingress"
        b" --kubeconfig /etc/berth/kubeconfigs/ingress.conf --state-dir /run/berth/ingress"
    ) in unit.content
    assert b"RuntimeDirectoryMode=0700" in unit.content
    assert any(isinstance(op, Service) and op.name == layout.INGRESS for op in ops)
    simulated = _spec(tmp_path, "simulated")
    sim = Data(simulated, inventory_from_spec(simulated), tmp_path / "c", tmp_path / "s")
    assert hostside.ingress_ops(sim, sim.inventory.host("cp1")) == ()


def _local_spec(tmp_path: Path) -> ClusterSpec:
    """One control-plane host on 127.0.0.1, where the tests run their HAProxy."""
    text = (
        "apiVersion: berth.dev/v1alpha1\nkind: Cluster\nmetadata: {name: v}\nspec:\n"
        "  ssh: {user: root, identityFile: id}\n"
        "  hosts:\n    - {name: n1, address: 127.0.0.1, roles: [control-plane, worker]}\n"
    )
    (tmp_path / "id").write_text("key")
    return parse_spec(text, source=tmp_path / "cluster.yaml")


def test_verify_finds_the_controllers_404_on_both_ports(tmp_path: Path) -> None:
    spec = _local_spec(tmp_path)
    http, https = free_port(), free_port()
    failed = ingress_checks(spec, http_port=http, https_port=https, within=0)
    assert [r.ok for r in failed] == [False, False]

    async def scenario() -> list[bool]:
        proxy = HaproxyProxy(tmp_path / "state", listen=Listen("127.0.0.1", http, https))
        proxy.prepare()
        try:
            assert (await proxy.apply(Routes())).ok
            for _ in range(100):
                results = await asyncio.to_thread(
                    ingress_checks, spec, http_port=http, https_port=https
                )
                if all(r.ok for r in results):
                    break
                await asyncio.sleep(0.05)
            return [r.ok for r in results]
        finally:
            await proxy.stop()

    assert asyncio.run(scenario()) == [True, True]


def test_verify_waits_for_a_controller_that_is_still_starting(tmp_path: Path) -> None:
    """verify follows the apply at once: a controller whose listeners come up a moment after
    verify asked the first time passes (it used to fail on the first refused connection)."""
    spec = _local_spec(tmp_path)
    http, https = free_port(), free_port()

    async def scenario() -> list[bool]:
        asked = asyncio.create_task(
            asyncio.to_thread(ingress_checks, spec, http_port=http, https_port=https, within=60)
        )
        await asyncio.sleep(0.5)  # verify has asked (and been refused) before HAProxy listens
        proxy = HaproxyProxy(tmp_path / "state", listen=Listen("127.0.0.1", http, https))
        proxy.prepare()
        try:
            assert (await proxy.apply(Routes())).ok
            return [r.ok for r in await asked]
        finally:
            await proxy.stop()

    assert asyncio.run(scenario()) == [True, True]


def test_the_default_berth_ingress_class_is_created_once_on_runc_clusters(tmp_path: Path) -> None:
    api = FakeClient()
    client = cast(HttpClient, api)
    said: list[str] = []
    runc, simulated = _spec(tmp_path, "runc"), _spec(tmp_path, "simulated")

    async def body() -> None:
        assert await ensure_ingress_class(client, simulated, dry_run=False, report=said.append) == 0
        assert await ensure_ingress_class(client, runc, dry_run=True, report=said.append) == 1
        assert api.objects(INGRESSCLASSES) == []
        assert await ensure_ingress_class(client, runc, dry_run=False, report=said.append) == 1
        (made,) = api.objects(INGRESSCLASSES)
        assert made["spec"]["controller"] == "berth.dev/ingress-haproxy"
        assert default_class([made]) == "berth"
        assert await ensure_ingress_class(client, runc, dry_run=False, report=said.append) == 0

    asyncio.run(body())


def _commands(op: Operation, values: dict[Any, Any]) -> list[str]:
    outcome = evaluate(op, op_context(values))
    return [c.render() for c in outcome.commands if isinstance(c, Shell)]


def test_debians_haproxy_unit_is_masked_before_install_and_stopped_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mask, stopped = hostside.stock_haproxy_ops()
    unit = "/etc/systemd/system/haproxy.service"
    absent = {PathInfo((unit,)): {unit: None}}
    assert _commands(mask, absent) == [f"ln -sfnT /dev/null {unit}"]
    linked = PathState("symlink", 0o777, "root", "root", 9, target="/dev/null")
    assert _commands(mask, {PathInfo((unit,)): {unit: linked}}) == []
    states = UnitStates(("haproxy.service",))
    running = UnitState("masked", "active", "running", "masked", False)
    assert _commands(stopped, {states: {"haproxy.service": running}}) == [
        "systemctl stop haproxy.service"
    ]
    idle = UnitState("masked", "inactive", "dead", "masked", False)
    assert _commands(stopped, {states: {"haproxy.service": idle}}) == []
    assert unit in footprint.SHARED_PATHS  # destroy removes the mask it made

    # in a runc node's software: the mask before the packages, the stop after them (the host's
    # facts, its release's apt and the smoke image stubbed: only the order is under test)
    spec = _spec(tmp_path, "runc")
    facts = FactSet("cp1")
    facts.put(Machine(), MachineInfo("cp1", "x86_64", "6.1"))
    installed: dict[str, str | None] = dict.fromkeys(layout.NODE_PACKAGES, "1.0")
    facts.put(Packages(), installed)

    class WithFacts(Data):
        def host_facts(self, host: HostName, wanted: Any) -> FactSet:
            return facts

    class NoDebs:
        def __init__(self, *_args: Any, **_kw: Any) -> None: ...

        def resolve(self, *_args: Any) -> list[str]:
            return []

        def fetch(self, *_args: Any, **_kw: Any) -> tuple[()]:
            return ()

    image = SimpleNamespace(reference="smoke:1", archive=tmp_path / "img.tar", ref_name="smoke")
    monkeypatch.setattr(hostside, "smoke_image", lambda cache_dir=None: image)
    monkeypatch.setattr(hostside, "DebCache", NoDebs)
    monkeypatch.setattr(hostside, "host_platform", lambda *_a: SimpleNamespace(codename="bookworm"))
    data = WithFacts(spec, inventory_from_spec(spec), tmp_path / "cache", tmp_path / "state")
    ops = list(hostside.node_software_ops(data, data.inventory.host("cp1")))
    packages = next(i for i, op in enumerate(ops) if isinstance(op, DebPackages))
    assert ops.index(mask) < packages < ops.index(stopped)
