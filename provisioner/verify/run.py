"""``berth verify``: host checks on every host (in parallel, over the spec's SSH settings) plus the
cluster checks through the API; a readable report, JSON, or JUnit XML."""

from __future__ import annotations

import ipaddress
import json
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from provisioner.clusterapi import admin_kubeconfig_path
from provisioner.connectors.base import Connector, HostTarget
from provisioner.errors import ProvisionerError, VerifyError
from provisioner.pki import files_for_host
from provisioner.spec import ClusterSpec
from provisioner.state import ClusterState
from provisioner.verify.cluster import Probe, cluster_checks
from provisioner.verify.hosts import CheckResult, HostExpectations, host_checks
from provisioner.verify.units import UnitLook, UnitStates, UnitWatch
from provisioner.workflow.inventory import inventory_from_spec

ConnectFn = Callable[[HostTarget], Connector]


def _connect(target: HostTarget) -> Connector:
    from provisioner.connectors.ssh import SSHConnector  # noqa: PLC0415 - paramiko on use only

    return SSHConnector(target).connect()


@dataclass
class VerifyReport:
    """Every check's result, in order: hosts first, then the cluster."""

    results: list[CheckResult] = field(default_factory=list)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.ok]

    @property
    def ok(self) -> bool:
        return not self.failed

    def lines(self, *, verbose: bool = True) -> list[str]:
        shown = self.results if verbose else self.failed
        summary = (
            f"verify: {len(self.results) - len(self.failed)}/{len(self.results)} checks passed"
        )
        return [r.line() for r in shown] + [summary]

    def to_json(self) -> str:
        return json.dumps({"ok": self.ok, "checks": [asdict(r) for r in self.results]}, indent=1)

    def to_junit(self) -> bytes:
        suites = ET.Element("testsuites")
        by_host: dict[str, list[CheckResult]] = {}
        for r in self.results:
            by_host.setdefault(r.host, []).append(r)
        for host, results in by_host.items():
            failures = sum(1 for r in results if not r.ok)
            suite = ET.SubElement(
                suites, "testsuite", name=f"berth-verify.{host}", tests=str(len(results)),
                failures=str(failures), errors="0",
            )  # fmt: skip
            for r in results:
                case = ET.SubElement(suite, "testcase", classname=host, name=r.name)
                if not r.ok:
                    failure = ET.SubElement(case, "failure", message=r.detail or "failed")
                    failure.text = r.line()
                elif r.detail:
                    ET.SubElement(case, "system-out").text = r.detail
        xml: bytes = ET.tostring(suites, encoding="utf-8", xml_declaration=True)
        return xml

    def raise_if_failed(self) -> None:
        if self.failed:
            raise VerifyError(
                f"{len(self.failed)} check(s) failed: "
                + "; ".join(f"[{r.host}] {r.name}" for r in self.failed),
                hint="fix the hosts (or run `berth apply` again) and re-run `berth verify`",
            )


def expectations(spec: ClusterSpec, state: ClusterState, bundle_id: str) -> list[HostExpectations]:
    inventory = inventory_from_spec(spec, known_hosts=state.known_hosts)
    sans = tuple(dict.fromkeys([spec.api_endpoint, *(h.address for h in spec.control_plane_hosts)]))
    network = spec.spec.network
    # the kubernetes Service holds the first address of the service CIDR
    dns = (
        str(network.cluster_dns),
        f"kubernetes.default.svc.{network.cluster_domain}",
        str(next(ipaddress.ip_network(str(network.service_cidr)).hosts())),
    )
    return [
        HostExpectations(
            target=target,
            files=tuple(files_for_host(spec, state, target.name)),
            bundle_id=bundle_id,
            sans=sans,
            dns=dns,
            kernel=spec.spec.runtime == "runc",
        )
        for target in inventory.hosts
    ]


PROBE_WITHIN = 45
"""Seconds a host's probe may wait for every smoke pod to answer through the Service; it stops
as soon as every pod answered. A lab HA apply at load ~45 on the 2-core CI machine had every
node's answers in 2.2-2.6 s (the check's detail says how long each took). It was 30 s, then 90 s
after an HA apply failed it under load, but that failure was two nodes given the same pod
range (node IPAM, fixed since), which no wait cures; 45 s keeps a wide margin for load."""

PROBE_SCRIPT = f"""
import collections, json, sys, time, urllib.request
url, want = sys.argv[1], int(sys.argv[2])
counts = collections.Counter()
deadline = time.monotonic() + {PROBE_WITHIN}
while time.monotonic() < deadline and len([k for k in counts if not k.startswith("error")]) < want:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            counts[answer.read(200).decode(errors="replace").strip()] += 1
        time.sleep(0.02)  # thousands of back-to-back requests only load a busy host
    except Exception as error:
        counts["error: " + type(error).__name__] += 1
        time.sleep(0.3)
print(json.dumps(counts))
"""
"""Runs on a host: GET the URL until ``want`` distinct bodies answered (PROBE_WITHIN s at
most)."""


def ssh_probe(targets: list[HostTarget], connect: ConnectFn) -> Probe:
    """A :data:`~provisioner.verify.cluster.Probe` that runs :data:`PROBE_SCRIPT` over SSH."""
    by_name: dict[str, HostTarget] = {t.name: t for t in targets}

    def probe(host: str, url: str, expected: int) -> dict[str, int]:
        try:
            connector = connect(by_name[host])
        except ProvisionerError as error:
            return {f"error: {error.message}": 1}
        try:
            command = shlex.join(["python3", "-c", PROBE_SCRIPT, url, str(expected)])
            result = connector.run(command, timeout=PROBE_WITHIN + 60)
            if not result.ok:
                return {f"error: {result.stderr.strip()[-200:]}": 1}
            counts: dict[str, int] = json.loads(result.stdout)
            return counts
        finally:
            connector.close()

    return probe


def ssh_unit_look(targets: list[HostTarget], connect: ConnectFn) -> UnitLook:
    """A :data:`~provisioner.verify.units.UnitLook` over SSH: ``systemctl show`` of the unit's
    state and main PID (None when the host cannot be asked)."""
    by_name: dict[str, HostTarget] = {t.name: t for t in targets}

    def look(host: str, unit: str) -> tuple[str, str] | None:
        target = by_name.get(host)
        if target is None:
            return None
        try:
            connector = connect(target)
        except ProvisionerError:
            return None
        try:
            command = shlex.join(
                ["systemctl", "show", "-p", "ActiveState", "-p", "ExecMainPID", unit]
            )
            result = connector.run(command, timeout=60)
        except (ProvisionerError, OSError):
            return None
        finally:
            connector.close()
        if not result.ok:
            return None
        shown = dict(line.partition("=")[::2] for line in result.stdout.splitlines())
        return shown.get("ActiveState", ""), shown.get("ExecMainPID", "")

    return look


def verify(
    spec: ClusterSpec,
    state: ClusterState,
    *,
    bundle_id: str,
    smoke: bool = True,
    connect: ConnectFn = _connect,
    parallel: int = 16,
) -> VerifyReport:
    """Run every host check and every cluster check; never raises for a failed check."""
    wanted = expectations(spec, state, bundle_id)

    def one(want: HostExpectations) -> list[CheckResult]:
        try:
            connector = connect(want.target)
        except ProvisionerError as error:
            return [CheckResult("reachable over SSH", want.target.name, False, error.message)]
        try:
            return host_checks(connector, want, units)
        finally:
            connector.close()

    report = VerifyReport()
    probe = ssh_probe([w.target for w in wanted], connect)
    units = UnitStates()  # the host checks' findings, read by the cluster checks' waits
    # a cluster check waiting for a component still starting looks at its unit on the host
    # when its first minute is up, and goes on while the unit starts (a slow or emulated host)
    watch = UnitWatch(ssh_unit_look([w.target for w in wanted], connect))
    # the host checks (dozens of commands per host over SSH) and the cluster checks (the API,
    # the smoke pods and Service) do not depend on each other: they run at the same time, and
    # the report still lists the hosts' results first
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(wanted))) + 1) as pool:
        cluster = pool.submit(
            cluster_checks,
            admin_kubeconfig_path(state),
            spec,
            smoke=smoke,
            probe=probe,
            units=units,
            watch=watch,
        )
        for results in pool.map(one, wanted):
            report.results += results
        report.results += cluster.result()
    return report


def write_junit(report: VerifyReport, path: Path) -> None:
    path.write_bytes(report.to_junit())
