"""Pulling and importing images into the node's content store.

:class:`ImageService` resolves a reference to a single linux/amd64 manifest (following an index
when the registry serves one), verifies every document and blob against its digest, stores
blobs once for all images, and unpacks an image's layers into a shared snapshot on demand.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from berth.runtime.digest import Digest, parse_digest, sha256_digest, verify_bytes
from berth.runtime.errors import DigestMismatch, ImageError, ImageNotPresent
from berth.runtime.layout import REF_NAME, open_layout
from berth.runtime.manifest import (
    DEFAULT_PLATFORM,
    INDEX_TYPES,
    MANIFEST_TYPES,
    ImageConfig,
    Manifest,
    Platform,
    media_type_of,
    parse_image_config,
    parse_index,
    parse_manifest,
    select_platform,
)
from berth.runtime.reference import ImageReference, parse_reference
from berth.runtime.registry import RegistryClient
from berth.runtime.store import ContentStore, ImageRecord

# An image config is read into memory whole (env, entrypoint, history): bounded.
MAX_CONFIG_BYTES = 8 << 20


def _check_config_size(manifest: Manifest, where: str) -> None:
    if manifest.config.size > MAX_CONFIG_BYTES:
        raise ImageError(
            f"{where}: image config of {manifest.config.size} bytes is larger than the "
            f"{MAX_CONFIG_BYTES} bytes allowed"
        )


@dataclass(frozen=True)
class PulledImage:
    """An image available on the node: its record and parsed config."""

    record: ImageRecord
    config: ImageConfig

    @property
    def image_id(self) -> Digest:
        """Like Docker's image id: the config digest."""
        return self.record.config_digest


class ImageService:
    """Pull from registries or import OCI layouts into a :class:`ContentStore`."""

    def __init__(
        self,
        store: ContentStore,
        registry: RegistryClient | None = None,
        *,
        platform: Platform = DEFAULT_PLATFORM,
    ) -> None:
        self.store = store
        self.registry = registry or RegistryClient()
        self.platform = platform

    def get(self, reference: str) -> PulledImage | None:
        """The image if it is already on the node (normalised reference lookup)."""
        record = self.store.get_image(str(parse_reference(reference)))
        if record is None:
            return None
        return PulledImage(record, self.store.image_config(record))

    def ensure(self, reference: str, *, policy: str = "IfNotPresent") -> PulledImage:
        """Kubernetes ``imagePullPolicy`` semantics: ``Always``, ``IfNotPresent``, ``Never``."""
        present = self.get(reference)
        if policy == "Never":
            if present is None:
                raise ImageNotPresent(
                    f"image {reference} is not present and imagePullPolicy is Never"
                )
            return present
        if policy == "IfNotPresent" and present is not None:
            return present
        return self.pull(reference)

    def pull(self, reference: str) -> PulledImage:
        """Fetch ``reference``'s manifest, config and layers, verifying every digest."""
        ref = parse_reference(reference)
        raw, content_type, header_digest = self.registry.get_manifest(ref, ref.lookup)
        digest = self._verify_manifest(ref, raw, header_digest, pinned=ref.digest)
        media_type = media_type_of(raw, content_type)
        if media_type in INDEX_TYPES:
            self.store.put_bytes(raw, digest, what=f"{ref} index")
            chosen = select_platform(parse_index(raw), self.platform)
            raw, _, header_digest = self.registry.get_manifest(ref, chosen.digest)
            digest = self._verify_manifest(ref, raw, header_digest, pinned=chosen.digest)
        elif media_type not in MANIFEST_TYPES:
            raise ImageError(f"{ref}: unsupported manifest media type {media_type!r}")
        manifest = parse_manifest(raw)
        _check_config_size(manifest, f"{ref}")
        self.store.put_bytes(raw, digest, what=f"{ref} manifest")
        for desc in (manifest.config, *manifest.layers):
            if self.store.has_blob(desc.digest):
                continue
            with self.registry.open_blob(ref, desc.digest) as stream:
                self.store.put_stream(stream, desc.digest, size=desc.size, what=f"{ref} blob")
        return self._record(str(ref), digest, manifest)

    @staticmethod
    def _verify_manifest(
        ref: ImageReference, raw: bytes, header_digest: str | None, *, pinned: Digest | None
    ) -> Digest:
        actual = sha256_digest(raw)
        if pinned is not None:
            verify_bytes(raw, pinned, what=f"{ref} manifest")
        if header_digest and header_digest.startswith("sha256:") and header_digest != actual:
            raise DigestMismatch(what=f"{ref} manifest", expected=header_digest, actual=actual)
        return actual

    def import_layout(self, path: Path, *, ref_name: str | None, as_reference: str) -> PulledImage:
        """Import one image from an OCI layout directory or archive and tag it ``as_reference``.

        ``ref_name`` picks the index entry by its ``org.opencontainers.image.ref.name``
        annotation; ``None`` takes the only entry.
        """
        source = open_layout(path)
        entries = source.index().get("manifests") or []
        if ref_name is not None:
            entries = [e for e in entries if (e.get("annotations") or {}).get(REF_NAME) == ref_name]
        if len(entries) != 1:
            raise ImageError(
                f"{source.where}: expected exactly one image named {ref_name!r}, "
                f"found {len(entries)}"
            )
        digest = parse_digest(str(entries[0].get("digest")))
        raw = source.blob(digest)
        verify_bytes(raw, digest, what=f"{source.where} {digest}")
        if media_type_of(raw, entries[0].get("mediaType")) in INDEX_TYPES:
            chosen = select_platform(parse_index(raw), self.platform)
            digest = chosen.digest
            raw = source.blob(digest)
            verify_bytes(raw, digest, what=f"{source.where} {digest}")
        manifest = parse_manifest(raw)
        _check_config_size(manifest, source.where)
        self.store.put_bytes(raw, digest)
        for desc in (manifest.config, *manifest.layers):
            if not self.store.has_blob(desc.digest):
                blob = source.blob(desc.digest)
                self.store.put_stream(
                    io.BytesIO(blob), desc.digest, size=desc.size, what=f"{source.where} blob"
                )
        return self._record(str(parse_reference(as_reference)), digest, manifest)

    def _record(self, reference: str, manifest_digest: Digest, manifest: Manifest) -> PulledImage:
        config = parse_image_config(self.store.read_blob(manifest.config.digest))
        if config.os and (config.os, config.architecture) != (
            self.platform.os,
            self.platform.architecture,
        ):
            raise ImageError(
                f"{reference} is built for {config.os}/{config.architecture}, "
                f"this node runs {self.platform}"
            )
        record = ImageRecord(
            reference=reference,
            manifest_digest=manifest_digest,
            config_digest=manifest.config.digest,
            layers=tuple(d.digest for d in manifest.layers),
            diff_ids=config.diff_ids,
        )
        self.store.save_image(record)
        return PulledImage(record, config)

    def rootfs_snapshot(self, image: PulledImage) -> Path:
        """The image's unpacked, shared, read-only-by-convention root file system."""
        return self.store.ensure_snapshot(image.record)
