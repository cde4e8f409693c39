"""A running container's exit reaches the agent when its shim exits (a pidfd per shim, read
by the event loop), not at the agent's next poll."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from berth.agent.runtime import SandboxConfig
from berth.runtime.runc import container_id, process_start_ticks
from berth.runtime.sandbox import SandboxRecord
from berth.runtime.spec import PodUID
from tests.unit.runtime.helpers import runc_adapter

POD = PodUID("pod-1")


def test_the_pod_is_named_as_soon_as_its_containers_shim_exits(tmp_path: Path) -> None:
    # A started container whose init process and shim are both this stand-in process.
    shim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

    async def body() -> None:
        adapter = runc_adapter(tmp_path)
        rt = adapter.rt
        pod_dir = rt.sandboxes.pod_dir(POD)
        pod_dir.mkdir(parents=True)
        record = SandboxRecord(uid=POD, namespace="ns", name="web", netns="", extra={"node": "n1"})
        record.state = "ready"
        record.save(pod_dir / "sandbox.json")
        ticks = process_start_ticks(shim.pid)
        cid = container_id(POD, "web", 0)
        bundle = rt.containers_dir / cid
        bundle.mkdir(parents=True)
        meta = {"id": cid, "podUid": POD, "name": "web", "attempt": 0, "image": "i",
                "imageId": "sha256:x", "createdAt": "t0", "startedAt": "t1",
                "initPid": shim.pid, "initStartTicks": ticks,
                "shimPid": shim.pid, "shimStartTicks": ticks}  # fmt: skip
        (bundle / "meta.json").write_text(json.dumps(meta))
        ended: asyncio.Queue[SandboxConfig] = asyncio.Queue()
        adapter.on_change.append(ended.put_nowait)
        try:
            status = await adapter.container_status(cid)
            assert status is not None
            assert status.phase == "running"
            await asyncio.sleep(0.2)
            assert ended.empty(), "nothing ended yet"
            shim.kill()
            got = await asyncio.wait_for(ended.get(), 5)
        finally:
            shim.kill()
        assert (got.namespace, got.name, got.uid, got.node) == ("ns", "web", POD, "n1")
        assert adapter._watched == {}, "the pidfd is closed once it fired"
        assert adapter.poll_changes() == [], "already reported"

    try:
        asyncio.run(body())
    finally:
        shim.kill()
        shim.wait()
