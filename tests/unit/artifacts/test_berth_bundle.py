"""The berth bundle records berth's release: on a host, ``berth.__version__`` is the version the
bundle was built for (it was ``0.0.0+unknown``: the shipped tree had no dist-info)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import orjson
import pytest

from berth.apiserver.openapi import definitions
from provisioner import platforms
from provisioner.artifacts import berth_bundle
from provisioner.artifacts.berth_bundle import BundleError, build_bundle, write_dist_info
from provisioner.platforms import Platform


def _host_version(site: Path) -> str:
    """``berth.__version__`` as a host sees it: only ``site`` on the path (``-S``: no
    site-packages, where this checkout's own dist-info lives)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    result = subprocess.run(
        [sys.executable, "-S", "-c", "import berth; print(berth.__version__, berth.__file__)"],
        env={**env, "PYTHONPATH": str(site)},
        cwd=site,  # -c puts the working directory first on the path
        capture_output=True,
        text=True,
        check=True,
    )
    version, where = result.stdout.split()
    assert Path(where).is_relative_to(site)  # the shipped package, not this checkout
    return version


def test_the_bundle_carries_berths_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # no PyPI in unit tests: the dependency wheels are beside the point here
    monkeypatch.setattr(berth_bundle, "_pip_install", lambda target, pins, platform: target.mkdir())
    monkeypatch.setattr(berth_bundle, "_compile", lambda site: None)
    bundle = build_bundle(tmp_path / "cache", version="9.8.7")
    assert bundle.id.startswith("9.8.7-")
    with tarfile.open(bundle.path) as tar:
        names = tar.getnames()
        assert "site/berth-9.8.7.dist-info/METADATA" in names
        tar.extractall(tmp_path / "host", filter="data")
    assert _host_version(tmp_path / "host" / "site") == "9.8.7"


def test_without_dist_info_a_host_knows_no_version(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "berth").symlink_to(Path(berth_bundle.source_root()), target_is_directory=True)
    assert _host_version(site) == "0.0.0+unknown"
    write_dist_info(site, "1.2.3")
    assert _host_version(site) == "1.2.3"


@pytest.mark.parametrize("bad", ["", "1.0 beta", "../1"])
def test_a_version_that_cannot_name_a_dist_info_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(BundleError, match="cannot record berth version"):
        write_dist_info(tmp_path, bad)


def test_the_bundle_carries_the_kubernetes_schemas_and_a_host_finds_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hosts get the one schema file the API server reads (compressed, inside the berth
    package), not the 72 MB kubernetes-validate package; the loader finds it there."""

    def fake_pip(target: Path, pins: tuple[str, ...], platform: Platform) -> None:
        target.mkdir()
        # the loader parses with orjson; the other wheels are beside the point here
        shutil.copytree(Path(orjson.__file__).parent, target / "orjson")

    monkeypatch.setenv("BERTH_BUNDLE_SOURCE", "worktree")  # this tree's loader
    monkeypatch.setattr(berth_bundle, "_pip_install", fake_pip)
    monkeypatch.setattr(berth_bundle, "_compile", lambda site: None)
    bundle = build_bundle(tmp_path / "cache", version="1.0.0")
    shipped = f"site/berth/apiserver/openapi/{definitions.BUNDLED_NAME}"
    with tarfile.open(bundle.path) as tar:
        names = tar.getnames()
        assert shipped in names
        assert not any("kubernetes_validate" in n for n in names)
        tar.extractall(tmp_path / "host", filter="data")
    site = tmp_path / "host" / "site"
    assert (site / shipped.removeprefix("site/")).stat().st_size < 400_000
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    probe = (
        "from berth.apiserver.openapi import definitions as d\n"
        "assert d.package_path() is None\n"  # no kubernetes_validate on a host
        "defs = d.load_definitions()\n"
        "print(d.source_path()); print(len(defs))\n"
        "print(defs['io.k8s.api.core.v1.Container']['properties']['imagePullPolicy']['type'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        env={**env, "PYTHONPATH": str(site)},
        cwd=site,
        capture_output=True,
        text=True,
        check=True,
    )
    where, count, pull_policy_type = result.stdout.splitlines()
    assert Path(where) == site / "berth/apiserver/openapi" / definitions.BUNDLED_NAME
    assert int(count) > 500
    assert "string" in pull_policy_type


def test_a_bundle_id_changes_with_the_schema_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTH_BUNDLE_SOURCE", "worktree")
    before = berth_bundle.bundle_id(version="1", pins=("a==1",))
    monkeypatch.setattr(berth_bundle, "schema_pin", lambda: "kubernetes-validate==0.0.1")
    assert berth_bundle.bundle_id(version="1", pins=("a==1",)) != before


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True, capture_output=True,
    )  # fmt: skip


def test_an_installed_berth_ships_itself_even_inside_a_checkout(tmp_path: Path) -> None:
    # a virtualenv inside some source checkout: `git archive HEAD:berth` there would ship the
    # checkout's committed berth instead of the installed one
    repo = tmp_path / "repo"
    (repo / "berth").mkdir(parents=True)
    (repo / "berth" / "__init__.py").write_text("# the checkout's berth\n")
    (repo / "pyproject.toml").write_text("")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "checkout")
    installed = repo / ".venv" / "lib" / "site-packages" / "berth"
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("# the installed berth\n")
    assert berth_bundle.committed_tree(repo / "berth") is not None
    assert berth_bundle.committed_tree(installed) is None
    before = berth_bundle.bundle_id(version="1.0.0", source=installed)
    (installed / "__init__.py").write_text("# another installed berth\n")
    assert berth_bundle.bundle_id(version="1.0.0", source=installed) != before


def test_one_id_and_one_tar_per_python_abi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster mixing Debian 12 (python 3.11) and 13 (3.13) runs one berth version: the id
    is the same for both ABIs, each ABI gets its own tar with wheels asked for that ABI, and
    only the operator's own Python version is compiled ahead (another one's bytecode differs)."""
    asked: list[tuple[str, str]] = []
    compiled: list[Path] = []

    def fake_pip(target: Path, pins: tuple[str, ...], platform: Platform) -> None:
        asked.append((platform.python_version, platform.abi))
        target.mkdir()

    monkeypatch.setattr(berth_bundle, "_pip_install", fake_pip)
    monkeypatch.setattr(berth_bundle, "_compile", compiled.append)
    cache = tmp_path / "cache"
    bookworm, trixie = platforms.by_codename("bookworm"), platforms.by_codename("trixie")
    old = build_bundle(cache, version="1.0.0", platform=bookworm)
    compiled_for_311 = len(compiled)
    new = build_bundle(cache, version="1.0.0", platform=trixie)
    assert old.id == new.id
    assert (old.abi, new.abi) == ("cp311", "cp313")
    assert old.path != new.path
    assert old.path.is_file()
    assert new.path.is_file()
    assert new.path == berth_bundle.bundle_path(cache, new.id, trixie)
    assert asked == [("3.11", "cp311"), ("3.13", "cp313")]
    assert sys.version_info[:2] == (3, 11)  # the operator's Python in this project's venv
    assert (compiled_for_311, len(compiled)) == (1, 1)
    # cached: asking again builds nothing
    assert build_bundle(cache, version="1.0.0", platform=trixie) == new
    assert len(asked) == 2


def test_prune_keeps_the_newest_and_any_bundle_in_use(tmp_path: Path) -> None:
    """Beyond the newest three, a bundle built or reused within the hour stays: another run
    sharing the cache (a parallel test worker) may be shipping it right now."""
    now = time.time()
    ages = {"a": 10, "b": 20, "c": 30, "in-use": 40, "old": 2 * 3600, "older": 3 * 3600}
    for name, age in ages.items():
        path = tmp_path / f"{name}{berth_bundle.SUFFIX}"
        path.write_bytes(b"")
        os.utime(path, (now - age, now - age))
    berth_bundle._prune(tmp_path, keep=f"a{berth_bundle.SUFFIX}", retain=3)
    left = sorted(p.name.removesuffix(berth_bundle.SUFFIX) for p in tmp_path.iterdir())
    assert left == ["a", "b", "c", "in-use"]


def test_a_reused_bundle_counts_as_in_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(berth_bundle, "pinned_requirements", lambda: ())
    out = berth_bundle.bundle_path(tmp_path, "cached")
    out.parent.mkdir()
    out.write_bytes(b"")
    os.utime(out, (1, 1))
    assert build_bundle(tmp_path, version="0.1.0", ident="cached").path == out
    assert out.stat().st_mtime > time.time() - 60
