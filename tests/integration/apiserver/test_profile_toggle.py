"""BERTH_APISERVER_PROFILE: SIGUSR1 starts a CPU profile of the running API server, the next
SIGUSR1 stops it and writes its stats (bench/pods.py --profile profiles a pod burst so)."""

from __future__ import annotations

import asyncio
import os
import pstats
import signal
import time
from pathlib import Path

import pytest

from berth.api.resources import CONFIGMAPS
from berth.apiserver.__main__ import PROFILE_ENV
from berth.client.http import HttpClient
from tests.harness.apiserver import prepare, start_process


def test_sigusr1_profiles_the_requests_between_two_signals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stats = tmp_path / "apiserver.prof"
    monkeypatch.setenv(PROFILE_ENV, str(stats))  # the child process inherits it
    proc = start_process(prepare(tmp_path / "apiserver"))
    try:

        async def creates() -> None:
            api = HttpClient.from_kubeconfig(proc.kubeconfig())
            try:
                for i in range(5):
                    body = {"metadata": {"name": f"c{i}", "namespace": "default"}}
                    await api.create(CONFIGMAPS, body)
            finally:
                await api.close()

        os.kill(proc.process.pid, signal.SIGUSR1)
        asyncio.run(creates())  # served after the signal (requests wait for the loop)
        assert not stats.exists()  # written only when the profile stops
        os.kill(proc.process.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if stats.exists() and stats.stat().st_size > 0:
                try:
                    profiled = pstats.Stats(str(stats))
                    break
                except (EOFError, OSError, ValueError):
                    pass  # still being written
            time.sleep(0.1)
        else:
            raise AssertionError("no profile written")
        creates_seen = [
            calls[1]
            for (path, _line, function), calls in profiled.stats.items()  # type: ignore[attr-defined]
            if path.endswith("registry.py") and function == "create"
        ]
        assert creates_seen
        assert max(creates_seen) >= 5
        assert proc.process.poll() is None  # the server serves on
    finally:
        proc.process.terminate()
        proc.process.wait(timeout=60)
        if proc.process.stdout is not None:
            proc.process.stdout.close()
