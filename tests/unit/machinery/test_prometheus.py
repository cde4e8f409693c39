"""The components' Prometheus figures: text format, work queue depth and adds, and the
loopback /metrics endpoint of the scheduler and controller manager."""

from __future__ import annotations

import asyncio
import socket
import urllib.request

from berth.machinery.clock import FakeClock
from berth.machinery.component import serve_metrics
from berth.machinery.prometheus import REGISTRY, Counter, Gauge, Histogram
from berth.machinery.queue import WorkQueue


def test_text_format() -> None:
    c = Counter("x_total", "Xs.")
    c.inc(result="ok")
    c.inc(2, result="ok")
    c.inc(result="error")
    assert list(c.render()) == [
        "# HELP x_total Xs.",
        "# TYPE x_total counter",
        'x_total{result="error"} 1',
        'x_total{result="ok"} 3',
    ]
    h = Histogram("lat_seconds", "Latency.", (0.1, 1.0))
    h.observe(0.05)
    h.observe(0.5)
    h.observe(5.0)
    lines = list(h.render())
    assert 'lat_seconds_bucket{le="0.1"} 1' in lines
    assert 'lat_seconds_bucket{le="1"} 2' in lines
    assert 'lat_seconds_bucket{le="+Inf"} 3' in lines
    assert "lat_seconds_count 3" in lines
    assert "lat_seconds_sum 5.550000" in lines
    g = Gauge("depth", "Depth.", lambda: [((("name", "q"),), 4.0)])
    assert list(g.render())[-1] == 'depth{name="q"} 4'


def test_work_queues_report_depth_and_adds() -> None:
    q: WorkQueue[str] = WorkQueue(FakeClock(), name="test-prometheus-queue")
    q.add("a")
    q.add("b")
    q.add("a")  # already queued: not an add
    text = REGISTRY.render()
    assert 'workqueue_depth{name="test-prometheus-queue"} 2' in text
    assert 'workqueue_adds_total{name="test-prometheus-queue"} 2' in text


def test_metrics_endpoint_on_loopback() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])

    async def scenario() -> str:
        runner = await serve_metrics(port)
        assert runner is not None
        try:
            return await asyncio.to_thread(
                lambda: (
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
                    .read()
                    .decode()
                )
            )
        finally:
            await runner.cleanup()

    text = asyncio.run(scenario())
    assert "# TYPE workqueue_depth gauge" in text
    assert asyncio.run(serve_metrics(0)) is None  # off unless a port is given
