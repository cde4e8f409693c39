"""The test port picker (tests/harness/ports.py): ports below the kernel's ephemeral range, a
slice per xdist worker, and never a port somebody holds."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.harness.ports import free_port, worker_slice


def test_slices_are_disjoint_and_below_the_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    slices = [worker_slice(name) for name in ("", *(f"gw{i}" for i in range(9)))]
    seen: set[int] = set()
    for span in slices:
        assert span.stop - 1 < low
        assert seen.isdisjoint(span)
        seen.update(span)


def test_a_held_port_is_never_handed_out() -> None:
    span = worker_slice()
    held = []
    try:
        # hold every other port of the slice: the picker must step over all of them
        for port in span[::2]:
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            held.append(s)
        taken = {s.getsockname()[1] for s in held}
        for _ in range(50):
            port = free_port()
            assert port in span
            assert port not in taken
    finally:
        for s in held:
            s.close()
