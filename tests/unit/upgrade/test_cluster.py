"""The SSH side of the upgrade against fake connectors (no sockets)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from berth.client import errors as api_errors
from provisioner.artifacts.berth_bundle import Bundle
from provisioner.connectors.base import CommandResult, HostTarget
from provisioner.errors import OperationError
from provisioner.platforms import Platform
from provisioner.spec import load_spec
from provisioner.state import ClusterState
from provisioner.upgrade import cluster as upgrade_cluster
from provisioner.upgrade.cluster import SshClusterOps, parse_unit_probe, unit_probe
from tests.harness.fake_connector import FakeConnector

NEW = "0.2.0-bbbbbbbbbbbb"
OLD = "0.1.0-aaaaaaaaaaaa"
SPEC = """\
apiVersion: berth.dev/v1alpha1
kind: Cluster
metadata: {name: demo}
spec:
  version: 0.2.0
  ssh: {user: root, identityFile: id, hostKeyPolicy: accept-new}
  hosts:
    - {name: cp1, address: 10.231.9.11, roles: [control-plane, worker]}
    - {name: w1, address: 10.231.9.12, roles: [worker]}
  datastore: {type: sqlite}
"""


def test_the_unit_probe_reads_states_and_mapped_bundles() -> None:
    script = unit_probe(("berth-apiserver.service", "berth-agent.service"))
    assert "/proc/$p/maps" in script
    assert "systemctl is-active berth-agent.service" in script
    output = (
        "@unit berth-apiserver.service active\n"
        f"/opt/berth/versions/{NEW}\n"
        "@unit berth-agent.service activating\n"
    )
    states, bundles = parse_unit_probe(output)
    assert states == {"berth-apiserver.service": "active", "berth-agent.service": "activating"}
    assert bundles == {
        "berth-apiserver.service": frozenset({NEW}),
        "berth-agent.service": frozenset(),
    }


def platform_answers(codename: str = "bookworm") -> list[tuple[str, CommandResult]]:
    """What a host says of its release and python3 (each host gets its own bundle)."""
    version, python = {"bookworm": ("12", "3.11.2"), "trixie": ("13", "3.13.5")}[codename]
    release = f'ID=debian\nVERSION_ID="{version}"\nVERSION_CODENAME={codename}\n'
    return [
        ("cat /etc/os-release", CommandResult(0, release, "")),
        ("python3 -V", CommandResult(0, f"/usr/bin/python3\nPython {python}\n", "")),
    ]


def bundle_facts(installed: set[str]) -> Callable[[str], CommandResult | None]:
    """Answers the engine's fact round-trip for a bundle's ``.complete`` marker: present for
    the bundle ids in ``installed`` (a set the test may change), absent otherwise."""

    def respond(script: str) -> CommandResult | None:
        framed = re.search(r"'@@(\w+) 0'", script)
        if framed is None or "find " not in script:
            return None
        token = framed.group(1)
        rows = "".join(
            f"P\t/opt/berth/versions/{bundle}/.complete\tf\t644\troot\troot\t0\t\n"
            for bundle in sorted(installed)
            if f"/opt/berth/versions/{bundle}/.complete" in script
        )
        return CommandResult(0, f"@@{token} 0\n{rows}\n@@{token} 0 end 0\n", "")

    return respond


@pytest.fixture
def ops(tmp_path: Path) -> tuple[SshClusterOps, dict[str, FakeConnector]]:
    spec_path = tmp_path / "cluster.yaml"
    spec_path.write_text(SPEC)
    (tmp_path / "id").write_text("not a key")
    conns = {
        "cp1": FakeConnector("cp1", responses=[
            *platform_answers(),
            ("readlink", CommandResult(0, f"versions/{OLD}\n", "")),
            ("journalctl", CommandResult(0, "cp1: agent crashed\n", "")),
        ]),
        "w1": FakeConnector("w1", responses=[
            *platform_answers(),
            ("readlink", CommandResult(1, "", "no such file")),
            ("systemctl restart", CommandResult(0, "1763773200.250000000\n", "")),
        ]),
    }  # fmt: skip

    def connect(target: HostTarget) -> FakeConnector:
        return conns[target.name]

    state = ClusterState(tmp_path / "state")
    bundle = Bundle(NEW, tmp_path / "bundle.tar")
    cluster = SshClusterOps(
        load_spec(spec_path), state, bundle=bundle, cache_dir=tmp_path / "cache", connect=connect
    )
    return cluster, conns


def test_running_reads_the_current_symlink(
    ops: tuple[SshClusterOps, dict[str, FakeConnector]],
) -> None:
    cluster, _ = ops
    assert cluster.running() == {"cp1": OLD, "w1": None}
    assert cluster.target == NEW
    cluster.close()


def test_switch_checks_the_bundle_swaps_the_link_atomically_and_restarts_the_units(
    ops: tuple[SshClusterOps, dict[str, FakeConnector]],
) -> None:
    cluster, conns = ops
    at = cluster.switch("w1", NEW)
    assert at == dt.datetime(2025, 11, 22, 1, 0, 0, 250000, tzinfo=dt.UTC)  # the host's clock
    (command,) = conns["w1"].commands
    assert command.startswith(f"test -f /opt/berth/versions/{NEW}/.complete && ln -sfn")
    assert "mv -fT /opt/berth/.current.berth-upgrade /opt/berth/current" in command
    assert command.endswith(
        "date +%s.%N && systemctl restart berth-agent.service berth-dns.service"
    )
    with pytest.raises(OperationError, match="cp1: no clock reading"):
        cluster.switch("cp1", OLD)
    assert (
        conns["cp1"]
        .commands[-1]
        .endswith(
            "systemctl restart berth-apiserver.service berth-controller-manager.service "
            "berth-scheduler.service berth-agent.service berth-dns.service"
        )
    )
    assert "cp1: agent crashed" in cluster.logs("cp1")
    assert "-u berth-agent.service" in conns["cp1"].commands[-1]
    cluster.close()


def test_a_previous_bundle_gone_from_host_and_cache_is_a_clear_error(
    ops: tuple[SshClusterOps, dict[str, FakeConnector]],
) -> None:
    cluster, conns = ops
    conns["w1"].responder = bundle_facts(set())  # no marker: the bundle is not there
    with pytest.raises(OperationError, match=f"bundle {OLD} is not on the host and not in"):
        cluster.install("w1", OLD)
    cluster.close()


def test_installing_uploads_and_unpacks_beside_the_active_bundle_once(
    ops: tuple[SshClusterOps, dict[str, FakeConnector]], tmp_path: Path
) -> None:
    cluster, conns = ops
    (tmp_path / "bundle.tar").write_bytes(b"tar bytes")
    installed: set[str] = set()
    conns["w1"].responder = bundle_facts(installed)
    conns["w1"].responses = [*platform_answers(), ("tar -C", CommandResult(0, "", ""))]
    cluster.install("w1", NEW)
    (upload,) = conns["w1"].uploads
    assert upload.path == f"/opt/berth/incoming/{NEW}.tar.gz"
    # applied the way the engine applies it: the upload keeps its owner and group
    assert (upload.mode, upload.owner, upload.group) == (0o600, "root", "root")
    assert (
        f"mv -T /opt/berth/versions/{NEW}.partial /opt/berth/versions/{NEW}"
        in (conns["w1"].commands[-1])
    )
    installed.add(NEW)  # the marker is there now
    cluster.install("w1", NEW)
    assert len(conns["w1"].uploads) == 1
    cluster.close()


def test_a_host_of_another_release_is_shipped_the_bundle_of_its_own_python(
    ops: tuple[SshClusterOps, dict[str, FakeConnector]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Upgrading a mixed cluster: the Debian 13 worker gets the release's cp313 tar (built on
    demand, same id), not the cp311 one the Debian 12 control plane gets."""
    cluster, conns = ops
    built: list[tuple[str, str]] = []

    def fake_build(cache: Path, *, version: str, ident: str, platform: Platform) -> Bundle:
        built.append((ident, platform.abi))
        path = tmp_path / f"{ident}-{platform.abi}.tar.gz"
        path.write_bytes(platform.abi.encode())
        return Bundle(ident, path, platform.abi)

    monkeypatch.setattr(upgrade_cluster, "build_bundle", fake_build)
    (tmp_path / "bundle.tar").write_bytes(b"cp311")
    conns["w1"].responder = conns["cp1"].responder = bundle_facts(set())
    conns["w1"].responses = [*platform_answers("trixie"), ("tar -C", CommandResult(0, "", ""))]
    conns["cp1"].responses = [*platform_answers(), ("tar -C", CommandResult(0, "", ""))]
    cluster.install("w1", NEW)
    cluster.install("cp1", NEW)
    assert built == [(NEW, "cp313")]
    assert [u.content for u in conns["w1"].uploads] == [b"cp313"]
    assert [u.content for u in conns["cp1"].uploads] == [b"cp311"]
    cluster.close()


def test_api_calls_wait_out_an_unreachable_api_server_but_not_a_refusal(
    ops: tuple[SshClusterOps, dict[str, FakeConnector]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unreachable (status 0: the API server restarting, or the VIP moving to another host)
    is retried until the gate's deadline; a 4xx answer is final. A lab HA upgrade failed on
    one Unreachable cordon PATCH through the VIP, never retried."""
    cluster, _ = ops
    monkeypatch.setattr(cluster, "_admin", lambda: None)
    monkeypatch.setattr("provisioner.upgrade.cluster.time.sleep", lambda _seconds: None)
    failures: list[api_errors.ApiError] = [
        api_errors.Unreachable("PATCH /api/v1/nodes/n1: "),
        api_errors.Unreachable("PATCH /api/v1/nodes/n1: timed out"),
    ]
    calls = []

    async def cordon(_client: object) -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "cordoned"

    assert cluster._api_retrying(cordon) == "cordoned"
    assert len(calls) == 3

    async def invalid(_client: object) -> str:
        calls.append(1)
        raise api_errors.from_status(422, None)

    with pytest.raises(api_errors.ApiError) as refused:
        cluster._api_retrying(invalid)
    assert refused.value.status == 422
    assert len(calls) == 4
    cluster.close()
