"""The agent-protocol adapter: typing against berth.agent.runtime.Runtime, status mapping, logs,
and the k8s Pod conversion it relies on."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from berth.agent.runtime import ContainerConfig, ImagePullFailed, Runtime, SandboxConfig
from berth.network.command import Completed
from berth.runtime.agent_runtime import RuncAgentRuntime, to_agent_status
from berth.runtime.errors import ContainerError
from berth.runtime.k8s import configmap_files, parse_quantity, pod_from_k8s, secret_files
from berth.runtime.poddns import ResolvConf
from berth.runtime.runc import ContainerState, ContainerStatus, container_id
from berth.runtime.sandbox import SandboxRecord
from berth.runtime.spec import (
    ContainerID,
    EmptyDir,
    FilesVolume,
    HostPath,
    PodUID,
    PortMapping,
    Resources,
)
from tests.unit.runtime.helpers import FakeNetnsHost, runc_adapter, runc_runtime


def test_adapter_satisfies_the_agent_runtime_protocol(tmp_path: Path) -> None:
    runtime: Runtime = runc_adapter(tmp_path)  # mypy checks the structural match
    assert runtime.name == "runc"
    wired: Runtime = RuncAgentRuntime.for_node(
        pod_cidr="10.244.3.0/24", state_dir=tmp_path / "node", runc_root=tmp_path / "runc"
    )
    assert isinstance(wired, RuncAgentRuntime)
    assert wired.rt.sandboxes.network is not None
    conflist = wired.rt.sandboxes.network.conflist
    assert conflist["plugins"][0]["ipam"]["ranges"][0][0]["subnet"] == "10.244.3.0/24"


def test_status_mapping() -> None:
    base = ContainerStatus(
        id=ContainerID("u_web_1"),
        pod_uid=PodUID("u"),
        name="web",
        attempt=1,
        image="img",
        image_id="sha256:x",
        state=ContainerState.EXITED,
        exit_code=137,
        signal="SIGKILL",
        reason="Error",
        created_at="2026-11-22T00:00:00+00:00",
        started_at="2026-11-22T00:00:01+00:00",
        finished_at="2026-11-22T00:00:09+00:00",
        warnings=("memory limit not enforced",),
    )
    agent = to_agent_status(base)
    assert (agent.phase, agent.exit_code, agent.reason, agent.attempt) == (
        "exited",
        137,
        "Error",
        1,
    )
    assert agent.sandbox_id == "u"
    assert agent.image_id == "sha256:x"
    assert agent.finished_at is not None
    assert (agent.finished_at - agent.created_at).total_seconds() == 9
    assert agent.message == "memory limit not enforced"
    unknown = to_agent_status(
        ContainerStatus(**{**base.__dict__, "state": ContainerState.UNKNOWN, "exit_code": None})
    )
    assert (unknown.phase, unknown.exit_code) == ("exited", None)


def test_logs_tail_and_missing_container(tmp_path: Path) -> None:
    adapter = runc_adapter(tmp_path)
    d = adapter.rt.containers_dir / "u_web_0"
    d.mkdir(parents=True)
    (d / "meta.json").write_text(json.dumps({"id": "u_web_0"}))
    (d / "container.log").write_bytes(b"one\ntwo\nthree\n")

    async def collect(cid: str, tail: int | None) -> list[bytes]:
        return [chunk async for chunk in adapter.logs(cid, tail_lines=tail)]

    assert asyncio.run(collect("u_web_0", 2)) == [b"two\n", b"three\n"]
    assert asyncio.run(collect("u_web_0", None)) == [b"one\n", b"two\n", b"three\n"]
    assert asyncio.run(collect("nope", None)) == []
    assert asyncio.run(adapter.container_status("nope")) is None


POD = {
    "metadata": {"name": "web", "namespace": "shop", "uid": "1234"},
    "spec": {
        "securityContext": {"runAsUser": 1000, "fsGroup": 2000, "supplementalGroups": [3000]},
        "hostAliases": [{"ip": "10.0.0.9", "hostnames": ["db"]}],
        "volumes": [
            {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "logs", "hostPath": {"path": "/var/log/web", "type": "DirectoryOrCreate"}},
            {
                "name": "conf",
                "configMap": {"name": "web-conf", "items": [{"key": "a", "path": "a.conf"}]},
            },
            {"name": "tls", "secret": {"secretName": "web-tls", "defaultMode": 0o440}},
        ],
        "containers": [
            {
                "name": "web",
                "image": "registry.local:5000/web:1",
                "command": ["/bin/web"],
                "env": [{"name": "MODE", "value": "prod"}],
                "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 9090}],
                "resources": {
                    "requests": {"cpu": "250m"},
                    "limits": {"cpu": "1", "memory": "128Mi"},
                },
                "securityContext": {
                    "runAsUser": 0,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                },
                "volumeMounts": [{"name": "conf", "mountPath": "/etc/web", "readOnly": True}],
                "imagePullPolicy": "Always",
            }
        ],
    },
}


def test_pod_conversion() -> None:
    def files(kind: str, name: str) -> dict[str, bytes]:
        if kind == "configMap":
            return configmap_files({"data": {"a": "x=1"}})
        return secret_files({"data": {"tls.crt": "Y2VydA=="}, "stringData": {"k": "v"}})

    pod, (web,) = pod_from_k8s(POD, files=files, dns_nameservers=("10.96.0.10",))
    assert (pod.uid, pod.namespace, pod.fs_group, pod.supplemental_groups) == (
        "1234", "shop", 2000, (3000,),
    )  # fmt: skip
    assert pod.host_aliases == (("10.0.0.9", ("db",)),)
    assert pod.dns_nameservers == ("10.96.0.10",)
    sources = {v.name: v.source for v in pod.volumes}
    assert sources["scratch"] == EmptyDir(medium="Memory", size_limit_bytes=64 << 20)
    assert sources["logs"] == HostPath("/var/log/web", "DirectoryOrCreate")
    assert sources["conf"] == FilesVolume("configMap", {"a.conf": b"x=1"})
    assert sources["tls"] == FilesVolume("secret", {"tls.crt": b"cert", "k": b"v"}, 0o440)
    assert web.run_as_user == 0, "the container's securityContext overrides the pod's"
    assert web.resources == Resources(
        cpu_request_millis=250, cpu_limit_millis=1000, memory_limit_bytes=128 << 20
    )
    assert web.capabilities_drop == ("ALL",)
    assert web.ports == (PortMapping(container_port=80, host_port=8080),)
    assert web.image_pull_policy == "Always"


def test_quantities_and_refusals() -> None:
    assert parse_quantity("250m").milli_value() == 250
    assert parse_quantity("1.5Gi").value() == 3 * 2**29
    assert parse_quantity("1e3").value() == 1000
    assert parse_quantity(2).value() == 2
    # rounded up as the kubelet rounds, never down to nothing
    assert parse_quantity("0.1m").milli_value() == 1
    assert parse_quantity("1.5").value() == 2
    with pytest.raises(ContainerError, match="invalid resource quantity"):
        parse_quantity("12XB")
    needs_files = {"metadata": {"name": "p", "uid": "u"},
                   "spec": {"volumes": [{"name": "c", "configMap": {"name": "x"}}]}}  # fmt: skip
    with pytest.raises(ContainerError, match="files\\(\\) callback"):
        pod_from_k8s(needs_files)
    value_from = {
        "metadata": {"name": "p", "uid": "u"},
        "spec": {
            "containers": [
                {"name": "c", "image": "i", "env": [{"name": "X", "valueFrom": {"fieldRef": {}}}]}
            ]
        },
    }
    with pytest.raises(ContainerError, match="valueFrom"):
        pod_from_k8s(value_from)
    assert pod_from_k8s(value_from, env_from=lambda c, e: "v")[1][0].env == (("X", "v"),)


def test_sandbox_pod_is_rebuilt_from_the_stored_spec(tmp_path: Path) -> None:
    adapter = runc_adapter(tmp_path)
    adapter.cluster_dns = "10.96.0.10"
    spec = {
        "hostNetwork": True,
        "volumes": [
            {"name": "c", "configMap": {"name": "x", "items": [{"key": "k", "path": "p"}]}},
            {"name": "s", "secret": {"secretName": "y"}},
            {"name": "h", "hostPath": {"path": "/var/log"}},
            {"name": "e", "emptyDir": {}},
        ],
    }
    pod_dir = adapter.rt.sandboxes.pod_dir(PodUID("u1"))
    pod_dir.mkdir(parents=True)
    SandboxRecord(uid="u1", namespace="ns", name="p", netns="", extra={"spec": spec}).save(
        pod_dir / "sandbox.json"
    )
    pod = adapter._pod("u1")
    assert pod.host_network is True
    assert [type(v.source).__name__ for v in pod.volumes] == [
        "FilesVolume", "FilesVolume", "HostPath", "EmptyDir",
    ]  # fmt: skip
    host = tmp_path / "host-resolv.conf"
    host.write_text("nameserver 10.231.0.1\nsearch lab\noptions edns0\n")
    adapter.host_resolv_conf = str(host)
    assert adapter._dns("shop", {}) == ResolvConf(
        ("10.96.0.10",),
        ("shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "lab"),
        ("ndots:5",),
    )
    default = ResolvConf(("10.231.0.1",), ("lab",), ("edns0",))
    assert adapter._dns("shop", {"dnsPolicy": "Default"}) == default
    assert adapter._dns("shop", {"hostNetwork": True}) == default, "host DNS for host network"


def test_image_failures_become_pull_errors_before_anything_is_created(tmp_path: Path) -> None:
    adapter = runc_adapter(tmp_path)
    never = ContainerConfig(
        name="web", image="airgap.local/absent:1", spec={"imagePullPolicy": "Never"}
    )
    with pytest.raises(ImagePullFailed, match="imagePullPolicy is Never") as info:
        asyncio.run(adapter.start_container("uid-1", never, attempt=0))
    assert info.value.never_pull is True
    bad = ContainerConfig(name="web", image="Not A Reference", spec={})
    with pytest.raises(ImagePullFailed, match="invalid image reference") as info:
        asyncio.run(adapter.start_container("uid-1", bad, attempt=0))
    assert info.value.never_pull is False
    assert not list((tmp_path / "state" / "containers").iterdir())


def test_a_container_it_just_created_is_started_without_asking_runc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = runc_adapter(tmp_path)
    rt = adapter.rt
    pod_dir = rt.sandboxes.pod_dir(PodUID("u1"))
    pod_dir.mkdir(parents=True)
    SandboxRecord(uid="u1", namespace="ns", name="p", netns="", extra={"spec": {}}).save(
        pod_dir / "sandbox.json"
    )
    calls: list[str] = []

    async def pull_image(reference: str, *, policy: str = "IfNotPresent") -> Any:
        return None

    runs_asked: list[bool] = [True]  # False: a container with stdio, started apart

    async def create_container(
        pod: Any, spec: Any, *, attempt: int = 0, start: bool = False, **_: Any
    ) -> str:
        start = start and runs_asked[0]
        calls.append("run" if start else "create")
        cid = container_id(pod.uid, spec.name, attempt)
        (rt.containers_dir / cid).mkdir(exist_ok=True)
        meta = {"startedAt": "2026-12-07T10:00:00Z"} if start else {}
        (rt.containers_dir / cid / "meta.json").write_text(json.dumps(meta))
        return cid

    async def container_status(cid: ContainerID) -> ContainerStatus:
        calls.append("state")
        return ContainerStatus(cid, PodUID("u1"), "web", 0, "web:1", "", ContainerState.CREATED)

    async def start_container(cid: ContainerID) -> None:
        calls.append("start")

    monkeypatch.setattr(rt, "pull_image", pull_image)
    monkeypatch.setattr(rt, "create_container", create_container)
    monkeypatch.setattr(rt, "container_status", container_status)
    monkeypatch.setattr(rt, "start_container", start_container)
    config = ContainerConfig(name="web", image="web:1", spec={})
    asyncio.run(adapter.start_container("u1", config, attempt=0))
    assert calls == ["run"], "a new container is created and started by one runc process"
    calls.clear()  # found already there (the agent restarted after creating it): ask runc
    (rt.containers_dir / container_id(PodUID("u1"), "web", 0) / "meta.json").write_text("{}")
    asyncio.run(adapter.start_container("u1", config, attempt=0))
    assert calls == ["create", "state", "start"]
    calls.clear()  # new, but the runtime only created it (stdin or tty): started apart
    runs_asked[0] = False
    asyncio.run(adapter.start_container("u1", config, attempt=1))
    assert calls == ["create", "start"]


class _NoRuncHost(FakeNetnsHost):
    """A fake host whose runc knows no container (its root, on /run, went with a reboot)."""

    async def run(self, argv: Sequence[str], **kw: Any) -> Completed:
        if "state" in argv:
            self.calls.append(list(argv))
            return Completed(tuple(argv), 1, b"", b"container does not exist")
        return await super().run(argv, **kw)


def test_a_sandbox_whose_netns_is_gone_is_not_ready_and_is_made_anew(tmp_path: Path) -> None:
    """The reboot of issue 23: the agent lists a sandbox whose namespace is gone as not
    ready (so it does not adopt it), and creating the pod's sandbox again replaces it, its
    emptyDir content and its exited containers kept; runc is asked about them, nothing is
    signalled (after a reboot a recorded pid may be another process's)."""
    netns = tmp_path / "netns"
    netns.mkdir()
    host = _NoRuncHost(netns)
    adapter = RuncAgentRuntime(runc_runtime(tmp_path, runner=host))
    adapter.rt.sandboxes.netns_dir = netns
    adapter.rt.sandboxes.namespaces = host
    config = SandboxConfig(
        namespace="ns",
        name="p",
        uid="u1",
        node="n1",
        pod_ip="",
        spec={"volumes": [{"name": "scratch", "emptyDir": {}}]},
    )
    assert asyncio.run(adapter.create_sandbox(config)) == "u1"
    (sandbox,) = asyncio.run(adapter.list_sandboxes())
    assert sandbox.ready is True
    data = adapter.rt.sandboxes.volume_dir(PodUID("u1"), "scratch") / "f"
    data.write_text("kept")
    cid = container_id(PodUID("u1"), "web", 0)
    bundle = adapter.rt.containers_dir / cid
    bundle.mkdir()
    meta = {"id": cid, "podUid": "u1", "name": "web", "attempt": 0, "image": "web:1",
            "imageId": "sha256:x", "startedAt": "2026-01-01T00:00:00+00:00",
            "initPid": os.getpid(), "initStartTicks": -1}  # fmt: skip
    (bundle / "meta.json").write_text(json.dumps(meta))
    (netns / "berth-u1").unlink()  # the reboot: /run/netns is empty again
    (sandbox,) = asyncio.run(adapter.list_sandboxes())
    assert sandbox.ready is False
    (old,) = sandbox.containers
    assert (old.phase, old.exit_code) == ("exited", None), "ended, how unknown"
    host.calls.clear()
    assert asyncio.run(adapter.create_sandbox(config)) == "u1"
    (sandbox,) = asyncio.run(adapter.list_sandboxes())
    assert sandbox.ready is True
    assert data.read_text() == "kept"
    assert [c for c in host.calls if "kill" in c] == [], "nothing of it is signalled"
    assert (netns / "berth-u1").exists()
    assert bundle.is_dir(), "the old container stays known (restart counts, last state)"
