"""Fetch ``.deb`` files with this machine's apt, for hosts that have no package mirror.

:meth:`DebCache.resolve` adds the dependencies (Depends/PreDepends) the host lacks to the wanted
packages, judged against its dpkg status (the :class:`~provisioner.facts.packages.Packages`
fact); an ``A | B`` dependency is met by either alternative (:mod:`.depends`).
:meth:`DebCache.fetch` downloads each missing file once into the cache with ``apt-get download``
and returns it with its SHA-256; later runs are served from the cache without touching the
network.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.artifacts import aptroot, depends
from provisioner.errors import OperationError
from provisioner.operations.packages import Deb

_lock = threading.Lock()
DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


@dataclass(frozen=True)
class Candidate:
    name: str
    version: str
    arch: str

    @property
    def filename(self) -> str:
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


def _apt(*argv: str, cwd: Path | None = None, options: depends.AptOptions = ()) -> str:
    done = subprocess.run(
        [argv[0], *options, *argv[1:]], capture_output=True, text=True, cwd=cwd, check=False
    )
    if done.returncode != 0:
        raise OperationError(
            f"{' '.join(argv)} failed on this machine (exit {done.returncode}): "
            f"{done.stderr.strip()[-400:]}",
            hint="run `apt-get update` on this machine and check the package name",
        )
    return done.stdout


_digests: dict[tuple[str, int, int, int, int], str] = {}
"""SHA-256 of each cached file read in this process, by path and the file's device, inode,
size and modification time: every host of a run ships the same ``.deb`` files (runc, the CNI
plugins: ~13 MB per node), hashed once instead of once per host. A file replaced (the cache
renames new files into place: another inode) or rewritten (another size or mtime) is hashed
again."""
_digests_lock = threading.Lock()


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        stat = os.fstat(handle.fileno())  # of the very file read below
        key = (str(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with _digests_lock:
            known = _digests.get(key)
        if known is not None:
            return known
        digest = hashlib.sha256()
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    hexdigest = digest.hexdigest()
    with _digests_lock:
        _digests[key] = hexdigest
    return hexdigest


APT_CACHE = Path("/var/cache/apt/pkgcache.bin")


APT_LISTS = Path("/var/lib/apt/lists")


def _apt_generation(stamp: Path = APT_CACHE) -> str:
    """Changes whenever apt's package lists change (``apt-get update``)."""
    try:
        stat = stamp.stat()
    except FileNotFoundError:
        return "none"
    return f"{stat.st_mtime_ns}:{stat.st_size}"


def _lists_generation(lists: Path = APT_LISTS) -> str:
    """The machine's package lists themselves, name, size and mtime of each: apt's binary
    cache (:data:`APT_CACHE`) is switched off on many Debian images (containers, CI), and
    without it a memo keyed on the cache alone would never see an ``apt-get update``."""
    digest = hashlib.sha256()
    try:
        entries = sorted(os.scandir(lists), key=lambda entry: entry.name)
    except FileNotFoundError:
        return "none"
    for entry in entries:
        if entry.is_file(follow_symlinks=False):
            stat = entry.stat(follow_symlinks=False)
            digest.update(f"{entry.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


class DebCache:
    """A directory of downloaded ``.deb`` files (see the module docstring).

    apt's answers (dependency closures, candidate versions) are memoised in ``index.json`` for
    as long as apt's package lists are unchanged, so a no-op run does not spend ~0.5 s per query.

    ``release``: the Debian codename whose packages are wanted (a host's own); another release
    than this machine's is served by a private apt (:mod:`provisioner.artifacts.aptroot`) kept
    under the cache's parent, with its own index. The files of every release share the
    directory: their names carry the version.
    """

    def __init__(self, root: Path, release: str = "") -> None:
        self.root = root
        self.release = "" if release == aptroot.machine_codename() else release
        self._options: depends.AptOptions | None = None

    @property
    def options(self) -> depends.AptOptions:
        """apt's options for the release (fetching its lists the first time)."""
        if self._options is None:
            self._options = aptroot.apt_options(self.root.parent, self.release)
        return self._options

    def _generation(self) -> str:
        if not self.release:
            return f"{_apt_generation()}|{_lists_generation()}"
        return (
            f"{self.release}:{_apt_generation(self.root.parent / 'apt' / self.release / 'updated')}"
        )

    def _memo(self, key: str, compute: Callable[[], Any]) -> Any:
        index_path = self.root / (f"index-{self.release}.json" if self.release else "index.json")
        self.options  # noqa: B018 (a release's lists exist before its generation is read)
        generation = self._generation()
        with _lock:
            try:
                index = json.loads(index_path.read_text())
            except (OSError, ValueError):
                index = {}
            if index.get("generation") != generation:
                index = {"generation": generation}
            if key in index:
                return index[key]
        value = compute()
        with _lock:
            try:
                index = json.loads(index_path.read_text())
            except (OSError, ValueError):
                index = {}
            if index.get("generation") != generation:
                index = {"generation": generation}
            index[key] = value
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = index_path.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
            tmp.write_text(json.dumps(index, sort_keys=True))
            tmp.replace(index_path)
        return value

    def resolve(self, names: Sequence[str], installed: Mapping[str, str | None]) -> list[str]:
        """``names`` plus the dependencies the host lacks; an ``A | B`` dependency is met by
        either alternative (see :mod:`provisioner.artifacts.depends`)."""
        # the dependency tree is memoised with apt's lists: the recursive apt-cache run took
        # 2-3 s on the critical path of every cold plan (and apply) on a busy machine
        return depends.missing(names, installed, options=self.options, memo=self._memo)

    def candidate(self, name: str) -> Candidate:
        """The version apt would download for ``name``."""

        def ask() -> list[str]:
            out = _apt("apt-cache", "show", "--no-all-versions", name, options=self.options)
            fields = dict(re.findall(r"^(Package|Version|Architecture): (.+)$", out, re.M))
            return [fields["Package"], fields["Version"], fields["Architecture"]]

        package, version, arch = self._memo("candidate:" + name, ask)
        return Candidate(package, version, arch)

    def fetch(self, names: Sequence[str], *, arch: str) -> tuple[Deb, ...]:
        """Every package in ``names`` as a cached ``.deb`` (downloaded once)."""
        self.root.mkdir(parents=True, exist_ok=True)
        debs = []
        for name in names:
            candidate = self.candidate(name)
            with _lock:
                if candidate.arch not in (arch, "all"):
                    raise OperationError(
                        f"{name}: this machine's apt offers {candidate.arch}, the host needs {arch}"
                    )
                path = self.root / candidate.filename
                if not path.exists():
                    _download(name, candidate.version, path, self.options)
                debs.append(Deb(name, candidate.version, _sha256(path), path))
        return tuple(debs)


def _download(name: str, version: str, path: Path, options: depends.AptOptions = ()) -> None:
    """``apt-get download`` into a scratch directory, then move the file into place: another
    process (a parallel apply, a parallel test worker) that shares the cache sees the whole
    file or none, never a download under way."""
    with tempfile.TemporaryDirectory(prefix=".download-", dir=path.parent) as scratch:
        _apt("apt-get", "download", "-q", f"{name}={version}", cwd=Path(scratch), options=options)
        fetched = Path(scratch) / path.name
        if not fetched.exists():
            raise OperationError(f"apt-get download {name} did not produce {path.name}")
        fetched.replace(path)
