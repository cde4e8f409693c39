"""Node-side pieces that need no root: the exit-code shim, cgroup probing, sandbox files,
container status mapping and log rotation."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from berth.runtime.cgroups import enforceable_controllers
from berth.runtime.errors import ContainerError
from berth.runtime.images import ImageService
from berth.runtime.layout import ImageSpec, write_layout
from berth.runtime.runc import ContainerState, RuncRuntime, container_id
from berth.runtime.sandbox import render_hosts, render_resolv_conf
from berth.runtime.shim import oom_kills
from berth.runtime.spec import ContainerID, PodSpec, PodUID
from berth.runtime.store import ContentStore
from tests.unit.runtime.helpers import Entry, make_tar

ROOT = Path(__file__).resolve().parents[3]

# Behaves like `runc create`: starts the "container process" (a grandchild that outlives this
# script), writes its pid to --pid-file, and exits 0. The process then exits with `code`.
FAKE_RUNC = """#!{python}
import subprocess, sys
args = sys.argv[1:]
open(args[args.index("--bundle") + 1] + "/argv", "w").write(" ".join(args))
if "--fail" in open(args[args.index("--bundle") + 1] + "/mode").read():
    print('{{"level":"error","msg":"container_linux.go: no such rootfs"}}',
          file=open(args[args.index("--log") + 1], "a"))
    sys.exit(1)
proc = subprocess.Popen(["/bin/sh", "-c", "echo out; echo err >&2; sleep 0.3; exit 3"])
open(args[args.index("--pid-file") + 1], "w").write(str(proc.pid))
"""


def _shim(tmp_path: Path, mode: str, *extra: str) -> subprocess.CompletedProcess[str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    runc = tmp_path / "runc"
    runc.write_text(FAKE_RUNC.format(python=sys.executable))
    runc.chmod(0o755)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "mode").write_text(mode)
    return subprocess.run(
        [
            sys.executable, "-S", str(ROOT / "berth/runtime/shim.py"), "--runc", str(runc),
            "--root", str(tmp_path / "root"), "--bundle", str(bundle), "--id", "c1",
            "--log", str(bundle / "container.log"), "--exit", str(bundle / "exit.json"),
            *extra,
        ],
        capture_output=True, text=True, timeout=10, cwd=ROOT, check=False,
    )  # fmt: skip


def test_shim_reports_creation_then_records_the_exit_code(tmp_path: Path) -> None:
    result = _shim(tmp_path, "ok")
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["subreaper"] is True
    assert isinstance(verdict["shim"], int), "the shim names itself (issue 19.8)"
    exit_file = tmp_path / "bundle" / "exit.json"
    deadline = time.monotonic() + 5
    while not exit_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    doc = json.loads(exit_file.read_text())
    assert doc["exitCode"] == 3
    assert doc["signal"] is None
    assert (tmp_path / "bundle" / "container.log").read_text() == "out\nerr\n"


def test_shim_creates_or_runs_the_container_as_asked(tmp_path: Path) -> None:
    created = _shim(tmp_path / "a", "ok")
    started = _shim(tmp_path / "b", "ok", "--start", "yes")
    assert (created.returncode, started.returncode) == (0, 0), created.stderr + started.stderr
    verbs = [
        (tmp_path / run / "bundle" / "argv").read_text().split(" --bundle ")[0].split()[-2:]
        for run in ("a", "b")
    ]
    assert verbs == [["json", "create"], ["run", "--detach"]]
    # A container with stdio starts only once the shim serves its attach socket.
    attach = ["--stdio", "pipe", "--attach", str(tmp_path / "s.sock")]
    refused = _shim(tmp_path / "c", "ok", *attach, "--start", "yes")
    assert refused.returncode == 2


def test_shim_refuses_bad_arguments(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-S", str(ROOT / "berth/runtime/shim.py"), "--id", "x"],
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "per-container supervisor" in result.stderr


def test_shim_passes_runc_errors_back_synchronously(tmp_path: Path) -> None:
    result = _shim(tmp_path, "--fail")
    assert result.returncode == 1
    assert "no such rootfs" in result.stderr
    assert not (tmp_path / "bundle" / "exit.json").exists()


def test_cgroup_probe_unified_without_controllers_enforces_nothing(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("\n")
    mountinfo = f"30 1 0:26 / {tmp_path} rw,nosuid - cgroup2 cgroup2 rw\n"
    assert enforceable_controllers(tmp_path, mountinfo) == frozenset()
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    assert enforceable_controllers(tmp_path, mountinfo) == {"cpu", "memory", "pids"}


def test_cgroup_probe_v1_needs_writable_hierarchies(tmp_path: Path) -> None:
    for c in ("memory", "pids", "cpu,cpuacct"):
        (tmp_path / c).mkdir()
    (tmp_path / "cpu").symlink_to("cpu,cpuacct")
    mountinfo = "\n".join(
        [
            f"31 1 0:27 / {tmp_path}/memory ro,nosuid - cgroup cgroup rw,memory",
            f"32 1 0:28 / {tmp_path}/pids rw,nosuid - cgroup cgroup rw,pids",
            f"33 1 0:29 / {tmp_path}/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct",
        ]
    )
    assert enforceable_controllers(tmp_path, mountinfo) == {"pids", "cpu"}


def test_pod_etc_files() -> None:
    hosts = render_hosts("10.244.1.5", "web-1", [("10.0.0.9", ["db", "db.local"])])
    assert hosts.splitlines()[1:] == [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "10.244.1.5\tweb-1",
        "10.0.0.9\tdb db.local",
    ]
    pod = PodSpec(
        uid=PodUID("u"),
        namespace="default",
        name="p",
        dns_nameservers=("10.96.0.10",),
        dns_searches=("default.svc.cluster.local", "svc.cluster.local"),
    )
    assert render_resolv_conf(pod) == (
        "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local\n"
        "options ndots:5\n"
    )


def _runtime(tmp_path: Path) -> RuncRuntime:
    return RuncRuntime(
        images=ImageService(ContentStore(tmp_path / "images")),
        network=None,
        state_dir=tmp_path / "state",
        runc_root=tmp_path / "runc",
        enforce=frozenset(),
    )


def _container(rt: RuncRuntime, name: str, exit_doc: dict[str, object] | None) -> ContainerID:
    cid = container_id(PodUID("pod-1"), name, 0)
    d = rt.containers_dir / cid
    d.mkdir(parents=True)
    meta = {"id": cid, "podUid": "pod-1", "name": name, "attempt": 0, "image": "i",
            "imageId": "sha256:x", "createdAt": "t0", "startedAt": "t1"}  # fmt: skip
    (d / "meta.json").write_text(json.dumps(meta))
    if exit_doc is not None:
        (d / "exit.json").write_text(json.dumps(exit_doc))
    return cid


def test_status_maps_runc_state_and_exit_files(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    running = _container(rt, "a", None)
    killed = _container(rt, "b", {"exitCode": 137, "signal": "SIGKILL", "finishedAt": "t2"})
    done = _container(rt, "c", {"exitCode": 0, "signal": None, "finishedAt": "t2"})
    lost = _container(rt, "d", None)
    status = rt._status(rt._meta(running), {"status": "running", "pid": 42})
    assert (status.state, status.pid) == (ContainerState.RUNNING, 42)
    status = rt._status(rt._meta(killed), {"status": "stopped", "pid": 0})
    assert (status.state, status.exit_code, status.signal, status.reason) == (
        ContainerState.EXITED, 137, "SIGKILL", "Error",
    )  # fmt: skip
    assert rt._status(rt._meta(done), None).reason == "Completed"
    unknown = rt._status(rt._meta(lost), None)
    assert (unknown.state, unknown.reason) == (ContainerState.UNKNOWN, "ContainerStatusUnknown")


def test_log_rotation_copies_and_truncates(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    cid = _container(rt, "a", None)
    log = rt.containers_dir / cid / "container.log"
    for generation in range(4):
        log.write_bytes(bytes([65 + generation]) * 100)
        assert rt.rotate_logs(max_bytes=50, keep=2) == [log]
    assert log.read_bytes() == b""
    assert (log.parent / "container.log.1").read_bytes() == b"D" * 100
    assert (log.parent / "container.log.2").read_bytes() == b"C" * 100
    assert not (log.parent / "container.log.3").exists()
    assert rt.rotate_logs(max_bytes=50, keep=2) == [], "small logs are left alone"


def test_container_ids_are_deterministic_and_validated() -> None:
    assert container_id(PodUID("u1"), "web", 2) == "u1_web_2"
    with pytest.raises(ContainerError, match="DNS-1123"):
        container_id(PodUID("u1"), "Web_1", 0)


def test_oom_kill_counters_are_read_from_v1_and_v2_cgroups(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"linux": {"cgroupsPath": "/berth/p/c"}}))
    root = tmp_path / "cg"
    assert oom_kills(bundle, root) == 0
    v1 = root / "memory/berth/p/c"
    v1.mkdir(parents=True)
    (v1 / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    assert oom_kills(bundle, root) == 1
    v2 = root / "berth/p/c"
    v2.mkdir(parents=True)
    (v2 / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\n")
    assert oom_kills(bundle, root) == 2


def test_oom_killed_exit_is_reported_as_such(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    cid = _container(rt, "m", {"exitCode": 137, "signal": "SIGKILL", "oomKilled": True})
    assert rt._status(rt._meta(cid), None).reason == "OOMKilled"


def test_images_can_be_removed_and_pruned(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    layout = tmp_path / "layout"
    write_layout(layout, ref_name="x", layers=[make_tar(Entry("f"))], spec=ImageSpec(cmd=["f"]))
    rt.images.import_layout(layout, ref_name="x", as_reference="busybox")
    assert asyncio.run(rt.remove_image("docker.io/library/busybox:latest")) is True
    assert len(asyncio.run(rt.prune_images())) == 3
    assert rt.images.get("busybox") is None
