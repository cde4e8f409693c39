"""The upgrade journal: an append-only, fsync'd JSON-lines file per upgrade run.

Every step of an upgrade is written *before* the next one starts, so a run killed at any point
(operator's laptop closed, Ctrl-C, SSH lost) leaves a record of exactly what it did. ``berth
upgrade --resume`` replays it to continue, ``berth rollback`` replays it to know which hosts to
take back and to which bundle. Lines are never rewritten; a torn last line (a kill in the middle
of a write) is ignored on replay.

Files live in the cluster state's ``journal/`` directory as ``upgrade-<run>.jsonl``; the newest
run is the one that ``--resume`` and ``rollback`` act on.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from provisioner.errors import StateError
from provisioner.state import ensure_private_dir

PREFIX = "upgrade-"
SUFFIX = ".jsonl"


class Step(StrEnum):
    """What a journal line records."""

    PLANNED = "planned"  # run: target, previous bundle per host, batches
    SNAPSHOT = "snapshot"  # run: the datastore snapshot copied to the operator's state
    RESUMED = "resumed"  # run: a later process continues the run
    STARTED = "started"  # host: its upgrade begins
    CORDONED = "cordoned"
    DRAINED = "drained"
    INSTALLED = "installed"  # host: the new bundle unpacked next to the old one
    SWITCHED = "switched"  # host: /opt/berth/current points at the new bundle, units restarted
    GATE_OK = "gated-ok"
    GATE_FAILED = "gate-failed"
    ROLLED_BACK = "rolled-back"  # host: switched back to its previous bundle after a failed gate
    UNCORDONED = "uncordoned"
    DONE = "done"  # host: upgraded and healthy
    HALTED = "halted"  # run: stopped on a failure (host, check, reason)
    COMPLETED = "completed"  # run: every host upgraded
    ROLLBACK_STARTED = "rollback-started"  # run: `berth rollback`
    REVERTED = "reverted"  # host: back on its previous bundle (cluster rollback)
    PRUNED = "pruned"  # host: the rolled-back-from bundle removed (cluster rollback)
    SNAPSHOT_RESTORED = "snapshot-restored"
    ROLLBACK_COMPLETED = "rollback-completed"


@dataclass(frozen=True)
class Record:
    seq: int
    at: str
    step: Step
    host: str | None
    detail: dict[str, Any]

    def to_json(self) -> str:
        body = {"seq": self.seq, "at": self.at, "step": str(self.step), "host": self.host}
        return json.dumps({**body, **self.detail}, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> Record:
        raw = json.loads(line)
        if not isinstance(raw, dict):
            raise ValueError("not an object")
        seq, at, step, host = (raw.pop(k) for k in ("seq", "at", "step", "host"))
        return cls(int(seq), str(at), Step(step), host, raw)


class RunStatus(StrEnum):
    RUNNING = "running"  # started, not finished: a process died or is still going
    HALTED = "halted"
    COMPLETED = "completed"
    ROLLING_BACK = "rolling-back"
    ROLLED_BACK = "rolled-back"


@dataclass
class Progress:
    """What a journal says happened (see :func:`replay`)."""

    run: str
    target: str = ""
    previous: dict[str, str] = field(default_factory=dict)
    """Each host's bundle before the upgrade (what rollback returns it to)."""
    batches: list[list[str]] = field(default_factory=list)
    status: RunStatus = RunStatus.RUNNING
    last_step: dict[str, Step] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    on_target: set[str] = field(default_factory=set)
    """Hosts whose ``current`` the run switched to the target and did not switch back."""
    cordoned: set[str] = field(default_factory=set)
    snapshot: str | None = None
    halt_reason: str | None = None

    @property
    def hosts(self) -> list[str]:
        return [h for batch in self.batches for h in batch]

    def pending(self) -> list[list[str]]:
        """The batches still to upgrade, without the hosts already done."""
        out = []
        for batch in self.batches:
            left = [h for h in batch if h not in self.done]
            if left:
                out.append(left)
        return out

    def to_revert(self) -> list[str]:
        """Hosts a cluster rollback must take back: every host the run touched that is not
        known to be back on its previous bundle — workers first, then the control plane in
        reverse order, so agents are never newer than the API server."""
        touched = [h for h in self.hosts if h in self.on_target or h in self.done]
        return list(reversed(touched))


def replay(run: str, records: Iterable[Record]) -> Progress:
    """Fold journal records into :class:`Progress` (pure; the resume and rollback logic)."""
    progress = Progress(run)
    for rec in records:
        host = rec.host
        if host is not None:
            progress.last_step[host] = rec.step
        match rec.step:
            case Step.PLANNED:
                progress.target = str(rec.detail["target"])
                progress.previous = {str(k): str(v) for k, v in rec.detail["previous"].items()}
                progress.batches = [[str(h) for h in b] for b in rec.detail["batches"]]
            case Step.SNAPSHOT:
                progress.snapshot = str(rec.detail["path"])
            case Step.RESUMED:
                progress.status = RunStatus.RUNNING
                progress.halt_reason = None
            case Step.STARTED if host:
                progress.done.discard(host)
            case Step.CORDONED if host:
                progress.cordoned.add(host)
            case Step.UNCORDONED if host:
                progress.cordoned.discard(host)
            case Step.SWITCHED if host:
                progress.on_target.add(host)
            case Step.ROLLED_BACK | Step.REVERTED if host:
                progress.on_target.discard(host)
                progress.done.discard(host)
            case Step.DONE if host:
                progress.done.add(host)
            case Step.HALTED:
                progress.status = RunStatus.HALTED
                progress.halt_reason = str(rec.detail.get("reason", ""))
            case Step.COMPLETED:
                progress.status = RunStatus.COMPLETED
            case Step.ROLLBACK_STARTED:
                progress.status = RunStatus.ROLLING_BACK
            case Step.ROLLBACK_COMPLETED:
                progress.status = RunStatus.ROLLED_BACK
            case _:
                pass
    return progress


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class Journal:
    """One upgrade run's journal file (append-only; see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._drop_torn_tail()
        records = self.records()
        self._seq = records[-1].seq if records else 0

    def _drop_torn_tail(self) -> None:
        """Cut bytes after the last newline: a record whose write a kill interrupted was never
        complete, and the next append must start on a line of its own."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        if data and not data.endswith(b"\n"):
            os.truncate(self.path, data.rfind(b"\n") + 1)

    @property
    def run(self) -> str:
        return self.path.name.removeprefix(PREFIX).removesuffix(SUFFIX)

    @classmethod
    def create(cls, directory: Path, *, run: str | None = None) -> Journal:
        """A new, empty journal (``run`` defaults to the current UTC time)."""
        ensure_private_dir(directory)
        name = run or dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = directory / f"{PREFIX}{name}{SUFFIX}"
        if path.exists():
            raise StateError(f"upgrade journal {path} already exists")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.fsync(fd)
        os.close(fd)
        _fsync_dir(directory)
        return cls(path)

    @classmethod
    def latest(cls, directory: Path) -> Journal | None:
        """The newest run's journal, or ``None`` when no upgrade ever ran."""
        if not directory.is_dir():
            return None
        runs = sorted(directory.glob(f"{PREFIX}*{SUFFIX}"))
        return cls(runs[-1]) if runs else None

    def append(self, step: Step, host: str | None = None, **detail: Any) -> Record:
        """Write one record and fsync it before returning."""
        self._seq += 1
        record = Record(self._seq, _now(), step, host, detail)
        line = (record.to_json() + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        return record

    def records(self) -> list[Record]:
        """Every intact record; a torn or garbled *last* line is skipped, one in the middle is
        an error (the file was edited)."""
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                out.append(Record.from_json(line))
            except (ValueError, KeyError, TypeError) as error:
                if number == len(lines):
                    break  # a write cut short by a kill
                raise StateError(
                    f"{self.path}:{number}: unreadable journal line ({error})",
                    hint="the journal is append-only; restore it or start a new upgrade",
                ) from None
        return out

    def replay(self) -> Progress:
        return replay(self.run, self.records())


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
