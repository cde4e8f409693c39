"""pytest-xdist's file scheduling, keeping our order and queueing a file only when needed.

Two changes to ``--dist loadfile`` (see tests/conftest.py for why files are ordered):

* files are handed out in collection order (longest first, as tests/conftest.py sorts them),
  not xdist's default of the files with the most tests first (which puts lab modules, with few
  but long tests, at the end);
* a worker is given its next file when one test of its current file is left, not two: a lab
  test can take minutes, and a file queued behind it cannot move to a worker that frees up
  meanwhile. (A worker holds its last test until it knows the next one or that there is none:
  that test's teardown depends on it, so queueing at one left costs no idle time.)
"""

from __future__ import annotations

from typing import Any

from xdist.scheduler import LoadFileScheduling


class LongestFirstFileScheduling(LoadFileScheduling):  # type: ignore[misc]
    def schedule(self) -> None:
        self.config.option.loadscopereorder = False
        super().schedule()

    def _reschedule(self, node: Any) -> None:
        if node.shutting_down:
            return
        if not self.workqueue:
            node.shutdown()
            return
        if self._pending_of(self.assigned_work[node]) > 1:
            return
        self._assign_work_unit(node)
