"""PVC-backed volumes on a node (berth.agent.volumes): claims resolve to host directories only
once bound, local volume paths are computed by the node and contained in its volumes dir
(hostile names refused), deleted volumes are swept, and subPath cannot follow a symlink that
an earlier pod planted in a persistent volume."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from berth.agent.volumes import ClaimNotReady, LocalVolumes, resolve_claims, with_claims
from berth.api import storage as st
from berth.api.resources import PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES
from berth.runtime.bundle import SandboxPaths, volume_mounts
from berth.runtime.errors import ContainerError
from berth.runtime.safepath import UnsafePath
from berth.runtime.spec import ContainerSpec, HostPath, Volume, VolumeMount
from tests.harness.fake_client import FakeClient


def local_pv(name: str, root: Path, node: str = "n1", *, path: str | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "annotations": {st.PROVISIONED_BY_ANNOTATION: st.LOCAL_PROVISIONER},
            "finalizers": [st.PV_PROTECTION_FINALIZER, st.LOCAL_CLEANUP_FINALIZER],
        },
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "local": {"path": path if path is not None else f"{root}/{name}"},
            "nodeAffinity": st.pinned_to(node),
        },
    }


def bound_claim(name: str, volume: str, phase: str = "Bound") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"volumeName": volume, "accessModes": ["ReadWriteOnce"]},
        "status": {"phase": phase},
    }


def pod(*claims: tuple[str, bool]) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {
            "volumes": [
                {"name": f"v{i}", "persistentVolumeClaim": {"claimName": c, "readOnly": ro}}
                for i, (c, ro) in enumerate(claims)
            ]
            + [{"name": "scratch", "emptyDir": {}}]
        },
    }


def test_bound_local_claim_becomes_a_host_path_made_on_the_node(tmp_path: Path) -> None:
    client = FakeClient()
    root = tmp_path / "volumes"
    client.seed(PERSISTENTVOLUMES, local_pv("pvc-1", root))
    client.seed(PERSISTENTVOLUMECLAIMS, bound_claim("data", "pvc-1"))
    notes: list[str] = []
    resolved = asyncio.run(
        resolve_claims(client, pod(("data", True)), LocalVolumes(root, "n1"), note=notes.append)
    )
    assert resolved == {
        "v0": {"name": "v0", "hostPath": {"path": str(root / "pvc-1"), "readOnly": True}}
    }
    assert (root / "pvc-1").is_dir()
    stored = client.stored(PERSISTENTVOLUMES, "pvc-1")
    assert stored is not None  # marked before the directory was made
    assert stored["metadata"]["annotations"][st.LOCAL_VOLUME_MADE_ANNOTATION] == "true"
    assert (root / "pvc-1").stat().st_mode & 0o777 == 0o777
    assert len(notes) == 1
    assert "not enforced" in notes[0]
    spec = with_claims(pod(("data", True))["spec"], resolved)
    assert spec["volumes"][0]["hostPath"]["path"] == str(root / "pvc-1")
    assert spec["volumes"][1] == {"name": "scratch", "emptyDir": {}}


def test_unbound_or_missing_claims_make_the_pod_wait(tmp_path: Path) -> None:
    client = FakeClient()
    client.seed(PERSISTENTVOLUMECLAIMS, bound_claim("pending", "", phase="Pending"))
    local = LocalVolumes(tmp_path, "n1")
    with pytest.raises(ClaimNotReady, match='"pending" is not bound'):
        asyncio.run(resolve_claims(client, pod(("pending", False)), local))
    with pytest.raises(ClaimNotReady, match='"ghost" not found'):
        asyncio.run(resolve_claims(client, pod(("ghost", False)), local))


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("pvc-1", "/etc"),  # the API object names a path elsewhere on the node
        ("pvc-1", "{root}/../etc"),
        ("..", "{root}/.."),  # hostile names never become a path element
        ("a/../../etc", "{root}/a/../../etc"),
        ("", "{root}/"),
    ],
)
def test_local_volume_paths_stay_in_the_volumes_dir(tmp_path: Path, name: str, path: str) -> None:
    root = tmp_path / "volumes"
    local = LocalVolumes(root, "n1")
    with pytest.raises((ClaimNotReady, UnsafePath)):
        local.ensure(local_pv(name, root, path=path.format(root=root)))
    assert not (tmp_path / "etc").exists()


def test_a_volume_pinned_elsewhere_or_a_planted_symlink_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "volumes"
    local = LocalVolumes(root, "n1")
    with pytest.raises(ClaimNotReady, match="not on node n1"):
        local.ensure(local_pv("pvc-2", root, node="n2"))
    root.mkdir()
    (root / "pvc-3").symlink_to("/")
    with pytest.raises(ClaimNotReady, match="not a directory"):
        local.ensure(local_pv("pvc-3", root))


def test_sweep_removes_deleted_volumes_and_keeps_retained_data(tmp_path: Path) -> None:
    client = FakeClient()
    root = tmp_path / "volumes"
    local = LocalVolumes(root, "n1")
    gone = local_pv("pvc-del", root)
    kept = local_pv("pvc-keep", root)
    kept["spec"]["persistentVolumeReclaimPolicy"] = "Retain"
    live = local_pv("pvc-live", root)
    for obj in (gone, kept, live):
        client.seed(PERSISTENTVOLUMES, obj)
        path, _ = local.ensure(obj)
        (path / "data").write_text("x")
        (path / "escape").symlink_to(tmp_path / "outside")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "precious").write_text("keep me")
    (root / "pvc-orphan").mkdir()  # its object is gone: not ours to judge
    for name in ("pvc-del", "pvc-keep"):  # held by their finalizers
        asyncio.run(client.delete(PERSISTENTVOLUMES, name))

    assert asyncio.run(local.sweep(client)) == ["pvc-del"]
    assert not (root / "pvc-del").exists()
    assert (tmp_path / "outside" / "precious").read_text() == "keep me"
    assert (root / "pvc-keep" / "data").exists()
    assert (root / "pvc-live" / "data").exists()
    assert (root / "pvc-orphan").exists()
    for name in ("pvc-del", "pvc-keep"):
        left = client.stored(PERSISTENTVOLUMES, name)
        assert left is None or st.LOCAL_CLEANUP_FINALIZER not in left["metadata"]["finalizers"]
    live_obj = client.stored(PERSISTENTVOLUMES, "pvc-live")
    assert live_obj is not None
    assert st.LOCAL_CLEANUP_FINALIZER in live_obj["metadata"]["finalizers"]


def test_sub_path_cannot_follow_a_symlink_out_of_a_persistent_volume(tmp_path: Path) -> None:
    volume = tmp_path / "pv"
    (volume / "real").mkdir(parents=True)
    (volume / "link").symlink_to("/")
    (volume / "inner").symlink_to("real")
    paths = SandboxPaths(
        netns=None,
        etc_hosts=tmp_path / "hosts",
        etc_resolv_conf=tmp_path / "resolv",
        etc_hostname=tmp_path / "hostname",
        volumes={},
    )
    vols = [Volume("data", HostPath(str(volume), read_only=True))]

    def mount(sub: str) -> dict[str, Any]:
        c = ContainerSpec("c", "i", volume_mounts=(VolumeMount("data", "/d", sub_path=sub),))
        return volume_mounts(c, vols, paths)[0]

    with pytest.raises(ContainerError, match="resolves outside its volume"):
        mount("link")
    with pytest.raises(ContainerError, match="resolves outside its volume"):
        mount("link/etc")
    inner = mount("inner")
    assert inner["source"] == os.path.realpath(volume / "real")
    assert "ro" in inner["options"]  # the claim's readOnly holds for every mount
    made = mount("new/dir")
    assert Path(made["source"]).is_dir()
