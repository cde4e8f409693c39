"""Ports for the servers tests start (etcd, HAProxy, registries, kubectl port-forward...).

Binding port 0 and closing the socket hands out a port from the kernel's ephemeral range
(``ip_local_port_range``, 32768-60999 here), and every outgoing connection on the machine draws
its local port from that same range: under ``make test`` load one of them took such a port
before the server bound it (kubectl port-forward then waited forever). So tests take ports
below the ephemeral range, from a slice of their own per pytest-xdist worker (no two workers
hand out the same port), walking the slice so a worker does not reuse a port soon, and only
ports that bind right now.
"""

from __future__ import annotations

import itertools
import os
import random
import socket

FIRST_PORT = 10000
SLICE = 2000  # ports per worker: 10 slices end at 29999, below the ephemeral range
SLICES = 10

# where this process is in its slice: a random start, so a rerun does not retrace the last one
_walk = itertools.count(random.randrange(SLICE))


def worker_slice(worker: str | None = None) -> range:
    """The ports of this pytest-xdist worker (``gw0``, ``gw1``...; no worker: the first)."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "") if worker is None else worker
    index = int(name[2:]) + 1 if name.startswith("gw") and name[2:].isdigit() else 0
    start = FIRST_PORT + (index % SLICES) * SLICE
    return range(start, start + SLICE)


def _bindable(address: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((address, port))
        except OSError:
            return False
        return True


def free_port(address: str = "127.0.0.1") -> int:
    """A port of this worker's slice that nothing holds on ``address`` now."""
    span = worker_slice()
    for _ in range(len(span)):
        port = span[next(_walk) % len(span)]
        if _bindable(address, port):
            return port
    raise RuntimeError(f"no free port in {span.start}-{span.stop - 1} on {address}")
