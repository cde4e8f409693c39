"""Helpers to run berth's node runtime on lab hosts (used by test_workloads.py and bench/pods.py).

* :func:`blackhole_routes`: the machine drops anything addressed to pod/service CIDRs (so a
  stray reply can never leave the machine by its default route) while pod networks are up;
* :func:`download_debs`: runc, CNI plugins, nftables (+ deps) as .debs resolved against the lab
  rootfs' own dpkg status, downloaded once on the machine (hosts have no route out);
* :class:`Registry`: a docker-registry on the lab bridge address, plain HTTP;
* :func:`build_busybox_layout` + :meth:`Registry.push`: a busybox-static image made offline;
* :class:`Node`: one lab host with the debs installed and ``berth`` shipped, driven through
  ``python3 -m berth.runtime`` over SSH (a fresh runtime process per call, like a restarted agent).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import ssl
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berth.runtime.layout import ImageSpec, tar_directory, write_layout
from provisioner.lab import Lab, blackholes, ensure_rootfs
from tests.harness.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/12"
NODE_PACKAGES = ("runc", "containernetworking-plugins", "nftables", "iptables")
DEB_CACHE = Path("/var/cache/berth-lab/debs")
REMOTE_BERTH = "/opt/berth-node"
STATE_DIR = "/var/lib/berth/runtime"
HOLDER_PREFIX = "pytest-"


MACHINE_TOOLS = {
    "skopeo": "skopeo",
    "docker-registry": "docker-registry",
    "busybox": "busybox-static",
}


def require_machine_tools() -> None:
    """Fail clearly (not with a FileNotFoundError deep inside) when the machine lacks a tool."""
    missing = sorted(pkg for tool, pkg in MACHINE_TOOLS.items() if shutil.which(tool) is None)
    if missing:
        raise RuntimeError(
            f"the workload lab tests need these machine packages: {' '.join(missing)} "
            f"(apt-get install -y {' '.join(missing)})"
        )


@contextlib.contextmanager
def blackhole_routes(cidrs: Sequence[str] = (CLUSTER_CIDR, SERVICE_CIDR)) -> Iterator[None]:
    """The machine blackholes ``cidrs`` while the block runs, held like a lab holds them
    (:mod:`provisioner.lab.blackholes`): parallel test workers each hold the routes, and the
    last holder on the machine, a worker or a lab, removes them (a worker done early never
    pulls them from under another's pod networks)."""
    _release_dead_holders(cidrs)
    holder = _holder_dir(os.getpid())
    blackholes.hold(holder, cidrs)
    try:
        yield
    finally:
        blackholes.release(holder, cidrs)


def _holder_dir(pid: int) -> Path:
    # a name for the hold only: blackholes keys holders by directory, nothing is created there
    return blackholes.HOLDERS.parent / f"{HOLDER_PREFIX}{pid}"


def _release_dead_holders(cidrs: Sequence[str]) -> None:
    """Drop the holds of test processes that were killed before they could release theirs."""
    if not blackholes.HOLDERS.is_dir():
        return
    for entry in blackholes.HOLDERS.iterdir():
        pid = entry.name.removeprefix(HOLDER_PREFIX).split("-", 1)[0]
        dead = pid.isdigit() and not Path(f"/proc/{pid}").exists()
        if entry.name.startswith(HOLDER_PREFIX) and dead:
            blackholes.release(_holder_dir(int(pid)), cidrs)


def download_debs(packages: Sequence[str] = NODE_PACKAGES) -> list[Path]:
    """The .debs (with dependencies the lab rootfs lacks) for ``packages``, cached on disk."""
    status = (ensure_rootfs().path / "var/lib/dpkg/status").resolve()  # must be absolute
    simulate = subprocess.run(
        ["apt-get", "-s", "-o", f"Dir::State::status={status}", "install",
         "--no-install-recommends", *packages],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    names = [line.split()[1] for line in simulate.stdout.splitlines() if line.startswith("Inst ")]
    key = hashlib.sha256(" ".join(sorted(names)).encode()).hexdigest()[:12]
    target = DEB_CACHE / key
    if not (target / ".complete").exists():
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", "-q", *names], cwd=target, check=True,
                       capture_output=True, timeout=900)  # fmt: skip
        (target / ".complete").write_text("\n".join(names))
    return sorted(target.glob("*.deb"))


def build_busybox_layout(layout: Path, *, ref_name: str = "bb") -> str:
    """A busybox-static image (httpd, sh, wget, ...) written as an OCI layout; returns the ref."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for d in ("bin", "etc", "tmp", "www", "proc", "sys", "dev"):
            (root / d).mkdir()
        shutil.copy(busybox, root / "bin/busybox")
        applets = subprocess.run(
            [busybox, "--list"], capture_output=True, text=True, check=True, timeout=60
        )
        for applet in applets.stdout.split():
            if applet != "busybox":
                (root / "bin" / applet).symlink_to("busybox")
        (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (root / "etc/group").write_text("root:x:0:\n")
        (root / "www/index.html").write_text("busybox\n")
        spec = ImageSpec(cmd=["/bin/httpd", "-f", "-p", "8080", "-h", "/www"], env=("PATH=/bin",))
        write_layout(layout, ref_name=ref_name, layers=[tar_directory(root)], spec=spec)
    return ref_name


class Registry:
    """``docker-registry`` on the lab bridge address (a free port): plain HTTP, or HTTPS with
    ``tls`` = (certificate, key, CA that signed it)."""

    def __init__(
        self, address: str, workdir: Path, *, tls: tuple[Path, Path, Path] | None = None
    ) -> None:
        self.port = free_port(address)  # below the ephemeral range: see tests/harness/ports.py
        self.host = f"{address}:{self.port}"
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "config.yml"
        served = (
            f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls is not None else ""
        )
        config.write_text(
            "version: 0.1\n"
            f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n{served}"
        )
        with (workdir / "registry.log").open("wb") as log:
            self.proc = subprocess.Popen(
                ["docker-registry", "serve", str(config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        scheme = "https" if tls is not None else "http"
        context = ssl.create_default_context(cafile=str(tls[2])) if tls is not None else None
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(
                    f"{scheme}://{self.host}/v2/", timeout=1, context=context
                ) as resp:
                    if resp.status == 200:
                        return
            except OSError as exc:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(
                        f"docker-registry did not start: {workdir}/registry.log"
                    ) from exc
                time.sleep(0.05)

    def push(self, layout: Path, ref_name: str, repository: str) -> str:
        """``skopeo copy`` the layout's image; returns the full reference."""
        reference = f"{self.host}/{repository}"
        subprocess.run(
            ["skopeo", "--insecure-policy", "copy", "-q", "--dest-tls-verify=false",
             f"oci:{layout}:{ref_name}", f"docker://{reference}"],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        return reference

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def berth_tarball() -> bytes:
    """The host-side packages the node runtime needs (stdlib only), as a tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        # berth/api: the runtime and the proxy share field rules with the API server there
        # (berth.api.probes, berth.api.services: stdlib only).
        shipped = ("berth/__init__.py", "berth/api", "berth/runtime", "berth/network",
                   "berth/proxy", "berth/agent/__init__.py", "berth/agent/runtime.py")  # fmt: skip
        for rel in shipped:
            tar.add(
                ROOT / rel,
                arcname=rel,
                filter=lambda info: None if "__pycache__" in info.name else info,
            )
    return buf.getvalue()


@dataclass
class Node:
    """One lab host running berth's node runtime."""

    lab: Lab
    name: str
    address: str
    pod_cidr: str
    registry: str

    def ssh(
        self, command: str, *, stdin: bytes | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        argv = self.lab.ssh_argv(self.name, [command])
        control = self.lab.dir / f"ssh-{self.name}.sock"
        argv[1:1] = ["-o", "ControlMaster=auto", "-o", f"ControlPath={control}",
                     "-o", "ControlPersist=120"]  # fmt: skip
        result = subprocess.run(
            argv, input=stdin, capture_output=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{self.name}: `{command}` exited {result.returncode}: "
                f"{result.stderr.decode(errors='replace')[-2000:]}"
            )
        return result

    def berth(self, *args: str, stdin: Any = None, check: bool = True) -> Any:
        """``python3 -m berth.runtime ...`` on the host; the parsed JSON answer."""
        command = (
            f"PYTHONPATH={REMOTE_BERTH} python3 -m berth.runtime --state-dir {STATE_DIR} "
            f"--pod-cidr {self.pod_cidr} --insecure-registry {self.registry} "
            + " ".join(_quote(a) for a in args)
        )
        data = json.dumps(stdin).encode() if stdin is not None else None
        result = self.ssh(command, stdin=data, check=False)
        if result.returncode != 0:
            if check:
                raise AssertionError(
                    f"{self.name}: berth.runtime {' '.join(args)}: "
                    f"{result.stderr.decode(errors='replace')[-2000:]}"
                )
            return {"error": result.stderr.decode(errors="replace")}
        return json.loads(result.stdout)

    def install(self, debs: Sequence[Path]) -> None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for deb in debs:
                tar.add(deb, arcname=deb.name)
        self.ssh(
            "set -e; rm -rf /root/berth-debs; mkdir -p /root/berth-debs; "
            "tar -C /root/berth-debs -xf -; "
            "dpkg -i --force-confdef /root/berth-debs/*.deb >/root/berth-debs/dpkg.log 2>&1",
            stdin=buf.getvalue(),
        )
        self.ssh(f"rm -rf {REMOTE_BERTH}; mkdir -p {REMOTE_BERTH}; tar -C {REMOTE_BERTH} -xf -",
                 stdin=berth_tarball())  # fmt: skip

    def python(self, code: str, *, netns: str | None = None, env: str = "") -> Any:
        """Run Python on the host (optionally inside a netns); parse its JSON output."""
        prefix = f"ip netns exec {netns} " if netns else ""
        result = self.ssh(f"{env} {prefix}python3 -c {_quote(code)}")
        return json.loads(result.stdout)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


HTTP_COUNTER = """
import collections, json, urllib.request
counts = collections.Counter()
for _ in range({n}):
    try:
        with urllib.request.urlopen("{url}", timeout=2) as r:
            counts[r.read().decode().strip()] += 1
    except Exception as e:
        counts["error: " + type(e).__name__] += 1
print(json.dumps(counts))
"""


def count_responders(url: str, n: int) -> dict[str, int]:
    """From the machine (lab bridge addresses only): which backend answered how often."""
    counts: dict[str, int] = {}
    for _ in range(n):
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                key = resp.read().decode().strip()
        except OSError as exc:
            key = f"error: {type(exc).__name__}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def web_pod(
    name: str, image: str, *, uid: str, text: str, command: list[str] | None = None
) -> dict[str, Any]:
    """A ``v1/Pod`` running busybox httpd on :8080 serving ``text`` from a ConfigMap volume."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": uid},
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": image,
                    "command": command or ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"],
                    "volumeMounts": [{"name": "www", "mountPath": "/www"}],
                    "securityContext": {"readOnlyRootFilesystem": True},
                    "resources": {"limits": {"memory": "32Mi"}},
                }
            ],
            "volumes": [{"name": "www", "configMap": {"name": name}}],
        },
        "files": {f"configMap/{name}": {"index.html": text + "\n"}},
    }


def web_service(
    endpoint_ips: Sequence[str],
    *,
    name: str = "web",
    cluster_ip: str = "10.96.0.10",
    node_port: int | None = 30080,
    affinity: bool = False,
) -> dict[str, Any]:
    """A Service (ClusterIP :80 [+ NodePort] -> :8080) and its EndpointSlice, as the
    ``proxy`` command takes them."""
    port: dict[str, Any] = {"name": "http", "port": 80, "targetPort": 8080}
    spec: dict[str, Any] = {"type": "ClusterIP", "clusterIP": cluster_ip, "ports": [port]}
    if node_port is not None:
        spec["type"] = "NodePort"
        port["nodePort"] = node_port
    if affinity:
        spec["sessionAffinity"] = "ClientIP"
    return {
        "services": [{"metadata": {"name": name, "namespace": "default"}, "spec": spec}],
        "endpointSlices": [
            {
                "metadata": {
                    "namespace": "default",
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [
                    {"addresses": [ip], "conditions": {"ready": True}} for ip in endpoint_ips
                ],
            }
        ],
    }


def setup_nodes(lab: Lab, registry: str, debs: Sequence[Path], names: Sequence[str]) -> list[Node]:
    """Install the node software on ``names`` and wire host-gw routes + the service route."""
    nodes = []
    for i, host in enumerate(lab.hosts, start=1):
        if host.name in names:
            nodes.append(Node(lab, host.name, host.address, f"10.244.{i}.0/24", registry))
    for node in nodes:
        node.install(debs)
    peers = json.dumps([[n.pod_cidr, n.address] for n in nodes])
    for node in nodes:
        node.berth("routes", "--peers", peers, "--own-cidr", node.pod_cidr,
                   "--service-cidr", SERVICE_CIDR, "--dev", "eth0")  # fmt: skip
    return nodes


def teardown_node(node: Node) -> None:
    """Remove every pod, berth's nft table, routes, and the installed state from the host
    (what the containers directory holds, not the directory: on a lab host it is a symlink
    onto the host's disk, see provisioner.lab.overlay, which the next install uses again)."""
    status = node.berth("status", check=False)
    for sandbox in status.get("sandboxes", []) if isinstance(status, dict) else []:
        node.berth("remove-pod", sandbox["uid"], "--grace", "1", check=False)
    node.ssh("nft delete table ip berth 2>/dev/null; "
             "ip route flush proto 199 2>/dev/null; ip link del cni0 2>/dev/null; "
             f"find {STATE_DIR} -mindepth 1 -maxdepth 1 ! -name containers -exec rm -rf {{}} +; "
             f"find {STATE_DIR}/containers/ -mindepth 1 -maxdepth 1 -exec rm -rf {{}} +",
             check=False)  # fmt: skip
