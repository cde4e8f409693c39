"""Host-to-host reachability: can this host open TCP connections to the others?"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from provisioner.facts.base import Fact

# Runs on the host with its python3. "refused" still proves the packet got there (nothing
# listens yet); only a timeout or an error means the path is blocked. Few probes at a time and a
# timeout past the kernel's first SYN retransmit (1 s): a busy server with a short listen backlog
# drops SYNs, which must not read as "unreachable".
_PROBE = """
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
def probe(t):
    a, p = t
    try:
        socket.create_connection((a, p), timeout=%s).close()
        return "open"
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return "error: " + (e.strerror or str(e))
targets = json.loads(sys.argv[1])
with ThreadPoolExecutor(4) as pool:
    for t, r in zip(targets, pool.map(probe, targets)):
        print("%%s\\t%%s\\t%%s" %% (t[0], t[1], r))
"""


@dataclass(frozen=True)
class TcpReachability(Fact[dict[tuple[str, int], str]]):
    """For each ``(address, port)``: ``open``, ``refused`` (reachable), ``timeout`` or ``error``."""

    targets: tuple[tuple[str, int], ...]
    timeout: float = 3.0
    volatile = True

    def command(self) -> str:
        if not self.targets:
            return "true"
        script = _PROBE % self.timeout
        return f"python3 -c {shlex.quote(script)} {shlex.quote(json.dumps(self.targets))}"

    def parse(self, output: str, exit_code: int) -> dict[tuple[str, int], str]:
        result = {(a, p): "error: probe did not run (python3 missing?)" for a, p in self.targets}
        for line in output.splitlines():
            address, port, status = line.split("\t", 2)
            result[(address, int(port))] = status
        return result
