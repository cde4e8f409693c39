"""The host's footprint: recorded at the first apply (shared paths absent before berth, packages
berth installed), read back by ``berth destroy``, which removes exactly that and whose clean
check proves each of them gone."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner import hostlayout as layout
from provisioner.commands import Shell, Upload, sha256_hex
from provisioner.connectors.base import HostName, HostTarget
from provisioner.connectors.local import LocalConnector
from provisioner.destroy import teardown_ops
from provisioner.facts.base import Fact, FactSet
from provisioner.facts.files import PathInfo, PathState
from provisioner.facts.packages import Packages
from provisioner.facts.users import UserInfo, Users
from provisioner.footprint import (
    ABSENT_BEFORE,
    NFT_BEFORE,
    PACKAGES,
    SHARED_ACCOUNTS,
    SHARED_PATHS,
    CreatedPathAbsent,
    Footprint,
    FootprintRecorded,
    HostFootprint,
    MountPoints,
    NftTables,
    PackagesPurged,
    footprint_problems,
)
from provisioner.operations.base import Operation, evaluate
from provisioner.operations.cluster import NodeReset
from provisioner.operations.files import Absent
from provisioner.operations.kernel import SysctlAbsent, module_file
from provisioner.operations.packages import Deb, DebPackages
from provisioner.operations.systemd import UnitAbsent
from provisioner.operations.users import GroupAbsent, UserAbsent
from provisioner.verify.clean import clean_problems
from provisioner.workflow import Inventory, RemoveHostsFn
from tests.harness.op_context import op_context

DIR = PathState("directory", 0o755, "root", "root", 4096)
FILE = PathState("file", 0o600, "root", "root", 1)


def _rendered(op: Operation, values: dict[Any, Any]) -> list[str]:
    outcome = evaluate(op, op_context(values))
    return [c.render() if isinstance(c, Shell) else c.describe() for c in outcome.commands]


def test_the_footprint_reads_back_what_was_recorded() -> None:
    fact = Footprint()
    assert fact.parse("", 0) == HostFootprint(recorded=False)
    # packages recorded by an apply that skipped the artifacts phase still count
    assert fact.parse("[packages]\nrunc\n", 0) == HostFootprint(False, (), ("runc",))
    output = (
        "[absent-before]\n/var/lib/cni\n/run/netns\n/etc/passwd\n[packages]\nrunc\nnftables\nrunc\n"
    )
    footprint = fact.parse(output, 0)
    # a path berth never tracks is ignored: a damaged record never makes destroy remove it
    assert footprint == HostFootprint(True, ("/var/lib/cni", "/run/netns"), ("nftables", "runc"))
    assert footprint.created_paths == ("/var/lib/cni", "/run/netns")
    nested = HostFootprint(True, ("/var/lib/cni", "/var/lib/cni/networks"))
    assert nested.created_paths == ("/var/lib/cni/networks", "/var/lib/cni")  # deepest first
    assert fact.parse("[absent-before]\n[packages]\n", 0) == HostFootprint(True)
    with_nft = fact.parse("[absent-before]\n[nftables-before]\ninet filter\n", 0)
    assert with_nft == HostFootprint(True, nft_before=("inet filter",))


def test_nftables_tables_are_listed_over_netlink_by_family_name() -> None:
    fact = NftTables()
    assert fact.command().startswith("python3 -c ")
    assert fact.parse("", 1) is None  # no nf_tables, or no right to ask: nothing compared
    assert fact.parse("2 berth\n1 filter\n10 nat\n2 berth\n", 0) == (
        "inet filter",
        "ip berth",
        "ip6 nat",
    )


def test_the_first_apply_records_the_shared_paths_absent_before_berth() -> None:
    info = PathInfo((ABSENT_BEFORE, *SHARED_PATHS))
    there = {"/etc/cni", "/var/lib/etcd"}
    state: dict[str, PathState | None] = {p: DIR if p in there else None for p in SHARED_PATHS}
    tables = ("inet filter",)
    # etcd's user was there (another etcd?), haproxy's was not
    accounts = {"haproxy": None, "etcd": UserInfo(107, 113, "/var/lib/etcd", "/bin/false")}
    values = {
        info: {ABSENT_BEFORE: None, **state},
        NftTables(): tables,
        Users(SHARED_ACCOUNTS): accounts,
    }
    mkdir, nft, upload = evaluate(FootprintRecorded(), op_context(values)).commands
    assert isinstance(mkdir, Shell)
    assert mkdir.render() == "mkdir -p -m 0700 /var/lib/berth/footprint"
    assert isinstance(nft, Upload)
    assert (nft.path, nft.content) == (NFT_BEFORE, b"inet filter\n")
    assert isinstance(upload, Upload)  # last: it marks the record complete
    assert upload.path == ABSENT_BEFORE
    assert upload.mode == 0o600
    recorded = upload.content.decode().splitlines()
    assert recorded == [*(p for p in SHARED_PATHS if p not in there), "account:haproxy"]
    parsed = Footprint().parse("[absent-before]\n" + upload.content.decode(), 0)
    assert parsed.absent_accounts == ("haproxy",)
    # recorded once: a later apply (berth's own paths there now) never rewrites it
    values[info] = {ABSENT_BEFORE: FILE, **state}
    again = evaluate(FootprintRecorded(), op_context(values))
    unreadable = {
        info: {ABSENT_BEFORE: None, **state},
        NftTables(): None,
        Users(SHARED_ACCOUNTS): accounts,
    }
    recorded_without_tables = evaluate(FootprintRecorded(), op_context(unreadable)).commands
    assert [c.path for c in recorded_without_tables if isinstance(c, Upload)] == [ABSENT_BEFORE]
    assert again.commands == ()
    assert again.noop_reason == "the host's footprint was recorded at the first apply"


def _deb(tmp: Path, name: str, version: str) -> Deb:
    body = f"{name} {version}".encode()
    source = tmp / f"{name}.deb"
    source.write_bytes(body)
    return Deb(name, version, sha256_hex(body), source)


def test_packages_berth_installs_are_recorded_before_dpkg_runs(tmp_path: Path) -> None:
    debs = (
        _deb(tmp_path, "runc", "1.1"),
        _deb(tmp_path, "nftables", "1.0"),
        _deb(tmp_path, "jq", "2"),
    )
    names = tuple(d.name for d in debs)
    paths = PathInfo(("/var/lib/berth/artifacts", *(d.remote_path for d in debs)))
    values: dict[Fact[Any], Any] = {
        # nftables was there (another version): an upgrade, never recorded; jq is right already
        Packages(names): {"runc": None, "nftables": "0.9", "jq": "2"},
        Packages(names, unsynced_missing=False): {"runc": None, "nftables": "0.9", "jq": "2"},
        paths: {p: None for p in paths.paths},
    }
    commands = _rendered(DebPackages(debs, record=PACKAGES), values)
    assert commands[0] == (
        "mkdir -p -m 0700 /var/lib/berth/footprint && { cat /var/lib/berth/footprint/packages "
        "2>/dev/null; printf '%s\\n' runc ; } | sort -u > /var/lib/berth/footprint/packages.tmp"
        " && mv -f -- /var/lib/berth/footprint/packages.tmp /var/lib/berth/footprint/packages"
    )
    assert "env DEBIAN_FRONTEND=noninteractive dpkg --force-unsafe-io -i" in commands[-1]
    # without a record (other callers), nothing is written
    assert not any("footprint" in c for c in _rendered(DebPackages(debs), values))
    # nothing new: no record
    values[Packages(names)] = {"runc": "1.0", "nftables": "0.9", "jq": "2"}
    values[Packages(names, unsynced_missing=False)] = values[Packages(names)]
    assert not any("footprint" in c for c in _rendered(DebPackages(debs, record=PACKAGES), values))
    # nftables's upgrade never reached the disk (its unsynced mark counts it as missing): it is
    # installed again, but dpkg had it before berth, so it is still not recorded as berth's
    values[Packages(names)] = {"runc": "1.0", "nftables": None, "jq": "2"}
    commands = _rendered(DebPackages(debs, record=PACKAGES), values)
    assert "dpkg --force-unsafe-io -i" in commands[-1]
    assert not any("footprint" in c for c in commands)


def test_purge_removes_only_the_recorded_packages_still_installed() -> None:
    names = ("etcd-server", "runc")
    op = PackagesPurged(names)
    # what dpkg has, synced or not (a package marked unsynced is purged too)
    dpkg = Packages(names, unsynced_missing=False)
    assert _rendered(op, {dpkg: {"etcd-server": "3.4", "runc": None}}) == [
        "env DEBIAN_FRONTEND=noninteractive dpkg --purge etcd-server >/dev/null"
    ]
    outcome = evaluate(op, op_context({dpkg: {"etcd-server": None, "runc": None}}))
    assert outcome.commands == ()
    assert outcome.noop_reason == "no package berth installed is left"


def test_a_created_path_is_unmounted_deepest_first_then_removed() -> None:
    mounts = MountPoints().parse("/\n/run\n/run/netns\n/run/netns/berth-a\n/run/netns2\n", 0)
    op = CreatedPathAbsent("/run/netns")
    assert _rendered(
        op, {PathInfo(("/run/netns",)): {"/run/netns": DIR}, MountPoints(): mounts}
    ) == [
        "umount -- /run/netns/berth-a",
        "umount -- /run/netns",
        "rm -rf -- /run/netns",
    ]
    gone = {PathInfo(("/run/netns",)): {"/run/netns": None}, MountPoints(): mounts}
    assert _rendered(op, gone) == []
    # the mask of Debian's etcd unit: systemd reloads its units once the mask is gone
    mask = "/etc/systemd/system/etcd.service"
    ctx = op_context({PathInfo((mask,)): {mask: FILE}, MountPoints(): mounts})
    assert [
        c.render() for c in evaluate(CreatedPathAbsent(mask), ctx).commands if isinstance(c, Shell)
    ] == [f"rm -rf -- {mask}"]
    assert ctx.run.pending_daemon_reload


def test_mount_points_decode_the_kernels_escapes() -> None:
    assert MountPoints().parse("/mnt/a\\040b\n/x\\134y\n\n", 0) == ("/mnt/a b", "/x\\y")


def test_the_clean_check_names_each_part_of_the_footprint_left() -> None:
    footprint = HostFootprint(
        True, ("/var/lib/cni", "/run/netns"), ("nftables", "runc"), nft_before=("inet filter",)
    )
    problems = footprint_problems(
        footprint,
        packages={"nftables": "1.0", "runc": None},
        paths={"/var/lib/cni": DIR, "/run/netns": None},
        mounts=("/", "/run/berth/x"),
        keep_packages=False,
        own_paths=("/run/berth",),
        tables=("inet filter", "ip nat"),
    )
    assert problems == [
        "package nftables (installed by berth) is still installed",
        "/var/lib/cni (not there before berth) is still there",
        "/run/berth/x is still mounted",
        "nftables table ip nat (not there before berth) is still there",
    ]
    kept = footprint_problems(
        footprint, packages={"nftables": "1.0"}, paths={}, mounts=("/",), keep_packages=True
    )
    assert kept == []


@dataclass
class _Data:
    """The narrow PhaseData the teardown reads: one host's facts."""

    values: dict[Any, Any]
    inventory: Inventory = field(default_factory=lambda: Inventory("c", ()))
    spec: Any = None
    cache_dir: Path = Path("/nonexistent")
    dry_run: bool = False
    state_dir: Path | None = None
    remove_hosts: RemoveHostsFn | None = None

    def host_facts(self, host: HostName, facts: Any) -> FactSet:
        out = FactSet(host)
        for fact, value in self.values.items():
            out.put(fact, value)
        return out


def _teardown(footprint: HostFootprint, **options: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    seen: dict[str, HostFootprint] = {}
    phase = teardown_ops(footprints=seen, **options)
    assert phase.operations is not None
    host = HostTarget(name=HostName("n1"), address="10.0.0.1", roles=("worker",))
    ops = tuple(phase.operations(_Data({Footprint(): footprint}), host))
    return ops, dict(seen)


def test_destroy_purges_berths_packages_and_paths_before_its_own_paths() -> None:
    footprint = HostFootprint(True, ("/var/lib/cni", "/var/lib/cni/networks"), ("runc",))
    ops, seen = _teardown(footprint, keep_data=False)
    assert seen == {"n1": footprint}  # the clean check compares the host with it
    kinds = [type(op) for op in ops]
    assert kinds.index(NodeReset) > max(i for i, k in enumerate(kinds) if k is UnitAbsent)
    purge = ops.index(PackagesPurged(("runc",)))
    assert purge > kinds.index(NodeReset)  # the reset needs runc and nft
    created = ops.index(CreatedPathAbsent("/var/lib/cni/networks"))
    assert ops[created + 1] == CreatedPathAbsent("/var/lib/cni")
    assert ops[-4:] == tuple(
        Absent(p, recursive=True)
        for p in ("/opt/berth", "/etc/berth", "/run/berth", "/var/lib/berth")
    )  # the footprint, in /var/lib/berth, goes last
    assert created > purge
    # a runc node's kernel settings no longer apply at the next boot (running values stay)
    for key, _value in layout.NODE_SYSCTLS:
        assert SysctlAbsent(key) in ops[:-4]
    for name, _path in layout.NODE_MODULES:
        assert Absent(module_file(name)) in ops[:-4]
    kept, _ = _teardown(footprint, keep_data=True, keep_packages=True)
    assert not any(isinstance(op, PackagesPurged) for op in kept)
    assert Absent(layout.VAR, recursive=True) not in kept
    # a host without a footprint (installed by an older berth) keeps shared paths and packages
    old, _ = _teardown(HostFootprint(recorded=False), keep_data=False)
    assert not any(isinstance(op, PackagesPurged | CreatedPathAbsent) for op in old)


def test_destroy_removes_the_system_users_the_packages_made_after_purging_them() -> None:
    """haproxy's postinst adds a haproxy user and group; purge leaves them (Debian's rule):
    destroy removes them when the footprint says they were not there before berth."""
    footprint = HostFootprint(True, (), ("haproxy",), absent_accounts=("haproxy",))
    ops, _ = _teardown(footprint, keep_data=False)
    purge = ops.index(PackagesPurged(("haproxy",)))
    assert ops[purge + 1 : purge + 3] == (UserAbsent("haproxy"), GroupAbsent("haproxy"))
    there_before, _ = _teardown(HostFootprint(True, (), ("haproxy",)), keep_data=False)
    assert not any(isinstance(op, UserAbsent | GroupAbsent) for op in there_before)


def test_the_clean_check_names_the_system_accounts_destroy_left() -> None:
    """The accounts the footprint says were absent before berth (haproxy's postinst made them)
    are a problem while their user or their group is still there."""
    footprint = HostFootprint(True, absent_accounts=("haproxy", "etcd"))
    haproxy = UserInfo(107, 113, "/var/lib/haproxy", "/usr/sbin/nologin")
    problems = footprint_problems(
        footprint,
        packages={},
        paths={},
        mounts=(),
        keep_packages=True,  # destroy removes the accounts all the same
        users={"haproxy": haproxy, "etcd": None},
        groups={"haproxy": None, "etcd": 114},
    )
    assert problems == [
        "user haproxy (not there before berth) is still there",
        "group etcd (not there before berth) is still there",
    ]
    gone = footprint_problems(
        footprint,
        packages={},
        paths={},
        mounts=(),
        keep_packages=False,
        users={"haproxy": None, "etcd": None},
        groups={"haproxy": None, "etcd": None},
    )
    assert gone == []


def test_the_clean_check_reads_the_accounts_from_the_host() -> None:
    """clean_problems asks the host (this machine, read-only probes) for the footprint's absent
    accounts: root is there (user and group), a name nobody has is not."""
    footprint = HostFootprint(True, absent_accounts=("root", "berth-no-such-account"))
    problems = clean_problems(LocalConnector(), footprint=footprint)
    accounts = [p for p in problems if p.startswith(("user ", "group "))]
    assert accounts == [
        "user root (not there before berth) is still there",
        "group root (not there before berth) is still there",
    ]
