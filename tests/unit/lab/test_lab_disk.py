"""Each lab host's disk: a machine directory bound into the host, where its runtime's
containers directory points, so that containers' roots can be overlay mounts there (the host's
own root is an overlay, which the kernel refuses as an overlay's upper layer)."""

from __future__ import annotations

from pathlib import Path

from provisioner.lab import boot, overlay


def test_the_disk_is_bound_into_the_host_only_when_given(tmp_path: Path) -> None:
    common = {"root": tmp_path / "root", "machine": "m", "hostname": "n1", "netns": "ns"}
    plain = boot.nspawn_argv(**common)  # type: ignore[arg-type]
    with_disk = boot.nspawn_argv(**common, disk=(tmp_path / "disk", overlay.DISK))  # type: ignore[arg-type]
    assert with_disk == [*plain, f"--bind={tmp_path / 'disk'}:/var/lib/berth-lab-disk"]
    assert not [a for a in plain if a.startswith("--bind")]


def test_the_runtime_containers_directory_points_at_the_disk(tmp_path: Path) -> None:
    overlay.link_runtime_disk(tmp_path)
    overlay.link_runtime_disk(tmp_path)  # again (a second up of the same tree): unchanged
    link = tmp_path / "var/lib/berth/runtime/containers"
    assert link.is_symlink()
    assert str(link.readlink()) == "/var/lib/berth-lab-disk/containers"
    # root only, as the runtime makes its state directory
    assert (link.parent.stat().st_mode & 0o777) == 0o700
