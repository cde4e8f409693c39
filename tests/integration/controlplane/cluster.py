"""A whole control plane in one test: the real API server (its own thread), and — on the
test's event loop — the scheduler, the controller manager and a fleet of simulated nodes,
each talking HTTPS with its own client, as separate processes would."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from berth.agent.config import NodeConfig, ServerConfig
from berth.agent.fleet import Fleet
from berth.agent.simulated import SimulatedRuntime
from berth.api import satoken
from berth.api.resources import PODS
from berth.client.http import HttpClient
from berth.client.interface import Obj
from berth.controllers.manager import ControllerManager, ManagerConfig
from berth.controllers.nodelifecycle import NodeLifecycleConfig
from berth.machinery.clock import RealClock
from berth.machinery.events import EventRecorder
from berth.machinery.informer import InformerFactory
from berth.scheduler.scheduler import Scheduler
from tests.harness.apiserver import ServerHandle
from tests.harness.ports import free_port

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[3]
KUBECTL_120 = ROOT / ".cache" / "kubectl-1.20" / "usr" / "bin" / "kubectl"
KUBECTL_132 = "/usr/bin/kubectl"
KUBECTL = str(KUBECTL_120 if KUBECTL_120.exists() else Path(KUBECTL_132))


async def wait_until(
    check: Callable[[], Awaitable[T | bool | None]], *, within: float = 60.0, what: str = ""
) -> T:
    """Poll ``check`` every 100ms until it returns something truthy (which is returned).

    The default is 60 s (was 20 s): controllers, the simulated nodes and the API server share
    the machine with other test workers and lab hosts under ``make test``."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {within}s waiting for {what or check}: last={last!r}")


@dataclass
class Cluster:
    server: ServerHandle
    kubeconfig: Path
    api: HttpClient
    runtime: SimulatedRuntime
    fleet: Fleet
    manager: ControllerManager
    scheduler: Scheduler
    home: Path
    clients: list[HttpClient] = field(default_factory=list)
    manager_task: asyncio.Task[None] | None = None

    async def stop_manager(self) -> None:
        """Stop the controller manager (a controller restart test starts another)."""
        if self.manager_task is not None:
            self.manager_task.cancel()
            await asyncio.gather(self.manager_task, return_exceptions=True)

    async def pods(self, namespace: str = "default", selector: str | None = None) -> list[Obj]:
        return (await self.api.list(PODS, namespace=namespace, label_selector=selector)).items

    async def kubectl(
        self,
        *args: str,
        within: float = 60.0,
        check: bool = True,
        binary: str = KUBECTL,
        stdin: str | None = None,
    ) -> str:
        """kubectl against the cluster as the admin; with ``check`` a non-zero exit fails the
        test, else stderr is appended to the output."""
        env = {**os.environ, "HOME": str(self.home), "KUBECONFIG": str(self.kubeconfig)}
        proc = await asyncio.create_subprocess_exec(
            binary,
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else None,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        feed = stdin.encode() if stdin is not None else None
        # a kubectl given its own --timeout=Ns (rollout status, wait) gets that long and more
        for arg in args:
            if arg.startswith("--timeout=") and arg.endswith("s") and arg[10:-1].isdigit():
                within = max(within, int(arg[10:-1]) + 30.0)
        out, err = await asyncio.wait_for(proc.communicate(feed), within)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {err.decode()}")
        return out.decode() + (err.decode() if not check else "")

    async def kubectl_132(self, *args: str) -> str:
        """kubectl 1.32 (:meth:`kubectl` runs 1.20 when it is cached)."""
        return await self.kubectl(*args, binary=KUBECTL_132)


@asynccontextmanager
async def control_plane(
    server: ServerHandle,
    tmp: Path,
    *,
    nodes: int = 3,
    node_labels: dict[str, dict[str, str]] | None = None,
    lifecycle: NodeLifecycleConfig | None = None,
    renew_interval: float = 1.0,
    start_delay: float = 0.0,
    serve_logs: bool = False,
    hpa_sync_period: float = 15.0,
) -> AsyncIterator[Cluster]:
    kubeconfig = server.kubeconfig("admin", groups=["system:masters"])
    clock = RealClock()
    clients: list[HttpClient] = []

    def client(agent: str, user: str = "", groups: tuple[str, ...] = ()) -> HttpClient:
        """A client with the component's own identity (RBAC applies, as in a cluster)."""
        path = server.kubeconfig(user, groups=list(groups)) if user else kubeconfig
        c = HttpClient.from_kubeconfig(path, user_agent=agent)
        clients.append(c)
        return c

    lifecycle = lifecycle or NodeLifecycleConfig(
        grace_period=4.0, startup_grace_period=10.0, monitor_period=0.5
    )
    manager = await ControllerManager.create(
        client("controller-manager", "system:kube-controller-manager"),
        clock,
        ManagerConfig(
            node_lifecycle=lifecycle,
            root_ca_pem=server.pki.ca_cert.read_bytes(),
            service_account_signer=_signer(server),
            hpa_sync_period=hpa_sync_period,
        ),
    )
    sched_client = client("scheduler", "system:kube-scheduler")
    informers = InformerFactory(sched_client, clock=clock)
    scheduler = Scheduler(
        sched_client,
        informers,
        clock,
        recorder=EventRecorder(sched_client, clock, component="default-scheduler"),
    )
    runtime = SimulatedRuntime(clock, start_delay=start_delay)
    labels = node_labels or {}
    server_cfg: ServerConfig | None = None
    names = [f"node-{i}" for i in range(nodes)]
    if serve_logs:
        # one agent process serves every simulated node: its certificate names them all (the
        # API server accepts only a serving certificate naming the pod's node)
        cert, key = server.pki.issue(
            "agent-serving", common_name="berth-agent", server=True, ips=["127.0.0.1"], dns=names
        )
        server_cfg = ServerConfig(
            address="127.0.0.1",
            port=free_port(),
            cert_file=str(cert),
            key_file=str(key),
            client_ca_file=str(server.pki.ca_cert),
        )
    fleet = Fleet(
        # The simulated fleet shares one pod watch across all its nodes, which no single node
        # identity may hold (a node lists only pods with spec.nodeName=itself): it watches as
        # the admin; every node still writes and reads Secrets with its own identity.
        client("agent"),
        clock,
        runtime,
        nodes=[NodeConfig(name=n, labels=labels.get(n, {})) for n in names],
        server=server_cfg,
        renew_interval=renew_interval,
        status_report_interval=30.0,
        status_check_interval=renew_interval,
        node_clients={
            n: client(f"agent/{n}", f"system:node:{n}", ("system:nodes",)) for n in names
        },
    )
    api = client("test")
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    tasks: list[asyncio.Task[Any]] = []
    try:
        await fleet.start()
        tasks.append(asyncio.create_task(manager.run()))
        informers.start()
        await informers.wait_for_sync()
        tasks.append(asyncio.create_task(scheduler.run()))
        await manager.informers.wait_for_sync()
        yield Cluster(
            server, kubeconfig, api, runtime, fleet, manager, scheduler, home, clients, tasks[0]
        )
    finally:
        scheduler.queue.shutdown()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await informers.stop()
        await fleet.stop()
        for c in clients:
            await c.close()
        await asyncio.sleep(0.3)  # let TLS connections finish closing (aiohttp's advice)


def _signer(server: ServerHandle) -> satoken.Signer | None:
    """The API server's service-account key, as the controller manager gets it."""
    key = server.config.service_account_signing_key_file
    return satoken.Signer(satoken.load_private_key(key)) if key is not None else None


def deployment(name: str, *, replicas: int = 3, image: str = "nginx:1", **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "app", "image": image}],
                    "terminationGracePeriodSeconds": 1,
                },
            },
            **spec,
        },
    }
