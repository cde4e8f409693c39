"""The node agent: registers nodes, heartbeats their Leases, runs bound pods through a
:class:`~berth.agent.runtime.Runtime` (the simulated one for tests and scale runs) and serves
container logs. Entry point ``python -m berth.agent --config FILE``."""
