"""Image pull failures reported on the pod (ErrImagePull → ImagePullBackOff → running) and pod
IPs taken from runtimes whose network plugin assigns them."""

from __future__ import annotations

from berth.agent.runtime import SandboxConfig
from berth.agent.simulated import SimulatedRuntime
from tests.unit.agent.rig import Rig, run


def test_failed_pull_is_err_image_pull_then_back_off_then_runs_once_fixed() -> None:
    async def body() -> None:
        r = Rig()
        r.runtime.fail_pulls("web:1", "web:1: manifest unknown (registry answered 404)")
        r.add()
        await r.sync()
        waiting = r.container()["state"]["waiting"]
        assert waiting == {
            "reason": "ErrImagePull",
            "message": "web:1: manifest unknown (registry answered 404)",
        }
        assert r.status()["phase"] == "Pending"
        assert r.container()["restartCount"] == 0
        r.clock.advance(1.0)
        await r.sync()
        waiting = r.container()["state"]["waiting"]
        assert waiting == {
            "reason": "ImagePullBackOff",
            "message": 'Back-off pulling image "web:1"',
        }
        r.runtime.fail_pulls("web:1", None)
        r.clock.advance(5.0)  # still inside the 10s back-off: no new pull
        await r.sync()
        assert r.container()["state"]["waiting"]["reason"] == "ImagePullBackOff"
        r.clock.advance(5.0)
        await r.sync()
        assert "running" in r.container()["state"]
        assert r.container()["restartCount"] == 0  # a failed pull is not a restart
        assert "Failed" in r.events()
        assert "BackOff" in r.events()

    run(body())


def test_repeated_pull_failures_double_the_back_off() -> None:
    async def body() -> None:
        r = Rig()
        r.runtime.fail_pulls("web:1", "unreachable")
        r.add()
        await r.sync()  # failure 1: retry after 10s
        r.clock.advance(10.0)
        await r.sync()  # failure 2: retry after 20s
        assert r.container()["state"]["waiting"]["reason"] == "ErrImagePull"
        r.runtime.fail_pulls("web:1", None)
        r.clock.advance(15.0)
        await r.sync()
        assert r.container()["state"]["waiting"]["reason"] == "ImagePullBackOff"
        r.clock.advance(5.0)
        await r.sync()
        assert "running" in r.container()["state"]

    run(body())


class AssigningRuntime(SimulatedRuntime):
    """A simulated runtime whose "network plugin" hands out its own addresses."""

    assigns_pod_ips = True

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.seen: list[str] = []

    async def create_sandbox(self, config: SandboxConfig) -> str:
        self.seen.append(config.pod_ip)
        return await super().create_sandbox(config)

    async def sandbox_ip(self, sandbox_id: str) -> str:
        return "10.244.3.77"


def test_pod_ip_comes_from_a_runtime_that_assigns_it() -> None:
    async def body() -> None:
        r = Rig()
        runtime = AssigningRuntime(r.clock)
        r.runtime = r.manager.runtime = runtime
        r.add()
        await r.sync()
        assert runtime.seen == [""]  # the agent did not pick one
        assert r.status()["podIP"] == "10.244.3.77"
        assert r.status()["podIPs"] == [{"ip": "10.244.3.77"}]

    run(body())


def test_host_network_pod_reports_the_node_address() -> None:
    async def body() -> None:
        r = Rig()
        r.add(hostNetwork=True)
        await r.sync()
        assert r.status()["podIP"] == "192.0.2.10"
        sandbox = r.runtime.sandbox_of("default", "p")
        assert sandbox is not None
        assert sandbox.pod_ip == ""

    run(body())
