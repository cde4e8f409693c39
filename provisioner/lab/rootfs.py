"""The shared Debian root filesystems lab hosts boot from: one per release (bookworm, trixie).

It is built once with debootstrap and cached under ``/var/cache/berth-lab/rootfs-<key>``, where the
key hashes everything that decides its content (suite, package list, mirror, recipe version).
It looks like a fresh Debian cloud VM of its release: systemd as init, dbus, sshd, python3,
iproute2, ping, and little else (no pip, no container runtime). Per-host state (hostname,
machine-id, host keys) is *not* in it: each host writes those into its own overlay.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from provisioner.errors import LabError
from provisioner.lab.locks import file_lock
from provisioner.lab.system import remove_tree, require_root, require_tools, run

SUITE = "bookworm"
PACKAGES = (
    "dbus",
    "iproute2",
    "iputils-ping",
    "openssh-server",
    "python3",
    "systemd",
    "systemd-sysv",
)
# Bump when the customisation below changes, so cached trees built by older code are not reused.
RECIPE_VERSION = 1
DEFAULT_CACHE = Path("/var/cache/berth-lab")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SOURCES_FILE = Path("/etc/apt/sources.list.d/debian.sources")
SOURCES_LIST = Path("/etc/apt/sources.list")
MARKER = "etc/berth-lab-rootfs.json"  # inside the tree: what it was built from

ETC_HOSTS = (
    "127.0.0.1\tlocalhost\n"
    "::1\t\tlocalhost ip6-localhost ip6-loopback\n"
    "ff02::1\t\tip6-allnodes\n"
    "ff02::2\t\tip6-allrouters\n"
)
# Hosts get one host key each (ed25519, generated per lab); sshd must not look for others.
SSHD_DROP_IN = (
    "# berth lab: one per-host ed25519 host key, key-only root login\n"
    "HostKey /etc/ssh/ssh_host_ed25519_key\n"
    "PasswordAuthentication no\n"
    "PermitRootLogin prohibit-password\n"
)


def cache_dir() -> Path:
    """Where rootfs trees are cached (``BERTH_LAB_CACHE`` overrides)."""
    return Path(os.environ.get("BERTH_LAB_CACHE", str(DEFAULT_CACHE)))


def debian_mirror(sources: Path = SOURCES_FILE, sources_list: Path = SOURCES_LIST) -> str:
    """The machine's own Debian mirror (first ``URIs:`` of a stanza serving the suite)."""
    if sources.is_file():
        for stanza in sources.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                key, sep, value = line.partition(":")
                if sep and not line.startswith("#"):
                    fields[key.strip()] = value.strip()
            if SUITE in fields.get("Suites", "").split() and fields.get("URIs"):
                return fields["URIs"].split()[0]
    if sources_list.is_file():
        for line in sources_list.read_text().splitlines():
            words = line.split()
            if len(words) >= 3 and words[0] == "deb" and words[-2] == SUITE:
                return words[-3] if not words[1].startswith("[") else words[2]
    return DEFAULT_MIRROR


@dataclass(frozen=True)
class RootfsRecipe:
    """Everything that decides the content of a rootfs tree."""

    mirror: str
    suite: str = SUITE
    packages: tuple[str, ...] = PACKAGES
    version: int = RECIPE_VERSION

    def key(self) -> str:
        """A short stable hash of the recipe: the cache key."""
        blob = json.dumps(
            {
                "mirror": self.mirror,
                "suite": self.suite,
                "packages": sorted(self.packages),
                "version": self.version,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def path(self, cache: Path) -> Path:
        """Where the tree for this recipe lives in ``cache``."""
        return cache / f"rootfs-{self.key()}"


@dataclass(frozen=True)
class RootfsResult:
    """The rootfs tree ready to use, and whether this call had to build it."""

    path: Path
    built: bool
    seconds: float


def default_recipe(release: str = SUITE) -> RootfsRecipe:
    """The recipe for this machine (its mirror, the standard package list) and ``release``
    (a Debian codename: hosts of another release than the machine's come from the same
    mirror)."""
    return RootfsRecipe(mirror=debian_mirror(), suite=release)


RELEASES = ("bookworm", "trixie")
"""The Debian releases a lab host may boot (the platforms berth supports)."""


def parse_releases(text: str | None, count: int) -> list[str]:
    """Each host's release from ``--release``: one codename for every host (``trixie``) or
    counts in host order (``bookworm:2,trixie:1``, summing to ``count``); ``None``: all
    bookworm."""
    if not text:
        return [SUITE] * count
    out: list[str] = []
    for part in text.split(","):
        name, sep, number = part.strip().partition(":")
        if name not in RELEASES:
            raise LabError(
                f"--release: unknown release {name!r}",
                hint=f"a lab host boots one of {', '.join(RELEASES)}",
            )
        if not sep:
            if "," in text:
                raise LabError(f"--release {text!r}: give a count for each release (NAME:N)")
            return [name] * count
        if not number.isdigit() or int(number) < 1:
            raise LabError(f"--release {text!r}: {number!r} is not a host count")
        out += [name] * int(number)
    if len(out) != count:
        raise LabError(
            f"--release {text!r} names {len(out)} host(s), but the lab has {count}",
            hint="make the counts add up to the number of hosts",
        )
    return out


def ensure_rootfs(recipe: RootfsRecipe | None = None, *, cache: Path | None = None) -> RootfsResult:
    """Return the cached rootfs for ``recipe``, building it first if it is not cached yet.

    Concurrent callers (several test runs at once) serialise on a lock; the tree appears under its
    final name only when complete (built in a temporary directory, then renamed).
    """
    recipe = recipe or default_recipe()
    cache = cache or cache_dir()
    target = recipe.path(cache)
    started = time.monotonic()
    if (target / MARKER).is_file():
        return RootfsResult(target, built=False, seconds=time.monotonic() - started)
    require_root()
    require_tools("debootstrap")
    with file_lock(cache / ".rootfs.lock"):
        if (target / MARKER).is_file():  # another process built it while we waited
            return RootfsResult(target, built=False, seconds=time.monotonic() - started)
        for stale in cache.glob(".build-*"):  # from a build that was killed (we hold the lock)
            remove_tree(stale)
        scratch = cache / f".build-{recipe.key()}-{os.getpid()}"
        try:
            _debootstrap(recipe, scratch)
            customise(scratch)
            (scratch / MARKER).write_text(
                json.dumps(
                    {
                        "key": recipe.key(),
                        "suite": recipe.suite,
                        "packages": list(recipe.packages),
                        "mirror": recipe.mirror,
                    }
                )
                + "\n"
            )
            scratch.rename(target)
        finally:
            remove_tree(scratch)
    return RootfsResult(target, built=True, seconds=time.monotonic() - started)


def _debootstrap(recipe: RootfsRecipe, into: Path) -> None:
    into.mkdir(parents=True)
    try:
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(recipe.packages)}",
                recipe.suite,
                str(into),
                recipe.mirror,
            ]
        )
    except LabError as exc:
        log = into / "debootstrap/debootstrap.log"
        tail = log.read_text(errors="replace").splitlines()[-5:] if log.is_file() else []
        raise LabError(
            f"building the lab rootfs failed: {exc.message}" + "".join(f"\n  {t}" for t in tail),
            hint=f"check that the mirror {recipe.mirror} is reachable",
        ) from exc


def customise(root: Path) -> None:
    """Turn a fresh debootstrap tree into a shareable image with no per-machine identity."""
    etc = root / "etc"
    # No resolver: hosts have no route out, and a copied nameserver makes lookups stall.
    _replace_file(etc / "resolv.conf", "")
    _replace_file(etc / "hosts", ETC_HOSTS)
    _replace_file(etc / "machine-id", "")  # each host writes its own
    (etc / "hostname").unlink(missing_ok=True)
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
        dbus_id.symlink_to("/etc/machine-id")
    for key in (etc / "ssh").glob("ssh_host_*"):
        key.unlink()  # host keys are generated per host per lab
    drop_in = etc / "ssh/sshd_config.d"
    drop_in.mkdir(parents=True, exist_ok=True)
    (drop_in / "berth-lab.conf").write_text(SSHD_DROP_IN)
    # Like a cloud image: no package cache or lists (hosts have no route to a mirror anyway).
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*_*"):
        for path in root.glob(pattern):
            path.unlink()


def _replace_file(path: Path, content: str) -> None:
    if path.is_symlink() or path.exists():
        path.unlink()
    path.write_text(content)
