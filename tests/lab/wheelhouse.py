"""Installing berth from its wheel into a fresh virtualenv without the network.

The wheel is built from a copy of this checkout's files (``pip wheel``; the commit is passed as
``BERTH_BUILD_COMMIT``, as a packager building from a source tree would). Its dependencies come
from a local wheelhouse made by repacking the distributions installed next to these tests (the
files each one's ``RECORD`` lists, with its metadata), so ``pip install --no-index`` resolves
the wheel's declared requirements exactly as it would from PyPI, only offline and in seconds.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def source_copy(target: Path) -> Path:
    """The files git knows of in this checkout (tracked and new, as they are on disk), copied
    to ``target``: the build never sees, nor leaves, this tree's ``build/`` or egg-info."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def head_commit() -> str:
    """This checkout's ``HEAD`` (``-dirty`` when tracked files differ from it)."""
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    status = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return head + ("-dirty" if status.strip() else "")


def build_wheel(source: Path, out: Path, *, commit: str) -> Path:
    """``pip wheel`` of ``source`` into ``out``; returns the wheel."""
    env = {"BERTH_BUILD_COMMIT": commit}
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
         "--disable-pip-version-check", "-w", str(out), str(source)],
        capture_output=True, text=True, env={**_environ(), **env}, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (wheel,) = out.glob("berth-*.whl")
    return wheel


def _environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}


def requirements_closure(wheel: Path) -> list[importlib.metadata.Distribution]:
    """The installed distributions the wheel's ``Requires-Dist`` (no extras) pulls in."""
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(meta).decode()
    pending = [line.split(":", 1)[1].strip() for line in text.splitlines()
               if line.startswith("Requires-Dist:")]  # fmt: skip
    environment = {"extra": ""}  # evaluate() fills in this interpreter and platform
    found: dict[str, importlib.metadata.Distribution] = {}
    while pending:
        requirement = Requirement(pending.pop())
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        found[name] = importlib.metadata.distribution(requirement.name)
        pending += found[name].requires or []
    return list(found.values())


def _hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def repack(dist: importlib.metadata.Distribution, out: Path) -> Path:
    """A wheel of the installed ``dist``: its files under site-packages and its dist-info (the
    tag its own ``WHEEL`` file gives; console scripts are made again by pip from
    ``entry_points.txt``)."""
    files = [f for f in dist.files or [] if not str(f).startswith("..")
             and "__pycache__" not in f.parts and not str(f).endswith(".pyc")]  # fmt: skip
    info = next(f for f in files if f.parts[0].endswith(".dist-info")).parts[0]
    wheel_meta = (Path(str(dist.locate_file(info))) / "WHEEL").read_text()
    tags = [line.split(":", 1)[1].strip().split("-") for line in wheel_meta.splitlines()
            if line.startswith("Tag:")]  # fmt: skip
    # the compressed tag set of every tag WHEEL lists (py2-none-any + py3-none-any: py2.py3-...)
    tag = "-".join(".".join(dict.fromkeys(t[i] for t in tags)) for i in range(3))
    name = canonicalize_name(dist.metadata["Name"]).replace("-", "_")
    path = out / f"{name}-{dist.version}-{tag}.whl"
    record = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for entry in files:
            arcname = str(entry)
            if arcname.endswith(("/RECORD", "/INSTALLER", "/REQUESTED", "/direct_url.json")):
                continue
            data = Path(str(dist.locate_file(entry))).read_bytes()
            archive.writestr(arcname, data)
            record.append(f"{arcname},{_hash(data)},{len(data)}")
        record.append(f"{info}/RECORD,,")
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


def install(wheel: Path, venv: Path) -> Path:
    """A fresh virtualenv at ``venv`` (with pip: the bundle build runs it) and ``wheel``
    installed there from a local wheelhouse; returns the venv's ``bin``."""
    house = venv.parent / "wheelhouse"
    house.mkdir()
    for dist in requirements_closure(wheel):
        repack(dist, house)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=_environ())
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index",
         "--disable-pip-version-check", "--find-links", str(house), str(wheel)],
        capture_output=True, text=True, env=_environ(), timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return venv / "bin"
