"""``berth images load``: archive checks, the reference chosen, the host command, and the
host-side import (``python3 -m berth.runtime load``) into a content store."""

from __future__ import annotations

import io
import json
import shlex
import tarfile
from pathlib import Path

import pytest

from berth.runtime.cli import main as runtime_main
from berth.runtime.layout import ImageSpec, tar_directory, write_layout
from provisioner.images import (
    ImageArchiveError,
    choose_reference,
    load_command,
    read_archive,
)


def _archive(tmp_path: Path, ref_name: str) -> Path:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin/hello").write_text("#!/bin/sh\necho hi\n")
    layout = tmp_path / "layout"
    write_layout(layout, ref_name=ref_name, layers=[tar_directory(root)], spec=ImageSpec())
    path = tmp_path / "image.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(layout, arcname=".")
    return path


def test_full_name_in_the_archive_is_the_default_reference(tmp_path: Path) -> None:
    archive = read_archive(_archive(tmp_path, "registry.local/app:1.0"))
    assert archive.ref_names == ("registry.local/app:1.0",)
    assert choose_reference(archive, None) == ("registry.local/app:1.0", "registry.local/app:1.0")
    assert choose_reference(archive, "app:2") == ("app:2", "registry.local/app:1.0")


def test_short_name_needs_as(tmp_path: Path) -> None:
    archive = read_archive(_archive(tmp_path, "bb"))
    with pytest.raises(ImageArchiveError, match="no full name") as info:
        choose_reference(archive, None)
    assert "--as" in (info.value.hint or "")


def test_a_file_that_is_not_an_oci_archive_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "notes.tar"
    with tarfile.open(bad, "w") as tar:
        info = tarfile.TarInfo("README")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(ImageArchiveError, match=r"no index\.json"):
        read_archive(bad)
    with pytest.raises(ImageArchiveError, match="cannot read"):
        read_archive(tmp_path / "missing.tar")


def test_host_command_imports_with_the_installed_berth_and_removes_the_upload() -> None:
    command = load_command("/var/lib/berth/incoming-images/x.tar", "app:1", "app:1")
    assert command.startswith("PYTHONPATH=/opt/berth/current/site python3 -m berth.runtime ")
    argv = shlex.split(command.split(";")[0])
    assert argv[argv.index("load") + 1] == "/var/lib/berth/incoming-images/x.tar"
    assert argv[argv.index("--reference") + 1] == "app:1"
    assert "rm -f /var/lib/berth/incoming-images/x.tar; exit $rc" in command


def test_runtime_load_imports_the_archive_under_its_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = _archive(tmp_path, "registry.local/app:1.0")
    state = tmp_path / "state"
    argv = ["--state-dir", str(state), "load", str(archive), "--reference", "app:1.0"]
    assert runtime_main(argv) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["reference"] == "app:1.0"
    assert answer["imageId"].startswith("sha256:")
    images = json.dumps([p.name for p in (state / "images").rglob("*")])
    assert answer["imageId"].removeprefix("sha256:") in images
    assert runtime_main([*argv[:3], "/nonexistent.tar", "--reference", "x:1"]) == 1
