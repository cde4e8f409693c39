"""Node-side client load balancer for the API servers (like k3s agents' or Talos' KubePrism).

Every node runs one: a TCP proxy on ``127.0.0.1:<port>`` that forwards each connection to a
healthy API server. TLS passes through untouched (clients still verify the API server's
certificate and present their own), so the balancer holds no secret it does not need for its
health checks. Backends are checked actively (TCP connect, or ``GET /readyz`` over TLS with the
node's client certificate) and passively (a failed connect marks a backend down at once);
connections to a backend that goes down are closed, so clients reconnect through a healthy one
within one check interval.

Entry point: ``python -m berth.lb --config FILE`` (see :mod:`berth.lb.config`).
"""

from __future__ import annotations

from berth.lb.config import Backend, HealthConfig, LBConfig
from berth.lb.pool import BackendPool
from berth.lb.proxy import LoadBalancer

__all__ = ["Backend", "BackendPool", "HealthConfig", "LBConfig", "LoadBalancer"]
