"""The real cluster behind :class:`~provisioner.upgrade.seam.ClusterOps`: hosts over SSH (the
engine's connectors), the API over HTTPS with the admin kubeconfig of the cluster state.

Host layout and units come from :mod:`provisioner.hostlayout` (shared with the install phases),
so an upgrade touches exactly what ``berth apply`` installed: bundles side by side under
``/opt/berth/versions/<id>/``, the active one named by the ``/opt/berth/current`` symlink that
every unit's ``PYTHONPATH`` goes through.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import shlex
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from berth.api.resources import NODES
from berth.client import errors as api_errors
from berth.client.http import HttpClient
from provisioner import hostlayout as layout
from provisioner import platforms
from provisioner import snapshot as datastore_snapshot
from provisioner.artifacts.berth_bundle import Bundle, build_bundle, bundle_path
from provisioner.clusterapi import admin_client, admin_kubeconfig_path, readyz
from provisioner.commands import Raw, Shell
from provisioner.connectors.base import Connector, HostTarget
from provisioner.engine.runner import apply_operation, ssh_connect
from provisioner.errors import OperationError, StateError
from provisioner.facts.system import OsRelease, PythonVersion
from provisioner.operations.cluster import BundleInstalled
from provisioner.platforms import Platform
from provisioner.spec import ClusterSpec
from provisioner.state import ClusterState
from provisioner.upgrade import drain as draining
from provisioner.upgrade.gate import GateFailure, HostObservation, evaluate
from provisioner.workflow.inventory import inventory_from_spec

log = logging.getLogger(__name__)

T = TypeVar("T")
LOG_LINES = 60
REMOTE_SNAPSHOT = f"{layout.VAR}/upgrade-snapshot.db"
DATASTORE_DB = f"{layout.DATASTORE_DIR}/state.db"
_SWITCH_TMP = f"{layout.OPT}/.current.berth-upgrade"

# Run on a host with the active bundle on sys.path: the store's own snapshot code (SQLite online
# backup, integrity-checked, 0600, atomic).
_SAVE = (
    "import asyncio, sys; from berth.store.snapshot import save_sqlite; "
    "info = asyncio.run(save_sqlite(sys.argv[1], sys.argv[2])); print(info.revision, info.sha256)"
)
_RESTORE = (
    "import sys; from berth.store.snapshot import restore_sqlite; "
    "info = restore_sqlite(sys.argv[1], sys.argv[2]); print(info.revision)"
)


def _bundle_of_link(link: str) -> str | None:
    link = link.strip()
    if not link:
        return None
    return link.rstrip("/").rsplit("/", 1)[-1]


def parse_unit_probe(output: str) -> tuple[dict[str, str], dict[str, frozenset[str]]]:
    """Parse :func:`unit_probe`'s output: unit -> is-active state, unit -> bundles mapped."""
    states: dict[str, str] = {}
    bundles: dict[str, frozenset[str]] = {}
    unit = ""
    for line in output.splitlines():
        if line.startswith("@unit "):
            _, unit, state = line.split(" ", 2)
            states[unit] = state.strip()
            bundles[unit] = frozenset()
        elif unit and line.startswith(f"{layout.VERSIONS}/"):
            bundles[unit] = bundles[unit] | {line[len(layout.VERSIONS) + 1 :].strip()}
    return states, bundles


def unit_probe(units: tuple[str, ...]) -> str:
    """One shell script: for each unit its state and the bundles its main process mapped
    (``/proc/<pid>/maps`` shows real paths, so the ``current`` symlink is resolved)."""
    parts = []
    for unit in units:
        q = shlex.quote(unit)
        parts.append(
            f's=$(systemctl is-active {q} 2>/dev/null); echo "@unit {unit} ${{s:-unknown}}"; '
            f"p=$(systemctl show -p MainPID --value {q} 2>/dev/null); "
            f'[ -n "$p" ] && [ "$p" != 0 ] && grep -o '
            f"'{layout.VERSIONS}/[^/]*' /proc/$p/maps 2>/dev/null | sort -u"
        )
    return "; ".join(parts) + "; true"


def host_time(output: str, host: str) -> dt.datetime:
    """The ``date +%s.%N`` line of a command's output as an aware UTC datetime."""
    for line in output.splitlines():
        try:
            return dt.datetime.fromtimestamp(float(line.strip()), tz=dt.UTC)
        except ValueError:
            continue
    raise OperationError(f"{host}: no clock reading in {output[-200:]!r}")


class SshClusterOps:
    """:class:`ClusterOps` for a cluster described by ``spec`` with state ``state``."""

    def __init__(
        self,
        spec: ClusterSpec,
        state: ClusterState,
        *,
        bundle: Bundle,
        cache_dir: Path,
        gate_timeout: float = 120.0,
        connect: Callable[[HostTarget], Connector] = ssh_connect,
    ) -> None:
        self.spec = spec
        self.state = state
        self.bundle = bundle
        self.cache_dir = cache_dir
        self.gate_timeout = gate_timeout
        self._connect = connect
        inventory = inventory_from_spec(spec, known_hosts=state.known_hosts)
        self.targets = {str(t.name): t for t in inventory.hosts}
        self.addresses = {h.name: h.address for h in spec.hosts}
        self._conns: dict[str, Connector] = {}
        self._loop = asyncio.new_event_loop()
        self._client: HttpClient | None = None
        self._platforms: dict[str, Platform] = {}

    # -- plumbing ----------------------------------------------------------------------------

    def close(self) -> None:
        if self._client is not None:
            self._loop.run_until_complete(self._client.close())
        self._loop.close()
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    def __enter__(self) -> SshClusterOps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def conn(self, host: str) -> Connector:
        if host not in self._conns:
            self._conns[host] = self._connect(self.targets[host])
        return self._conns[host]

    def sh(self, host: str, script: str | Shell, what: str, *, timeout: float = 120.0) -> str:
        return self.conn(host).run(script, timeout=timeout).check(host, what).stdout

    def _admin(self) -> HttpClient:
        if self._client is None:
            path = admin_kubeconfig_path(self.state)
            if not path.exists():
                raise StateError(
                    f"no admin kubeconfig at {path}", hint="run `berth kubeconfig -i SPEC`"
                )
            self._client = admin_client(path, timeout=10.0, user_agent="berth-upgrade")
        return self._client

    def _api(self, call: Callable[[HttpClient], Coroutine[Any, Any, T]]) -> T:
        return self._loop.run_until_complete(call(self._admin()))

    def _api_retrying(self, call: Callable[[HttpClient], Coroutine[Any, Any, T]]) -> T:
        """An API call that waits out an API server that is restarting (up to the gate)."""
        deadline = time.monotonic() + self.gate_timeout
        while True:
            try:
                return self._api(call)
            except (OSError, TimeoutError, api_errors.ApiError) as error:
                # an answer below 500 is final; Unreachable (status 0: refused, reset, no
                # answer in time) is what a restarting API server or a moving VIP gives
                if isinstance(error, api_errors.ApiError) and 0 < error.status < 500:
                    raise
                if time.monotonic() > deadline:
                    raise OperationError(f"the API server did not answer: {error}") from None
                time.sleep(1.0)

    def units(self, host: str) -> tuple[str, ...]:
        return layout.units_for(self.targets[host].roles)

    def is_control_plane(self, host: str) -> bool:
        return "control-plane" in self.targets[host].roles

    # -- ClusterOps --------------------------------------------------------------------------

    @property
    def target(self) -> str:
        return self.bundle.id

    def running(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for host in self.targets:
            link = self.conn(host).run(Shell("readlink", "--", layout.CURRENT))
            out[host] = _bundle_of_link(link.stdout) if link.ok else None
        return out

    def datastore_host(self) -> str:
        return next(h for h in self.targets if self.is_control_plane(h))

    def snapshot(self, dest: Path) -> Path:
        if self.spec.uses_etcd:
            # etcdctl snapshot save on the first control-plane member that can, checked with
            # snapshot status (the same as `berth snapshot save`)
            return datastore_snapshot.save(
                self.spec, self.state, output=dest, connect=self._connect
            ).path
        host = self.datastore_host()
        script = Shell(
            "env", f"PYTHONPATH={layout.SITE}", "python3", "-c", _SAVE, DATASTORE_DB,
            REMOTE_SNAPSHOT,
        )  # fmt: skip
        self.sh(host, script, "datastore snapshot")
        data = self.conn(host).get(REMOTE_SNAPSHOT)
        self.sh(host, Shell("rm", "-f", "--", REMOTE_SNAPSHOT), "removing the remote snapshot")
        self.state.write_private(dest, data)
        return dest

    def restore_snapshot(self, source: Path) -> None:
        if self.spec.uses_etcd:
            # every member rebuilt from the snapshot, API servers stopped meanwhile (the same
            # as `berth snapshot restore`)
            datastore_snapshot.restore(
                self.spec, self.state, source, report=log.info, connect=self._connect
            )
        else:
            host = self.datastore_host()
            self.conn(host).put(source.read_bytes(), REMOTE_SNAPSHOT, mode=0o600)
            script = Shell(
                "systemctl", "stop", layout.APISERVER, Raw("&&"),
                "env", f"PYTHONPATH={layout.SITE}", "python3", "-c", _RESTORE, REMOTE_SNAPSHOT,
                DATASTORE_DB, Raw("&&"), "rm", "-f", "--", REMOTE_SNAPSHOT, Raw(";"),
                "systemctl", "start", layout.APISERVER,
            )  # fmt: skip
            self.sh(host, script, "restoring the datastore snapshot")
        # Every watcher (scheduler, controller manager, agents) last saw a revision newer than
        # the restored datastore's: restarted, each lists afresh instead of waiting for a revision
        # the datastore will reuse (pods were left unscheduled). Agents keep their pods running.
        for each in self.spec.hosts:
            restart = [u for u in self.units(each.name) if u != layout.APISERVER]
            self.sh(each.name, Shell("systemctl", "restart", *restart), "restarting watchers")

    def platform(self, host: str) -> Platform:
        """``host``'s platform (release and python3), read from the host: each host is
        shipped the bundle built for its own python3."""
        if host not in self._platforms:
            os_fact, py_fact = OsRelease(), PythonVersion()
            os_run = self.conn(host).run(os_fact.command())
            py_run = self.conn(host).run(py_fact.command())
            os_info = os_fact.parse(os_run.stdout, os_run.exit_code)
            python = py_fact.parse(py_run.stdout, py_run.exit_code)
            if os_info is None:
                raise OperationError(f"{host}: no /etc/os-release: cannot tell the platform")
            try:
                self._platforms[host] = platforms.match(
                    os_info.id,
                    os_info.version_id,
                    os_info.codename,
                    python.version if python is not None else None,
                    pretty_name=os_info.pretty_name,
                )
            except platforms.UnsupportedPlatform as exc:
                raise OperationError(f"{host}: {exc}") from None
        return self._platforms[host]

    def _bundle_for(self, host: str, bundle: str) -> Bundle:
        platform = self.platform(host)
        if bundle == self.bundle.id:
            if self.bundle.abi == platform.abi:
                return self.bundle
            # the release being rolled out, for a host of another python3: built on demand
            version = bundle.rsplit("-", 1)[0]
            return build_bundle(self.cache_dir, version=version, ident=bundle, platform=platform)
        return Bundle(bundle, bundle_path(self.cache_dir, bundle, platform), platform.abi)

    def install(self, host: str, bundle: str) -> None:
        """Unpack ``bundle`` on ``host`` unless it is there complete (the install phases'
        operation, applied through the engine: the same facts, commands and upload owner)."""
        op = BundleInstalled(self._bundle_for(host, bundle))
        try:
            apply_operation(self.conn(host), op)
        except FileNotFoundError:
            raise OperationError(
                f"{host}: bundle {bundle} is not on the host and not in the bundle cache "
                f"({self.cache_dir / 'bundles'})",
                hint="rebuild it with the berth release that made it, or restore the host",
            ) from None

    def remove(self, host: str, bundle: str) -> None:
        directory = layout.version_dir(bundle)
        script = Shell(
            "test", Raw('"$(readlink'), layout.CURRENT, Raw(')"'), "!=", f"versions/{bundle}",
            Raw("&&"), "rm", "-rf", "--", directory,
        )  # fmt: skip
        self.sh(host, script, f"removing bundle {bundle} (refused if it is active)")

    def switch(self, host: str, bundle: str) -> dt.datetime:
        target = f"versions/{bundle}"
        script = Shell(
            "test", "-f", f"{layout.version_dir(bundle)}/.complete", Raw("&&"),
            "ln", "-sfn", target, _SWITCH_TMP, Raw("&&"),
            "mv", "-fT", _SWITCH_TMP, layout.CURRENT, Raw("&&"),
            "date", "+%s.%N", Raw("&&"),
            "systemctl", "restart", *self.units(host),
        )  # fmt: skip
        out = self.sh(host, script, f"switching to {bundle}")
        return host_time(out, host)

    def cordon(self, host: str) -> None:
        self._api_retrying(lambda c: draining.cordon(c, host))

    def drain(self, host: str) -> str:
        timeout = float(self.spec.spec.upgrade.drain_timeout_seconds)
        result = self._api_retrying(lambda c: draining.drain(c, host, timeout=timeout))
        return result.summary()

    def uncordon(self, host: str) -> None:
        self._api_retrying(lambda c: draining.uncordon(c, host))

    def observe(self, host: str) -> HostObservation:
        probe = self.conn(host).run(unit_probe(self.units(host)), timeout=30)
        states, bundles = parse_unit_probe(probe.stdout)
        node: dict[str, Any] | None
        try:
            node = self._api(lambda c: c.get(NODES, host))
        except (OSError, TimeoutError, api_errors.ApiError):
            node = None
        readyz = self.readyz(host) if self.is_control_plane(host) else None
        return HostObservation(states, bundles, node, readyz)

    def readyz(self, host: str) -> tuple[int, str] | None:
        answer = readyz(admin_kubeconfig_path(self.state), self.addresses[host], self.spec.api_port)
        return None if answer.status is None else (answer.status, answer.body)

    def gate(self, host: str, bundle: str, *, since: dt.datetime) -> list[GateFailure]:
        deadline = time.monotonic() + self.gate_timeout
        while True:
            failures = evaluate(
                self.observe(host), bundle=bundle, since=since,
                control_plane=self.is_control_plane(host),
            )  # fmt: skip
            if not failures or time.monotonic() > deadline:
                return failures
            time.sleep(1.0)

    def logs(self, host: str) -> str:
        argv: list[str | Raw] = [
            "journalctl",
            "--no-pager",
            "-o",
            "short-iso",
            "-n",
            str(LOG_LINES),
        ]
        for unit in self.units(host):
            argv += ["-u", unit]
        result = self.conn(host).run(Shell(*argv), timeout=30)
        return result.stdout if result.ok else f"(journalctl failed: {result.stderr.strip()})"
