"""EndpointSlices and the cluster DNS against a real API server: the controller manager keeps
slices from pods, berth-dns (in-process, with a node's identity, as on a node) answers from
them, and every change shows in DNS promptly (it follows the watch: about a second; the test
allows FOLLOW_BOUND on a loaded machine). ``kubectl describe svc`` (1.32) reads the slices."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.message
import dns.rcode

from berth.api.resources import DEPLOYMENTS, ENDPOINTSLICES, SERVICES
from berth.client.http import HttpClient
from berth.dns.feed import ZoneFeed
from berth.dns.records import build_zone
from berth.dns.server import DnsServer
from berth.machinery.clock import RealClock
from tests.harness.apiserver import ServerHandle

from .cluster import control_plane, deployment, wait_until

D = "cluster.local"


async def ask(port: int, name: str, rdtype: str = "A") -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    return await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=2)


def addresses(msg: dns.message.Message) -> list[str]:
    return sorted(r.address for rrset in msg.answer for r in rrset if hasattr(r, "address"))


FOLLOW_BOUND = 3.0
"""Seconds the server may take to follow an API change: it follows the watch, so promptly
(1 s on a quiet machine, which a loaded one exceeded); a resync would take far longer."""


async def answered_promptly(port: int, name: str, want: Any, rdtype: str = "A") -> float:
    """Seconds until ``name`` answers ``want`` (a sorted address list, or an rcode)."""
    start = time.monotonic()
    while True:
        msg = await ask(port, name, rdtype)
        got: Any = addresses(msg) if isinstance(want, list) else msg.rcode()
        elapsed = time.monotonic() - start
        if got == want:
            return elapsed
        assert elapsed < FOLLOW_BOUND, f"{name}: still {got!r} after {elapsed:.2f}s, want {want!r}"
        await asyncio.sleep(0.02)


def service(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec}


def test_slices_and_dns_follow_pods_and_services(server: ServerHandle, tmp_path: Path) -> None:
    async def body() -> None:
        async with control_plane(server, tmp_path, nodes=2) as c:
            node_client = HttpClient.from_kubeconfig(
                server.kubeconfig("system:node:node-0", groups=["system:nodes"]),
                user_agent="berth-dns",
            )
            dns_server = DnsServer(build_zone([], [], domain=D))
            await dns_server.start([("127.0.0.1", 0)])
            port = dns_server.bound()[0][1]
            feed = ZoneFeed(node_client, RealClock(), dns_server, domain=D)
            feed_task = asyncio.create_task(feed.run())
            try:
                await asyncio.wait_for(feed.synced.wait(), 30)
                # the kubernetes Service, its slice mirrored from the apiserver's Endpoints
                kube = await c.api.get(SERVICES, "kubernetes", namespace="default")
                await answered_promptly(
                    port, f"kubernetes.default.svc.{D}.", [kube["spec"]["clusterIP"]]
                )
                await c.api.create(
                    DEPLOYMENTS,
                    deployment(
                        "web",
                        replicas=3,
                        template={
                            "metadata": {"labels": {"app": "web"}},
                            "spec": {
                                "containers": [
                                    {
                                        "name": "app",
                                        "image": "nginx:1",
                                        "ports": [{"name": "http", "containerPort": 8080}],
                                    }
                                ],
                                "terminationGracePeriodSeconds": 1,
                            },
                        },
                    ),
                    namespace="default",
                )
                ports = [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
                web = await c.api.create(
                    SERVICES,
                    service("web", selector={"app": "web"}, ports=ports),
                    namespace="default",
                )
                took = await answered_promptly(
                    port, f"web.default.svc.{D}.", [web["spec"]["clusterIP"]]
                )
                assert took < 1.0
                await c.api.create(
                    SERVICES,
                    service("web-hl", clusterIP="None", selector={"app": "web"}, ports=ports),
                    namespace="default",
                )

                async def ready_ips() -> list[str] | None:
                    pods = await c.pods("default", "app=web")
                    ips = sorted(
                        p["status"]["podIP"]
                        for p in pods
                        if p["status"].get("podIP")
                        and any(
                            x["type"] == "Ready" and x["status"] == "True"
                            for x in p["status"].get("conditions") or []
                        )
                    )
                    return ips if len(ips) == 3 else None

                ips = await wait_until(ready_ips, what="3 ready web pods")
                await wait_until(
                    lambda: _answers(port, f"web-hl.default.svc.{D}.", ips),
                    within=30,
                    what="every web pod in the headless answer",
                )
                slices = (
                    await c.api.list(
                        ENDPOINTSLICES,
                        namespace="default",
                        label_selector="kubernetes.io/service-name=web",
                    )
                ).items
                assert len(slices) == 1
                assert sorted(e["addresses"][0] for e in slices[0]["endpoints"]) == ips
                assert slices[0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
                srv = await ask(port, f"_http._tcp.web.default.svc.{D}.", "SRV")
                assert [r.port for rrset in srv.answer for r in rrset] == [80]
                described = await c.kubectl_132("describe", "svc", "web")
                endpoints_line = next(
                    line for line in described.splitlines() if line.startswith("Endpoints:")
                )
                assert all(f"{ip}:8080" in endpoints_line for ip in ips), described

                # a hand-written slice of a selector-less headless Service: updates promptly
                await c.api.create(
                    SERVICES, service("manual", clusterIP="None"), namespace="default"
                )
                hand = await c.api.create(
                    ENDPOINTSLICES,
                    {
                        "apiVersion": "discovery.k8s.io/v1",
                        "kind": "EndpointSlice",
                        "metadata": {
                            "name": "manual-1",
                            "labels": {"kubernetes.io/service-name": "manual"},
                        },
                        "addressType": "IPv4",
                        "endpoints": [{"addresses": ["10.244.9.1"], "conditions": {"ready": True}}],
                    },
                    namespace="default",
                )
                await answered_promptly(port, f"manual.default.svc.{D}.", ["10.244.9.1"])
                hand["endpoints"].append({"addresses": ["10.244.9.2"], "hostname": "two"})
                await c.api.update(ENDPOINTSLICES, hand)
                await answered_promptly(
                    port, f"manual.default.svc.{D}.", ["10.244.9.1", "10.244.9.2"]
                )
                await answered_promptly(port, f"two.manual.default.svc.{D}.", ["10.244.9.2"])
                await c.api.delete(SERVICES, "web", namespace="default")
                await answered_promptly(port, f"web.default.svc.{D}.", dns.rcode.NXDOMAIN)
            finally:
                feed_task.cancel()
                await asyncio.gather(feed_task, return_exceptions=True)
                await dns_server.stop()
                await node_client.close()

    asyncio.run(body())


async def _answers(port: int, name: str, want: list[str]) -> bool:
    return addresses(await ask(port, name)) == want
