"""Image resolution: references, indexes, digest verification, shared store, layout import."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from berth.runtime.digest import Digest, sha256_digest
from berth.runtime.errors import DigestMismatch, ImageError, RegistryError
from berth.runtime.images import ImageService
from berth.runtime.layout import ImageSpec, tar_directory, write_layout
from berth.runtime.manifest import (
    DOCKER_LIST,
    OCI_INDEX,
    Platform,
    parse_index,
    select_platform,
)
from berth.runtime.reference import parse_reference
from berth.runtime.registry import RegistryClient
from berth.runtime.store import ContentStore, chain_id
from tests.unit.runtime.helpers import Entry, FakeTransport, make_tar

REG = "10.231.0.1:5000"
BASE = f"http://{REG}/v2/lab/app"


def test_references_normalise_like_docker() -> None:
    assert str(parse_reference("busybox")) == "docker.io/library/busybox:latest"
    ref = parse_reference("10.231.0.1:5000/lab/busybox:1.35")
    assert (ref.registry, ref.repository, ref.tag) == (REG, "lab/busybox", "1.35")
    pinned = parse_reference("localhost/a@sha256:" + "a" * 64)
    assert pinned.lookup == "sha256:" + "a" * 64
    assert pinned.tag is None
    with pytest.raises(ImageError, match="repository"):
        parse_reference("Upper/Case")
    with pytest.raises(ImageError, match="digest"):
        parse_reference("a@sha256:short")


def _desc(
    digest: str, arch: str, os_: str = "linux", variant: str | None = None
) -> dict[str, object]:
    plat = {"os": os_, "architecture": arch} | ({"variant": variant} if variant else {})
    return {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest,
        "size": 1,
        "platform": plat,
    }


def test_index_selection_picks_linux_amd64_and_explains_failure() -> None:
    d = ["sha256:" + c * 64 for c in "abcde"]
    index = parse_index(
        json.dumps(
            {
                "mediaType": OCI_INDEX,
                "manifests": [
                    _desc(d[0], "unknown", "unknown"),
                    _desc(d[1], "arm64", variant="v8"),
                    _desc(d[2], "amd64"),
                    _desc(d[3], "arm", variant="v7"),
                ],
            }
        ).encode()
    )
    assert select_platform(index).digest == d[2]
    assert select_platform(index, Platform(architecture="arm", variant="v7")).digest == d[3]
    assert select_platform(index, Platform(architecture="arm64")).digest == d[1]
    with pytest.raises(ImageError, match=r"no manifest for linux/s390x \(offers: unknown/unknown"):
        select_platform(index, Platform(architecture="s390x"))


class Registry:
    """A fake registry holding one image, optionally behind a manifest list."""

    def __init__(self, tmp: Path, *, as_list: bool = False) -> None:
        self.transport = FakeTransport()
        self.layer_raw = make_tar(Entry("bin/app", data=b"#!/bin/sh\necho hi\n", mode=0o755))
        layout = tmp / "layout"
        self.manifest_digest = write_layout(
            layout, ref_name="v1", layers=[self.layer_raw], spec=ImageSpec(cmd=["/bin/app"])
        )
        blobs = layout / "blobs" / "sha256"
        for blob in blobs.iterdir():
            self.serve(f"{BASE}/blobs/sha256:{blob.name}", blob.read_bytes())
        manifest = (blobs / self.manifest_digest.split(":")[1]).read_bytes()
        self.serve(f"{BASE}/manifests/{self.manifest_digest}", manifest)
        if as_list:
            lst = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": DOCKER_LIST,
                    "manifests": [
                        _desc("sha256:" + "f" * 64, "arm64"),
                        _desc(self.manifest_digest, "amd64"),
                    ],
                }
            ).encode()
            self.serve(f"{BASE}/manifests/v1", lst)
        else:
            self.serve(f"{BASE}/manifests/v1", manifest)

    def serve(self, url: str, body: bytes, digest: str | None = None) -> None:
        headers = {"Docker-Content-Digest": digest or sha256_digest(body)}
        self.transport.routes[url] = (200, headers, body)

    def service(self, tmp: Path) -> ImageService:
        client = RegistryClient(transport=self.transport, insecure=frozenset({REG}))
        return ImageService(ContentStore(tmp / "store"), client)


@pytest.mark.parametrize("as_list", [False, True])
def test_pull_stores_verified_blobs_and_unpacks(tmp_path: Path, as_list: bool) -> None:
    reg = Registry(tmp_path, as_list=as_list)
    images = reg.service(tmp_path)
    image = images.pull(f"{REG}/lab/app:v1")
    assert image.record.manifest_digest == reg.manifest_digest
    assert image.config.cmd == ("/bin/app",)
    assert image.record.diff_ids == (sha256_digest(reg.layer_raw),)
    rootfs = images.rootfs_snapshot(image)
    assert (rootfs / "bin/app").read_bytes().startswith(b"#!/bin/sh")
    accept = reg.transport.requests[0][1]["Accept"]
    assert "application/vnd.oci.image.index.v1+json" in accept
    assert images.get(f"{REG}/lab/app:v1") == image


def test_layers_are_shared_and_not_fetched_twice(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    images = reg.service(tmp_path)
    first = images.pull(f"{REG}/lab/app:v1")
    blob_gets = [u for u, _ in reg.transport.requests if "/blobs/" in u]
    images.pull(f"{REG}/lab/app@{reg.manifest_digest}")
    assert [u for u, _ in reg.transport.requests if "/blobs/" in u] == blob_gets
    second = images.get(f"{REG}/lab/app@{reg.manifest_digest}")
    assert second is not None
    assert images.rootfs_snapshot(first) == images.rootfs_snapshot(second)


def test_manifest_not_matching_the_registry_digest_header_is_rejected(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    url = f"{BASE}/manifests/v1"
    _, _, body = reg.transport.routes[url]
    reg.serve(url, body, digest="sha256:" + "0" * 64)
    with pytest.raises(DigestMismatch, match="manifest"):
        reg.service(tmp_path).pull(f"{REG}/lab/app:v1")


def test_manifest_not_matching_a_pinned_digest_is_rejected(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    other = "sha256:" + "1" * 64
    _, _, body = reg.transport.routes[f"{BASE}/manifests/v1"]
    reg.transport.routes[f"{BASE}/manifests/{other}"] = (200, {}, body)
    with pytest.raises(DigestMismatch):
        reg.service(tmp_path).pull(f"{REG}/lab/app@{other}")


def test_tampered_layer_is_rejected_and_not_stored(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    images = reg.service(tmp_path)
    layer_url = next(u for u, (_, _, b) in reg.transport.routes.items() if b.startswith(b"\x1f"))
    status, headers, body = reg.transport.routes[layer_url]
    reg.transport.routes[layer_url] = (status, headers, body[:-1] + bytes([body[-1] ^ 1]))
    with pytest.raises(DigestMismatch, match="blob"):
        images.pull(f"{REG}/lab/app:v1")
    assert not images.store.has_blob(Digest(layer_url.rsplit("/", 1)[1]))
    assert list(images.store.tmp.iterdir()) == [], "failed downloads leave no temp files"


def test_diff_id_mismatch_discards_the_snapshot(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    images = reg.service(tmp_path)
    image = images.pull(f"{REG}/lab/app:v1")
    bad = type(image.record)(
        reference="bad",
        manifest_digest=image.record.manifest_digest,
        config_digest=image.record.config_digest,
        layers=image.record.layers,
        diff_ids=(sha256_digest(b"something else"),),
    )
    with pytest.raises(DigestMismatch, match="uncompressed"):
        images.store.ensure_snapshot(bad)
    assert not images.store.snapshot_path(bad).exists()
    assert list(images.store.tmp.iterdir()) == []


def test_bearer_challenge_is_answered_with_an_anonymous_token(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    url = f"{BASE}/manifests/v1"
    challenge = 'Bearer realm="http://10.231.0.1:5001/token",service="reg",scope="x"'
    reg.transport.protected[url] = ("t0k", challenge)
    token_url = "http://10.231.0.1:5001/token?service=reg&scope=x"
    reg.transport.routes[token_url] = (200, {}, b'{"token":"t0k"}')
    client = RegistryClient(transport=reg.transport, insecure=frozenset({REG}))
    raw, _, _ = client.get_manifest(parse_reference(f"{REG}/lab/app:v1"), "v1")
    assert json.loads(raw)["schemaVersion"] == 2
    assert [u for u, _ in reg.transport.requests] == [url, token_url, url]


def test_basic_auth_challenge_is_reported_as_unsupported(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    url = f"{BASE}/manifests/v1"
    reg.transport.protected[url] = ("never", 'Basic realm="reg"')
    with pytest.raises(RegistryError, match="only anonymous bearer"):
        reg.service(tmp_path).pull(f"{REG}/lab/app:v1")


def test_registry_errors_name_the_url_and_status(tmp_path: Path) -> None:
    images = Registry(tmp_path).service(tmp_path)
    with pytest.raises(
        RegistryError, match=r"GET http://10\.231\.0\.1:5000/v2/lab/nope/manifests/v1: HTTP 404"
    ):
        images.pull(f"{REG}/lab/nope:v1")


def test_import_layout_directory_and_archive(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "www").mkdir(parents=True)
    (src / "www/index.html").write_text("hello")
    layout = tmp_path / "layout"
    write_layout(layout, ref_name="web", layers=[tar_directory(src)], spec=ImageSpec(cmd=["httpd"]))
    write_layout(layout, ref_name="other", layers=[make_tar(Entry("x"))], spec=ImageSpec())
    images = ImageService(ContentStore(tmp_path / "store"))
    image = images.import_layout(layout, ref_name="web", as_reference="local/web:1")
    assert (images.rootfs_snapshot(image) / "www/index.html").read_text() == "hello"
    archive = tmp_path / "layout.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(layout, arcname=".")
    again = ImageService(ContentStore(tmp_path / "store2")).import_layout(
        archive, ref_name="web", as_reference="local/web:1"
    )
    assert again.record == image.record
    with pytest.raises(ImageError, match="exactly one"):
        images.import_layout(layout, ref_name=None, as_reference="x/y")


def test_prune_keeps_what_images_use(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    images = reg.service(tmp_path)
    image = images.pull(f"{REG}/lab/app:v1")
    images.rootfs_snapshot(image)
    stray = images.store.put_bytes(b"orphan")
    removed = images.store.prune()
    assert [p.name for p in removed] == [stray.split(":")[1]]
    images.store.remove_image(image.record.reference)
    images.store.prune()
    assert list(images.store.blobs.iterdir()) == []
    assert list(images.store.snapshots.iterdir()) == []


def test_chain_id_follows_the_oci_definition() -> None:
    a, b = sha256_digest(b"a"), sha256_digest(b"b")
    assert chain_id((a,)) == a
    assert chain_id((a, b)) == sha256_digest(f"{a} {b}".encode())
