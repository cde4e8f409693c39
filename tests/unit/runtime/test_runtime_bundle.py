"""OCI bundle config generation: golden documents and the Kubernetes command/env/user rules."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from berth.runtime.bundle import (
    SandboxPaths,
    build_args,
    build_env,
    expand,
    render_config,
    resolve_user,
    unenforced_limits,
)
from berth.runtime.errors import ContainerError
from berth.runtime.manifest import ImageConfig
from berth.runtime.spec import (
    ContainerSpec,
    EmptyDir,
    FilesVolume,
    HostPath,
    PodSpec,
    PodUID,
    Resources,
    Volume,
    VolumeMount,
)

GOLDEN = Path(__file__).parent / "golden"
IMAGE = ImageConfig(
    os="linux",
    architecture="amd64",
    entrypoint=(),
    cmd=("/bin/httpd", "-f", "-p", "8080", "-h", "/www"),
    env=("PATH=/bin", "GREETING=hello"),
    working_dir="/www",
    user="",
)
POD = PodSpec(
    uid=PodUID("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
    namespace="default",
    name="web-1",
    volumes=(
        Volume("scratch", EmptyDir()),
        Volume("cache", EmptyDir(medium="Memory")),
        Volume("conf", FilesVolume("configMap", {"app.conf": b"x=1\n"})),
        Volume("token", FilesVolume("secret", {"token": b"s3cr3t"})),
        Volume("logs", HostPath("/var/log/web")),
    ),
)
PATHS = SandboxPaths(
    netns=Path("/run/netns/berth-0f1e2d3c"),
    etc_hosts=Path("/var/lib/berth/pods/0f1e/etc-hosts"),
    etc_resolv_conf=Path("/var/lib/berth/pods/0f1e/resolv.conf"),
    etc_hostname=Path("/var/lib/berth/pods/0f1e/hostname"),
    volumes={
        name: Path(f"/var/lib/berth/pods/0f1e/volumes/{name}")
        for name in ("scratch", "cache", "conf", "token")
    },
)


def _check_golden(name: str, doc: dict[str, Any]) -> None:
    path = GOLDEN / name
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if os.environ.get("BERTH_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; review and rerun with BERTH_UPDATE_GOLDEN=1"


def _render(container: ContainerSpec, enforce: frozenset[str] = frozenset()) -> dict[str, Any]:
    user = resolve_user(
        spec_uid=container.run_as_user,
        spec_gid=container.run_as_group,
        image_user=IMAGE.user,
        passwd="root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/www:/bin/false\n",
        group="root:x:0:\nwww:x:33:\nlog:x:4:www\n",
    )
    return render_config(
        pod=POD,
        container=container,
        image=IMAGE,
        user=user,
        rootfs=Path("/var/lib/berth/containers/c1/rootfs"),
        paths=PATHS,
        cgroups_path="/berth/0f1e2d3c/c1",
        enforce=enforce,
    )


def test_golden_minimal_container_uses_image_defaults() -> None:
    _check_golden("minimal.json", _render(ContainerSpec(name="web", image="lab/busybox:1.35")))


def test_golden_full_container() -> None:
    container = ContainerSpec(
        name="web",
        image="lab/busybox:1.35",
        command=("/bin/sh", "-c"),
        args=("echo $(GREETING) $(TARGET) $$(not) $(MISSING)",),
        env=(("TARGET", "world"), ("GREETING", "hi $(TARGET)")),
        working_dir="/tmp",
        run_as_user=33,
        read_only_root_filesystem=True,
        allow_privilege_escalation=False,
        capabilities_add=("NET_ADMIN",),
        capabilities_drop=("NET_RAW", "mknod"),
        resources=Resources(
            cpu_request_millis=250,
            cpu_limit_millis=500,
            memory_limit_bytes=64 << 20,
            pids_limit=128,
        ),
        volume_mounts=(
            VolumeMount("scratch", "/scratch"),
            VolumeMount("cache", "/cache"),
            VolumeMount("conf", "/etc/app"),
            VolumeMount("token", "/var/run/secrets/token", read_only=True),
            VolumeMount("logs", "/logs", sub_path="web-1"),
        ),
    )
    _check_golden("full.json", _render(container, frozenset({"memory", "cpu", "pids"})))


def test_limits_the_node_cannot_enforce_are_left_out_and_reported() -> None:
    container = ContainerSpec(
        name="w", image="x", resources=Resources(memory_limit_bytes=1 << 20, pids_limit=10)
    )
    doc = _render(container, frozenset({"pids"}))
    assert doc["linux"]["resources"]["pids"] == {"limit": 10}
    assert "memory" not in doc["linux"]["resources"]
    assert unenforced_limits(container, frozenset({"pids"})) == ["memory"]


def test_command_and_args_follow_kubernetes_rules() -> None:
    image = ImageConfig(os="linux", architecture="amd64", entrypoint=("/ep",), cmd=("c1", "c2"))
    env = ["A=1"]

    def argv(command: tuple[str, ...] = (), args: tuple[str, ...] = ()) -> list[str]:
        return build_args(ContainerSpec("c", "i", command=command, args=args), image, env)

    assert argv() == ["/ep", "c1", "c2"]
    assert argv(args=("x",)) == ["/ep", "x"]
    assert argv(command=("/bin/true",)) == ["/bin/true"], "command drops the image Cmd"
    assert argv(command=("/bin/echo",), args=("$(A)",)) == ["/bin/echo", "1"]
    empty = ImageConfig(os="linux", architecture="amd64")
    with pytest.raises(ContainerError, match="no command"):
        build_args(ContainerSpec("c", "i"), empty, env)


def test_env_merges_image_then_container_with_expansion() -> None:
    env = build_env(
        ContainerSpec("c", "i", env=(("PATH", "/opt:$(PATH)"), ("GREETING", "$(GREETING)!"))),
        IMAGE,
        "web-1",
    )
    assert env == ["PATH=/opt:/bin", "GREETING=hello!", "HOSTNAME=web-1"]
    assert expand("$(A)$$(A)$(B)", {"A": "x"}) == "x$(A)$(B)"


PASSWD = "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\napp:x:1000:1000::/:/sh\n"
GROUP = "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nextra:x:2000:app,other\n"


@pytest.mark.parametrize(
    ("spec_uid", "spec_gid", "image_user", "expected"),
    [
        (None, None, "", (0, 0, ())),
        (None, None, "app", (1000, 1000, (2000,))),
        (None, None, "nobody:app", (65534, 1000, ())),
        (None, None, "1234", (1234, 0, ())),
        (None, None, "1234:5678", (1234, 5678, ())),
        (1000, None, "nobody", (1000, 1000, (2000,))),
        (1000, 7, "nobody:nogroup", (1000, 7, (2000,))),
    ],
)
def test_user_resolution(
    spec_uid: int | None,
    spec_gid: int | None,
    image_user: str,
    expected: tuple[int, int, tuple[int, ...]],
) -> None:
    user = resolve_user(
        spec_uid=spec_uid, spec_gid=spec_gid, image_user=image_user, passwd=PASSWD, group=GROUP
    )
    assert (user.uid, user.gid, user.additional_gids) == expected


def test_unknown_image_user_and_bad_mounts_are_errors() -> None:
    with pytest.raises(ContainerError, match="not in the image's /etc/passwd"):
        resolve_user(spec_uid=None, spec_gid=None, image_user="ghost", passwd=PASSWD, group=GROUP)
    with pytest.raises(ContainerError, match="unknown volume 'nope'"):
        _render(ContainerSpec("c", "i", volume_mounts=(VolumeMount("nope", "/x"),)))
    with pytest.raises(ContainerError, match="subPath"):
        _render(
            ContainerSpec("c", "i", volume_mounts=(VolumeMount("logs", "/x", sub_path="../.."),))
        )


def test_host_network_pod_shares_the_node_network_and_hostname() -> None:
    paths = SandboxPaths(
        netns=None,
        etc_hosts=PATHS.etc_hosts,
        etc_resolv_conf=PATHS.etc_resolv_conf,
        etc_hostname=PATHS.etc_hostname,
        volumes={},
    )
    doc = render_config(
        pod=PodSpec(uid=PodUID("u"), namespace="kube-system", name="proxy", host_network=True),
        container=ContainerSpec(name="c", image="i"),
        image=IMAGE,
        user=resolve_user(spec_uid=None, spec_gid=None, image_user="", passwd="", group=""),
        rootfs=Path("/r"),
        paths=paths,
        cgroups_path="/berth/u/c",
    )
    assert [n["type"] for n in doc["linux"]["namespaces"]] == ["pid", "ipc", "mount"]
    assert "hostname" not in doc


def test_terminal_and_target_pid_namespace() -> None:
    """A tty container's process gets a terminal (runc hands it to the shim); an ephemeral
    container with a target joins the target's pid namespace instead of a new one."""
    plain = _render(ContainerSpec(name="web", image="lab/busybox:1.35"))
    assert plain["process"]["terminal"] is False
    assert {"type": "pid"} in plain["linux"]["namespaces"]
    debug = _render(
        ContainerSpec(
            name="dbg", image="lab/busybox:1.35", tty=True, target_pid_namespace="/proc/42/ns/pid"
        )
    )
    assert debug["process"]["terminal"] is True
    pid = [n for n in debug["linux"]["namespaces"] if n["type"] == "pid"]
    assert pid == [{"type": "pid", "path": "/proc/42/ns/pid"}]
