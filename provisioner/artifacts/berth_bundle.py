"""The berth bundle: a prebuilt site-packages tree of ``berth`` and its runtime dependencies.

Hosts run their release's own ``python3`` (Debian 12: 3.11, Debian 13: 3.13; no pip, no venv:
:mod:`provisioner.platforms`). Instead of installing packages there, the operator builds one
plain tar per host Python ABI in the cluster: the binary wheels of the host-side dependencies
for that CPython on manylinux x86_64 (pinned to the versions installed next to this provisioner,
so hosts run what the tests ran), unpacked with ``pip install --target``, plus the ``berth``
package itself and a minimal ``berth-<version>.dist-info`` (so ``berth.__version__`` on a host is
the release it was shipped as, not ``0.0.0+unknown``). The tar for the operator's own Python
version is compiled to ``.pyc`` here (the same bytecode magic as the host's); for another
version the host compiles on first import. Every ABI's tar carries the same id (sources, pins,
format), so a cluster of mixed releases runs one berth version. The tar is
streamed over SSH and unpacked into ``/opt/berth/versions/<id>/`` (``<id>`` =
``<version>-<hash>``), which is measured as the fastest way from bare host to imports-ok.

Bundles are cached under ``<cache>/bundles/<id>-<abi>.tar.gz``; the hash covers the ``berth``
sources, the pinned requirements, the wheel platform tags and the bundle format, so a source
edit makes a new id and an unchanged tree reuses the cached tar without touching the network.

Run from a git checkout, the bundle holds the *committed* ``berth`` (``git archive HEAD:berth``):
work in progress in the tree is never shipped to hosts by accident, and the id changes only with
commits touching ``berth/``. ``BERTH_BUNDLE_SOURCE=worktree`` ships the working tree instead, and
``BERTH_BUNDLE_SOURCE=<commit>`` the ``berth`` of that commit (tests pin one this way).

Installed (from a wheel, with pip or pipx), the bundle holds the installed ``berth`` package
itself: git is never asked, even when the installation happens to sit inside some checkout
(a virtualenv in a source tree), so what hosts run is what was installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import berth
from berth.apiserver.openapi import definitions
from provisioner.errors import ProvisionerError
from provisioner.platforms import SUPPORTED, Platform

BUNDLE_FORMAT = 5  # 2: berth's dist-info; 3: gzip; 4: Kubernetes schemas; 5: one tar per ABI
SUFFIX = ".tar.gz"
"""Bundles are gzip-compressed tars: a third of the bytes to every host (measured: 38.9 MB ->
11.4 MB; compressing once costs ~1 s, unpacking on a host ~0.2 s)."""
DEFAULT_PLATFORM = SUPPORTED[0]
"""The platform of a bundle asked for without naming one (a host's own is preferred)."""
PLATFORMS = ("manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_28_x86_64")
RUNTIME_REQUIREMENTS = (
    "aiohttp",
    "orjson",
    "PyYAML",
    "cryptography",
    "google-re2",
    "croniter",
    "uvloop",
)
"""What ``berth`` (host side) imports beyond the standard library; transitive deps follow.
``google-re2``: CRD schema patterns (``berth.apiserver.crd.regex``); PyPI has its
cp311 manylinux_2_28 x86_64 wheel, which Debian 12 (glibc 2.36) runs.
``croniter``: CronJob schedules (validation and the CronJob controller).
``uvloop``: the daemons' event loop (:mod:`berth.eventloop`); cp311 manylinux x86_64 wheel."""
SCHEMA_PACKAGE = "kubernetes-validate"
"""Ships the upstream Kubernetes schemas the API server serves and validates with. Not a
runtime requirement (72 MB of schemas for every release): the bundle carries only the one
file berth reads, compressed (see :mod:`berth.apiserver.openapi.definitions`)."""
_SKIP_DIRS = {"__pycache__"}
ENV_SOURCE = "BERTH_BUNDLE_SOURCE"


class BundleError(ProvisionerError):
    """The bundle could not be built (pip failed, or a dependency is not installed here)."""


@dataclass(frozen=True)
class Bundle:
    """A built bundle: its id (``<version>-<hash12>``) and the tar on the operator's disk."""

    id: str
    path: Path
    abi: str = DEFAULT_PLATFORM.abi

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def pinned_requirements() -> tuple[str, ...]:
    """``name==version`` of each runtime requirement as installed next to the provisioner."""
    pins = []
    for name in RUNTIME_REQUIREMENTS:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            raise BundleError(
                f"{name} is not installed next to berth, so its version cannot be pinned",
                hint="run `make setup`",
            ) from None
    return tuple(pins)


def schema_pin() -> str:
    """``kubernetes-validate==<version>``: the bundle's schemas come from that release."""
    try:
        return f"{SCHEMA_PACKAGE}=={importlib.metadata.version(SCHEMA_PACKAGE)}"
    except importlib.metadata.PackageNotFoundError:
        raise BundleError(
            f"{SCHEMA_PACKAGE} is not installed next to berth: the bundle needs its schemas",
            hint="run `make setup`",
        ) from None


def _source_files(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        files += [Path(dirpath) / f for f in sorted(filenames) if not f.endswith((".pyc", ".pyo"))]
    return files


def source_root() -> Path:
    """The directory of the ``berth`` package being shipped."""
    return Path(berth.__file__).parent


def from_checkout(root: Path) -> bool:
    """Whether the ``berth`` package at ``root`` is the one of a source checkout (its parent
    holds ``pyproject.toml`` and ``.git``) rather than an installed one."""
    return (root.parent / "pyproject.toml").is_file() and (root.parent / ".git").exists()


def committed_tree(root: Path | None = None) -> str | None:
    """The git tree id of the committed ``berth`` package, or ``None`` when ``berth`` is not
    run from a git checkout (an installed package) or with ``BERTH_BUNDLE_SOURCE=worktree``."""
    root = root or source_root()
    source = os.environ.get(ENV_SOURCE) or "HEAD"
    if source == "worktree" or not from_checkout(root) or shutil.which("git") is None:
        return None
    result = subprocess.run(
        ["git", "-C", str(root.parent), "rev-parse", f"{source}:{root.name}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return result.stdout.strip() if result.returncode == 0 else None


def bundle_id(*, version: str, source: Path | None = None, pins: tuple[str, ...] = ()) -> str:
    """``<version>-<hash12>``: the hash covers sources, pins, platform and format."""
    root = source or source_root()
    digest = hashlib.sha256(f"{BUNDLE_FORMAT}\0{','.join(PLATFORMS)}\0{','.join(pins)}\0".encode())
    digest.update(f"{schema_pin()}\0".encode())
    tree = committed_tree(root)
    if tree is not None:
        digest.update(f"git-tree\0{tree}".encode())
        return f"{version}-{digest.hexdigest()[:12]}"
    for path in _source_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return f"{version}-{digest.hexdigest()[:12]}"


def _pip_install(target: Path, pins: tuple[str, ...], platform: Platform) -> None:
    argv = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--target", str(target), "--only-binary=:all:",
            "--python-version", platform.python_version, "--implementation", "cp",
            "--abi", platform.abi, "--no-compile"]  # fmt: skip
    for tag in PLATFORMS:
        argv += ["--platform", tag]
    result = subprocess.run([*argv, *pins], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stderr.strip() or result.stdout.strip())[-600:]
        raise BundleError(
            f"building the berth bundle for CPython {platform.python_version} ({platform.name}):"
            f" pip could not fetch the host wheels ({tail})",
            hint="check that PyPI (or the pip cache) is reachable from this machine",
        )


def _compile(site: Path) -> None:
    # The operator's CPython writes the same bytecode a host of the same version reads; shipping
    # the .pyc saves every host compiling on first start (measured: ~0.3 s per component start).
    result = subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j", "0", str(site)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise BundleError(f"compiling the bundle failed: {result.stdout[-400:]}")


def _write_tar(site: Path, out: Path) -> None:
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    with tarfile.open(tmp, "w:gz", format=tarfile.PAX_FORMAT, compresslevel=6) as tar:

        def reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            return info

        for entry in sorted(site.iterdir()):
            tar.add(entry, arcname=f"site/{entry.name}", filter=reset)
    tmp.replace(out)


def bundle_path(cache_dir: Path, ident: str, platform: Platform = DEFAULT_PLATFORM) -> Path:
    """Where the tar of bundle ``ident`` for ``platform``'s Python ABI is cached."""
    return cache_dir / "bundles" / f"{ident}-{platform.abi}{SUFFIX}"


def build_bundle(
    cache_dir: Path,
    *,
    version: str,
    ident: str | None = None,
    platform: Platform = DEFAULT_PLATFORM,
) -> Bundle:
    """The bundle for ``version`` of the current sources and ``platform``'s Python: cached, or
    built now (a few seconds, needs PyPI or a warm pip cache once per dependency set and ABI).
    ``ident``: a precomputed id."""
    pins = pinned_requirements()
    ident = ident or bundle_id(version=version, pins=pins)
    out = bundle_path(cache_dir, ident, platform)
    if out.exists():
        with contextlib.suppress(FileNotFoundError):  # pruned meanwhile: built again below
            os.utime(out)  # in use: see _prune
            return Bundle(ident, out, platform.abi)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="berth-bundle-", dir=out.parent) as scratch:
        site = Path(scratch) / "site"
        _pip_install(site, pins, platform)
        shutil.rmtree(site / "bin", ignore_errors=True)
        _copy_sources(site / "berth")
        write_schemas(site / "berth")
        write_dist_info(site, version)
        if sys.version_info[:2] == platform.python:
            _compile(site)
        _write_tar(site, out)
    _prune(out.parent, keep=out.name)
    return Bundle(ident, out, platform.abi)


def write_schemas(package: Path) -> Path:
    """Put the compressed Kubernetes schemas into the shipped ``berth`` package ``package``,
    where :func:`berth.apiserver.openapi.definitions.source_path` looks first."""
    relative = Path(definitions.__file__).relative_to(source_root()).parent
    out = package / relative / definitions.BUNDLED_NAME
    try:
        data = definitions.compressed_definitions()
    except definitions.DefinitionsMissing as exc:
        raise BundleError(str(exc), hint="run `make setup`") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out


def write_dist_info(site: Path, version: str) -> Path:
    """Record ``berth`` ``version`` in ``site`` the way ``pip install`` would, minimally:
    ``importlib.metadata`` (hence ``berth.__version__``) finds ``berth-<version>.dist-info``
    when ``site`` is on ``sys.path``. Returns the dist-info directory."""
    if not version or any(c.isspace() or c in "/\\" for c in version):
        raise BundleError(f"cannot record berth version {version!r} in the bundle")
    info = site / f"berth-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: berth\nVersion: {version}\n")
    return info


def _copy_sources(target: Path) -> None:
    root = source_root()
    tree = committed_tree(root)
    if tree is None:
        shutil.copytree(root, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        return
    archive = subprocess.run(
        ["git", "-C", str(root.parent), "archive", "--format=tar", tree],
        capture_output=True, check=False,
    )  # fmt: skip
    if archive.returncode != 0:
        raise BundleError(f"git archive of the committed berth failed: {archive.stderr[-300:]!r}")
    target.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")


IN_USE_SECONDS = 3600
"""A bundle built or reused this recently may be about to ship from another run (parallel
applies, parallel test workers sharing the cache): never pruned."""


def _prune(directory: Path, *, keep: str, retain: int = 3 * len(SUPPORTED)) -> None:
    """Keep the ``retain`` most recent bundle tars (a cache, not an archive: about the last
    three versions, each for every ABI) and any in use."""
    dated = []
    for path in directory.glob(f"*{SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):  # another run's prune
            dated.append((path.stat().st_mtime, path))
    recent = time.time() - IN_USE_SECONDS
    for mtime, old in sorted(dated, reverse=True)[retain:]:
        if old.name != keep and mtime < recent:
            old.unlink(missing_ok=True)
