"""Issue 13, points 5, 10 and 11 (node half): API data and image content cannot reach outside
their directory on the node.

The node code is called directly with hostile input, bypassing the API server's validation
(defence in depth: a compromised or buggy API server, or a pod created before validation
existed, must not let a pod write, chmod or mount outside its own directory as root).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import io
import json
import os
import ssl
import stat
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, cast

import pytest

from berth.runtime.agent_runtime import _http_probe
from berth.runtime.bundle import SandboxPaths, volume_mounts
from berth.runtime.digest import Digest
from berth.runtime.errors import (
    ContainerError,
    ImageError,
    NodeRuntimeError,
    RegistryError,
    UnsafeLayer,
)
from berth.runtime.images import ImageService, PulledImage
from berth.runtime.layout import ImageSpec, write_layout
from berth.runtime.probetarget import ProbeRefused, resolve_target
from berth.runtime.reference import parse_reference
from berth.runtime.registry import RegistryClient, Response, UrllibTransport
from berth.runtime.runc import RuncRuntime
from berth.runtime.sandbox import SandboxManager, SandboxRecord
from berth.runtime.spec import (
    ContainerSpec,
    EmptyDir,
    FilesVolume,
    PodSpec,
    PodUID,
    Volume,
    VolumeMount,
)
from berth.runtime.store import ContentStore
from berth.runtime.unpack import apply_layer
from tests.harness.apiserver import TestPKI
from tests.unit.runtime.helpers import Entry, FakeNetnsHost, FakeTransport, make_tar

ROOT = Path(__file__).resolve().parents[2]
IMAGE_DB_LIMIT = 4 << 20  # berth.runtime.runc.IMAGE_DB_LIMIT (not imported: it is new)


Node = tuple[SandboxManager, FakeNetnsHost, Path]


@pytest.fixture
def node(tmp_path: Path) -> Node:
    """A sandbox manager whose state lives in ``tmp_path/node/state``; ``tmp_path/node`` also
    holds ``victim/`` (a directory the pod must never touch)."""
    base = tmp_path / "node"
    (base / "netns").mkdir(parents=True)
    victim = base / "victim"
    victim.mkdir(mode=0o700)
    os.chmod(victim, 0o700)
    host = FakeNetnsHost(base / "netns", missing_ok=True)
    manager = SandboxManager(
        state_dir=base / "state",
        network=None,
        runner=host,
        netns_dir=base / "netns",
        namespaces=host,
    )
    return manager, host, victim


def _pod(*volumes: Volume, uid: str = "pod-1") -> PodSpec:
    return PodSpec(uid=PodUID(uid), namespace="default", name="evil", volumes=volumes)


# state/pods/<uid>/volumes/<name>: four levels up is the node dir holding victim/.
_OUT = "../../../../victim"


def test_configmap_volume_named_with_dotdot_writes_nothing_outside(node: Node) -> None:
    manager, _, victim = node
    pod = _pod(Volume(_OUT, FilesVolume("configMap", {"payload": b"* * * * * root sh -c x\n"})))
    with pytest.raises(NodeRuntimeError, match="volume name"):
        asyncio.run(manager.create(pod))
    assert list(victim.iterdir()) == [], "a file was written outside the pod's directory"


def test_emptydir_named_with_dotdot_does_not_chmod_a_host_directory(node: Node) -> None:
    manager, _, victim = node
    with pytest.raises(NodeRuntimeError, match="volume name"):
        asyncio.run(manager.create(_pod(Volume(_OUT, EmptyDir()))))
    assert stat.S_IMODE(victim.stat().st_mode) == 0o700, "a host directory was made 0777"


def test_secret_volume_named_with_dotdot_mounts_no_tmpfs_over_a_host_path(node: Node) -> None:
    manager, host, _ = node
    with pytest.raises(NodeRuntimeError, match="volume name"):
        asyncio.run(manager.create(_pod(Volume(_OUT, FilesVolume("secret", {"k": b"v"})))))
    mounts = [c for c in host.calls if c[:1] == ["mount"]]
    assert mounts == [], f"tmpfs mounted from a hostile volume name: {mounts}"


@pytest.mark.parametrize("name", ["..", ".", "a/b", "/etc", ""])
def test_volume_names_that_are_not_one_file_name_are_refused(node: Node, name: str) -> None:
    manager, _, victim = node
    with pytest.raises(NodeRuntimeError, match="volume name"):
        asyncio.run(manager.create(_pod(Volume(name, EmptyDir()))))
    assert stat.S_IMODE(victim.stat().st_mode) == 0o700


@pytest.mark.parametrize("item", ["../../../../../victim/x", "/abs", "a/../../x", ".."])
def test_item_paths_cannot_leave_the_volume(node: Node, item: str) -> None:
    manager, _, victim = node
    pod = _pod(Volume("conf", FilesVolume("configMap", {item: b"x"})))
    with pytest.raises(NodeRuntimeError):
        asyncio.run(manager.create(pod))
    assert list(victim.iterdir()) == []


def test_nested_item_paths_stay_inside_the_volume(node: Node) -> None:
    manager, _, _ = node
    pod = _pod(Volume("conf", FilesVolume("configMap", {"dir/sub/app.conf": b"x=1"})))
    asyncio.run(manager.create(pod))
    path = manager.volume_dir(pod.uid, "conf") / "dir/sub/app.conf"
    assert path.read_bytes() == b"x=1"


@pytest.mark.parametrize("uid", ["..", "../x", "a/b"])
def test_pod_uid_cannot_name_a_directory_outside_pods(node: Node, uid: str) -> None:
    manager, _, _ = node
    with pytest.raises(NodeRuntimeError, match="pod uid"):
        manager.pod_dir(PodUID(uid))


# ---- point 10: image files are read inside the image's root ---------------------------------

# Runs in a child process under a memory and time limit, so that the code before the fix
# (which followed the image's symlinks on the host) fails the test instead of eating the
# machine: it prepares one container bundle and prints what happened.
_PREPARE = """
import json, resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (768 << 20, 768 << 20))
from berth.runtime.images import ImageService, PulledImage
from berth.runtime.probetarget import ProbeRefused, resolve_target
from berth.runtime.reference import parse_reference
from berth.runtime.registry import RegistryClient, Response, UrllibTransport
from berth.runtime.runc import RuncRuntime
from berth.runtime.sandbox import SandboxRecord
from berth.runtime.spec import ContainerSpec, PodSpec, PodUID
from berth.runtime.store import ContentStore
from berth.runtime.unpack import apply_layer
tmp = Path(sys.argv[1])
rt = RuncRuntime(images=ImageService(ContentStore(tmp / "images")), network=None,
                 state_dir=tmp / "state", runc_root=tmp / "runc", enforce=frozenset())
image = rt.images.import_layout(tmp / "layout", ref_name="x", as_reference="hostile")
pod = PodSpec(uid=PodUID("pod-1"), namespace="default", name="p")
record = SandboxRecord(uid="pod-1", namespace="default", name="p", netns="", state="ready")
container = ContainerSpec(name="c", image="hostile")
try:
    config, _ = rt._prepare_bundle(pod, container, image, record, tmp / "bundle")
except BaseException as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)[:300]}))
else:
    print(json.dumps({"user": config["process"]["user"]}))
finally:  # its root may be an overlay mount (where this machine can): never left behind
    rt._remove_bundle(tmp / "bundle")
"""


def _prepare_with_image(tmp_path: Path, *entries: Entry, user: str) -> dict[str, Any]:
    write_layout(
        tmp_path / "layout",
        ref_name="x",
        layers=[make_tar(Entry("etc", "dir", mode=0o755), *entries)],
        spec=ImageSpec(cmd=["/bin/true"], user=user),
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", _PREPARE, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=20,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("preparing the container hung on a file of the image")
    assert result.stdout, result.stderr[-2000:]
    doc: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return doc


def test_image_passwd_symlinked_to_dev_zero_is_not_read_on_the_host(tmp_path: Path) -> None:
    outcome = _prepare_with_image(
        tmp_path, Entry("etc/passwd", "symlink", target="/dev/zero"), user="app"
    )
    assert outcome.get("error") == "ContainerError", outcome
    assert "app" in outcome["message"]


def test_image_passwd_that_is_a_fifo_does_not_hang_the_node(tmp_path: Path) -> None:
    outcome = _prepare_with_image(tmp_path, Entry("etc/passwd", "fifo"), user="app")
    assert outcome.get("error") == "ContainerError", outcome
    assert "not a regular file" in outcome["message"]


def test_image_passwd_symlinked_to_a_host_file_reads_the_image_not_the_host(
    tmp_path: Path,
) -> None:
    host_file = tmp_path / "host-shadow"
    host_file.write_text("app:x:4242:4242::/:/bin/sh\n")
    outcome = _prepare_with_image(
        tmp_path, Entry("etc/passwd", "symlink", target=str(host_file)), user="app"
    )
    assert outcome.get("user") is None, f"the node read a host file as the image's: {outcome}"
    assert outcome.get("error") == "ContainerError", outcome


def test_image_passwd_through_relative_links_climbing_out_stays_in_the_root(
    tmp_path: Path,
) -> None:
    host_file = tmp_path / "host-passwd"
    host_file.write_text("app:x:4242:4242::/:/bin/sh\n")
    # etc/passwd -> ../../../../<...>/host-passwd: ".." is clamped at the image's root.
    climb = "../" * 40 + str(host_file).lstrip("/")
    outcome = _prepare_with_image(
        tmp_path, Entry("etc/passwd", "symlink", target=climb), user="app"
    )
    assert outcome.get("user") is None, f"the node read a host file as the image's: {outcome}"


def test_image_passwd_symlinks_resolved_inside_the_root_still_work(tmp_path: Path) -> None:
    outcome = _prepare_with_image(
        tmp_path,
        Entry("usr", "dir", mode=0o755),
        Entry("usr/passwd", data=b"root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/:/bin/sh\n"),
        Entry("etc/passwd", "symlink", target="/usr/passwd"),
        user="app",
    )
    assert outcome == {"user": {"uid": 1000, "gid": 1001}}


def test_image_passwd_larger_than_the_bound_is_refused(tmp_path: Path) -> None:
    huge = b"#" * (IMAGE_DB_LIMIT + 1)
    outcome = _prepare_with_image(tmp_path, Entry("etc/passwd", data=huge), user="app")
    assert outcome.get("error") == "ContainerError", outcome
    assert "larger than" in outcome["message"]


def _runtime_with_image(tmp_path: Path) -> tuple[RuncRuntime, PulledImage, Path]:
    """A runtime, a harmless image and the (existing) emptyDir ``scratch`` of pod-1."""
    rt = RuncRuntime(
        images=ImageService(ContentStore(tmp_path / "images")),
        network=None,
        state_dir=tmp_path / "state",
        runc_root=tmp_path / "runc",
        enforce=frozenset(),
    )
    layers = [make_tar(Entry("f"))]
    write_layout(tmp_path / "layout", ref_name="x", layers=layers, spec=ImageSpec(cmd=["/f"]))
    image = rt.images.import_layout(tmp_path / "layout", ref_name="x", as_reference="img")
    volume = rt.sandboxes.volume_dir(PodUID("pod-1"), "scratch")
    volume.mkdir(parents=True)
    return rt, image, volume


def _prepare_mounting(
    rt: RuncRuntime, image: PulledImage, bundle: Path, sub_path: str
) -> dict[str, Any]:
    pod = PodSpec(
        uid=PodUID("pod-1"), namespace="default", name="p", volumes=(Volume("scratch", EmptyDir()),)
    )
    record = SandboxRecord(uid="pod-1", namespace="default", name="p", netns="", state="ready")
    mount = VolumeMount("scratch", "/data", sub_path=sub_path)
    container = ContainerSpec(name="c", image="img", volume_mounts=(mount,))
    try:
        config, _ = rt._prepare_bundle(pod, container, image, record, bundle)
    finally:  # its root may be an overlay mount: never left behind
        rt._remove_bundle(bundle)
    return config


@pytest.mark.parametrize("sub_path", ["evil", "evil/etc", "dir/link/x"])
def test_subpath_through_a_symlink_planted_in_a_volume_is_refused(
    tmp_path: Path, sub_path: str
) -> None:
    """A container writes ``evil -> /`` into its emptyDir; a second container mounting
    ``subPath: evil`` must not get the node's root bind-mounted (CVE-2017-1002101)."""
    rt, image, volume = _runtime_with_image(tmp_path)
    (volume / "evil").symlink_to("/")
    (volume / "dir").mkdir()
    (volume / "dir/link").symlink_to("/etc")
    with pytest.raises(ContainerError, match="symlink"):
        _prepare_mounting(rt, image, tmp_path / "bundle", sub_path)


def test_subpath_missing_is_created_inside_the_volume(tmp_path: Path) -> None:
    rt, image, volume = _runtime_with_image(tmp_path)
    config = _prepare_mounting(rt, image, tmp_path / "bundle", "a/b")
    assert (volume / "a/b").is_dir()
    data = next(m for m in config["mounts"] if m["destination"] == "/data")
    assert data["source"] == str(volume / "a/b")


# ---- point 11: hostile layer tars ------------------------------------------------------------


def _hostile_tar(*members: tarfile.TarInfo) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info in members:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, *, link: str = "", size: int = 0) -> Any:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = size
    info.mode = 0o666
    return info


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    """``tmp_path/host/store/rootfs`` with ``etc/keep`` in it; ``tmp_path/host/precious`` is a
    file of the node next to the store."""
    root = tmp_path / "host" / "store" / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc/keep").write_text("lower layer")
    (tmp_path / "host" / "precious").write_text("node data")
    return root


@pytest.mark.parametrize("whiteout", [".wh..", ".wh...", ".wh.", "etc/.wh..", "etc/.wh..."])
def test_whiteouts_naming_dot_or_dotdot_are_refused(image_root: Path, whiteout: str) -> None:
    with pytest.raises(UnsafeLayer, match="whiteout"):
        apply_layer(image_root, io.BytesIO(_hostile_tar(_member(whiteout))))
    assert (image_root / "etc/keep").read_text() == "lower layer"
    assert (image_root.parents[1] / "precious").read_text() == "node data"


def test_reserved_whiteout_prefix_is_refused(image_root: Path) -> None:
    with pytest.raises(UnsafeLayer, match="whiteout"):
        apply_layer(image_root, io.BytesIO(_hostile_tar(_member("etc/.wh..wh.plnk"))))


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE])
def test_device_nodes_are_never_created_on_the_node(image_root: Path, kind: bytes) -> None:
    dev = _member("dev/sda", kind)
    dev.devmajor, dev.devminor = 8, 0  # the node's first disk
    apply_layer(image_root, io.BytesIO(_hostile_tar(_member("dev", tarfile.DIRTYPE), dev)))
    assert not os.path.lexists(image_root / "dev/sda")


@pytest.mark.parametrize(
    "member",
    [
        _member("../../precious", size=1),
        _member("etc/../../../precious", size=1),
        _member("etc/pw", tarfile.LNKTYPE, link="../../precious"),
    ],
    ids=["dotdot", "nested-dotdot", "hardlink-out"],
)
def test_traversing_members_are_refused(image_root: Path, member: tarfile.TarInfo) -> None:
    with pytest.raises(UnsafeLayer):
        apply_layer(image_root, io.BytesIO(_hostile_tar(member)))
    assert (image_root.parents[1] / "precious").read_text() == "node data"


def test_absolute_members_and_writes_through_symlinks_stay_in_the_root(image_root: Path) -> None:
    precious = image_root.parents[1] / "precious"
    layer = _hostile_tar(
        _member("/etc/abs", size=3),
        _member("out", tarfile.SYMTYPE, link=str(precious.parent)),
        _member("out/precious", size=5),
        _member("etc/pw", tarfile.LNKTYPE, link=str(precious)),
    )
    apply_layer(image_root, io.BytesIO(layer))
    assert (image_root / "etc/abs").read_bytes() == b"xxx"
    assert precious.read_text() == "node data"
    # "out" is followed as if the image's root were "/": the write lands inside the root,
    # and the hard link to the host path links the image's own copy.
    rerooted = image_root / str(precious).lstrip("/")
    assert rerooted.read_bytes() == b"xxxxx"
    assert (image_root / "etc/pw").stat().st_ino == rerooted.stat().st_ino


def test_an_image_unpacking_beyond_its_bound_is_refused_and_removed(tmp_path: Path) -> None:
    """A few KiB of gzip can expand to any size: what an image unpacks to is bounded too."""
    write_layout(tmp_path / "layout", ref_name="x", spec=ImageSpec(cmd=["/f"]),
                 layers=[make_tar(Entry("zeros", data=bytes(24 << 20)))])  # fmt: skip
    store = ContentStore(tmp_path / "store", max_unpacked_bytes=8 << 20)
    image = ImageService(store).import_layout(tmp_path / "layout", ref_name="x", as_reference="b")
    with pytest.raises(UnsafeLayer, match="unpacks to more than"):
        store.ensure_snapshot(image.record)
    assert not store.snapshot_path(image.record).exists()
    assert list(store.tmp.iterdir()) == [], "the partial tree was left on the disk"


# ---- point 11: registry blobs and token realms -----------------------------------------------

_FLOOD = 64 << 20  # what the hostile registry sends for a blob declared a few hundred bytes


class _HostileRegistry(http.server.BaseHTTPRequestHandler):
    """Serves one image on plain HTTP; its layer blob never ends where the descriptor says,
    and a redirect sends the blob to ``/elsewhere`` on another server (``other``)."""

    routes: ClassVar[dict[str, bytes]] = {}
    flood_path: ClassVar[str] = ""
    redirect_to: ClassVar[str] = ""
    seen_headers: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        type(self).seen_headers.append(dict(self.headers.items()))
        if self.path == self.flood_path and self.redirect_to:
            self.send_response(307)
            self.send_header("Location", self.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == self.flood_path:
            self.send_response(200)
            self.end_headers()  # no Content-Length: the body ends when the server says so
            chunk = b"\0" * (1 << 20)
            with contextlib.suppress(OSError):
                for _ in range(_FLOOD // len(chunk)):
                    self.wfile.write(chunk)
            return
        body = self.routes.get(self.path)
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def _serve(
    handler: type[http.server.BaseHTTPRequestHandler], *, tls: tuple[Path, Path] | None = None
) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _CountingTransport:
    """The real transport, counting the body bytes the client read."""

    def __init__(self) -> None:
        self.inner = UrllibTransport(timeout=10)
        self.read = 0

    def get(self, url: str, headers: Mapping[str, str]) -> Response:
        resp = self.inner.get(url, headers)
        outer = self
        body = resp.body

        class Counting(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def readinto(self, buffer: Any) -> int:
                data = body.read(len(buffer))
                buffer[: len(data)] = data
                outer.read += len(data)
                return len(data)

            def close(self) -> None:
                body.close()
                super().close()

        return Response(resp.status, resp.headers, cast(BinaryIO, Counting()))


def _publish(tmp_path: Path, repo: str) -> tuple[dict[str, bytes], str]:
    """An image's manifest and blobs as registry routes; returns them and the layer's path."""
    layout = tmp_path / "layout"
    digest = write_layout(layout, ref_name="v1", layers=[make_tar(Entry("f", data=b"x"))],
                          spec=ImageSpec(cmd=["/f"]))  # fmt: skip
    blobs = layout / "blobs" / "sha256"
    manifest = (blobs / digest.split(":")[1]).read_bytes()
    routes = {f"/v2/{repo}/blobs/sha256:{b.name}": b.read_bytes() for b in blobs.iterdir()}
    routes[f"/v2/{repo}/manifests/v1"] = manifest
    layer = json.loads(manifest)["layers"][0]["digest"]
    return routes, f"/v2/{repo}/blobs/{layer}"


def test_blob_larger_than_its_descriptor_is_aborted_while_streaming(tmp_path: Path) -> None:
    routes, layer_path = _publish(tmp_path, "lab/app")
    _HostileRegistry.routes, _HostileRegistry.flood_path = routes, layer_path
    _HostileRegistry.redirect_to = ""
    with _serve(_HostileRegistry) as host:
        transport = _CountingTransport()
        client = RegistryClient(transport=transport, insecure=frozenset({host}))
        images = ImageService(ContentStore(tmp_path / "store"), client)
        with pytest.raises(ImageError, match="more than"):
            images.pull(f"{host}/lab/app:v1")
    assert transport.read < 4 << 20, f"read {transport.read} bytes of a blob declared tiny"
    assert list(images.store.tmp.iterdir()) == [], "the partial download was left behind"


def test_blob_descriptor_beyond_the_node_bound_is_not_downloaded(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "store", max_blob_bytes=1 << 20)
    never = io.BytesIO(b"")
    with pytest.raises(ImageError, match="more than the"):
        store.put_stream(never, Digest("sha256:" + "0" * 64), size=2 << 20, what="layer")
    roomy = ContentStore(tmp_path / "s2", max_blob_bytes=1 << 62)
    with pytest.raises(ImageError, match="do not fit"):
        roomy.put_stream(never, Digest("sha256:" + "0" * 64), size=1 << 60, what="layer")


def test_token_realm_over_plain_http_is_refused_for_an_https_registry() -> None:
    transport = FakeTransport()
    url = "https://registry.example/v2/lab/app/manifests/v1"
    challenge = 'Bearer realm="http://attacker.example/token",service="registry"'
    transport.protected[url] = ("t0k", challenge)
    token_url = "http://attacker.example/token?service=registry&scope=repository%3Alab%2Fapp%3Apull"
    transport.routes[token_url] = (200, {}, b'{"token":"t0k"}')
    client = RegistryClient(transport=transport)
    with pytest.raises(RegistryError, match="token realm"):
        client.get_manifest(parse_reference("registry.example/lab/app:v1"), "v1")
    assert [u for u, _ in transport.requests if u.startswith("http://")] == []


@pytest.mark.parametrize("realm", ["file:///etc/shadow", "ftp://x/token", "https:///token"])
def test_token_realm_must_be_an_https_url(realm: str) -> None:
    transport = FakeTransport()
    url = "https://registry.example/v2/lab/app/manifests/v1"
    transport.protected[url] = ("t0k", f'Bearer realm="{realm}"')
    with pytest.raises(RegistryError, match="token realm"):
        RegistryClient(transport=transport).get_manifest(
            parse_reference("registry.example/lab/app:v1"), "v1"
        )


def test_registry_token_is_not_carried_to_another_host_on_redirect(tmp_path: Path) -> None:
    routes, layer_path = _publish(tmp_path, "lab/app")

    class Other(_HostileRegistry):
        routes: ClassVar[dict[str, bytes]] = {}
        seen_headers: ClassVar[list[dict[str, str]]] = []

    with _serve(Other) as other:
        Other.routes = {"/elsewhere": routes[layer_path]}
        _HostileRegistry.routes, _HostileRegistry.flood_path = routes, layer_path
        _HostileRegistry.redirect_to = f"http://{other}/elsewhere"
        with _serve(_HostileRegistry) as host:
            reply = UrllibTransport(timeout=10).get(
                f"http://{host}{layer_path}", {"Authorization": "Bearer registry-token"}
            )
            assert reply.read_all(1 << 20) == routes[layer_path]
    assert Other.seen_headers, "the redirect was not followed"
    assert all("Authorization" not in h for h in Other.seen_headers), Other.seen_headers


def test_redirect_from_https_to_plain_http_is_refused(tmp_path: Path) -> None:
    routes, layer_path = _publish(tmp_path, "lab/app")

    class Plain(_HostileRegistry):
        routes: ClassVar[dict[str, bytes]] = {}
        seen_headers: ClassVar[list[dict[str, str]]] = []

    pki = TestPKI(tmp_path / "pki")
    cert, key = pki.issue("registry", common_name="registry", server=True, ips=["127.0.0.1"])
    with _serve(Plain) as plain:
        Plain.routes = {"/blob": routes[layer_path]}
        _HostileRegistry.routes, _HostileRegistry.flood_path = routes, layer_path
        _HostileRegistry.redirect_to = f"http://{plain}/blob"
        with _serve(_HostileRegistry, tls=(cert, key)) as host:
            transport = UrllibTransport(timeout=10, ca_bundles={host: pki.ca_cert.read_text()})
            with pytest.raises(RegistryError, match="not https"):
                transport.get(f"https://{host}{layer_path}", {"Authorization": "Bearer t"})
    assert Plain.seen_headers == [], "the node followed an https registry down to plain http"


# ---- point 11: httpGet/tcpSocket probes run by the node ------------------------------------


async def _probe_against_recorder(
    get: dict[str, Any], *, pod_ip: str = "127.0.0.1", host_network: bool = False
) -> tuple[bool | str, bytes]:
    """Run the node's httpGet probe against a server on 127.0.0.1 that records what it got;
    returns (probe result or the refusal's class name, the bytes received)."""
    received = bytearray()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(TimeoutError, ConnectionError):
            received.extend(await asyncio.wait_for(reader.read(65536), 2))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    outcome: bool | str
    try:
        outcome = await _http_probe({**get, "port": port}, {}, pod_ip, host_network=host_network)
    except ValueError as exc:  # what probe() turns into a failed probe
        outcome = type(exc).__name__
    finally:
        server.close()
        await server.wait_closed()
    return outcome, bytes(received)


_INJECTED = "/ HTTP/1.1\r\nHost: x\r\n\r\nGET /admin/delete HTTP/1.1\r\nX-Injected: 1"


@pytest.mark.parametrize(
    "get",
    [
        {"path": _INJECTED},
        {"path": "/ok", "httpHeaders": [{"name": "X-A", "value": "1\r\nX-Injected: 1"}]},
        {"path": "/ok", "httpHeaders": [{"name": "X-Injected: 1\r\nX-A", "value": "1"}]},
        {"path": "/has space X-Injected"},
    ],
    ids=["path-crlf", "header-value-crlf", "header-name-crlf", "path-space"],
)
def test_probe_fields_cannot_inject_http(get: dict[str, Any]) -> None:
    outcome, received = asyncio.run(_probe_against_recorder(get))
    assert b"X-Injected" not in received, received
    assert outcome == "ProbeRefused"


def test_probe_host_on_the_node_loopback_is_refused_for_a_pod_network_pod() -> None:
    # The pod's IP is elsewhere; its probe names the node's own loopback (etcd, the agent...).
    outcome, received = asyncio.run(
        _probe_against_recorder({"path": "/", "host": "127.0.0.1"}, pod_ip="10.244.9.9")
    )
    assert received == b"", "the node probed its own loopback for a pod"
    assert outcome == "ProbeRefused"


def test_probe_host_loopback_is_allowed_for_a_host_network_pod() -> None:
    outcome, received = asyncio.run(
        _probe_against_recorder({"path": "/healthz", "host": "127.0.0.1"}, host_network=True)
    )
    assert outcome is True
    assert received.startswith(b"GET /healthz HTTP/1.1\r\n")


@pytest.mark.parametrize("host", ["169.254.169.254", "::1", "0.0.0.0", "localhost"])
def test_probe_hosts_the_node_must_not_reach_for_pods(host: str) -> None:
    with pytest.raises(ProbeRefused):
        asyncio.run(resolve_target(host, host_network=False))


@pytest.mark.parametrize("host", ["a b", "x\r\nHost: y", "http://x/", "x/y", ""])
def test_probe_host_must_be_an_address_or_dns_name(host: str) -> None:
    with pytest.raises(ProbeRefused):
        asyncio.run(resolve_target(host, host_network=True))


# ---- what the node keeps for pods and images is the node's (root's) alone ------------------


def test_image_trees_and_pod_volumes_are_not_reachable_by_other_node_users(tmp_path: Path) -> None:
    """A layer's setuid-root shell in an unpacked image, or a Secret a pod asked to be 0644,
    must not be usable by an unprivileged user of the node."""
    old = os.umask(0o022)
    try:
        store = ContentStore(tmp_path / "store")
        rt = RuncRuntime(
            images=ImageService(store),
            network=None,
            state_dir=tmp_path / "state",
            runc_root=tmp_path / "runc",
            enforce=frozenset(),
        )
    finally:
        os.umask(old)
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
    assert stat.S_IMODE(rt.state_dir.stat().st_mode) == 0o700


def test_mount_paths_with_dotdot_are_refused_by_the_node(tmp_path: Path) -> None:
    paths = SandboxPaths(netns=None, etc_hosts=tmp_path / "h", etc_resolv_conf=tmp_path / "r",
                         etc_hostname=tmp_path / "n", volumes={"v": tmp_path / "v"})  # fmt: skip
    mount = VolumeMount("v", "/data/../../proc/sys")
    container = ContainerSpec(name="c", image="i", volume_mounts=(mount,))
    with pytest.raises(ContainerError, match=r"'\.\.'"):
        volume_mounts(container, (Volume("v", EmptyDir()),), paths)
