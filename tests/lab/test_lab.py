"""The lab: hosts boot with systemd and sshd, strict SSH works, the network is closed, every fault
has its effect and is undone by its pair, and ``down`` leaves nothing behind.

Tests marked ``lab`` boot systemd-nspawn hosts (root). The rest check the pure parts.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import paramiko
import pytest
import yaml

from provisioner.errors import ExitCode, LabError
from provisioner.lab import HostStatus, Lab, blackholes, boot, cgroups, connect, network, run
from provisioner.lab import lab as lab_module
from provisioner.lab.clusterspec import render
from provisioner.lab.keys import generate_ed25519, known_hosts_line
from provisioner.lab.lab import CLUSTER_BLOCKS
from provisioner.lab.locks import file_lock
from provisioner.lab.names import (
    IFNAME_MAX,
    MAX_HOSTS,
    bridge_name,
    cgroup_relpath,
    host_name,
    lab_name,
    nft_table,
    veth_name,
)
from provisioner.lab.rootfs import PACKAGES, RootfsRecipe, debian_mirror
from provisioner.lab.subnet import check_free, choose_free, parse_subnet
from provisioner.lab.system import remove_tree
from provisioner.spec import load_spec
from tests.lab.conftest import LabFactory

# ---- pure parts (no root, no sockets) --------------------------------------------------------


def test_interface_names_fit_the_kernel_limit_and_differ_per_lab() -> None:
    longest = lab_name("a" * 32)
    assert len(bridge_name(longest)) <= IFNAME_MAX
    assert len(veth_name(longest, host_name(MAX_HOSTS))) <= IFNAME_MAX
    assert bridge_name(lab_name("demo")) != bridge_name(lab_name("demo2"))
    assert veth_name(lab_name("demo"), host_name(1)) != veth_name(lab_name("demo2"), host_name(1))


@pytest.mark.parametrize("bad", ["", "Demo", "-a", "a-", "a_b", "a" * 33])
def test_invalid_lab_names_are_refused(bad: str) -> None:
    with pytest.raises(LabError, match="invalid lab name"):
        lab_name(bad)


def test_free_subnet_skips_ranges_in_use() -> None:
    used = [
        ipaddress.IPv4Network("10.231.1.0/24"),
        ipaddress.IPv4Network("10.231.2.128/25"),
        ipaddress.IPv4Network("192.0.2.0/24"),
    ]
    assert choose_free(used) == ipaddress.IPv4Network("10.231.3.0/24")
    assert choose_free([]) == ipaddress.IPv4Network("10.231.1.0/24")  # .0/24 kept for ad-hoc use


def test_given_subnet_is_checked() -> None:
    with pytest.raises(LabError, match=r"10\.231\.5\.0/24 is in use"):
        check_free(ipaddress.IPv4Network("10.231.5.0/24"), [ipaddress.IPv4Network("10.0.0.0/8")])
    with pytest.raises(LabError, match="not a private range"):
        parse_subnet("8.8.8.0/24", hosts=3)
    with pytest.raises(LabError, match="too small"):
        parse_subnet("10.231.9.0/29", hosts=3)


def test_mirror_comes_from_the_machines_sources(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example/security\n"
        "Suites: bookworm-security\n"
    )
    assert debian_mirror(sources, tmp_path / "absent") == "http://mirror.example/debian"


def test_rootfs_cache_key_follows_the_package_list() -> None:
    base = RootfsRecipe(mirror="http://m/debian")
    assert base.key() == RootfsRecipe(mirror="http://m/debian").key()
    assert base.key() != RootfsRecipe(mirror="http://m/debian", packages=(*PACKAGES, "curl")).key()


def test_cgroup_hierarchies_are_read_from_mountinfo() -> None:
    mountinfo = (
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
        "32 31 0:29 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
        "33 31 0:30 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
        "34 31 0:31 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate\n"
    )
    found = {str(h.mountpoint): h for h in cgroups.hierarchies(mountinfo)}
    assert sorted(found) == [
        "/sys/fs/cgroup/cpuset",
        "/sys/fs/cgroup/systemd",
        "/sys/fs/cgroup/unified",
    ]
    assert "cpuset" in found["/sys/fs/cgroup/cpuset"].controllers
    assert found["/sys/fs/cgroup/unified"].version == 2


def test_cluster_spec_names_the_lab_hosts_and_roles() -> None:
    text = render(
        name="demo",
        hosts=[("n1", "10.231.1.11"), ("n2", "10.231.1.12")],
        identity_file="id_ed25519",
        known_hosts_file="known_hosts",
    )
    spec = yaml.safe_load(text)
    assert spec["metadata"]["name"] == "demo"
    assert spec["spec"]["ssh"]["hostKeyPolicy"] == "strict"
    assert spec["spec"]["ssh"]["identityFile"] == "id_ed25519"
    assert [(h["name"], h["roles"]) for h in spec["spec"]["hosts"]] == [
        ("n1", ["control-plane", "worker"]),
        ("n2", ["worker"]),
    ]
    assert spec["spec"]["datastore"] == {"type": "sqlite"}


def test_generated_keys_load_in_paramiko_and_pin_as_known_hosts(tmp_path: Path) -> None:
    pair = generate_ed25519("root@n1")
    key_file = tmp_path / "key"
    key_file.write_bytes(pair.private_openssh)
    loaded = paramiko.Ed25519Key.from_private_key_file(str(key_file))
    assert pair.public_line.split()[1] == loaded.get_base64()
    pins = tmp_path / "known_hosts"
    pins.write_text(known_hosts_line("10.231.1.11", pair.public_line) + "\n")
    pinned = paramiko.HostKeys(str(pins)).lookup("10.231.1.11")
    assert pinned is not None
    assert pinned["ssh-ed25519"].get_base64() == loaded.get_base64()


@pytest.mark.lab  # needs root (mounts)
def test_remove_tree_unmounts_before_deleting(tmp_path: Path) -> None:
    tree = tmp_path / "scratch"
    (tree / "proc").mkdir(parents=True)
    keep = tmp_path / "keep"  # stands for what a bind/proc mount exposes: must survive
    keep.mkdir()
    (keep / "precious").write_text("x")
    subprocess.run(["mount", "--bind", str(keep), str(tree / "proc")], check=True)
    remove_tree(tree)
    assert not tree.exists()
    assert (keep / "precious").read_text() == "x"


# ---- booted labs -------------------------------------------------------------------------


def _ping(lab: Lab, source: str, target: str) -> bool:
    """Whether ``source`` gets an echo reply from ``target`` (waits up to 2 s)."""
    status, _, _ = run(lab, source, f"ping -c1 -W2 {lab.host(target).address}")
    return status == 0


def _ping_fails(lab: Lab, source: str, target: str) -> bool:
    """Whether ``source`` gets no echo reply from ``target`` within half a second."""
    status, _, _ = run(lab, source, f"ping -c1 -W0.5 {lab.host(target).address}")
    return status != 0


@pytest.mark.lab
def test_three_hosts_boot_systemd_and_sshd(lab: Lab) -> None:
    assert [h.name for h in lab.hosts] == ["n1", "n2", "n3"]
    addresses = {h.address for h in lab.hosts}
    assert len(addresses) == 3
    assert all(ipaddress.IPv4Address(a) in ipaddress.IPv4Network(lab.subnet) for a in addresses)
    for host in lab.hosts:
        status, out, err = run(
            lab,
            host.name,
            "cat /proc/1/comm; hostname; systemctl is-system-running --wait; cat /etc/machine-id",
        )
        assert status == 0, err
        comm, hostname, system_state, machine_id = out.split()
        assert (comm, hostname, system_state) == ("systemd", host.name, "running")
        assert len(machine_id) == 32
    machine_ids = {run(lab, h.name, "cat /etc/machine-id")[1] for h in lab.hosts}
    assert len(machine_ids) == 3
    assert all(s.running and s.sshd for s in lab.status())


@pytest.mark.lab
def test_ssh_is_strict_about_host_keys(lab: Lab, tmp_path: Path) -> None:
    pinned = paramiko.HostKeys(str(lab.known_hosts_path))
    assert sorted(pinned.keys()) == sorted(h.address for h in lab.hosts)
    key = paramiko.Ed25519Key.from_private_key_file(str(lab.key_path))
    n1, n2 = lab.host("n1"), lab.host("n2")

    def attempt(known_hosts: Path) -> None:
        client = paramiko.SSHClient()
        client.load_host_keys(str(known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                n1.address,
                username="root",
                pkey=key,
                look_for_keys=False,
                allow_agent=False,
                timeout=10,
            )
        finally:
            client.close()

    attempt(lab.known_hosts_path)  # the recorded pins are accepted
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        attempt(empty)
    wrong = tmp_path / "wrong"  # n2's key pinned for n1's address: a changed host key
    n2_pins = pinned.lookup(n2.address)
    assert n2_pins is not None
    wrong.write_text(f"{n1.address} ssh-ed25519 {n2_pins['ssh-ed25519'].get_base64()}\n")
    with pytest.raises(paramiko.BadHostKeyException):
        attempt(wrong)
    assert oct(lab.key_path.stat().st_mode & 0o777) == "0o600"


@pytest.mark.lab
def test_spec_describes_the_lab(lab: Lab) -> None:
    validated = load_spec(lab.spec_path)  # berth's own validation accepts it as written
    assert validated.metadata.name == lab.name
    assert validated.spec.ssh.host_key_policy == "strict"
    assert [(h.name, h.address) for h in validated.spec.hosts] == [
        (h.name, h.address) for h in lab.hosts
    ]
    spec = yaml.safe_load(lab.spec_path.read_text())
    assert spec["metadata"]["name"] == lab.name
    ssh = spec["spec"]["ssh"]
    assert lab.spec_path.parent / ssh["identityFile"] == lab.key_path
    assert lab.spec_path.parent / ssh["knownHostsFile"] == lab.known_hosts_path
    assert [(h["name"], h["address"]) for h in spec["spec"]["hosts"]] == [
        (h.name, h.address) for h in lab.hosts
    ]


@pytest.mark.lab
def test_systemctl_enables_and_starts_a_unit(lab: Lab) -> None:
    n1 = lab.host("n1")
    unit = (
        "[Unit]\nDescription=berth lab test web server\n\n"
        f"[Service]\nExecStart=/usr/bin/python3 -m http.server 8080 --bind {n1.address}\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    with (
        connect(lab, "n1") as client,
        client.open_sftp() as sftp,
        sftp.open("/etc/systemd/system/labweb.service", "w") as remote,
    ):
        remote.write(unit)
    status, out, err = run(
        lab,
        "n1",
        "systemctl daemon-reload && systemctl enable --now labweb.service 2>&1 && "
        "systemctl is-enabled labweb.service && systemctl is-active labweb.service",
    )
    try:
        assert status == 0, out + err
        assert out.split()[-2:] == ["enabled", "active"]
        # ...and another host reaches it over the lab network (TCP, by address); up to ~30 s:
        # active means started, and the server listens a moment later (longer under load)
        fetch = (
            'python3 -c "import time, urllib.request\nfor _ in range(300):\n'
            "    try:\n"
            f"        url = 'http://{n1.address}:8080/'\n"
            "        print(urllib.request.urlopen(url, timeout=2).status)\n"
            "        break\n"
            '    except OSError:\n        time.sleep(0.1)"'
        )
        assert run(lab, "n2", fetch, timeout=90)[1].strip() == "200"
    finally:
        run(
            lab,
            "n1",
            "systemctl disable --now labweb.service; rm -f /etc/systemd/system/labweb.service",
        )


@pytest.mark.lab
def test_hosts_reach_each_other_but_nothing_outside(lab: Lab) -> None:
    assert _ping(lab, "n1", "n2")
    assert _ping(lab, "n1", "n3")
    assert _ping(lab, "n3", "n2")
    for host in lab.hosts:
        status, out, err = run(lab, host.name, "ip -4 route show default; ip route get 1.1.1.1")
        assert status != 0
        assert out == ""
        assert "Network is unreachable" in err
        assert run(lab, host.name, "cat /etc/resolv.conf")[1] == ""


@pytest.mark.lab
def test_stop_then_start_keeps_the_disk(lab: Lab) -> None:
    assert run(lab, "n2", "echo kept > /root/marker")[0] == 0
    lab.stop("n2")
    assert not _status(lab, "n2").running
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection((lab.host("n2").address, 22), timeout=2),
    ):
        pass
    lab.start("n2")
    status, out, _ = run(lab, "n2", "cat /root/marker; systemctl is-system-running --wait")
    assert (status, out.split()) == (0, ["kept", "running"])


@pytest.mark.lab
def test_kill_then_start(lab: Lab) -> None:
    boots = "journalctl --list-boots -q | wc -l"
    before = int(run(lab, "n3", boots)[1])
    lab.kill("n3")
    assert not _status(lab, "n3").running
    assert not boot.sshd_answers(lab.host("n3").address)
    lab.start("n3")
    assert int(run(lab, "n3", boots)[1]) == before + 1  # a new boot of the same disk


@pytest.mark.lab
def test_freeze_hangs_ssh_and_thaw_resumes(lab: Lab) -> None:
    lab.freeze("n1")
    try:
        assert _status(lab, "n1").frozen
        started = time.monotonic()
        with pytest.raises(paramiko.SSHException):  # the banner never comes: a hang, not a refusal
            connect(lab, "n1", timeout=1.0)
        assert time.monotonic() - started >= 0.9
    finally:
        lab.thaw("n1")
    assert run(lab, "n1", "true")[0] == 0
    assert not _status(lab, "n1").frozen


@pytest.mark.lab
def test_cut_isolates_a_host_and_heal_reconnects_it(lab: Lab) -> None:
    lab.cut("n2")
    try:
        assert _status(lab, "n2").cut
        assert _ping_fails(lab, "n1", "n2")
        assert not boot.sshd_answers(lab.host("n2").address, timeout=1.0)
    finally:
        lab.heal("n2")
    assert _ping(lab, "n1", "n2")
    assert run(lab, "n2", "true")[0] == 0


def _link_local(lab: Lab, host: str) -> str:
    """``host``'s IPv6 link-local address, once duplicate address detection (~1 s after the
    link came up, so possibly still running just after boot) has finished."""
    wait_dad = (
        "for i in $(seq 50); do ip -6 addr show tentative | grep -q . || break; sleep 0.1; done"
    )
    out = run(lab, host, f"{wait_dad}; ip -6 -o addr show dev eth0 scope link")[1]
    return out.split()[3].split("/")[0]


@pytest.mark.lab
def test_partition_separates_exactly_two_hosts(lab: Lab) -> None:
    _link_local(lab, "n1")  # its own address must be usable as a source
    n2_ipv6 = _link_local(lab, "n2")
    ping6 = f"ping -6 -c1 -W{{}} {n2_ipv6}%eth0"
    assert run(lab, "n1", ping6.format(2))[0] == 0
    lab.partition("n1", "n2")
    try:
        assert lab.partitions() == [("n1", "n2")]
        assert _ping_fails(lab, "n1", "n2")
        assert _ping_fails(lab, "n2", "n1")
        assert run(lab, "n1", ping6.format(0.5))[0] != 0  # not just IPv4: the link is down
        assert _ping(lab, "n1", "n3")
        assert _ping(lab, "n2", "n3")
        assert run(lab, "n1", "true")[0] == 0
        assert run(lab, "n2", "true")[0] == 0
    finally:
        lab.unpartition("n1", "n2")
    assert lab.partitions() == []
    assert _ping(lab, "n1", "n2")
    assert _ping(lab, "n2", "n1")


@pytest.mark.lab
def test_hybrid_cgroup_hosts_can_enforce_limits(lab_factory: LabFactory) -> None:
    hybrid = lab_factory(1, unified_cgroups=False)
    limit = 32 * 1024 * 1024
    status, out, err = run(
        hybrid,
        "n1",
        "systemctl is-system-running --wait; "
        "mount -o remount,bind,rw /sys/fs/cgroup/memory && mkdir /sys/fs/cgroup/memory/lim && "
        f"echo {limit} > /sys/fs/cgroup/memory/lim/memory.limit_in_bytes",
    )
    assert (status, out.strip()) == (0, "running"), err
    # the host's own child cgroup is a real one on the machine, below the host's cgroup
    machine_side = next(
        h.mountpoint / cgroup_relpath(hybrid.name, host_name(1))
        for h in cgroups.hierarchies()
        if "memory" in h.controllers
    )
    found = list(machine_side.rglob("lim/memory.limit_in_bytes"))
    assert [int(p.read_text()) for p in found] == [limit]
    hybrid.down()  # copes with cgroups the host made itself
    assert not machine_side.exists()


def _status(lab: Lab, host: str) -> HostStatus:
    return next(s for s in lab.status() if s.host.name == host)


def _traces(lab: Lab, machines: list[str]) -> list[str]:
    """Everything of ``lab`` still visible on the machine."""
    found = []
    netns_dir = network.NETNS_DIR
    if netns_dir.is_dir():
        found += [
            f"netns {p.name}" for p in netns_dir.iterdir() if p.name.startswith(f"{lab.name}-")
        ]
    tag_links = (bridge_name(lab.name), veth_name(lab.name, host_name(1))[:-1])
    found += [f"link {p.name}" for p in network.SYS_NET.iterdir() if p.name.startswith(tag_links)]
    mountinfo = Path("/proc/self/mountinfo").read_text()
    found += [f"mount {line.split()[4]}" for line in mountinfo.splitlines() if str(lab.dir) in line]
    for hierarchy in cgroups.hierarchies():
        path = hierarchy.mountpoint / cgroup_relpath(lab.name)
        if path.exists():
            found.append(f"cgroup {path}")
    if network.table_exists(nft_table(lab.name)):
        found.append(f"nft table {nft_table(lab.name)}")
    for machine in machines:
        if Path(f"/run/systemd/nspawn/propagate/{machine}").exists():
            found.append(f"nspawn dir of {machine}")
    if lab.dir.exists():
        found.append(f"dir {lab.dir}")
    return found


@pytest.mark.lab
def test_down_leaves_nothing_and_labs_coexist(lab: Lab, lab_factory: LabFactory) -> None:
    other = lab_factory(2)
    assert other.subnet != lab.subnet
    assert {h.netns for h in other.hosts}.isdisjoint(h.netns for h in lab.hosts)
    other_keys = set(other.known_hosts_path.read_text().split())
    assert other_keys.isdisjoint(lab.known_hosts_path.read_text().split()[2::3])  # per-lab keys
    other.partition("n1", "n2")
    other.freeze("n2")  # down must cope with a hung host too
    machines = [h.machine for h in other.hosts]
    assert len(_traces(other, machines)) > 5
    other.down()
    assert _traces(other, machines) == []
    assert not other.exists()
    assert run(lab, "n1", "true")[0] == 0  # the other lab is untouched
    assert all(blackholes.in_place(c) for c in CLUSTER_BLOCKS), "lab is up: its routes stay"


@pytest.mark.lab
def test_pod_and_service_blocks_are_blackholed_while_a_lab_is_up(tmp_path: Path) -> None:
    lone = Lab(f"pt{os.getpid()}-902", root=tmp_path / "labs")
    try:
        lone.up(1)
        assert all(blackholes.in_place(c) for c in CLUSTER_BLOCKS)
        for address in ("10.244.3.7", "10.96.0.10"):  # a pod, a ClusterIP
            route = subprocess.run(["ip", "route", "get", address], capture_output=True,
                                   text=True, check=False)  # fmt: skip
            assert route.returncode != 0 or route.stdout.startswith("blackhole"), route
    finally:
        lone.down()
    # the routes go with the last lab on the machine (whatever its root directory); read
    # under the holders' lock: labs of parallel test workers come and go meanwhile
    with file_lock(blackholes.HOLDERS.parent / "blackholes.lock"):
        others = any(blackholes.HOLDERS.iterdir())
        assert [blackholes.in_place(c) for c in CLUSTER_BLOCKS] == [others, others]


@pytest.mark.lab
def test_down_does_not_wait_for_processes_that_ignore_sigterm(lab_factory: LabFactory) -> None:
    """Like a container whose PID 1 has no SIGTERM handler, in a cgroup of no unit: it holds
    the host's poweroff; down kills the host after a short grace instead of waiting it out."""
    stubborn = lab_factory(1)
    start = (
        "mkdir -p /sys/fs/cgroup/stubborn; setsid sh -c 'echo $$ > "
        '/sys/fs/cgroup/stubborn/cgroup.procs; trap "" TERM; exec sleep 1000\' '
        "</dev/null >/dev/null 2>&1 & "
        # until the child has joined the cgroup (a fixed 0.3 s was not always enough under load)
        "for i in $(seq 300); do grep -q . /sys/fs/cgroup/stubborn/cgroup.procs && break; "
        "sleep 0.1; done; cat /sys/fs/cgroup/stubborn/cgroup.procs"
    )
    code, out, err = run(stubborn, "n1", start, timeout=60)
    assert code == 0, err
    assert out.strip(), "the stubborn process runs"
    machines = [h.machine for h in stubborn.hosts]
    started = time.monotonic()
    stubborn.down()
    took = time.monotonic() - started
    assert took < lab_module.STOP_TIMEOUT, f"down waited {took:.1f} s for the poweroff"
    assert _traces(stubborn, machines) == []


@pytest.mark.lab
def test_down_finds_everything_by_name_when_the_state_file_is_lost(
    lab_factory: LabFactory,
) -> None:
    orphan = lab_factory(2)
    orphan.partition("n1", "n2")
    orphan.freeze("n1")
    machines = [h.machine for h in orphan.hosts]
    orphan.state_path.unlink()
    orphan.down()
    assert _traces(orphan, machines) == []


@pytest.mark.lab
def test_down_cleans_up_after_a_crash_half_way_through_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crashed = Lab(f"pt{os.getpid()}-900")
    real_plug = network.plug_host
    calls = []

    def plug_then_crash(**kwargs: object) -> None:
        calls.append(kwargs)
        if len(calls) == 2:
            raise LabError("simulated crash")
        real_plug(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(network, "plug_host", plug_then_crash)
    try:
        with pytest.raises(LabError, match="simulated crash"):
            crashed.up(3)
        assert crashed.exists()
        machines = [h.machine for h in crashed.hosts]
        assert any(t.startswith("mount") for t in _traces(crashed, machines))
    finally:
        crashed.down()
    assert _traces(crashed, machines) == []


@pytest.mark.lab
def test_a_host_that_fails_to_boot_is_reported_with_its_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = Lab(f"pt{os.getpid()}-901")
    real_argv = boot.nspawn_argv

    def bad_argv(**kwargs: Path | str) -> list[str]:
        return [*real_argv(**kwargs), "--no-such-option"]  # type: ignore[arg-type]

    monkeypatch.setattr(boot, "nspawn_argv", bad_argv)
    try:
        with pytest.raises(LabError) as failure:
            broken.up(1)
        text = "\n".join(failure.value.lines())
        assert "n1: systemd-nspawn exited during boot" in text
        assert "no-such-option" in text  # nspawn's own complaint, from the host's console
        assert "berth lab down" in text
    finally:
        broken.down()


@pytest.mark.lab
def test_a_subnet_in_use_is_refused(lab: Lab) -> None:
    clash = Lab(f"pt{os.getpid()}-902")
    try:
        with pytest.raises(LabError, match="is in use on this machine"):
            clash.up(1, subnet_cidr=lab.subnet)
    finally:
        clash.down()


def _berth(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provisioner.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_cli_reports_a_missing_lab_with_the_lab_exit_code(tmp_path: Path) -> None:
    result = _berth("lab", "status", "--name", "nosuch", env={"BERTH_LAB_ROOT": str(tmp_path)})
    assert result.returncode == ExitCode.LAB
    assert "no lab named 'nosuch'" in result.stderr
    assert "berth lab up --name nosuch" in result.stderr


@pytest.mark.lab
def test_cli_status_and_ssh(lab: Lab) -> None:
    status = _berth("lab", "status", "--name", lab.name)
    assert status.returncode == 0, status.stderr
    rows = [line.split() for line in status.stdout.splitlines() if line.startswith("n")]
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        (h.name, h.address, "bookworm", "running", "yes") for h in lab.hosts
    ]
    # OpenSSH itself, host key checked strictly against the lab's known_hosts
    ssh = _berth("lab", "ssh", "--name", lab.name, "n3", "hostname", "-s")
    assert (ssh.returncode, ssh.stdout.strip()) == (0, "n3"), ssh.stderr
    # fault commands: cut shows in status, heal undoes it
    assert _berth("lab", "cut", "n3", "--name", lab.name).returncode == 0
    try:
        cut = _berth("lab", "status", "--name", lab.name).stdout
        assert [line.split()[3] for line in cut.splitlines() if line.startswith("n3")] == ["cut"]
    finally:
        assert _berth("lab", "heal", "n3", "--name", lab.name).returncode == 0
    assert not _status(lab, "n3").cut
