"""The host platforms berth supports: one table, read by preflight, the bundle builder, the
package fetcher and the README (a test keeps the README's table equal to this one).

A platform is a distribution release: its ``/etc/os-release`` identity, its codename (which
selects the ``.deb`` packages shipped to the host) and the CPython it ships as ``python3``
(which selects the berth bundle's binary wheels). A host matches a platform only when both
its release and its ``python3`` are that platform's: berth ships compiled wheels built for
exactly that interpreter, so a host with another ``python3`` could not import them.

Only what the test suite boots is listed (``tested``); Ubuntu is not here until a lab test
boots it (its packages would come from another archive).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Platform:
    os_id: str
    version_id: str
    codename: str
    python: tuple[int, int]
    name: str
    etcd: str
    """The etcd minor version the release packages."""
    etcd_runs_on: tuple[str, ...]
    """The codenames of the releases whose hosts may install this release's ``etcd-server``
    and ``etcd-client`` .debs (their dependencies checked against those releases): a cluster's
    etcd members all run the newest etcd among their releases (see
    :mod:`provisioner.phases.etcd_release_check`), so a member must be on one of these."""

    @property
    def etcd_version(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.etcd.split("."))

    @property
    def abi(self) -> str:
        """The CPython ABI tag of the host's ``python3`` (``cp311``)."""
        return f"cp{self.python[0]}{self.python[1]}"

    @property
    def python_version(self) -> str:
        return f"{self.python[0]}.{self.python[1]}"


SUPPORTED: tuple[Platform, ...] = (
    Platform(
        "debian", "12", "bookworm", (3, 11), "Debian 12 (bookworm)",
        etcd="3.4", etcd_runs_on=("bookworm",),
    ),
    # trixie's etcd-server 3.5.16-4 needs adduser, libc6 (>= 2.34) and init-system-helpers
    # (>= 1.54~), etcd-client libc6 (>= 2.34): bookworm has glibc 2.36 and
    # init-system-helpers 1.65 (a lab test runs it on bookworm members)
    Platform(
        "debian", "13", "trixie", (3, 13), "Debian 13 (trixie)",
        etcd="3.5", etcd_runs_on=("trixie", "bookworm"),
    ),
)  # fmt: skip


class UnsupportedPlatform(ValueError):
    """A host's release or python3 is not one berth supports (the message says which)."""


def supported_list() -> str:
    return ", ".join(p.name for p in SUPPORTED)


def by_codename(codename: str) -> Platform:
    for platform in SUPPORTED:
        if platform.codename == codename:
            return platform
    raise UnsupportedPlatform(f"unknown release {codename!r}: berth supports {supported_list()}")


def match(
    os_id: str,
    version_id: str,
    codename: str,
    python: tuple[int, ...] | None,
    *,
    pretty_name: str = "",
) -> Platform:
    """The platform of a host from its ``/etc/os-release`` fields and its ``python3`` version
    (``None``: no ``python3``); :class:`UnsupportedPlatform` says what is wrong and what is
    needed."""
    found = next(
        (
            p
            for p in SUPPORTED
            if p.os_id == os_id and (p.version_id == version_id or p.codename == codename)
        ),
        None,
    )
    if found is None:
        shown = pretty_name or " ".join(v for v in (os_id, version_id, codename) if v) or "unknown"
        raise UnsupportedPlatform(f"unsupported OS {shown}: berth supports {supported_list()}")
    if python is None:
        raise UnsupportedPlatform(
            f"python3 is not installed: {found.name} needs its python3 {found.python_version}"
            " (apt install python3)"
        )
    if tuple(python[:2]) != found.python:
        have = ".".join(str(v) for v in python)
        raise UnsupportedPlatform(
            f"python3 is {have}, but {found.name} ships {found.python_version}: berth's bundle"
            f" for this host is built for CPython {found.python_version}; use the release's own"
            " python3"
        )
    return found
