"""A local multi-host lab: systemd-nspawn hosts on a private bridge, with faults on demand.

>>> lab = Lab("demo")
>>> lab.up(3)                       # n1..n3 booted, sshd answering, cluster.yaml written
>>> lab.hosts[0].address            # e.g. '10.231.1.11'
>>> lab.partition("n1", "n2"); lab.unpartition("n1", "n2")
>>> lab.down()                      # nothing of the lab remains on the machine

Everything the lab makes is recorded in ``<lab dir>/state.json`` *before* it is made, and every
machine-wide name is derived from the lab name, so :meth:`Lab.down` also cleans up after a crash
half-way through :meth:`Lab.up`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from provisioner.errors import LabError
from provisioner.lab import blackholes, boot, cgroups, clusterspec, network, overlay, qemu, subnet
from provisioner.lab.keys import generate_ed25519, known_hosts_line, write_key_pair
from provisioner.lab.locks import file_lock
from provisioner.lab.names import (
    MAX_HOSTS,
    HostName,
    LabName,
    bridge_name,
    cgroup_relpath,
    host_name,
    iface_tag,
    lab_name,
    machine_name,
    netns_name,
    nft_table,
    veth_name,
)
from provisioner.lab.rootfs import default_recipe, ensure_rootfs, parse_releases
from provisioner.lab.state import HostState, LabState
from provisioner.lab.system import (
    mounts_below,
    raise_inotify_limit,
    remove_tree,
    require_kernel_features,
    require_root,
    require_tools,
)
from provisioner.spec.model import Network

DEFAULT_ROOT = Path("/var/lib/berth-lab")
BOOT_TIMEOUT = 60.0  # seconds until every sshd must answer
STOP_TIMEOUT = 20.0  # graceful poweroff before the hard kill
TEARDOWN_GRACE = 5.0
"""``down`` waits this long for the hosts' poweroff: everything of theirs is removed anyway,
and a host whose pods ignore SIGTERM (a container's PID 1 without a handler) would otherwise
hold systemd's final kill, and ``down``, for the whole :data:`STOP_TIMEOUT`."""
NSPAWN_RUN = Path("/run/systemd/nspawn")
CLUSTER_BLOCKS = (Network().pod_cidr, Network().service_cidr)
"""The pod and service blocks of the spec a lab writes (berth's defaults)."""


def labs_root() -> Path:
    """Where labs keep their directories (``BERTH_LAB_ROOT`` overrides)."""
    return Path(os.environ.get("BERTH_LAB_ROOT", str(DEFAULT_ROOT)))


def list_labs(root: Path | None = None) -> list[str]:
    """Names of the labs that exist on this machine (fully or partly set up)."""
    base = root or labs_root()
    return sorted(p.parent.name for p in base.glob("*/state.json"))


@dataclass(frozen=True)
class LabHost:
    """One host of a lab as other code sees it."""

    name: str  # its hostname inside the lab: n1, n2, ...
    address: str  # its IPv4 address on the lab bridge
    netns: str  # its network namespace on the machine (``ip netns``)
    veth: str  # the machine-side end of its cable (on the bridge)
    machine: str  # its systemd-nspawn machine name


@dataclass(frozen=True)
class HostStatus:
    """A host's observed condition."""

    host: LabHost
    running: bool  # its systemd-nspawn runs
    frozen: bool  # its cgroup is frozen (``freeze``)
    cut: bool  # its cable is unplugged (``cut``)
    sshd: bool  # its sshd sent a banner just now
    pid: int | None  # the nspawn process on the machine


class Lab:
    """One named lab on this machine; see the module docstring."""

    KIND = "nspawn"
    PROCESS = "systemd-nspawn"  # what runs a host, as boot failures name it
    SSHD_BANNER_TIMEOUT = 0.5  # seconds a booted host's sshd takes at most to send its banner
    SSHD_PROBE_INTERVAL = 0.05

    def __init__(self, name: str = "demo", *, root: Path | None = None) -> None:
        self.name: LabName = lab_name(name)
        self.dir = (root or labs_root()) / self.name
        self.boot_seconds: float | None = None  # launch until every sshd answered (last boot)

    # ---- paths other code reads -------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        """The state file (JSON) recording everything the lab made."""
        return self.dir / "state.json"

    @property
    def spec_path(self) -> Path:
        """The cluster spec (``cluster.yaml``) describing the lab's hosts."""
        return self.dir / "cluster.yaml"

    @property
    def key_path(self) -> Path:
        """The lab's private SSH key (ed25519, 0600), authorised for root on every host."""
        return self.dir / "id_ed25519"

    @property
    def known_hosts_path(self) -> Path:
        """The hosts' pinned public host keys, OpenSSH known_hosts format."""
        return self.dir / "known_hosts"

    def exists(self) -> bool:
        """Whether this lab has been (at least partly) created and not torn down."""
        return self.state_path.is_file()

    @property
    def state(self) -> LabState:
        """The recorded state (raises :class:`LabError` if the lab does not exist)."""
        if not self.exists():
            raise LabError(f"no lab named {self.name!r}", hint=f"berth lab up --name {self.name}")
        return LabState.load(self.state_path)

    @property
    def subnet(self) -> str:
        """The lab's private network, e.g. ``10.231.1.0/24``."""
        return self.state.subnet

    @property
    def gateway(self) -> str:
        """The bridge's address: the machine's own address on the lab network."""
        return self.state.gateway

    @property
    def hosts(self) -> list[LabHost]:
        """The lab's hosts in order n1, n2, ..."""
        return [_public(h) for h in self.state.hosts.values()]

    def host(self, name: str) -> LabHost:
        """The host called ``name`` (raises :class:`LabError` naming the valid hosts)."""
        hosts = self.state.hosts
        if name not in hosts:
            raise LabError(
                f"lab {self.name!r} has no host {name!r}",
                hint=f"its hosts are {', '.join(hosts) or '(none)'}",
            )
        return _public(hosts[name])

    # ---- lifecycle ----------------------------------------------------------------------------

    def up(
        self,
        count: int = 3,
        *,
        subnet_cidr: str | None = None,
        replace: bool = False,
        timeout: float = BOOT_TIMEOUT,
        unified_cgroups: bool = True,
        releases: Sequence[str] | None = None,
    ) -> None:
        """Boot ``count`` hosts and return once every host's sshd answers.

        ``releases``: each host's Debian release in host order (default: all bookworm; see
        :func:`~provisioner.lab.rootfs.parse_releases`), each booting that release's rootfs.

        Builds (or reuses) the cached rootfs, picks a free /24 unless ``subnet_cidr`` is given, and
        writes the lab key, ``known_hosts`` and ``cluster.yaml``. An existing lab of the same
        name is an error unless ``replace`` (then it is torn down first).
        ``unified_cgroups=False`` boots hosts on cgroup v1 (see :func:`boot.launch`): only for
        tests that need runc to enforce resource limits inside a host.
        """
        require_root()
        self._preflight()
        if not 1 <= count <= MAX_HOSTS:
            raise LabError(f"a lab has 1 to {MAX_HOSTS} hosts, not {count}")
        wanted = subnet.parse_subnet(subnet_cidr, hosts=count) if subnet_cidr else None
        per_host = list(releases) if releases is not None else parse_releases(None, count)
        if len(per_host) != count:
            raise LabError(f"{len(per_host)} release(s) given for {count} host(s)")
        rootfs = self._images(per_host)
        with self._locked():
            if self.exists() or self.dir.exists():
                if not replace:
                    raise LabError(
                        f"lab {self.name!r} already exists ({self.dir})",
                        hint=f"tear it down first (berth lab down --name {self.name}) "
                        "or replace it (--replace)",
                    )
                self._teardown()
            try:
                self._create(
                    count,
                    rootfs={host_name(i + 1): rootfs[r] for i, r in enumerate(per_host)},
                    releases=per_host,
                    wanted=wanted,
                    timeout=timeout,
                    unified_cgroups=unified_cgroups,
                )
            except LabError as exc:
                raise LabError(
                    f"lab {self.name!r}: {exc.message}",
                    hint=exc.hint or f"clean up with: berth lab down --name {self.name}",
                ) from exc
            blackholes.hold(self.dir, CLUSTER_BLOCKS)

    def down(self) -> None:
        """Remove everything the lab made; safe to repeat and after a failed :meth:`up`."""
        require_root()
        with self._locked():
            self._teardown()

    # ---- faults -------------------------------------------------------------------------------

    def stop(self, host: str) -> None:
        """Graceful poweroff of ``host`` (its disk, i.e. its overlay, is kept)."""
        with self._locked():
            state = self.state
            self._stop_host(state.hosts[self.host(host).name], graceful=True)
            state.save(self.state_path)

    def kill(self, host: str) -> None:
        """Power-cut ``host``: SIGKILL its systemd; the host does not shut down cleanly."""
        with self._locked():
            state = self.state
            self._stop_host(state.hosts[self.host(host).name], graceful=False)
            state.save(self.state_path)

    def start(self, host: str, *, timeout: float = BOOT_TIMEOUT) -> None:
        """Boot a stopped or killed ``host`` again; returns once its sshd answers."""
        with self._locked():
            state = self.state
            entry = state.hosts[self.host(host).name]
            if boot.is_running(_process(entry)):
                return
            self._launch(state, [entry])
            self._await_sshd(state, [entry], timeout=timeout)

    def freeze(self, host: str) -> None:
        """Hang ``host``: every process in it stops (connections hang, nothing is refused)."""
        self._set_frozen(host, frozen=True)

    def thaw(self, host: str) -> None:
        """Undo :meth:`freeze`."""
        self._set_frozen(host, frozen=False)

    def cut(self, host: str) -> None:
        """Unplug ``host``'s cable: it can reach no one and no one can reach it."""
        self._set_cable(host, plugged=False)

    def heal(self, host: str) -> None:
        """Plug ``host``'s cable back in."""
        self._set_cable(host, plugged=True)

    def partition(self, a: str, b: str) -> None:
        """Drop all traffic between hosts ``a`` and ``b`` (each still reaches everyone else)."""
        self._set_partition(a, b, partitioned=True)

    def unpartition(self, a: str, b: str) -> None:
        """Undo :meth:`partition` between ``a`` and ``b``."""
        self._set_partition(a, b, partitioned=False)

    # ---- observation --------------------------------------------------------------------------

    def status(self) -> list[HostStatus]:
        """Each host's observed condition (asks each sshd for its banner, briefly)."""
        state = self.state
        result = []
        for entry in state.hosts.values():
            proc = _process(entry)
            running = boot.is_running(proc)
            frozen = running and self._is_frozen(entry)
            cut = network.link_exists(entry.veth) and not network.link_is_up(entry.veth)
            sshd = (
                running
                and not frozen
                and not cut
                and boot.sshd_answers(entry.address, timeout=self.SSHD_BANNER_TIMEOUT)
            )
            result.append(
                HostStatus(
                    host=_public(entry),
                    running=running,
                    frozen=frozen,
                    cut=cut,
                    sshd=sshd,
                    pid=proc.pid if running and proc else None,
                )
            )
        return result

    def partitions(self) -> list[tuple[str, str]]:
        """The host pairs currently partitioned from each other."""
        return list(self.state.partitions)

    def ssh_argv(self, host: str, command: list[str] | None = None) -> list[str]:
        """An ``ssh`` command line logging in to ``host`` as root with the lab key, host key
        checked strictly against the lab's known_hosts."""
        target = self.host(host)
        return [
            "ssh",
            "-i",
            str(self.key_path),
            "-o",
            f"UserKnownHostsFile={self.known_hosts_path}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=10",
            f"root@{target.address}",
            *(command or []),
        ]

    # ---- internals ----------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise operations on this lab, and report OS-level failures as lab errors."""
        try:
            with file_lock(self.dir.parent / ".locks" / f"{self.name}.lock"):
                yield
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise LabError(f"lab {self.name!r}: {exc.strerror or exc}{where}") from exc

    def _preflight(self) -> None:
        """Fail early on what this kind of lab needs from the machine."""
        require_tools()
        require_kernel_features()

    def _images(self, releases: Sequence[str]) -> dict[str, Path]:
        """What each release's hosts boot, built or taken from the cache (release -> path)."""
        return {r: ensure_rootfs(default_recipe(r)).path for r in dict.fromkeys(releases)}

    def _claim_network(
        self, state: LabState, wanted: ipaddress.IPv4Network | None
    ) -> ipaddress.IPv4Network:
        """Pick the lab's /24 and make its bridge (the machine-wide lock held by the caller)."""
        used = subnet.networks_in_use() + subnet.networks_claimed(
            self.dir.parent, except_lab=self.name
        )
        if wanted is not None:
            subnet.check_free(wanted, used)
        net = wanted or subnet.choose_free(used)
        bridge = bridge_name(self.name)
        if network.link_exists(bridge):
            raise LabError(
                f"interface {bridge} (this lab's bridge) already exists on the machine",
                hint=f"a previous lab {self.name!r} was not torn down: "
                f"berth lab down --name {self.name}",
            )
        gateway = subnet.gateway_address(net)
        state.subnet, state.bridge, state.gateway = str(net), bridge, str(gateway)
        state.record("bridge", bridge, self.state_path)
        network.create_bridge(bridge, ipaddress.IPv4Interface(f"{gateway}/{net.prefixlen}"))
        return net

    def _write_spec(self, state: LabState, host_keys: dict[str, str]) -> None:
        """known_hosts (the hosts' pinned keys) and cluster.yaml, once every host is up."""
        known = [known_hosts_line(e.address, host_keys[e.name]) for e in state.hosts.values()]
        clusterspec.write_atomically(self.known_hosts_path, "\n".join(known) + "\n")
        clusterspec.write_atomically(
            self.spec_path,
            clusterspec.render(
                name=self.name,
                hosts=[(e.name, e.address) for e in state.hosts.values()],
                identity_file=self.key_path.name,
                known_hosts_file=self.known_hosts_path.name,
            ),
        )

    def _machine_lock(self) -> Path:
        """The lock for machine-wide choices: subnets, /run/netns."""
        return self.dir.parent / ".locks" / "machine.lock"

    def _create(
        self,
        count: int,
        *,
        rootfs: dict[str, Path],
        releases: Sequence[str],
        wanted: ipaddress.IPv4Network | None,
        timeout: float,
        unified_cgroups: bool,
    ) -> None:
        (self.dir / "hosts").mkdir(parents=True)
        state = LabState(
            name=self.name, rootfs=str(rootfs[host_name(1)]), unified_cgroups=unified_cgroups
        )
        state.save(self.state_path)
        raise_inotify_limit()
        with file_lock(self._machine_lock()):
            net = self._claim_network(state, wanted)
            for index in range(1, count + 1):
                name = host_name(index)
                entry = HostState(
                    name=name,
                    address=str(subnet.host_address(net, index)),
                    netns=netns_name(self.name, name),
                    veth=veth_name(self.name, name),
                    machine=machine_name(self.name, name),
                    release=releases[index - 1],
                )
                state.hosts[name] = entry
                state.record("netns", entry.netns, self.state_path)
                network.create_netns(entry.netns)

        lab_key = generate_ed25519(f"berth-lab-{self.name}")
        write_key_pair(lab_key, self.key_path)
        for entry in state.hosts.values():
            dirs = self._dirs(entry.name)
            state.record("mount", str(dirs.root), self.state_path)
            overlay.mount(rootfs[entry.name], dirs)
            overlay.link_runtime_disk(dirs.root)
            overlay.write_identity(
                dirs.root,
                hostname=entry.name,
                address=ipaddress.IPv4Address(entry.address),
                host_key=generate_ed25519(f"root@{entry.name}"),
                authorized_key=lab_key.public_line,
            )
            state.record("veth", entry.veth, self.state_path)
            network.plug_host(
                netns=entry.netns,
                veth=entry.veth,
                bridge=state.bridge,
                address=ipaddress.IPv4Interface(f"{entry.address}/{net.prefixlen}"),
            )
            relpath = cgroup_relpath(self.name, HostName(entry.name))
            state.record("cgroup", relpath, self.state_path)
            cgroups.create(relpath)

        started = time.monotonic()
        self._launch(state, list(state.hosts.values()))
        self._await_sshd(state, list(state.hosts.values()), timeout=timeout)
        self.boot_seconds = time.monotonic() - started

        self._write_spec(
            state,
            {e.name: overlay.read_host_key(self._dirs(e.name).root) for e in state.hosts.values()},
        )

    def _dirs(self, host: str) -> overlay.HostDirs:
        return overlay.HostDirs(self.dir / "hosts" / host)

    def _launch(self, state: LabState, entries: list[HostState]) -> None:
        for entry in entries:
            dirs = self._dirs(entry.name)
            relpath = cgroup_relpath(self.name, HostName(entry.name))
            cgroups.remove_children(relpath)  # nspawn's dirs from a previous boot
            proc = boot.launch(
                boot.nspawn_argv(
                    root=dirs.root,
                    machine=entry.machine,
                    hostname=entry.name,
                    netns=entry.netns,
                    disk=(dirs.disk, overlay.DISK) if dirs.disk.is_dir() else None,
                ),
                cgroup_procs=cgroups.procs_files(relpath),
                log=dirs.console_log,
                unified_cgroups=state.unified_cgroups,
            )
            entry.pid, entry.pid_start, entry.frozen = proc.pid, proc.start, False
            state.save(self.state_path)

    def _await_sshd(self, state: LabState, entries: list[HostState], *, timeout: float) -> None:
        targets = {
            e.name: (e.address, boot.HostProcess(e.pid or 0, e.pid_start or 0)) for e in entries
        }
        late, dead = boot.wait_sshd(
            targets,
            timeout=timeout,
            banner_timeout=self.SSHD_BANNER_TIMEOUT,
            interval=self.SSHD_PROBE_INTERVAL,
        )
        if not late and not dead:
            return
        problems = [f"{h}: {self.PROCESS} exited during boot" for h in dead]
        problems += [f"{h}: sshd did not answer within {timeout:.0f}s" for h in late]
        first = (dead or late)[0]
        tail, console = self._boot_tail(first)
        raise LabError(
            f"host(s) failed to boot: {'; '.join(problems)}\n--- {first} ---\n{tail}",
            hint=f"full console output: {console}; "
            f"clean up with: berth lab down --name {self.name}",
        )

    def _boot_tail(self, host: str) -> tuple[str, Path]:
        """The last lines a host that failed to boot left (journal, console); and its console."""
        dirs = self._dirs(host)
        root = dirs.root if dirs.root.is_dir() else dirs.upper
        return boot.journal_tail(root, dirs.console_log), dirs.console_log

    def _stop_host(self, entry: HostState, *, graceful: bool) -> None:
        proc = _process(entry)
        relpath = cgroup_relpath(self.name, HostName(entry.name))
        if entry.frozen or self._is_frozen(entry):
            self._write_freezer(entry, frozen=False)
        if boot.is_running(proc) and proc is not None:
            if graceful:
                boot.signal_process(proc, signal.SIGTERM)
            else:
                init = boot.container_init(proc)
                if init is None:
                    boot.signal_process(proc, signal.SIGKILL)
                else:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(init, signal.SIGKILL)
            if not boot.wait_exit(proc, STOP_TIMEOUT):
                boot.signal_process(proc, signal.SIGKILL)
                boot.wait_exit(proc, 5.0)
        _kill_leftovers(relpath)
        cgroups.remove_children(relpath)
        entry.pid = entry.pid_start = None
        entry.frozen = False

    def _is_frozen(self, entry: HostState) -> bool:
        path, frozen_value, _ = cgroups.freezer_file(
            cgroup_relpath(self.name, HostName(entry.name))
        )
        try:
            return path.read_text().strip() in (frozen_value, "FREEZING")
        except OSError:
            return False

    def _write_freezer(self, entry: HostState, *, frozen: bool) -> None:
        path, frozen_value, thawed_value = cgroups.freezer_file(
            cgroup_relpath(self.name, HostName(entry.name))
        )
        wanted = frozen_value if frozen else thawed_value
        path.write_text(wanted)
        deadline = time.monotonic() + 5.0
        while path.read_text().strip() != wanted:  # v1 passes through FREEZING
            if time.monotonic() > deadline:
                raise LabError(f"host {entry.name}: cgroup freezer stuck in {path.read_text()}")
            time.sleep(0.01)

    def _set_frozen(self, host: str, *, frozen: bool) -> None:
        with self._locked():
            state = self.state
            entry = state.hosts[self.host(host).name]
            if frozen and not boot.is_running(_process(entry)):
                raise LabError(f"host {host} is not running", hint=f"berth lab start {host}")
            self._write_freezer(entry, frozen=frozen)
            entry.frozen = frozen
            state.save(self.state_path)

    def _set_cable(self, host: str, *, plugged: bool) -> None:
        with self._locked():
            state = self.state
            entry = state.hosts[self.host(host).name]
            network.set_link(entry.veth, up=plugged)
            entry.cut = not plugged
            state.save(self.state_path)

    def _set_partition(self, a: str, b: str, *, partitioned: bool) -> None:
        if a == b:
            raise LabError(f"cannot partition host {a} from itself")
        with self._locked():
            state = self.state
            first, second = self.host(a), self.host(b)
            pair = (min(first.name, second.name), max(first.name, second.name))
            table = nft_table(self.name)
            if partitioned:
                state.record("nft-table", table, self.state_path)
                network.partition(table, first.veth, second.veth)
                if pair not in state.partitions:
                    state.partitions.append(pair)
            else:
                network.unpartition(table, first.veth, second.veth)
                state.partitions = [p for p in state.partitions if p != pair]
            state.save(self.state_path)

    def _teardown(self) -> None:
        state = LabState.load(self.state_path) if self.state_path.is_file() else None
        if state is None:
            state = LabState(name=self.name)
        # 1. Power off every host at once (sequentially would take a second or two per host).
        cgroups.thaw_all(cgroup_relpath(self.name))  # a frozen host cannot even be killed
        procs: list[tuple[HostState, boot.HostProcess]] = []
        for entry in state.hosts.values():
            proc = _process(entry)
            if boot.is_running(proc) and proc is not None:
                boot.signal_process(proc, signal.SIGTERM)
                procs.append((entry, proc))
        deadline = time.monotonic() + TEARDOWN_GRACE
        for _entry, proc in procs:
            if not boot.wait_exit(proc, max(0.1, deadline - time.monotonic())):
                boot.signal_process(proc, signal.SIGKILL)
                boot.wait_exit(proc, 5.0)
        _kill_leftovers(cgroup_relpath(self.name))
        qemu.kill_all_under(self.dir)  # a VM lab's hosts (whichever class opened the lab)
        # 2. Filesystems, firewall, network, cgroups: recorded resources plus anything named
        #    after this lab (a crash may have come between creating a thing and recording it).
        for mountpoint in mounts_below(self.dir):
            overlay.unmount(mountpoint)
        network.delete_table(nft_table(self.name))
        with file_lock(self._machine_lock()):
            for netns in self._netns_names(state):
                network.delete_netns(netns)
            for link in self._link_names(state):
                network.delete_link(link)
            network.release_netns_dir()
        cgroups.remove(cgroup_relpath(self.name))
        remove_tree(self.dir)
        with file_lock(self._machine_lock()):
            self._remove_nspawn_leftovers(state)
        blackholes.release(self.dir, CLUSTER_BLOCKS)

    def _remove_nspawn_leftovers(self, state: LabState) -> None:
        """nspawn leaves /run/systemd/nspawn/propagate/<machine> (and the empty dirs above it,
        created on first use) behind; remove ours, and the dirs once no lab is left."""
        machines = {entry.machine for entry in state.hosts.values()}
        prefix = f"{self.name}-n"
        if (NSPAWN_RUN / "propagate").is_dir():
            machines |= {
                p.name
                for p in (NSPAWN_RUN / "propagate").iterdir()
                if p.name.startswith(prefix) and p.name[len(prefix) :].isdigit()
            }
        for machine in machines:
            shutil.rmtree(NSPAWN_RUN / "propagate" / machine, ignore_errors=True)
        if any(self.dir.parent.glob("*/state.json")):
            return  # another lab is (being) set up: its nspawn may need these dirs any moment
        for path in (NSPAWN_RUN / "propagate", NSPAWN_RUN / "locks", NSPAWN_RUN):
            with contextlib.suppress(OSError):  # not empty: not ours to remove
                path.rmdir()

    def _netns_names(self, state: LabState) -> list[str]:
        names = {r.id for r in state.resources if r.kind == "netns"}
        names |= {h.netns for h in state.hosts.values() if h.netns}
        if network.NETNS_DIR.is_dir():
            prefix = f"{self.name}-n"
            names |= {
                p.name
                for p in network.NETNS_DIR.iterdir()
                if p.name.startswith(prefix) and p.name[len(prefix) :].isdigit()
            }
        return sorted(names)

    def _link_names(self, state: LabState) -> list[str]:
        names = {r.id for r in state.resources if r.kind in ("veth", "tap", "bridge")}
        tag = iface_tag(self.name)
        names |= {
            p.name
            for p in network.SYS_NET.iterdir()
            if p.name.startswith(f"vl-{tag}-") or p.name == f"bl-{tag}"
        }
        return sorted(names, key=lambda n: n.startswith("bl-"))  # veths first, bridge last


def _public(entry: HostState) -> LabHost:
    return LabHost(
        name=entry.name,
        address=entry.address,
        netns=entry.netns,
        veth=entry.veth,
        machine=entry.machine,
    )


def _process(entry: HostState) -> boot.HostProcess | None:
    if entry.pid is None or entry.pid_start is None:
        return None
    return boot.HostProcess(entry.pid, entry.pid_start)


def _kill_leftovers(relpath: str) -> None:
    """SIGKILL anything still in the cgroup and wait until it is empty. A killed process ends
    only when the kernel next schedules it (and after any uninterruptible I/O): on a loaded
    machine that took longer than 5 s, so the wait is a minute."""
    deadline = time.monotonic() + 60.0
    while cgroups.pids(relpath):
        cgroups.kill_all(relpath)
        if time.monotonic() > deadline:
            raise LabError(f"processes in cgroup {relpath} survive SIGKILL")
        time.sleep(0.05)
