"""Projected volumes (the service-account token, CA and namespace) in the runc runtime: laid
out like a Secret's (tmpfs, files written by the sandbox's file-volume writer), and rewritten in
place when the agent renews the token."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from berth.runtime.agent_runtime import RuncAgentRuntime, _resolved_volumes
from berth.runtime.safepath import UnsafePath
from berth.runtime.sandbox import SandboxRecord
from berth.runtime.spec import FilesVolume, PodUID
from tests.unit.runtime.helpers import runc_adapter

VOLUME = "kube-api-access-abcde"
SPEC = {
    "volumes": [
        {
            "name": VOLUME,
            "projected": {
                "defaultMode": 0o644,
                "sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}],
            },
        }
    ]
}


def _sandbox(adapter: RuncAgentRuntime) -> Path:
    pod_dir = adapter.rt.sandboxes.pod_dir(PodUID("u1"))
    (pod_dir / "volumes" / VOLUME).mkdir(parents=True)
    SandboxRecord(uid="u1", namespace="ns", name="p", netns="", extra={"spec": SPEC}).save(
        pod_dir / "sandbox.json"
    )
    return pod_dir / "volumes" / VOLUME


def test_projected_volume_is_a_files_volume_on_tmpfs() -> None:
    volumes, files = _resolved_volumes(SPEC["volumes"], {VOLUME: {"token": b"t"}})
    assert volumes == [{"name": VOLUME, "secret": {"secretName": VOLUME, "defaultMode": 0o644}}]
    assert files is not None
    assert files("secret", VOLUME) == {"token": b"t"}


def test_renewed_token_is_rewritten_in_place(tmp_path: Path) -> None:
    adapter = runc_adapter(tmp_path)
    target = _sandbox(adapter)
    assert isinstance(adapter._pod("u1").volumes[0].source, FilesVolume)
    content = {"token": b"second", "ca.crt": b"ca", "namespace": b"ns"}
    asyncio.run(adapter.update_volume_files("u1", {VOLUME: content}))
    assert (target / "token").read_bytes() == b"second"
    assert (target / "namespace").read_bytes() == b"ns"
    assert (target / "token").stat().st_mode & 0o777 == 0o644


def test_renewal_refuses_file_names_that_leave_the_volume(tmp_path: Path) -> None:
    adapter = runc_adapter(tmp_path)
    _sandbox(adapter)
    # Refused by the one safe-path check every volume file goes through.
    with pytest.raises(UnsafePath, match=r"must not contain '\.\.'"):
        asyncio.run(adapter.update_volume_files("u1", {VOLUME: {"../escaped": b"x"}}))
    assert not (adapter.rt.sandboxes.pod_dir(PodUID("u1")) / "volumes" / "escaped").exists()
