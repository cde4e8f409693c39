"""A host's footprint: what berth added to it that was not there before berth, recorded on the
host so that ``berth destroy`` removes exactly that and proves the host is as it was.

Berth's own places (``/opt/berth``, ``/etc/berth``, ``/var/lib/berth``, ``/run/berth``, its
units) always go. What it shares with the rest of the system is recorded:

* ``absent-before``: the shared paths berth (or a package it installs) may create that did not
  exist before the first apply (CNI's state directory, ``/run/netns``, the mask of Debian's
  ``etcd.service``, etcd's default data directory). Written once, by the first operation of the
  first phase, before anything changes on the host.
* ``packages``: the Debian packages berth installed that were not installed before: each
  :class:`~provisioner.operations.packages.DebPackages` adds their names *before* ``dpkg -i``
  runs, so an interrupted install is still recorded. A package that was there before berth
  (even at another version) is never recorded, so destroy never removes it.

Both files are written atomically (temp file in the same directory, then rename) and live in
:data:`DIR`, under ``/var/lib/berth``: ``destroy`` reads them before it removes anything and
removes them last, so an interrupted destroy can be run again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from berth.runtime.mountinfo import unescape
from provisioner.commands import Command, Raw, Shell, Upload
from provisioner.facts._sh import words
from provisioner.facts.base import Fact
from provisioner.facts.files import PathInfo
from provisioner.facts.packages import Packages
from provisioner.facts.users import UserInfo, Users
from provisioner.operations.base import OpContext, Operation
from provisioner.operations.systemd import UNIT_DIR

DIR = "/var/lib/berth/footprint"
"""In berth's data directory (``layout.VAR``; this module is imported by the cluster and the
etcd phases, so it names the path itself)."""
ABSENT_BEFORE = f"{DIR}/absent-before"
PACKAGES = f"{DIR}/packages"
NFT_BEFORE = f"{DIR}/nftables-before"

SHARED_PATHS = (
    "/etc/cni",
    "/var/lib/cni",
    "/var/lib/cni/networks",
    "/run/netns",  # `ip netns add` makes it, and mounts it on itself
    f"{UNIT_DIR}/etcd.service",  # the mask of Debian's etcd unit (the etcd phase)
    f"{UNIT_DIR}/haproxy.service",  # the mask of Debian's haproxy unit (runc nodes)
    # haproxy's postinst makes these (its tmpfiles.d entry, its chroot); purge leaves them
    "/run/haproxy",
    "/var/lib/haproxy",
    "/var/lib/etcd",  # etcd-server's default data directory
)
"""Paths outside berth's own that a berth host gets; each is removed by destroy only when the
footprint says it was absent before berth."""

SHARED_ACCOUNTS = ("haproxy", "etcd")
"""System users (and their groups) the packages berth installs create in their postinst
(haproxy on runc nodes, etcd-server on etcd members); purging a package leaves them, as Debian
does. Destroy removes each only when the footprint says it was absent before berth."""
ACCOUNT = "account:"
"""How an absent account is written in ``absent-before`` (beside the paths)."""


_FAMILIES = {1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"}
# One NFT_MSG_GETTABLE dump over netlink, printing "FAMILY NAME" per table: it needs no `nft`
# (absent before berth installs it, and again once destroy purged it).
_LIST_TABLES = (
    "import socket,struct\n"
    "s=socket.socket(socket.AF_NETLINK,socket.SOCK_RAW,12)\n"
    "s.send(struct.pack('=IHHIIBBH',20,(10<<8)|1,0x301,1,0,0,0,0))\n"
    "done=False\n"
    "while not done:\n"
    " d=s.recv(65536);i=0\n"
    " while i+16<=len(d):\n"
    "  n,t=struct.unpack_from('=IH',d,i)\n"
    "  if t in(2,3):done=True;break\n"
    "  j=i+20\n"
    "  while j+4<=i+n:\n"
    "   l,a=struct.unpack_from('=HH',d,j)\n"
    "   if a&0x7fff==1:print(d[i+16],d[j+4:j+l].split(bytes(1))[0].decode())\n"
    "   j+=(l+3)&~3\n"
    "  i+=(n+3)&~3\n"
)


@dataclass(frozen=True)
class NftTables(Fact[tuple[str, ...] | None]):
    """The host's nftables tables as ``FAMILY NAME`` (``ip berth``), read over netlink
    (``None`` when they cannot be read: no nf_tables in the kernel, or no right to ask)."""

    def command(self) -> str:
        return f"python3 -c {words((_LIST_TABLES,))}"

    def parse(self, output: str, exit_code: int) -> tuple[str, ...] | None:
        if exit_code != 0:
            return None
        tables = set()
        for line in output.splitlines():
            family, _, name = line.strip().partition(" ")
            if name:
                tables.add(f"{_FAMILIES.get(int(family), family)} {name}")
        return tuple(sorted(tables))


@dataclass(frozen=True)
class HostFootprint:
    """What the footprint on a host says (``recorded``: there is one)."""

    recorded: bool
    absent_before: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    nft_before: tuple[str, ...] | None = None
    """The nftables tables there before berth (``None``: not recorded)."""
    absent_accounts: tuple[str, ...] = ()
    """The system users (and groups) of :data:`SHARED_ACCOUNTS` absent before berth."""

    @property
    def created_paths(self) -> tuple[str, ...]:
        """The shared paths to remove, deepest first (a mount point is unmounted first)."""
        return tuple(sorted(self.absent_before, key=lambda p: (-p.count("/"), p)))


@dataclass(frozen=True)
class Footprint(Fact[HostFootprint]):
    """The footprint recorded on the host (``recorded=False``: no record of the paths)."""

    def command(self) -> str:
        return (
            f"[ -f {ABSENT_BEFORE} ] && {{ echo '[absent-before]'; cat {ABSENT_BEFORE}; }}; "
            f"[ -f {PACKAGES} ] && {{ echo '[packages]'; cat {PACKAGES}; }}; "
            f"[ -f {NFT_BEFORE} ] && {{ echo '[nftables-before]'; cat {NFT_BEFORE}; }}; true"
        )

    def parse(self, output: str, exit_code: int) -> HostFootprint:
        sections: dict[str, list[str]] = {
            "[absent-before]": [],
            "[packages]": [],
            "[nftables-before]": [],
        }
        current: list[str] | None = None
        for raw in output.splitlines():
            line = raw.strip()
            if line in sections:
                current = sections[line]
            elif line and current is not None:
                current.append(line)
        return HostFootprint(
            # packages are recorded even when the paths were not (an apply that skipped the
            # artifacts phase): destroy removes them all the same
            recorded="[absent-before]" in output.splitlines(),
            absent_before=tuple(p for p in sections["[absent-before]"] if p in SHARED_PATHS),
            absent_accounts=tuple(
                name
                for line in sections["[absent-before]"]
                if line.startswith(ACCOUNT)
                and (name := line.removeprefix(ACCOUNT)) in SHARED_ACCOUNTS
            ),
            packages=tuple(sorted(set(sections["[packages]"]))),
            nft_before=(
                tuple(sorted(set(sections["[nftables-before]"])))
                if "[nftables-before]" in output.splitlines()
                else None
            ),
        )


@dataclass(frozen=True)
class FootprintRecorded(Operation):
    """The footprint's ``absent-before`` written, once: the shared paths absent right now.

    Must be the first operation of the first phase of an apply (its facts are gathered before
    that phase changes anything). On a host berth already runs on without a footprint (an older
    berth installed it), a path there now may be berth's or not: it is kept, to be safe.
    """

    @property
    def id(self) -> str:
        return f"file:{ABSENT_BEFORE}"

    def describe(self) -> str:
        return "record what is on the host before berth (its footprint)"

    def facts(self) -> tuple[Fact[Any], ...]:
        return (PathInfo((ABSENT_BEFORE, *SHARED_PATHS)), NftTables(), Users(SHARED_ACCOUNTS))

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        paths = ctx.fact(PathInfo((ABSENT_BEFORE, *SHARED_PATHS)))
        if paths[ABSENT_BEFORE] is not None:
            ctx.noop("the host's footprint was recorded at the first apply")
            return
        absent = [p for p in SHARED_PATHS if paths[p] is None]
        users = ctx.fact(Users(SHARED_ACCOUNTS))
        absent += [f"{ACCOUNT}{name}" for name in SHARED_ACCOUNTS if users[name] is None]
        tables = ctx.fact(NftTables())
        yield Shell("mkdir", "-p", "-m", "0700", DIR)
        if tables is not None:  # otherwise the clean check cannot compare tables
            yield Upload("".join(f"{t}\n" for t in tables).encode(), NFT_BEFORE, 0o600)
        # last: its presence says the footprint is complete
        yield Upload("".join(f"{p}\n" for p in absent).encode(), ABSENT_BEFORE, 0o600)


@dataclass(frozen=True)
class PackagesPurged(Operation):
    """The packages berth installed (``names``, from the footprint) not installed: one
    ``dpkg --purge`` for all, so dpkg orders them by their dependencies."""

    names: tuple[str, ...]

    @property
    def id(self) -> str:
        return "packages-purged:" + ",".join(self.names)

    def describe(self) -> str:
        return "remove the packages berth installed: " + ", ".join(self.names)

    def facts(self) -> tuple[Fact[Any], ...]:
        # what dpkg has, synced or not: a package whose install never reached the disk in
        # full is purged too
        return (Packages(self.names, unsynced_missing=False),)

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        installed = ctx.fact(Packages(self.names, unsynced_missing=False))
        todo = [name for name in self.names if installed.get(name) is not None]
        if not todo:
            ctx.noop("no package berth installed is left")
            return
        yield Shell(
            "env", "DEBIAN_FRONTEND=noninteractive", "dpkg", "--purge", *todo, Raw(">/dev/null")
        )


@dataclass(frozen=True)
class MountPoints(Fact[tuple[str, ...]]):
    """Every mount point of the host (``/proc/self/mountinfo``, octal escapes decoded)."""

    def command(self) -> str:
        return "awk '{print $5}' /proc/self/mountinfo"

    def parse(self, output: str, exit_code: int) -> tuple[str, ...]:
        return tuple(unescape(line) for line in output.splitlines() if line.strip())


def mounts_under(path: str, mounts: tuple[str, ...]) -> tuple[str, ...]:
    """The mount points at or under ``path``, deepest first."""
    inside = {m for m in mounts if m == path or m.startswith(path.rstrip("/") + "/")}
    return tuple(sorted(inside, key=lambda m: (-m.count("/"), m)))


@dataclass(frozen=True)
class CreatedPathAbsent(Operation):
    """Nothing at ``path`` (a path berth created, per the footprint): mounts at or under it are
    unmounted first, then it is removed with everything in it."""

    path: str

    @property
    def id(self) -> str:
        return f"absent:{self.path}"

    def describe(self) -> str:
        return f"remove {self.path} (not there before berth)"

    def facts(self) -> tuple[Fact[Any], ...]:
        return (PathInfo((self.path,)), MountPoints())

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        if ctx.fact(PathInfo((self.path,)))[self.path] is None:
            ctx.noop(f"{self.path} is already absent")
            return
        for mount in mounts_under(self.path, ctx.fact(MountPoints())):
            yield Shell("umount", "--", mount)
        yield Shell("rm", "-rf", "--", self.path)
        if self.path.startswith(f"{UNIT_DIR}/"):
            ctx.run.pending_daemon_reload = True  # a unit (mask) went: systemd must forget it


def footprint_problems(
    footprint: HostFootprint,
    *,
    packages: dict[str, str | None],
    paths: dict[str, Any],
    mounts: tuple[str, ...],
    keep_packages: bool,
    own_paths: tuple[str, ...] = (),
    tables: tuple[str, ...] = (),
    users: Mapping[str, UserInfo | None] | None = None,
    groups: Mapping[str, int | None] | None = None,
) -> list[str]:
    """What of ``footprint`` is still on the host (from the host's facts after destroy), and
    any mount left under ``own_paths`` (berth's own places). ``users`` and ``groups``: the
    ``Users`` and ``Groups`` facts of the footprint's absent accounts."""
    problems = []
    if not keep_packages:
        problems += [
            f"package {name} (installed by berth) is still installed"
            for name in footprint.packages
            if packages.get(name) is not None
        ]
    for path in footprint.created_paths:
        if paths.get(path) is not None:
            problems.append(f"{path} (not there before berth) is still there")
    for path in (*footprint.created_paths, *own_paths):
        problems += [f"{m} is still mounted" for m in mounts_under(path, mounts)]
    if footprint.nft_before is not None:
        problems += [
            f"nftables table {t} (not there before berth) is still there"
            for t in tables
            if t not in footprint.nft_before
        ]
    for name in footprint.absent_accounts:
        # destroy removes both, whatever keep_packages says (the teardown phase)
        if (users or {}).get(name) is not None:
            problems.append(f"user {name} (not there before berth) is still there")
        if (groups or {}).get(name) is not None:
            problems.append(f"group {name} (not there before berth) is still there")
    return problems
