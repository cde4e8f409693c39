"""Per-pod startup stamps: where the time between a pod being bound and Running goes.

Off unless the process runs with ``BERTH_POD_TIMELINE=1`` (``bench/pods.py --timeline`` sets
it on the lab's agents); off, :func:`stamp` is one flag test. On, each stage's end is stamped
with :func:`time.monotonic` under the pod's uid where it happens (agent: informer delivery,
dequeue, volumes, status patch; runtime: netns, CNI, files, image, bundle, shim/runc create,
runc start), and :func:`flush` logs one line per pod once its first status past Pending is
written (nothing is stamped for that pod afterwards)::

    pod timeline {"uid": "...", "seen": 1234.5, ...}

Monotonic stamps are comparable with the bench's own: lab hosts are containers on the same
kernel (no time namespace), so the bench also derives delivery (bound -> seen) and watch back
(patched -> the client sees Running) from them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

log = logging.getLogger("berth.timeline")

ENABLED = os.environ.get("BERTH_POD_TIMELINE") == "1"
MARKER = "pod timeline "
# Pods whose line is not written (never Running, deleted early) are dropped past this many.
_LIMIT = 10_000
_stamps: dict[str, dict[str, float]] = {}
# Pods whose line is written: later events (updates, deletion) stamp nothing more.
_done: set[str] = set()


def stamp(uid: str, stage: str) -> None:
    """Record the first time ``stage`` ended for pod ``uid`` (a no-op when off)."""
    if not ENABLED or not uid or uid in _done:
        return
    marks = _stamps.get(uid)
    if marks is None:
        if len(_stamps) >= _LIMIT:
            _stamps.clear()
        marks = _stamps[uid] = {}
    marks.setdefault(stage, time.monotonic())


def flush(uid: str) -> dict[str, float] | None:
    """Log and forget ``uid``'s stamps (None when off or nothing was stamped)."""
    if not ENABLED:
        return None
    marks = _stamps.pop(uid, None)
    if len(_done) >= _LIMIT:
        _done.clear()
    _done.add(uid)
    if marks:
        log.info("%s%s", MARKER, json.dumps({"uid": uid, **marks}, sort_keys=True))
    return marks


def parse(line: str) -> dict[str, Any] | None:
    """One logged line back as {"uid": ..., stage: monotonic} (None: not a timeline line)."""
    at = line.find(MARKER)
    if at < 0:
        return None
    try:
        doc = json.loads(line[at + len(MARKER) :])
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("uid"), str) else None
