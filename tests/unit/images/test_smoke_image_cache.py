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
