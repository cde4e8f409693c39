"""OCI image layouts (``oci-layout`` + ``index.json`` + ``blobs/``), as directories or tar archives.

:func:`write_layout` builds a single-layer image from a directory tree with the standard
library only (tests and benchmarks use it to make images offline); :func:`open_layout` reads a
layout directory or a ``.tar`` of one for :meth:`berth.runtime.images.ImageService.import_layout`.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berth.runtime.digest import Digest, digest_hex, sha256_digest
from berth.runtime.errors import ImageError
from berth.runtime.manifest import OCI_INDEX, OCI_MANIFEST

REF_NAME = "org.opencontainers.image.ref.name"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class ImageSpec:
    """What :func:`write_layout` puts into the image config."""

    cmd: Sequence[str] = ()
    entrypoint: Sequence[str] = ()
    env: Sequence[str] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    working_dir: str = "/"
    user: str = ""
    architecture: str = "amd64"
    os: str = "linux"


def tar_directory(source: Path) -> bytes:
    """A reproducible tar (PAX, sorted, mtime 0, root-owned) of ``source``'s content."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(source):
            dirnames.sort()
            for name in sorted([*dirnames, *filenames]):
                full = Path(dirpath) / name
                info = tar.gettarinfo(str(full), arcname=str(full.relative_to(source)))
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mtime = 0
                if info.isreg():
                    with full.open("rb") as fh:
                        tar.addfile(info, fh)
                else:
                    tar.addfile(info)
    return buf.getvalue()


def write_layout(
    layout: Path,
    *,
    ref_name: str,
    layers: Sequence[bytes],
    spec: ImageSpec,
) -> Digest:
    """Write (or add to) an OCI layout with one image of the given uncompressed layer tars.

    Returns the manifest digest. Layers are gzip-compressed with mtime 0, so identical input
    gives identical digests.
    """
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> Digest:
        digest = sha256_digest(data)
        (blobs / digest_hex(digest)).write_bytes(data)
        return digest

    layer_descs = []
    for raw in layers:
        gz = gzip.compress(raw, mtime=0)
        layer_descs.append({"mediaType": OCI_LAYER_GZIP, "digest": put(gz), "size": len(gz)})
    config = {
        "architecture": spec.architecture,
        "os": spec.os,
        "config": {
            "Env": list(spec.env),
            "Cmd": list(spec.cmd) or None,
            "Entrypoint": list(spec.entrypoint) or None,
            "WorkingDir": spec.working_dir,
            "User": spec.user,
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(raw) for raw in layers]},
    }
    config_raw = json.dumps(config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": put(config_raw), "size": len(config_raw)},
        "layers": layer_descs,
    }
    manifest_raw = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = put(manifest_raw)
    index_path = layout / "index.json"
    index: dict[str, Any] = (
        json.loads(index_path.read_text())
        if index_path.exists()
        else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    )
    index["manifests"] = [
        m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) != ref_name
    ] + [
        {
            "mediaType": OCI_MANIFEST,
            "digest": manifest_digest,
            "size": len(manifest_raw),
            "annotations": {REF_NAME: ref_name},
            "platform": {"architecture": spec.architecture, "os": spec.os},
        }
    ]
    index_path.write_text(json.dumps(index, sort_keys=True))
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    return manifest_digest


@dataclass(frozen=True)
class LayoutSource:
    """Read access to a layout: ``read(path)`` returns the bytes of a file inside it."""

    read: Callable[[str], bytes]
    where: str

    def blob(self, digest: Digest) -> bytes:
        return self.read(f"blobs/sha256/{digest_hex(digest)}")

    def index(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.read("index.json"))
        except (KeyError, FileNotFoundError) as exc:
            raise ImageError(f"{self.where}: not an OCI layout (no index.json)") from exc
        if not isinstance(doc, dict):
            raise ImageError(f"{self.where}: index.json is not an object")
        return doc


def open_layout(path: Path) -> LayoutSource:
    """A layout directory, or a tar archive of one (``skopeo copy … oci-archive:``)."""
    if path.is_dir():
        return LayoutSource(read=lambda rel: (path / rel).read_bytes(), where=str(path))
    if not tarfile.is_tarfile(path):
        raise ImageError(f"{path}: neither an OCI layout directory nor a tar archive of one")
    members: Mapping[str, bytes] = _tar_members(path)

    def read(rel: str) -> bytes:
        try:
            return members[rel]
        except KeyError:
            raise FileNotFoundError(f"{path}: no {rel} in the archive") from None

    return LayoutSource(read=read, where=str(path))


def _tar_members(path: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            if member.isreg():
                fh = tar.extractfile(member)
                if fh is not None:
                    out[os.path.normpath(member.name).lstrip("/")] = fh.read()
    return out
