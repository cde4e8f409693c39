"""``GET /stats/summary``: the node's and its pods' CPU and memory, in the shape of the
kubelet's Summary API (the subset metrics-server reads):

    {"node": {"nodeName", "startTime", "cpu": {"time", "usageCoreNanoSeconds"},
              "memory": {"time", "workingSetBytes"}},
     "pods": [{"podRef": {"name", "namespace", "uid"}, "startTime",
               "containers": [{"name", "startTime", "cpu": {...}, "memory": {...}}]}]}

CPU is cumulative (the reader computes rates between two samples); memory is the working set.
Only running containers are listed; a figure the node cannot read is left out.
"""

from __future__ import annotations

from datetime import datetime

from berth.agent.pods import PodManager
from berth.agent.runtime import Runtime, Usage
from berth.api.meta import Obj


def _stamp(t: datetime | None) -> str | None:
    """RFC 3339 with microseconds: rates are computed between samples a few seconds apart."""
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if t is not None else None


def _figures(u: Usage, time: str) -> Obj:
    out: Obj = {}
    if u.cpu_ns is not None:
        out["cpu"] = {"time": time, "usageCoreNanoSeconds": u.cpu_ns}
    if u.memory_bytes is not None:
        out["memory"] = {"time": time, "workingSetBytes": u.memory_bytes}
    return out


async def summary(manager: PodManager, runtime: Runtime, node: str, started: datetime) -> Obj:
    """The summary of ``node`` (one of the nodes this agent process runs)."""
    wanted: list[tuple[str, str, str, str, str, datetime | None, datetime | None]] = []
    for rec in list(manager.records.values()):
        if rec.node != node or rec.finished:
            continue
        for cr in rec.containers.values():
            st = cr.last_status
            if cr.current is None or st is None or st.phase != "running":
                continue
            ns, _, name = str(rec.key).partition("/")
            wanted.append((ns, name, rec.uid, cr.name, cr.current, rec.start_time, st.started_at))
    sample = await runtime.usage([w[4] for w in wanted])
    time = _stamp(sample.time) or ""
    pods: dict[str, Obj] = {}
    for ns, name, uid, container, cid, pod_start, started_at in wanted:
        usage = sample.containers.get(cid)
        if usage is None:
            continue
        pod = pods.setdefault(
            uid,
            {
                "podRef": {"name": name, "namespace": ns, "uid": uid},
                "startTime": _stamp(pod_start),
                "containers": [],
            },
        )
        pod["containers"].append(
            {"name": container, "startTime": _stamp(started_at), **_figures(usage, time)}
        )
    return {
        "node": {"nodeName": node, "startTime": _stamp(started), **_figures(sample.node, time)},
        "pods": list(pods.values()),
    }
