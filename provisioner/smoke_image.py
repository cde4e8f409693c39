"""The image ``berth verify`` runs its smoke pods from, built on the operator machine.

Nodes need no registry for it: the agents phase loads it into every runc node's image store
(the ``berth images load`` machinery), and smoke pods use it with ``imagePullPolicy: Never``.
It is one layer holding Debian's statically linked busybox (``apt-get install busybox-static``)
with its applets (``sh``, ``httpd``, ``wget``, ...) and ``/bin/smoke-serve``, the image's command:
httpd behind a shell that exits at once on SIGTERM. (A container's PID 1 gets no default signal
actions from the kernel: httpd alone ignores SIGTERM, so every pod deletion or scale-down would
wait out the whole grace period before the SIGKILL.) The archive is reproducible (sorted tar,
mtime 0, gzip without a timestamp), so its reference — tagged with the manifest digest — is the
same in every run on the same machine, and loading it again is a no-op.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import berth.runtime.layout as layout_module
from berth.runtime.digest import digest_hex
from berth.runtime.layout import ImageSpec, tar_directory, write_layout
from provisioner.errors import OperationError

REPOSITORY = "berth.local/verify-smoke"
REF_NAME = "smoke"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
SERVE_PORT = 8080
"""Where the smoke pods' httpd listens."""
SERVE = "/bin/smoke-serve"
"""``smoke-serve [DIR]``: serve DIR (default ``/www``) on :data:`SERVE_PORT` until SIGTERM/INT."""
CMD = (SERVE,)
"""The image's command."""

_SERVE_SCRIPT = f"""#!/bin/sh
# smoke-serve [DIR]: serve DIR (default /www) over HTTP on port {SERVE_PORT} until SIGTERM or
# SIGINT, then stop httpd and exit 0 at once. As a container's PID 1, httpd alone would ignore
# SIGTERM (PID 1 has no default signal actions) and hold every stop for its grace period.
trap 'kill "$server" 2>/dev/null; exit 0' TERM INT
httpd -f -p {SERVE_PORT} -h "${{1:-/www}}" &
server=$!
wait "$server"
"""


@dataclass(frozen=True)
class SmokeImage:
    """The OCI archive (bytes) and the reference pods use."""

    archive: bytes
    reference: str
    ref_name: str = REF_NAME


def find_busybox() -> Path:
    """The machine's busybox binary; it must be statically linked (it runs in an empty rootfs)."""
    for candidate in BUSYBOX_CANDIDATES:
        path = Path(candidate)
        if path.is_file():
            return path
    raise OperationError(
        "the verify smoke image needs a static busybox on this machine (none at "
        f"{' or '.join(BUSYBOX_CANDIDATES)})",
        hint="apt-get install busybox-static (or set spec.runtime: simulated)",
    )


def _rootfs(root: Path, busybox: Path) -> None:
    for directory in ("bin", "etc", "tmp", "www", "proc", "sys", "dev"):
        (root / directory).mkdir(mode=0o755)
    (root / "tmp").chmod(0o1777)
    shutil.copyfile(busybox, root / "bin/busybox")
    (root / "bin/busybox").chmod(0o755)
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=False, timeout=10
    )
    if applets.returncode != 0 or "httpd" not in applets.stdout.split():
        raise OperationError(
            f"{busybox} cannot serve the smoke pods (no httpd applet)",
            hint="apt-get install busybox-static",
        )
    for applet in applets.stdout.split():
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    (root / "www/index.html").write_text("berth smoke\n")
    (root / SERVE.lstrip("/")).write_text(_SERVE_SCRIPT)
    (root / SERVE.lstrip("/")).chmod(0o755)


def _build(busybox: Path) -> SmokeImage:
    with tempfile.TemporaryDirectory(prefix="berth-smoke-") as tmp:
        root = Path(tmp) / "rootfs"
        root.mkdir(mode=0o755)
        _rootfs(root, busybox)
        layout = Path(tmp) / "layout"
        spec = ImageSpec(cmd=CMD, env=("PATH=/bin",))
        digest = write_layout(layout, ref_name=REF_NAME, layers=[tar_directory(root)], spec=spec)
        return SmokeImage(tar_directory(layout), f"{REPOSITORY}:{digest_hex(digest)[:16]}")


_BUILDING = threading.Lock()
_built: dict[tuple[Path, int, int], SmokeImage] = {}
_SOURCES = (Path(__file__), Path(layout_module.__file__))
"""What the image is made by: an edit to either makes a new image (and disk cache key)."""


def smoke_image(cache_dir: Path | None = None) -> SmokeImage:
    """The smoke image of this machine's busybox, built once per process (every host's plan
    asks for it at once, so one builds while the others wait) and, with ``cache_dir``, once per
    machine: building it took ~1 s (most of it gzip) on the critical path of every cold plan."""
    busybox = find_busybox().resolve()
    stat = busybox.stat()
    key = (busybox, stat.st_size, stat.st_mtime_ns)
    with _BUILDING:
        if key in _built:
            return _built[key]
        cached = _cached(cache_dir, key) if cache_dir is not None else None
        image = cached or _build(busybox)
        if cache_dir is not None and cached is None:
            _store(cache_dir, key, image)
        _built[key] = image
        return image


def _cache_name(key: tuple[Path, int, int]) -> str:
    made_by = b"".join(source.read_bytes() for source in _SOURCES)
    return hashlib.sha256(repr(key).encode() + made_by).hexdigest()[:32]


def _cached(cache_dir: Path, key: tuple[Path, int, int]) -> SmokeImage | None:
    base = cache_dir / "smoke" / _cache_name(key)
    try:
        reference = base.with_suffix(".ref").read_text().strip()  # written last: whole or none
        archive = base.with_suffix(".tar").read_bytes()
    except OSError:
        return None
    return SmokeImage(archive, reference)


def _store(cache_dir: Path, key: tuple[Path, int, int], image: SmokeImage) -> None:
    """Write the image beside the others (each file whole, through a temp file; the reference
    last); a cache that cannot be written only costs the next run a build."""
    base = cache_dir / "smoke" / _cache_name(key)
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        for suffix, data in ((".tar", image.archive), (".ref", image.reference.encode())):
            tmp = base.with_suffix(f"{suffix}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(base.with_suffix(suffix))
        _prune(base.parent, keep=base.with_suffix(".ref"))
    except OSError:
        return


KEPT_IMAGES = 4
"""Images kept on disk (~1 MB each): one per busybox or berth source edit would pile up."""


def _prune(directory: Path, keep: Path) -> None:
    """Remove all but ``keep`` (the image just written) and the most recently written others,
    :data:`KEPT_IMAGES` in all (mtimes can tie within a clock tick: ``keep`` is named)."""
    others = [ref for ref in directory.glob("*.ref") if ref != keep]
    others.sort(key=lambda ref: ref.stat().st_mtime_ns, reverse=True)
    for ref in others[KEPT_IMAGES - 1 :]:
        ref.unlink(missing_ok=True)  # the reference first: a half-removed image is not found
        ref.with_suffix(".tar").unlink(missing_ok=True)
