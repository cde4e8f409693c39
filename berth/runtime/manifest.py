"""OCI / Docker v2 manifests, indexes (manifest lists) and image configs as typed values."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from berth.runtime.digest import Digest, parse_digest
from berth.runtime.errors import ImageError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))

LAYER_TYPES_GZIP = (
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
)
LAYER_TYPES_PLAIN = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
)


@dataclass(frozen=True)
class Platform:
    """An OS/architecture pair (``variant`` only matters for arm)."""

    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


DEFAULT_PLATFORM = Platform()


@dataclass(frozen=True)
class Descriptor:
    """A pointer to content: media type, digest and size (plus a platform in indexes)."""

    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """A single-platform image manifest."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True)
class Index:
    """A multi-platform index / manifest list."""

    media_type: str
    manifests: tuple[Descriptor, ...]


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image config a runtime uses."""

    os: str
    architecture: str
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    diff_ids: tuple[Digest, ...] = ()
    exposed_ports: tuple[str, ...] = ()


def _load(raw: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ImageError(f"{what} is not a JSON object")
    return doc


def _descriptor(doc: Any, what: str) -> Descriptor:
    if not isinstance(doc, dict):
        raise ImageError(f"{what}: descriptor is not an object")
    try:
        plat = doc.get("platform")
        platform = (
            Platform(
                os=str(plat["os"]),
                architecture=str(plat["architecture"]),
                variant=plat.get("variant"),
            )
            if isinstance(plat, dict)
            else None
        )
        size = doc["size"]
        if not isinstance(size, int) or size < 0:
            raise ImageError(f"{what}: size must be a non-negative integer, got {size!r}")
        return Descriptor(
            media_type=str(doc.get("mediaType", "")),
            digest=parse_digest(str(doc["digest"])),
            size=size,
            platform=platform,
            annotations=dict(doc.get("annotations") or {}),
        )
    except KeyError as exc:
        raise ImageError(f"{what}: descriptor lacks {exc.args[0]!r}") from exc


def media_type_of(raw: bytes, header_type: str | None) -> str:
    """The document's media type: its own ``mediaType`` field, else the HTTP Content-Type."""
    doc = _load(raw, "manifest")
    own = doc.get("mediaType")
    if isinstance(own, str) and own:
        return own
    if "manifests" in doc:
        return OCI_INDEX
    if header_type:
        return header_type.split(";", 1)[0].strip()
    return OCI_MANIFEST


def parse_manifest(raw: bytes) -> Manifest:
    """Parse an image manifest (OCI or Docker schema 2)."""
    doc = _load(raw, "manifest")
    media_type = str(doc.get("mediaType") or OCI_MANIFEST)
    if media_type not in MANIFEST_TYPES:
        raise ImageError(f"manifest has unsupported media type {media_type!r}")
    if doc.get("schemaVersion") != 2:
        raise ImageError(f"manifest schemaVersion is {doc.get('schemaVersion')!r}, expected 2")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ImageError("manifest has no 'layers' list")
    return Manifest(
        media_type=media_type,
        config=_descriptor(doc.get("config"), "manifest config"),
        layers=tuple(_descriptor(layer, f"manifest layer {i}") for i, layer in enumerate(layers)),
    )


def parse_index(raw: bytes) -> Index:
    """Parse an OCI index or Docker manifest list."""
    doc = _load(raw, "index")
    manifests = doc.get("manifests")
    if not isinstance(manifests, list):
        raise ImageError("index has no 'manifests' list")
    return Index(
        media_type=str(doc.get("mediaType") or OCI_INDEX),
        manifests=tuple(_descriptor(m, f"index entry {i}") for i, m in enumerate(manifests)),
    )


def select_platform(index: Index, want: Platform = DEFAULT_PLATFORM) -> Descriptor:
    """The index entry for ``want``; an entry without a variant matches any wanted variant.

    Attestation manifests (``unknown/unknown``) never match. Raises when nothing fits, listing
    what the index offers.
    """
    candidates = [
        d
        for d in index.manifests
        if d.platform is not None
        and d.platform.os == want.os
        and d.platform.architecture == want.architecture
        and d.media_type in (*MANIFEST_TYPES, "")
    ]
    exact = [d for d in candidates if d.platform is not None and d.platform.variant == want.variant]
    chosen = exact or candidates
    if not chosen:
        offered = ", ".join(str(d.platform) for d in index.manifests if d.platform) or "none"
        raise ImageError(f"image index has no manifest for {want} (offers: {offered})")
    return chosen[0]


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImageError(f"image config: expected a list of strings, got {value!r}")
    return tuple(value)


def parse_image_config(raw: bytes) -> ImageConfig:
    """Parse the image config blob (``application/vnd.oci.image.config.v1+json``)."""
    doc = _load(raw, "image config")
    cfg = doc.get("config") or {}
    rootfs = doc.get("rootfs") or {}
    if not isinstance(cfg, dict) or not isinstance(rootfs, dict):
        raise ImageError("image config: 'config' and 'rootfs' must be objects")
    return ImageConfig(
        os=str(doc.get("os", "")),
        architecture=str(doc.get("architecture", "")),
        entrypoint=_strings(cfg.get("Entrypoint")),
        cmd=_strings(cfg.get("Cmd")),
        env=_strings(cfg.get("Env")),
        working_dir=str(cfg.get("WorkingDir") or ""),
        user=str(cfg.get("User") or ""),
        diff_ids=tuple(parse_digest(d) for d in _strings(rootfs.get("diff_ids"))),
        exposed_ports=tuple(sorted((cfg.get("ExposedPorts") or {}).keys())),
    )
