"""A content-addressed store on the node: verified blobs, image records and unpacked snapshots.

Layout under the store root (everything written via temp file + rename)::

    blobs/sha256/<hex>        manifests, configs and compressed layers (shared between images)
    images/<hex(ref)>.json    one record per image reference: which manifest/config/layers
    snapshots/<hex(chain)>/   an image's unpacked root file system, keyed by its layer chain id
    tmp/                      downloads and unpacks in progress

Snapshots are keyed by the OCI *chain id* of their layers, so two tags of the same image (or
two images built from identical layers) share one unpacked tree.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from berth.runtime.digest import Digest, copy_and_hash, digest_hex, parse_digest, sha256_digest
from berth.runtime.durable import fsync_dir, write_durably
from berth.runtime.errors import DigestMismatch, ImageError
from berth.runtime.manifest import ImageConfig, parse_image_config
from berth.runtime.unpack import (
    FREE_SPACE_RESERVE,
    MAX_UNPACKED_BYTES,
    UnpackBudget,
    apply_layer,
    free_bytes,
)

# No single blob (a compressed layer, a config) may be larger than this, whatever its
# descriptor says: the largest public image layers are a few GiB.
MAX_BLOB_BYTES = 16 << 30


@dataclass(frozen=True)
class ImageRecord:
    """What the node knows about a pulled or imported image."""

    reference: str
    manifest_digest: Digest
    config_digest: Digest
    layers: tuple[Digest, ...]
    diff_ids: tuple[Digest, ...]

    @property
    def chain_id(self) -> Digest:
        """The OCI chain id of all layers (identifies the unpacked root file system)."""
        return chain_id(self.diff_ids)

    def to_json(self) -> dict[str, object]:
        return {
            "reference": self.reference,
            "manifest": self.manifest_digest,
            "config": self.config_digest,
            "layers": list(self.layers),
            "diffIds": list(self.diff_ids),
        }

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> ImageRecord:
        layers = doc.get("layers")
        diff_ids = doc.get("diffIds")
        if not isinstance(layers, list) or not isinstance(diff_ids, list):
            raise ImageError("corrupt image record: layers/diffIds missing")
        return cls(
            reference=str(doc["reference"]),
            manifest_digest=parse_digest(str(doc["manifest"])),
            config_digest=parse_digest(str(doc["config"])),
            layers=tuple(parse_digest(str(d)) for d in layers),
            diff_ids=tuple(parse_digest(str(d)) for d in diff_ids),
        )


def chain_id(diff_ids: tuple[Digest, ...]) -> Digest:
    """ChainID(L1) = DiffID(L1); ChainID(L1..n) = sha256(ChainID(L1..n-1) + " " + DiffID(Ln))."""
    if not diff_ids:
        return sha256_digest(b"")
    current = diff_ids[0]
    for diff in diff_ids[1:]:
        current = sha256_digest(f"{current} {diff}".encode())
    return current


def _atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    # Durable: a blob's name is its digest, so a power cut must never leave an empty or torn
    # file under it (the image would look present and fail at every unpack), nor an image
    # record that names blobs the disk never got.
    path.parent.mkdir(parents=True, exist_ok=True)
    write_durably(path, data, mode=mode)


class ContentStore:
    """Verified blobs, image records and snapshots under one directory (see module docstring)."""

    def __init__(
        self,
        root: Path,
        *,
        max_blob_bytes: int = MAX_BLOB_BYTES,
        max_unpacked_bytes: int = MAX_UNPACKED_BYTES,
    ) -> None:
        self.root = root
        self.max_blob_bytes = max_blob_bytes
        self.max_unpacked_bytes = max_unpacked_bytes
        self.blobs = root / "blobs" / "sha256"
        self.images = root / "images"
        self.snapshots = root / "snapshots"
        self.tmp = root / "tmp"
        for d in (self.blobs, self.images, self.snapshots, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        # Root only: unpacked images may hold setuid binaries and device-less but hostile
        # trees; no other user of the node may reach into them.
        os.chmod(root, 0o700)

    # -- blobs -----------------------------------------------------------------------------
    def blob_path(self, digest: Digest) -> Path:
        return self.blobs / digest_hex(digest)

    def has_blob(self, digest: Digest) -> bool:
        return self.blob_path(digest).is_file()

    def read_blob(self, digest: Digest) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError as exc:
            raise ImageError(f"blob {digest} is not in the store at {self.blobs}") from exc

    def put_bytes(
        self, data: bytes, expected: Digest | None = None, *, what: str = "blob"
    ) -> Digest:
        """Store ``data``; when ``expected`` is given it must be the data's digest."""
        actual = sha256_digest(data)
        if expected is not None and actual != expected:
            raise DigestMismatch(what=what, expected=expected, actual=actual)
        if not self.has_blob(actual):
            _atomic_write(self.blob_path(actual), data)
        return actual

    def put_stream(
        self, stream: BinaryIO, expected: Digest, *, size: int | None = None, what: str = "blob"
    ) -> Digest:
        """Stream into the store, hashing on the way; nothing is kept unless the digest (and
        the size, when known) match. The download stops as soon as more than ``size`` (or, with
        no size, more than ``max_blob_bytes``) bytes arrive, and a declared size that exceeds
        the bound or the free disk space is refused before anything is read."""
        bound = self.max_blob_bytes if size is None else size
        if bound > self.max_blob_bytes:
            raise ImageError(
                f"{what}: {size} bytes is more than the {self.max_blob_bytes} bytes a blob may "
                "have on this node; refusing to download it"
            )
        if size is not None and size + FREE_SPACE_RESERVE > (free := free_bytes(self.tmp)):
            raise ImageError(
                f"{what}: {size} bytes do not fit in the {free} bytes free under {self.tmp} "
                f"(keeping {FREE_SPACE_RESERVE} bytes free); free disk space on the node"
            )
        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="ingest-")
        try:
            with os.fdopen(fd, "wb") as out:
                actual, written = copy_and_hash(stream, out, limit=bound, what=what)
                if actual != expected:
                    raise DigestMismatch(what=what, expected=expected, actual=actual)
                if size is not None and written != size:
                    raise ImageError(f"{what}: got {written} bytes, descriptor says {size}")
                out.flush()
                os.fsync(out.fileno())  # durable before it takes its digest's name
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.blob_path(expected))
            fsync_dir(self.blobs)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return expected

    # -- image records -----------------------------------------------------------------------
    def _record_path(self, reference: str) -> Path:
        return self.images / (hashlib.sha256(reference.encode()).hexdigest() + ".json")

    def save_image(self, record: ImageRecord) -> None:
        _atomic_write(self._record_path(record.reference), json.dumps(record.to_json()).encode())

    def get_image(self, reference: str) -> ImageRecord | None:
        try:
            raw = self._record_path(reference).read_text()
        except FileNotFoundError:
            return None
        return ImageRecord.from_json(json.loads(raw))

    def list_images(self) -> list[ImageRecord]:
        return [
            ImageRecord.from_json(json.loads(p.read_text())) for p in self.images.glob("*.json")
        ]

    def remove_image(self, reference: str) -> bool:
        try:
            self._record_path(reference).unlink()
        except FileNotFoundError:
            return False
        return True

    def image_config(self, record: ImageRecord) -> ImageConfig:
        return parse_image_config(self.read_blob(record.config_digest))

    # -- snapshots -----------------------------------------------------------------------------
    def snapshot_path(self, record: ImageRecord) -> Path:
        return self.snapshots / digest_hex(record.chain_id)

    def ensure_snapshot(self, record: ImageRecord) -> Path:
        """The unpacked root file system of ``record``, unpacking its layers on first use.

        Each layer's uncompressed content must hash to the diff id in the image config; a
        mismatch discards the half-built tree.
        """
        final = self.snapshot_path(record)
        if final.is_dir():
            return final
        if len(record.layers) != len(record.diff_ids):
            raise ImageError(
                f"{record.reference}: {len(record.layers)} layers but "
                f"{len(record.diff_ids)} diff ids in the config"
            )
        work = Path(tempfile.mkdtemp(dir=self.tmp, prefix="unpack-"))
        try:
            rootfs = work / "rootfs"
            rootfs.mkdir(mode=0o755)
            budget = UnpackBudget(self.max_unpacked_bytes)
            for layer, expected in zip(record.layers, record.diff_ids, strict=True):
                with self.blob_path(layer).open("rb") as stream:
                    actual = apply_layer(rootfs, stream, budget=budget)
                if actual != expected:
                    raise DigestMismatch(
                        what=f"{record.reference}: layer {layer} (uncompressed)",
                        expected=expected,
                        actual=actual,
                    )
            try:
                os.rename(rootfs, final)
            except OSError:
                if not final.is_dir():  # anything but "someone else finished first"
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return final

    def prune(self, *, keep_snapshots: Collection[str] = ()) -> list[Path]:
        """Remove blobs and snapshots no image record refers to, but not the snapshots named
        in ``keep_snapshots`` (a container's root is mounted over it); returns what was
        removed."""
        records = self.list_images()
        keep_blobs = {
            digest_hex(d) for r in records for d in (r.manifest_digest, r.config_digest, *r.layers)
        }
        keep_snaps = {digest_hex(r.chain_id) for r in records} | set(keep_snapshots)
        removed: list[Path] = []
        for path in self._entries(self.blobs):
            if path.name not in keep_blobs:
                path.unlink()
                removed.append(path)
        for path in self._entries(self.snapshots):
            if path.name not in keep_snaps:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        return removed

    @staticmethod
    def _entries(directory: Path) -> Iterator[Path]:
        yield from (p for p in sorted(directory.iterdir()) if not p.name.startswith("."))
