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

import functools
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

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


@functools.cache
def _build(busybox: Path, size: int, mtime_ns: int) -> SmokeImage:
    with tempfile.TemporaryDirectory(prefix="berth-smoke-") as tmp:
        root = Path(tmp) / "rootfs"
        root.mkdir(mode=0o755)
        _rootfs(root, busybox)
        layout = Path(tmp) / "layout"
        spec = ImageSpec(cmd=CMD, env=("PATH=/bin",))
        digest = write_layout(layout, ref_name=REF_NAME, layers=[tar_directory(root)], spec=spec)
        return SmokeImage(tar_directory(layout), f"{REPOSITORY}:{digest_hex(digest)[:16]}")


_BUILDING = threading.Lock()


def smoke_image() -> SmokeImage:
    """The smoke image of this machine's busybox (built once per process: every host's plan
    asks for it at once, and ``functools.cache`` alone would let each of them build it)."""
    busybox = find_busybox().resolve()
    stat = busybox.stat()
    with _BUILDING:
        return _build(busybox, stat.st_size, stat.st_mtime_ns)
