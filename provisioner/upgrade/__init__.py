"""Upgrade in place: gated, rolling, resumable, with automatic rollback.

* :mod:`~provisioner.upgrade.version` — releases and the version-skew policy.
* :mod:`~provisioner.upgrade.planner` — control plane one at a time, then workers in batches.
* :mod:`~provisioner.upgrade.journal` — the append-only, fsync'd record of every step.
* :mod:`~provisioner.upgrade.drain` — cordon, evict (eviction subresource), uncordon.
* :mod:`~provisioner.upgrade.gate` — the per-node health gate.
* :mod:`~provisioner.upgrade.runner` — :class:`Upgrader`: upgrade, resume, rollback.
* :mod:`~provisioner.upgrade.cluster` — the real hosts and API behind :class:`ClusterOps`.
"""
