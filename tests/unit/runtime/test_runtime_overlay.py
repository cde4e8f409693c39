"""Containers' roots as overlay mounts over the image's shared snapshot (berth.runtime.overlay),
with real mounts in the test's temp dir (tests run as root, as CI does, on a file system that
can be an overlay's upper layer), and ``cp -a`` where the node cannot mount one.

Every test unmounts what is left under its temp dir (``_no_mounts_left``), so a failing test
never leaves a mount on the machine.
"""

from __future__ import annotations

import asyncio
import errno
import io
import json
import logging
import os
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from berth.network.command import Completed
from berth.runtime import overlay
from berth.runtime.errors import ContainerError
from berth.runtime.images import ImageService, PulledImage
from berth.runtime.layout import ImageSpec, write_layout
from berth.runtime.reset import reset_node
from berth.runtime.runc import RuncRuntime, container_id
from berth.runtime.sandbox import SandboxRecord
from berth.runtime.spec import ContainerSpec, PodSpec, PodUID
from berth.runtime.store import ContentStore
from berth.runtime.unpack import apply_layer
from tests.unit.runtime.helpers import Entry, make_tar

POD = PodUID("pod-1")
PASSWD = b"root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/:/bin/sh\n"


class Runc:
    """A runc that knows no container and whose shims fail or succeed as told."""

    def __init__(self, *, shim_fails: bool = False) -> None:
        self.shim_fails = shim_fails

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        time_limit: float = 60.0,
    ) -> Completed:
        if "state" in argv:
            return Completed(tuple(argv), 1, b"", b"container does not exist")
        if "--bundle" in argv and self.shim_fails:
            return Completed(tuple(argv), 1, b"", b"runc create: no such file")
        return Completed(tuple(argv), 0, b"", b"")


@pytest.fixture(autouse=True)
def _no_mounts_left(tmp_path: Path) -> Iterator[None]:
    yield
    overlay.unmount_all(tmp_path)


def _runtime(tmp_path: Path, runner: Runc | None = None, **kwargs: object) -> RuncRuntime:
    rt = RuncRuntime(
        images=ImageService(ContentStore(tmp_path / "images")),
        network=None,
        state_dir=tmp_path / "state",
        runc_root=tmp_path / "runc",
        runner=runner or Runc(),
        enforce=frozenset(),
        **kwargs,  # type: ignore[arg-type]
    )
    ready = SandboxRecord(uid=POD, namespace="default", name="p", netns="", state="ready")
    rt.sandboxes.record = lambda uid: ready if uid == POD else None  # type: ignore[method-assign]
    return rt


def _image(rt: RuncRuntime, tmp_path: Path) -> tuple[PulledImage, Path]:
    layer = make_tar(
        Entry("etc", "dir", mode=0o755),
        Entry("etc/passwd", data=PASSWD),
        Entry("data", "dir", mode=0o755),
        Entry("data/kept", data=b"image"),
        Entry("data/doomed", data=b"image"),
    )
    write_layout(
        tmp_path / "layout",
        ref_name="x",
        layers=[layer],
        spec=ImageSpec(cmd=["/bin/true"], user="app"),
    )
    image = rt.images.import_layout(tmp_path / "layout", ref_name="x", as_reference="img")
    return image, rt.images.rootfs_snapshot(image)


def _create(rt: RuncRuntime, name: str = "web", **spec: object) -> Path:
    container = ContainerSpec(name=name, image="img", **spec)  # type: ignore[arg-type]
    pod = PodSpec(uid=POD, namespace="default", name="p")
    cid = asyncio.run(rt.create_container(pod, container))
    return rt.containers_dir / cid


def _mounted(path: Path) -> bool:
    return overlay.mounts_at_or_under(path) == [path]


def _snapshot_intact(snapshot: Path) -> None:
    assert (snapshot / "data/kept").read_bytes() == b"image"
    assert (snapshot / "data/doomed").read_bytes() == b"image"
    assert sorted(os.listdir(snapshot / "data")) == ["doomed", "kept"]


def test_the_probe_mounts_here_and_leaves_nothing(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    assert rt.overlay_root() is True
    assert overlay.mounts_at_or_under(tmp_path) == []
    assert [p.name for p in rt.containers_dir.iterdir()] == [".overlay-probe.lock"]
    assert list(rt.images.store.tmp.iterdir()) == []


def test_a_write_in_one_container_is_seen_neither_by_another_nor_in_the_snapshot(
    tmp_path: Path,
) -> None:
    rt = _runtime(tmp_path)
    _, snapshot = _image(rt, tmp_path)
    one, two = _create(rt, "one"), _create(rt, "two")
    assert _mounted(one / "rootfs")
    assert _mounted(two / "rootfs")
    (one / "rootfs/data/kept").write_bytes(b"changed")
    (one / "rootfs/data/doomed").unlink()
    (one / "rootfs/data/new").write_bytes(b"new")
    assert (two / "rootfs/data/kept").read_bytes() == b"image"
    assert sorted(os.listdir(two / "rootfs/data")) == ["doomed", "kept"]
    _snapshot_intact(snapshot)
    assert (one / "upper/data/kept").read_bytes() == b"changed"  # the write went to its upper
    meta = json.loads((one / "meta.json").read_text())
    assert meta["snapshot"] == snapshot.name


def test_the_merged_root_has_the_images_root_owner_and_mode(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    _, snapshot = _image(rt, tmp_path)
    os.chmod(snapshot, 0o755)
    root = os.stat(_create(rt) / "rootfs")
    want = os.stat(snapshot)
    assert (root.st_mode, root.st_uid, root.st_gid) == (want.st_mode, want.st_uid, want.st_gid)


def test_the_images_user_is_read_through_the_overlay(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    _image(rt, tmp_path)
    bundle = _create(rt)
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["user"] == {"uid": 1000, "gid": 1001}
    assert config["root"] == {"path": str(bundle / "rootfs"), "readonly": False}


def test_a_read_only_root_is_an_overlay_made_read_only_by_runc(tmp_path: Path) -> None:
    """Not a read-only mount on the node: runc makes the mount points the image lacks (volume
    targets, /etc/resolv.conf) in the root before it remounts it read-only (root.readonly);
    whatever it makes goes to the upper directory, never into the snapshot."""
    rt = _runtime(tmp_path)
    _, snapshot = _image(rt, tmp_path)
    bundle = _create(rt, read_only_root_filesystem=True)
    assert _mounted(bundle / "rootfs")
    assert json.loads((bundle / "config.json").read_text())["root"]["readonly"] is True
    (bundle / "rootfs/mnt").mkdir()  # as runc makes a mount point
    assert not (snapshot / "mnt").exists()


def test_removing_a_container_unmounts_its_root_first(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    _, snapshot = _image(rt, tmp_path)
    bundle = _create(rt)
    asyncio.run(rt.remove_container(container_id(POD, "web", 0)))
    assert not bundle.exists()
    assert overlay.mounts_at_or_under(tmp_path) == []
    _snapshot_intact(snapshot)


def test_a_busy_root_is_detached_then_removed(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    _, snapshot = _image(rt, tmp_path)
    bundle = _create(rt)
    held = os.open(bundle / "rootfs/data", os.O_RDONLY | os.O_DIRECTORY)  # keeps it busy
    try:
        asyncio.run(rt.remove_container(container_id(POD, "web", 0)))
        assert not bundle.exists()
        assert overlay.mounts_at_or_under(tmp_path) == []
        assert sorted(os.listdir(held)) == ["doomed", "kept"]  # the detached mount still serves
    finally:
        os.close(held)
    _snapshot_intact(snapshot)


def test_a_failed_create_unmounts_and_removes_its_bundle(tmp_path: Path) -> None:
    rt = _runtime(tmp_path, Runc(shim_fails=True))
    _, snapshot = _image(rt, tmp_path)
    with pytest.raises(ContainerError, match="runc create"):
        _create(rt)
    assert not (rt.containers_dir / container_id(POD, "web", 0)).exists()
    assert overlay.mounts_at_or_under(tmp_path) == []
    _snapshot_intact(snapshot)


def test_a_half_made_bundle_still_mounted_after_a_crash_is_unmounted_then_replaced(
    tmp_path: Path,
) -> None:
    rt = _runtime(tmp_path)
    _, snapshot = _image(rt, tmp_path)
    bundle = _create(rt)
    (bundle / "rootfs/data/kept").write_bytes(b"first attempt")
    again = _runtime(tmp_path)  # an agent restarted: runc does not know the container
    assert _create(again) == bundle
    assert overlay.mounts_at_or_under(tmp_path) == [bundle / "rootfs"]  # one mount, the new one
    assert (bundle / "rootfs/data/kept").read_bytes() == b"image"
    _snapshot_intact(snapshot)


def test_reset_unmounts_a_root_no_container_record_names(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    _, snapshot = _image(rt, tmp_path)
    bundle = _create(rt)
    (bundle / "meta.json").unlink()  # a create cut short before its record

    class Quiet(Runc):
        async def run(self, argv: Sequence[str], **kwargs: object) -> Completed:
            out = b"[]" if "list" in argv or "-j" in argv else b""
            return Completed(tuple(argv), 0, out, b"")

    asyncio.run(reset_node(rt, Quiet(), lb_state=tmp_path / "lb"))
    assert overlay.mounts_at_or_under(tmp_path) == []
    _snapshot_intact(snapshot)


def test_a_planted_symlink_for_the_upper_directory_is_refused(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    _, snapshot = _image(rt, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "upper").symlink_to(outside)
    with pytest.raises(FileExistsError):
        overlay.prepare(snapshot, bundle)
    # and one swapped in after the mkdir: mount(2) would follow it, the check before does not
    (bundle / "upper").unlink()
    (bundle / "upper").mkdir()
    for name in ("work", "rootfs"):
        (bundle / name).mkdir()
    (bundle / "upper").rmdir()
    (bundle / "upper").symlink_to(outside)
    with pytest.raises(overlay.OverlayError, match="not a plain directory"):
        overlay.mount(snapshot, bundle / "upper", bundle / "work", bundle / "rootfs")
    assert overlay.mounts_at_or_under(tmp_path) == []
    assert list(outside.iterdir()) == []


def test_a_symlinked_bundle_is_refused(tmp_path: Path) -> None:
    _, snapshot = _image(_runtime(tmp_path), tmp_path)
    (tmp_path / "real").mkdir()
    (tmp_path / "bundle").symlink_to(tmp_path / "real")
    with pytest.raises(overlay.OverlayError, match="bundle"):
        overlay.prepare(snapshot, tmp_path / "bundle")
    assert list((tmp_path / "real").iterdir()) == []


@pytest.mark.parametrize("uid", ["x,upperdir=", "x:y", "x y", "x\\2c"])
def test_a_path_that_would_split_the_mount_options_is_refused(tmp_path: Path, uid: str) -> None:
    """A pod uid is API data: a comma in it must not add a second upperdir (the host's /etc,
    say) to the overlay's options."""
    rt = _runtime(tmp_path)
    _, snapshot = _image(rt, tmp_path)
    bundle = rt.containers_dir / f"{uid}_web_0"
    bundle.mkdir()
    with pytest.raises(overlay.OverlayError, match="overlay option"):
        overlay.prepare(snapshot, bundle)
    assert overlay.mounts_at_or_under(tmp_path) == []


def test_where_the_probe_fails_roots_are_copied(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real failing probe: the state dir on an overlay (as a container or nspawn host's
    root), which the kernel refuses as an upper layer."""
    for name in ("l", "u", "w", "host"):
        (tmp_path / name).mkdir()
    overlay.mount(tmp_path / "l", tmp_path / "u", tmp_path / "w", tmp_path / "host")
    host = tmp_path / "host"
    rt = RuncRuntime(
        images=ImageService(ContentStore(host / "images")),
        network=None,
        state_dir=host / "state",
        runc_root=host / "runc",
        runner=Runc(),
        enforce=frozenset(),
    )
    ready = SandboxRecord(uid=POD, namespace="default", name="p", netns="", state="ready")
    rt.sandboxes.record = lambda uid: ready  # type: ignore[method-assign]
    _, snapshot = _image(rt, tmp_path)
    with caplog.at_level(logging.WARNING):
        assert rt.overlay_root() is False
    assert "copied, not overlay mounts" in caplog.text
    bundle = _create(rt)
    assert overlay.mounts_at_or_under(bundle) == []
    assert (bundle / "rootfs/data/kept").read_bytes() == b"image"
    assert not (bundle / "upper").exists()
    asyncio.run(rt.remove_container(container_id(POD, "web", 0)))
    assert not bundle.exists()
    _snapshot_intact(snapshot)
    assert overlay.mounts_at_or_under(tmp_path) == [host]


def test_image_gc_keeps_a_snapshot_a_bundle_is_mounted_over(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    _, snapshot = _image(rt, tmp_path)
    _create(rt)
    asyncio.run(rt.remove_image("img"))
    removed = asyncio.run(rt.prune_images())
    assert snapshot not in removed
    _snapshot_intact(snapshot)
    asyncio.run(rt.remove_container(container_id(POD, "web", 0)))
    assert snapshot in asyncio.run(rt.prune_images())


def test_a_layer_cannot_set_overlay_attributes_on_the_snapshot(tmp_path: Path) -> None:
    """trusted.overlay.* (and user.overlay.*) in a layer's PAX headers would be read by the
    kernel as the overlay's own whiteouts, opaque dirs or redirects; other xattrs stay."""
    info = tarfile.TarInfo("dir")
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    info.pax_headers = {
        "SCHILY.xattr.trusted.overlay.opaque": "y",
        "SCHILY.xattr.user.overlay.opaque": "y",
        "SCHILY.xattr.user.kept": "yes",
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info)
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(root, io.BytesIO(buf.getvalue()))
    names = os.listxattr(root / "dir")
    assert "user.kept" in names
    assert not [n for n in names if ".overlay." in f".{n}"]


def test_unmount_of_something_not_mounted_is_quiet_and_a_real_error_is_raised(
    tmp_path: Path,
) -> None:
    overlay.unmount(tmp_path)  # not a mount point: nothing to do
    with pytest.raises(overlay.OverlayError) as caught:
        overlay.unmount(tmp_path / ("x" * 5000))
    assert caught.value.errno == errno.ENAMETOOLONG


def test_a_containers_directory_symlinked_onto_a_disk_gives_runc_a_resolved_rootfs(
    tmp_path: Path,
) -> None:
    """runc refuses a rootfs path with a symlink on it: the lab's hosts keep the containers
    directory on a disk of their own through one."""
    disk = tmp_path / "disk"
    disk.mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "state/containers").symlink_to(disk)
    rt = _runtime(tmp_path)
    _image(rt, tmp_path)
    bundle = _create(rt)
    assert bundle.parent == disk
    root = json.loads((bundle / "config.json").read_text())["root"]["path"]
    assert root == os.path.realpath(root) == str(disk / bundle.name / "rootfs")
    assert _mounted(bundle / "rootfs")
    asyncio.run(rt.remove_container(container_id(POD, "web", 0)))
    assert list(disk.iterdir()) == [disk / ".overlay-probe.lock"]
