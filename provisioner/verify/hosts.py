"""Host checks (testinfra over berth's SSH connector): units, ports, key files, certificates,
versions, leftovers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import testinfra.host
from cryptography import x509

from provisioner import hostlayout as layout
from provisioner.connectors.base import Connector, HostTarget
from provisioner.operations.kernel import module_file, sysctl_file
from provisioner.pki import HostFile
from provisioner.verify.testinfra_backend import testinfra_host
from provisioner.verify.units import UnitStates
from provisioner.verify.waiting import SYSTEM_CLOCK, Clock, Deadline, ask_until

CERT_WARN_DAYS = 30
STARTING_WITHIN = 60.0
"""Seconds a component whose unit runs may take to be ready for a host check (its port
listening, berth-dns answering from its first zone): an apply verifies right after its agents
phase, and an agent registers its Node before it listens on its port (on a busy Debian 13 host,
compiling its modules on first start, apply's verify met a control plane's 10250 not listening
yet). A ready component is seen at the first look."""
STARTING_PAUSE = 0.5
"""Seconds between two asks of a host check that waits for its component to start."""


def holds_while_running(
    check: Callable[[], bool], unit_running: bool, *, clock: Clock = SYSTEM_CLOCK
) -> bool:
    """Ask ``check`` until it says yes, for up to :data:`STARTING_WITHIN` seconds, but only
    while the unit behind it runs: a stopped unit's check is looked at once (no minute's wait
    to report what the unit check already found)."""
    return ask_until(
        check,
        bool,
        Deadline.after(STARTING_WITHIN, clock),
        pause=STARTING_PAUSE,
        worth_waiting=lambda _no: unit_running,
    )


def port_listens(
    listening: Callable[[], bool],
    should: bool,
    unit_running: bool,
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> bool:
    """Whether a port listens. One that must listen may still be starting, while its unit
    runs (:func:`holds_while_running`); a port that must stay closed is looked at once."""
    return holds_while_running(listening, should and unit_running, clock=clock)


@dataclass(frozen=True)
class CheckResult:
    """One named check on one host (or ``(cluster)``): passed or not, and why."""

    name: str
    host: str
    ok: bool
    detail: str = ""

    def line(self) -> str:
        mark = "PASS" if self.ok else "FAIL"
        return f"{mark} [{self.host}] {self.name}" + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class HostExpectations:
    """What a healthy host of the cluster looks like."""

    target: HostTarget
    files: tuple[HostFile, ...]
    bundle_id: str
    sans: tuple[str, ...]  # addresses the API serving certificate must cover (control plane)
    # (cluster DNS address, a name in the cluster zone, the address it must resolve to)
    dns: tuple[str, str, str] | None = None
    kernel: bool = False  # a runc node: its modules and sysctls (hostlayout) now and at boot


def unit_checks(
    host: testinfra.host.Host, want: HostExpectations, units: UnitStates
) -> tuple[list[CheckResult], set[str]]:
    """Each berth unit of the host: active and enabled where its roles want it, not running
    elsewhere; the units found running. What it finds goes to ``units`` (the cluster checks'
    waits read it)."""
    name = str(want.target.name)
    results: list[CheckResult] = []
    expected_units = layout.units_for(want.target.roles)
    running_units: set[str] = set()
    for unit in layout.ALL_UNITS:
        service = host.service(unit)
        if unit in expected_units:
            running, enabled = service.is_running, service.is_enabled
            units.found(name, unit, running=running)
            if running:
                running_units.add(unit)
            detail = "" if running and enabled else (
                f"{'active' if running else 'NOT active'}, "
                f"{'enabled' if enabled else 'NOT enabled'}"
            )  # fmt: skip
            results.append(
                CheckResult(f"unit {unit} active+enabled", name, running and enabled, detail)
            )
        else:
            stray = service.is_running
            results.append(
                CheckResult(
                    f"unit {unit} not running",
                    name,
                    not stray,
                    "running where it should not" if stray else "",
                )
            )
    return results, running_units


def host_checks(
    connector: Connector, want: HostExpectations, units: UnitStates | None = None
) -> list[CheckResult]:
    """Every check of one host; what its unit checks find goes to ``units`` too."""
    host = testinfra_host(connector)
    name = str(want.target.name)
    results, running_units = unit_checks(host, want, units or UnitStates())

    def check(check_name: str, ok: bool, detail: str = "") -> None:
        results.append(CheckResult(check_name, name, ok, detail))

    listening = {
        layout.API_PORT: "control-plane" in want.target.roles,
        layout.AGENT_PORT: True,
    }
    owner = {layout.API_PORT: layout.APISERVER, layout.AGENT_PORT: layout.AGENT}
    for port, should in listening.items():

        def now_listening(port: int = port) -> bool:
            return any(
                host.socket(f"tcp://{address}:{port}").is_listening
                for address in ("0.0.0.0", want.target.address)  # noqa: S104 - a probe address
            )

        is_listening = port_listens(now_listening, should, owner[port] in running_units)
        check(
            f"port {port}/tcp {'listening' if should else 'closed'}",
            is_listening == should,
            "" if is_listening == should else ("not listening" if should else "listening"),
        )
    if "control-plane" in want.target.roles:
        for component, port, figure in (
            ("scheduler", layout.SCHEDULER_METRICS_PORT, "scheduler_schedule_attempts_total"),
            ("controller manager", layout.CONTROLLER_MANAGER_METRICS_PORT, "workqueue_depth"),
        ):
            fetch = host.run(
                "/usr/bin/python3 -c 'import sys, urllib.request;"
                f' sys.stdout.write(urllib.request.urlopen("http://127.0.0.1:{port}/metrics",'
                " timeout=5).read().decode())'"
            )
            answered = fetch.rc == 0 and f"# TYPE {figure} " in fetch.stdout
            check(
                f"{component} /metrics answers (127.0.0.1:{port})",
                answered,
                "" if answered else (fetch.stderr.strip()[-200:] or f"no {figure}"),
            )
    if want.dns is not None and layout.DNS in layout.units_for(want.target.roles):
        server, dns_name, address = want.dns
        command = (
            f"PYTHONPATH={layout.SITE} /usr/bin/python3 -m berth.dns.probe {server} {dns_name}"
        )
        probes = []

        def resolves() -> bool:
            probes.append(host.run(command))
            return probes[-1].rc == 0 and address in probes[-1].stdout.split()

        # berth-dns answers SERVFAIL until its first zone from the API (a just-started
        # berth-dns on a busy host): ask again while its unit runs, as for a starting port
        holds_while_running(resolves, layout.DNS in running_units)
        probe = probes[-1]
        answered = probe.stdout.split()
        check(
            f"cluster DNS {server} answers {dns_name}",
            probe.rc == 0 and address in answered,
            ""
            if probe.rc == 0 and address in answered
            else f"got {answered or probe.stderr.strip() or probe.rc}, want {address}",
        )
    for item in want.files:
        f = host.file(item.remote_path)
        if not f.exists:
            check(f"file {item.remote_path}", False, "missing")
            continue
        mode, owner, group = f.mode, f.user, f.group
        ok = mode == item.mode and owner == "root" and group == "root"
        check(
            f"file {item.remote_path} {item.mode:04o} root:root",
            ok,
            "" if ok else f"is {mode:04o} {owner}:{group}",
        )
    for path in (layout.APISERVER_CONFIG, layout.AGENT_CONFIG):
        if path == layout.APISERVER_CONFIG and "control-plane" not in want.target.roles:
            continue
        f = host.file(path)
        ok = f.exists and f.mode == 0o600 and f.user == "root"
        check(f"file {path} 0600 root", ok, "" if ok else "missing or wrong mode/owner")
    current = host.file(layout.CURRENT)
    active = current.linked_to.rpartition("/")[2] if current.is_symlink else ""
    check(
        f"version {want.bundle_id} active",
        active == want.bundle_id,
        ""
        if active == want.bundle_id
        else f"{layout.CURRENT} is {active or 'missing'}; `berth apply` ships this berth",
    )
    complete = host.file(f"{layout.version_dir(active)}/.complete").exists if active else False
    check("active version completely unpacked", complete, "" if complete else "no .complete")
    versions = host.run(f"ls -1A {layout.VERSIONS}").stdout.split()
    others = [v for v in versions if v != active]
    check("no other berth versions left", not others, ", ".join(others))
    python = host.run("/usr/bin/python3 -c 'import sys; print(sys.version.split()[0])'")
    check("python3 is 3.11+", python.stdout.startswith("3.1") and python.stdout[2:4] >= "11",
          python.stdout.strip())  # fmt: skip
    if want.kernel:
        results += kernel_checks(lambda command: host.run(command).stdout, name)
    results += _cert_checks(connector, want)
    return results


def kernel_checks(run: Callable[[str], str], host: str) -> list[CheckResult]:
    """A runc node's kernel modules present and its sysctls set, now and in the files that
    apply them at every boot; ``run`` returns a shell command's output on the host."""
    out: list[CheckResult] = []
    for name, provides in layout.NODE_MODULES:
        here = run(f"[ -e /sys/module/{name} ] || [ -e {provides} ] && echo yes").strip()
        listed = run(f"cat {module_file(name)} 2>/dev/null").split()
        ok = here == "yes" and name in listed
        detail = (
            ""
            if ok
            else ("" if here == "yes" else "not in the kernel; ")
            + ("" if name in listed else f"not in {module_file(name)}")
        )
        out.append(CheckResult(f"kernel module {name} present and loaded at boot", host, ok,
                               detail.strip("; ")))  # fmt: skip
    for key, value in layout.NODE_SYSCTLS:
        path = "/proc/sys/" + key.replace(".", "/")
        now = run(f"cat {path} 2>/dev/null").strip()
        persisted = run(f"cat {sysctl_file(key)} 2>/dev/null").strip()
        ok = now == value and persisted == f"{key} = {value}"
        detail = "" if ok else f"is {now or 'missing'}, at boot: {persisted or 'not set'}"
        out.append(CheckResult(f"sysctl {key}={value} now and at boot", host, ok, detail))
    return out


def _cert_checks(connector: Connector, want: HostExpectations) -> list[CheckResult]:
    name = str(want.target.name)
    out: list[CheckResult] = []
    now = dt.datetime.now(dt.UTC)
    wanted: list[tuple[str, tuple[str, ...]]] = [
        (f"{layout.PKI}/agent-serving.crt", (want.target.address,))
    ]
    if "control-plane" in want.target.roles:
        wanted.append((f"{layout.PKI}/apiserver.crt", want.sans))
    for path, sans in wanted:
        try:
            cert = x509.load_pem_x509_certificate(connector.get(path))
        except (OSError, ValueError) as error:
            out.append(CheckResult(f"certificate {path}", name, False, f"unreadable: {error}"))
            continue
        left = cert.not_valid_after_utc - now
        out.append(
            CheckResult(
                f"certificate {path} valid > {CERT_WARN_DAYS}d",
                name,
                left.days > CERT_WARN_DAYS and cert.not_valid_before_utc <= now,
                f"expires {cert.not_valid_after_utc:%Y-%m-%d} ({left.days}d)",
            )
        )
        covered = _sans(cert)
        missing = [s for s in sans if s not in covered]
        out.append(
            CheckResult(
                f"certificate {path} SANs",
                name,
                not missing,
                f"missing {', '.join(missing)}" if missing else "",
            )
        )
    return out


def _sans(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    names = set(ext.get_values_for_type(x509.DNSName))
    names |= {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}
    return names
