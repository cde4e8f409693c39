"""Starting a container of an image already present costs no image lock and no thread: a
burst of pods on a node no longer queues on the image, twice per pod."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

from berth.runtime.images import ImageService, PulledImage
from berth.runtime.runc import RuncRuntime
from berth.runtime.store import ContentStore


class CountingImages(ImageService):
    """Every image is present; ``ensure`` calls are counted; the snapshot is a directory."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(ContentStore(tmp_path / "images"))
        self.snapshot = tmp_path / "snapshot"
        self.snapshot.mkdir()
        self.ensured: list[str] = []
        self.image = cast(PulledImage, object())

    def ensure(self, reference: str, *, policy: str = "IfNotPresent") -> PulledImage:
        self.ensured.append(policy)
        return self.image

    def rootfs_snapshot(self, image: PulledImage) -> Path:
        return self.snapshot


def _runtime(tmp_path: Path, images: ImageService) -> RuncRuntime:
    return RuncRuntime(
        images=images,
        network=None,
        state_dir=tmp_path / "state",
        runc_root=tmp_path / "runc",
        enforce=frozenset(),
    )


def test_a_present_image_is_looked_up_once_per_process(tmp_path: Path) -> None:
    async def body() -> None:
        images = CountingImages(tmp_path)
        rt = _runtime(tmp_path, images)
        got: list[Any] = await asyncio.gather(*(rt.pull_image("web:1") for _ in range(10)))
        assert all(g is images.image for g in got)
        assert images.ensured == ["IfNotPresent"]  # the others found it present
        await rt.pull_image("web:1", policy="Never")
        assert images.ensured == ["IfNotPresent"]
        await rt.pull_image("web:1", policy="Always")  # always asks the registry
        assert images.ensured == ["IfNotPresent", "Always"]
        images.snapshot.rmdir()  # unpacked copy gone (pruned by another process)
        await rt.pull_image("web:1")
        assert images.ensured == ["IfNotPresent", "Always", "IfNotPresent"]
        images.snapshot.mkdir()
        await rt.pull_image("web:1")
        assert len(images.ensured) == 3
        await rt.prune_images()  # forgets what it knew
        await rt.pull_image("web:1")
        assert images.ensured == ["IfNotPresent", "Always", "IfNotPresent", "IfNotPresent"]

    asyncio.run(body())
