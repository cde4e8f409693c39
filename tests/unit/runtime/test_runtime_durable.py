"""Runtime records that must outlive a power cut: each is written to a temp file, fsync'd,
renamed over the record, and its directory fsync'd (a rename alone can reach the disk before
the data: an empty or torn record under the real name after the power cut)."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from berth.runtime import shim
from berth.runtime.digest import sha256_digest
from berth.runtime.durable import write_durably
from berth.runtime.sandbox import SandboxManager
from berth.runtime.spec import EmptyDir, FilesVolume, PodSpec, PodUID, Volume
from berth.runtime.store import ContentStore, ImageRecord
from tests.unit.runtime.helpers import FakeNetnsHost

Synced = list[tuple[str, bool]]  # (path fsync'd, is a directory), in order


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> Synced:
    """Every fsync of this process, by the path its descriptor names."""
    seen: Synced = []
    real: Callable[[int], None] = os.fsync

    def spy(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        seen.append((path, os.path.isdir(path)))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return seen


def _durable(synced: Synced, record: Path) -> bool:
    """A temp file beside ``record`` fsync'd, then ``record``'s directory."""
    files = [i for i, (p, d) in enumerate(synced) if not d and Path(p).parent == record.parent]
    dirs = [i for i, (p, d) in enumerate(synced) if d and Path(p) == record.parent]
    return bool(files) and bool(dirs) and files[0] < dirs[-1]


def test_write_durably_syncs_file_then_directory_and_keeps_mode(
    tmp_path: Path, synced: Synced
) -> None:
    record = tmp_path / "r.json"
    write_durably(record, b"{}", mode=0o640)
    assert record.read_bytes() == b"{}"
    assert os.stat(record).st_mode & 0o777 == 0o640
    assert _durable(synced, record)
    assert [p for p, d in synced if not d] != [str(record)], "the temp file, before the rename"


def test_a_failed_write_keeps_the_old_record_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "r.json"
    record.write_bytes(b"old")

    def disk_error(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", disk_error)
    with pytest.raises(OSError, match="Input/output"):
        write_durably(record, b"new")
    assert record.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


POD = PodSpec(
    uid=PodUID("pod-1"),
    namespace="default",
    name="web",
    volumes=(
        Volume("token", FilesVolume("secret", {"token": b"s3cr3t"})),
        Volume("ram", EmptyDir(medium="Memory")),
    ),
)


def test_a_sandbox_record_is_durable_and_written_twice_per_create(
    tmp_path: Path, synced: Synced, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once before anything is made (teardown after a crash needs it), once ready; not once
    more per tmpfs volume (a crash's teardown finds those mounts under the pod's directory)."""
    netns = tmp_path / "netns"
    netns.mkdir()
    host = FakeNetnsHost(netns)
    manager = SandboxManager(
        state_dir=tmp_path / "state", network=None, runner=host, netns_dir=netns, namespaces=host
    )
    replaced: list[str] = []
    real_replace = os.replace

    def counting_replace(src: str, dst: str) -> None:
        if str(dst).endswith("sandbox.json"):
            replaced.append(str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", counting_replace)
    record = asyncio.run(manager.create(POD))
    path = manager.pod_dir(POD.uid) / "sandbox.json"
    assert record.state == "ready"
    assert len(replaced) == 2
    assert _durable(synced, path)
    dir_syncs = [p for p, d in synced if d and Path(p) == path.parent]
    assert len(dir_syncs) == 2, "both writes reach the disk before create goes on"


def test_blobs_and_image_records_are_durable(tmp_path: Path, synced: Synced) -> None:
    store = ContentStore(tmp_path / "store")
    config = store.put_bytes(b'{"config": {}}')
    assert _durable(synced, store.blob_path(config))
    synced.clear()
    layer = b"layer bytes"
    digest = sha256_digest(layer)
    store.put_stream(io.BytesIO(layer), digest, size=len(layer))
    assert store.blob_path(digest).read_bytes() == layer
    assert any(not d for _, d in synced), "the streamed blob is fsync'd before its rename"
    assert (str(store.blobs), True) in synced
    synced.clear()
    store.save_image(ImageRecord("lab/app:1", config, config, (digest,), (digest,)))
    (saved,) = store.images.iterdir()
    assert _durable(synced, saved)


def test_the_shims_exit_record_is_durable(tmp_path: Path, synced: Synced) -> None:
    exit_file = tmp_path / "exit.json"
    shim._write_atomic(str(exit_file), {"exitCode": 0, "signal": None})
    assert exit_file.read_text() == '{"exitCode": 0, "signal": null}'
    assert _durable(synced, exit_file)
