"""Graceful node shutdown: when the host powers off cleanly, the agent marks its node
NotReady ("node is shutting down") and stops its pods within their grace periods (capped by
``shutdownGracePeriodSeconds``), reporting them Failed/Terminated with a DisruptionTarget
condition, before it exits — what the kubelet's graceful node shutdown does, so that the
pods' controllers replace them at once instead of after the 40 s + podEvictionTimeout a
vanished node costs.

How the agent learns of the shutdown: systemd stops the agent's unit (SIGTERM) as part of the
shutdown transaction; the agent then asks systemd whether the system is going down
(``systemctl is-system-running`` says ``stopping``, or a shutdown/poweroff/reboot/halt/kexec
target job is queued). A plain ``systemctl stop``/``restart`` of the agent is not a shutdown:
then the agent exits and leaves its containers running for the next agent, as before.

Why not a logind delay inhibitor (the kubelet's way): logind only sees shutdowns requested
through it (``systemctl poweroff`` as a user); a shutdown PID 1 starts itself — SIGRTMIN+4
from ``systemd-nspawn``/``machinectl poweroff`` (the lab's graceful stop), ACPI handled by
systemd, ``systemctl poweroff --force`` — never consults inhibitors, while every clean
shutdown stops the agent's unit. The unit is ordered ``After=`` the network and the local API
server (stopped after the agent), and its ``TimeoutStopSec`` leaves room for the grace period.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Callable, Sequence

from berth.agent.fleet import Fleet

log = logging.getLogger(__name__)

SHUTDOWN_TARGETS = ("shutdown.target", "poweroff.target", "reboot.target", "halt.target",
                    "kexec.target")  # fmt: skip
# Writes that cannot reach the API server must not eat the host's shutdown budget.
STATUS_WRITE_TIMEOUT = 5.0

Run = Callable[[Sequence[str]], str]


def _systemctl(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(
            ["systemctl", *argv], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout


def host_shutting_down(run: Run = _systemctl) -> bool:
    """True when systemd is taking the host down (see the module docstring)."""
    if run(["is-system-running"]).strip() == "stopping":
        return True
    jobs = run(["list-jobs", "--no-legend", "--plain"])
    return any(
        fields[1] in SHUTDOWN_TARGETS
        for fields in (line.split() for line in jobs.splitlines())
        if len(fields) > 1
    )


async def shut_down_gracefully(fleet: Fleet, *, grace_cap: float) -> None:
    """NotReady first, then stop every pod of the fleet's nodes (see the module docstring)."""
    log.info("host is shutting down: marking node(s) NotReady and stopping their pods")
    fleet.stop_reconciling()
    for agent in fleet.agents.values():
        agent.shutting_down = True
    marked = await asyncio.gather(
        *(
            asyncio.wait_for(agent.post_status(), STATUS_WRITE_TIMEOUT)
            for agent in fleet.agents.values()
        ),
        return_exceptions=True,
    )
    for agent, result in zip(fleet.agents.values(), marked, strict=True):
        if isinstance(result, BaseException):
            log.warning("node %s: could not report NotReady: %s", agent.name, result)
    records = list(fleet.manager.records.values())
    stopped = await asyncio.gather(
        *(
            asyncio.wait_for(
                fleet.manager.stop_for_shutdown(rec, grace_cap=grace_cap),
                grace_cap + STATUS_WRITE_TIMEOUT,
            )
            for rec in records
        ),
        return_exceptions=True,
    )
    for rec, outcome in zip(records, stopped, strict=True):
        if isinstance(outcome, BaseException):
            log.warning("pod %s: graceful shutdown incomplete: %s", rec.key, outcome)
    log.info("graceful node shutdown done: %d pod(s) stopped", len(records))
