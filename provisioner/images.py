"""``berth images load``: put an OCI image archive into every node's image store over SSH, for
nodes that cannot reach a registry (air-gapped).

The archive (``oci-archive`` from ``skopeo copy``/``buildah push``, or any tar of an OCI image
layout) is read once on the operator machine, its index checked, then uploaded to each host
(0600, atomic) and imported by the node runtime of the installed berth
(``python3 -m berth.runtime load``): blobs are verified against their digests and stored
content-addressed, the root file system unpacked, and the upload removed. Pods then use the
image by its reference; with ``imagePullPolicy: IfNotPresent`` or ``Never`` no registry is
contacted.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shlex
import tarfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from provisioner import hostlayout as layout
from provisioner.connectors.base import HostTarget
from provisioner.connectors.ssh import SSHConnector
from provisioner.errors import ExitCode, OperationError, ProvisionerError

REF_NAME = "org.opencontainers.image.ref.name"
RUNTIME_STATE = layout.RUNTIME_STATE
INCOMING = layout.INCOMING_IMAGES


class ImageArchiveError(ProvisionerError):
    """The archive is unreadable, not an OCI image archive, or ambiguous (exit 3)."""

    exit_code = ExitCode.VALIDATION


@dataclass(frozen=True)
class ImageArchive:
    """An OCI archive checked on the operator machine."""

    path: Path
    content: bytes
    ref_names: tuple[str, ...]  # the index entries' ref.name annotations ("" when unnamed)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def read_archive(path: Path) -> ImageArchive:
    """Read ``path`` and its ``index.json``; raises :class:`ImageArchiveError` when it is not an OCI
    image archive."""
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ImageArchiveError(f"{path}: cannot read the image archive: {exc.strerror}") from None
    try:
        with tarfile.open(fileobj=io.BytesIO(content)) as tar:
            member = next(
                (m for m in tar.getmembers() if m.name.lstrip("./") == "index.json"), None
            )
            handle = tar.extractfile(member) if member is not None else None
            if handle is None:
                raise ImageArchiveError(
                    f"{path}: no index.json: not an OCI image archive",
                    hint="make one with `skopeo copy docker://IMAGE oci-archive:FILE:NAME`",
                )
            index = json.loads(handle.read())
    except (tarfile.TarError, json.JSONDecodeError) as exc:
        raise ImageArchiveError(f"{path}: not an OCI image archive ({exc})") from None
    names = tuple(
        str((entry.get("annotations") or {}).get(REF_NAME) or "")
        for entry in index.get("manifests") or []
    )
    if not names:
        raise ImageArchiveError(f"{path}: the archive's index lists no image")
    return ImageArchive(path, content, names)


def choose_reference(archive: ImageArchive, reference: str | None) -> tuple[str, str | None]:
    """``(reference pods use, index entry to import)``: ``--as`` wins; otherwise the only
    entry's ref.name must be a full reference (``name:tag``)."""
    ref_name = archive.ref_names[0] if len(archive.ref_names) == 1 else None
    if len(archive.ref_names) > 1:
        raise ImageArchiveError(
            f"{archive.path}: the archive holds {len(archive.ref_names)} images "
            f"({', '.join(n or '<unnamed>' for n in archive.ref_names)}); load one per archive"
        )
    if reference:
        return reference, ref_name or None
    if ref_name and (":" in ref_name or "@" in ref_name):
        return ref_name, ref_name
    raise ImageArchiveError(
        f"{archive.path}: the image has no full name in the archive "
        f"(ref.name {ref_name or 'missing'!r})",
        hint="name it with --as REFERENCE (e.g. --as registry.local/app:1.0)",
    )


@dataclass(frozen=True)
class Loaded:
    host: str
    image_id: str


def load_command(upload: str, reference: str, ref_name: str | None) -> str:
    """The host command: import with the installed berth, then remove the upload."""
    argv = ["python3", "-m", "berth.runtime", "--state-dir", RUNTIME_STATE, "load", upload,
            "--reference", reference]  # fmt: skip
    if ref_name:
        argv += ["--ref-name", ref_name]
    return (
        f"PYTHONPATH={shlex.quote(layout.SITE)} {shlex.join(argv)}; rc=$?; "
        f"rm -f {shlex.quote(upload)}; exit $rc"
    )


def _load_on(
    target: HostTarget, archive: ImageArchive, reference: str, ref_name: str | None
) -> Loaded:
    connector = SSHConnector(target).connect()
    try:
        connector.run(f"mkdir -p -m 0700 {INCOMING}").check(target.name, "creating " + INCOMING)
        upload = f"{INCOMING}/{archive.digest}.tar"
        connector.put(archive.content, upload, mode=0o600)
        result = connector.run(load_command(upload, reference, ref_name), timeout=300)
        if not result.ok:
            detail = result.stderr.strip()
            with contextlib.suppress(ValueError, KeyError, TypeError):
                detail = str(json.loads(detail)["error"])
            raise OperationError(
                f"{target.name}: importing {archive.path.name} as {reference} failed: "
                f"{detail[-600:]}",
                hint="is berth installed on the host (berth apply)?",
            )
        return Loaded(target.name, str(json.loads(result.stdout)["imageId"]))
    finally:
        connector.close()


def load_image(
    archive: ImageArchive,
    targets: Sequence[HostTarget],
    *,
    reference: str,
    ref_name: str | None,
    parallel: int = 8,
) -> list[Loaded]:
    """Import ``archive`` on every target (in parallel); every failing host is named."""
    loaded: list[Loaded] = []
    problems: list[str] = []

    def one(target: HostTarget) -> Loaded | ProvisionerError:
        try:
            return _load_on(target, archive, reference, ref_name)
        except ProvisionerError as error:
            return error

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(targets)))) as pool:
        for outcome in pool.map(one, targets):
            if isinstance(outcome, Loaded):
                loaded.append(outcome)
            else:
                problems.append(outcome.message)
    if problems:
        raise OperationError(
            "; ".join(problems),
            hint=f"loaded on {len(loaded)} of {len(targets)} host(s); fix and run it again "
            "(loading is idempotent)",
        )
    return loaded
