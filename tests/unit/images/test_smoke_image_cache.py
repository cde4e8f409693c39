"""The verify smoke image is built once per machine: a later process reads it from the cache
directory (building it cost ~1 s, mostly gzip, on the critical path of every cold plan)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner import smoke_image as module
from provisioner.smoke_image import smoke_image


def test_a_later_process_loads_the_image_built_before_without_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(module, "_built", {})
    built = smoke_image(tmp_path)
    assert sorted(p.suffix for p in (tmp_path / "smoke").iterdir()) == [".ref", ".tar"]

    monkeypatch.setattr(module, "_built", {})  # a later process

    def no_build(busybox: Path) -> module.SmokeImage:
        raise AssertionError("built again")

    monkeypatch.setattr(module, "_build", no_build)
    assert smoke_image(tmp_path) == built
    assert smoke_image() == built, "one image per process, with or without a cache directory"


def test_a_half_written_cache_entry_is_built_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reference is written last: an archive without it (a run killed mid-write) is no
    entry, and the next run builds and writes both."""
    monkeypatch.setattr(module, "_built", {})
    built = smoke_image(tmp_path)
    (ref,) = (tmp_path / "smoke").glob("*.ref")
    ref.unlink()
    monkeypatch.setattr(module, "_built", {})
    assert smoke_image(tmp_path) == built
    assert ref.read_text() == built.reference


def test_only_the_latest_images_stay_on_disk(tmp_path: Path) -> None:
    """Each busybox or source edit writes a new ~1 MB image: older ones beyond the kept few go."""
    image = module.SmokeImage(b"archive", "berth.local/smoke:0")
    for size in range(module.KEPT_IMAGES + 3):
        module._store(tmp_path, (Path("/bin/busybox"), size, 0), image)
    names = sorted(p.name for p in (tmp_path / "smoke").iterdir())
    assert len(names) == 2 * module.KEPT_IMAGES
    newest = module._cache_name((Path("/bin/busybox"), module.KEPT_IMAGES + 2, 0))
    assert f"{newest}.ref" in names
    assert f"{newest}.tar" in names
