"""The resource metrics pipeline (what metrics-server does), inside the API server.

Why here and not a separate aggregated API server: berth's API server already holds the
agent-client certificate and the node-name check it uses for ``pods/log``
(:mod:`berth.apiserver.logs`), authorizes every request with RBAC and serves discovery from
one table; a separate component would need its own serving certificate, an APIService kind
and a proxy. The cost is bounded:

* :class:`Scraper` runs as one task on the event loop. Every ``RESOLUTION`` seconds it asks
  each Node's agent for ``GET /stats/summary?node=NAME`` (at most ``CONCURRENCY`` at once,
  ``SCRAPE_TIMEOUT`` each, answers above ``MAX_SUMMARY_BYTES`` dropped), so a slow or dead
  node never blocks a request or the other nodes. Summaries are small JSON documents
  (a few hundred bytes a pod), decoded inline.
* :class:`MetricsStore` keeps, per node and per running container, only the last two
  samples; whatever the latest scrape of a node no longer lists is forgotten, so memory
  follows the live pods, never history.

Rates: CPU is the cumulative-counter difference of the two samples over their time
difference (``window``); a container seen once whose start lies after the sample before it
is measured from its start (as metrics-server does, so fresh pods show up after one
scrape). Memory is the newest working set. ``timestamp`` is the newest sample's time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from berth.api.meta import Obj, get_path
from berth.api.resources import NODES

from .logs import _agent_port, _node_address, agent_ssl_context
from .options import ListOptions

if TYPE_CHECKING:
    from .app import ApiServer

log = logging.getLogger(__name__)

RESOLUTION = 10.0
SCRAPE_TIMEOUT = 5.0
CONCURRENCY = 10
MAX_SUMMARY_BYTES = 8 << 20
INLINE_DECODE_BYTES = 256 << 10
MAX_PODS_PER_NODE = 1000
MAX_CONTAINERS_PER_POD = 64


@dataclass(frozen=True, slots=True)
class Point:
    """One reading: when, cumulative CPU ns, working-set bytes; ``start`` (containers): when
    the container started, if known."""

    time: float
    cpu_ns: int
    memory: int
    start: float | None = None


@dataclass(frozen=True, slots=True)
class Rate:
    """CPU in nanocores and memory in bytes over ``window`` seconds ending at ``time``."""

    time: float
    window: float
    nanocores: int
    memory: int


def rate(prev: Point | None, cur: Point) -> Rate | None:
    """The usage between ``prev`` and ``cur``; without a usable ``prev`` (none, or a counter
    that went backwards: the container restarted) measured from the container's start when
    that lies within the scrape, else unknown."""
    same_instance = prev is not None and (cur.start is None or cur.start <= prev.time)
    if prev is not None and same_instance and cur.time > prev.time and cur.cpu_ns >= prev.cpu_ns:
        window = cur.time - prev.time
        return Rate(cur.time, window, int((cur.cpu_ns - prev.cpu_ns) / window), cur.memory)
    if cur.start is not None and cur.time > cur.start and (prev is None or cur.start > prev.time):
        window = cur.time - cur.start
        return Rate(cur.time, window, int(cur.cpu_ns / window), cur.memory)
    return None


def _parse_time(text: Any) -> float | None:
    if not isinstance(text, str) or len(text) > 64:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _point(figures: Any, start: float | None) -> Point | None:
    """A Point from a summary entry's ``cpu``/``memory`` (both needed)."""
    if not isinstance(figures, dict):
        return None
    cpu = figures.get("cpu")
    mem = figures.get("memory")
    if not isinstance(cpu, dict) or not isinstance(mem, dict):
        return None
    t = _parse_time(cpu.get("time"))
    used = cpu.get("usageCoreNanoSeconds")
    ws = mem.get("workingSetBytes")
    if t is None or not isinstance(used, int) or not isinstance(ws, int) or used < 0 or ws < 0:
        return None
    return Point(t, used, ws, start)


@dataclass(slots=True)
class _NodeSeries:
    node: tuple[Point | None, Point] | None
    # (namespace, pod) -> container -> (previous, newest)
    pods: dict[tuple[str, str], dict[str, tuple[Point | None, Point]]]


class MetricsStore:
    """The last two samples of every node and running container (see the module doc)."""

    def __init__(self) -> None:
        self._nodes: dict[str, _NodeSeries] = {}
        self._pod_node: dict[tuple[str, str], str] = {}  # (namespace, pod) -> its node

    def record(self, node: str, summary: Obj) -> None:
        """Take in one node's summary: its pods not listed are forgotten."""
        old = self._nodes.get(node)
        node_entry = summary.get("node")
        node_point = _point(node_entry, None)
        series = _NodeSeries(None, {})
        if node_point is not None:
            prev = old.node[1] if old is not None and old.node is not None else None
            series.node = (prev, node_point)
        pods = summary.get("pods")
        for pod in pods[:MAX_PODS_PER_NODE] if isinstance(pods, list) else []:
            ref = pod.get("podRef") if isinstance(pod, dict) else None
            if not isinstance(ref, dict):
                continue
            ns, name = ref.get("namespace"), ref.get("name")
            containers = pod.get("containers")
            if not isinstance(ns, str) or not isinstance(name, str):
                continue
            if not isinstance(containers, list):
                continue
            before = old.pods.get((ns, name), {}) if old is not None else {}
            now: dict[str, tuple[Point | None, Point]] = {}
            for c in containers[:MAX_CONTAINERS_PER_POD]:
                if not isinstance(c, dict) or not isinstance(c.get("name"), str):
                    continue
                p = _point(c, _parse_time(c.get("startTime")))
                if p is None:
                    continue
                had = before.get(c["name"])
                prev_point = had[1] if had is not None else None
                if prev_point is not None and prev_point.time >= p.time:
                    now[c["name"]] = had  # type: ignore[assignment]  # a repeated sample
                else:
                    now[c["name"]] = (prev_point, p)
            if now:
                series.pods[(ns, name)] = now
        if old is not None:
            for pod in old.pods.keys() - series.pods.keys():
                if self._pod_node.get(pod) == node:
                    del self._pod_node[pod]
        for pod in series.pods:
            self._pod_node[pod] = node
        self._nodes[node] = series

    def forget_except(self, nodes: Iterable[str]) -> None:
        keep = set(nodes)
        for name in [n for n in self._nodes if n not in keep]:
            for pod in self._nodes.pop(name).pods:
                if self._pod_node.get(pod) == name:
                    del self._pod_node[pod]

    def node_rate(self, node: str) -> Rate | None:
        s = self._nodes.get(node)
        if s is None or s.node is None:
            return None
        return rate(*s.node)

    def pod_rates(self, namespace: str, pod: str) -> dict[str, Rate] | None:
        """Each container's rate, or None when the pod (or any container) has none yet."""
        node = self._pod_node.get((namespace, pod))
        series = self._nodes.get(node) if node is not None else None
        containers = series.pods.get((namespace, pod)) if series is not None else None
        if containers is None:
            return None
        out: dict[str, Rate] = {}
        for name, (prev, cur) in containers.items():
            r = rate(prev, cur)
            if r is None:
                return None
            out[name] = r
        return out


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _window(seconds: float) -> str:
    """A Go duration string (``10.002s``)."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


def usage(r: Rate) -> dict[str, str]:
    """Quantities as metrics-server writes them: nanocores and KiB."""
    return {"cpu": f"{r.nanocores}n", "memory": f"{r.memory // 1024}Ki"}


def node_metrics(node: Obj, r: Rate, now: Callable[[], float]) -> Obj:
    m = node["metadata"]
    meta: Obj = {"name": m["name"], "creationTimestamp": _stamp(now())}
    if m.get("labels"):
        meta["labels"] = m["labels"]
    return {
        "kind": "NodeMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": meta,
        "timestamp": _stamp(r.time),
        "window": _window(r.window),
        "usage": usage(r),
    }


def pod_metrics(pod: Obj, rates: dict[str, Rate], now: Callable[[], float]) -> Obj:
    m = pod["metadata"]
    meta: Obj = {
        "name": m["name"],
        "namespace": m["namespace"],
        "creationTimestamp": _stamp(now()),
    }
    if m.get("labels"):
        meta["labels"] = m["labels"]
    newest = max(rates.values(), key=lambda r: r.time)
    order = [
        str(c.get("name"))
        for c in get_path(pod, "spec", "containers") or []
        if isinstance(c, dict) and c.get("name") in rates
    ]
    return {
        "kind": "PodMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": meta,
        "timestamp": _stamp(newest.time),
        "window": _window(newest.window),
        "containers": [{"name": name, "usage": usage(rates[name])} for name in order],
    }


class Scraper:
    """Fills a :class:`MetricsStore` from the agents every :data:`RESOLUTION` seconds."""

    def __init__(self, server: ApiServer, store: MetricsStore, *, resolution: float = RESOLUTION):
        self.server = server
        self.store = store
        self.resolution = resolution
        self._ssl: ssl.SSLContext | None = None
        self._session: aiohttp.ClientSession | None = None
        self.scrapes = 0
        self.failures = 0
        self._wake = asyncio.Event()

    def poke(self) -> None:
        """Scrape now rather than at the end of the current interval (tests)."""
        self._wake.set()

    async def run(self) -> None:
        cfg = self.server.config
        if cfg.agent_client_cert_file is None or cfg.agent_client_key_file is None:
            log.info("no agent client certificate: resource metrics are not collected")
            return
        self._ssl = await asyncio.to_thread(agent_ssl_context, self.server)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT),
            connector=aiohttp.TCPConnector(limit=CONCURRENCY),
        )
        try:
            while True:
                try:
                    await self.scrape_once()
                except Exception:  # one bad round must not end collection
                    log.exception("resource metrics scrape failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.resolution)
                self._wake.clear()
        finally:
            await self._session.close()

    async def scrape_once(self) -> None:
        page = await self.server.registry.list_objects(NODES, "", ListOptions())
        nodes = [n for n in page.items if isinstance(n.get("metadata"), dict)]
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(node: Obj) -> None:
            async with gate:
                await self._scrape_node(node)

        await asyncio.gather(*(one(n) for n in nodes))
        self.store.forget_except(str(n["metadata"]["name"]) for n in nodes)

    async def _scrape_node(self, node: Obj) -> None:
        name = str(node["metadata"]["name"])
        address, port = _node_address(node), _agent_port(node)
        if address is None or port is None or self._session is None or self._ssl is None:
            return
        host = f"[{address}]" if ":" in address else address
        url = f"https://{host}:{port}/stats/summary"
        try:
            async with self._session.get(
                url, params={"node": name}, ssl=self._ssl, server_hostname=name
            ) as resp:
                if resp.status != 200:
                    raise OSError(f"HTTP {resp.status}")
                body = await resp.content.read(MAX_SUMMARY_BYTES + 1)
            if len(body) > MAX_SUMMARY_BYTES:
                raise OSError("summary too large")
            # a big node's summary is decoded off the event loop
            summary = (
                orjson.loads(body)
                if len(body) < INLINE_DECODE_BYTES
                else await asyncio.to_thread(orjson.loads, body)
            )
            if not isinstance(summary, dict):
                raise ValueError("summary is not an object")
        except (OSError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.failures += 1
            log.info("scraping node %s failed: %s", name, exc)
            return
        self.scrapes += 1
        self.store.record(name, summary)
