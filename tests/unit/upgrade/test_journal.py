"""The upgrade journal: append-only, durable, replayable."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.errors import StateError
from provisioner.upgrade.journal import Journal, Record, RunStatus, Step, replay

OLD = {"cp1": "0.1.0-aaaaaaaaaaaa", "w1": "0.1.0-aaaaaaaaaaaa", "w2": "0.1.0-aaaaaaaaaaaa"}
NEW = "0.2.0-bbbbbbbbbbbb"


def planned(journal: Journal) -> None:
    journal.append(Step.PLANNED, target=NEW, previous=OLD, batches=[["cp1"], ["w1"], ["w2"]])


def test_records_survive_a_reopen_and_the_file_is_private(tmp_path: Path) -> None:
    journal = Journal.create(tmp_path / "journal", run="r1")
    planned(journal)
    journal.append(Step.STARTED, "cp1")
    journal.append(Step.DRAINED, "cp1", summary="0 pod(s) evicted")
    again = Journal(journal.path)
    records = again.records()
    assert [r.step for r in records] == [Step.PLANNED, Step.STARTED, Step.DRAINED]
    assert [r.seq for r in records] == [1, 2, 3]
    assert records[2].detail == {"summary": "0 pod(s) evicted"}
    assert journal.path.stat().st_mode & 0o777 == 0o600
    assert again.append(Step.CORDONED, "w1").seq == 4


def test_a_torn_last_line_is_dropped_and_the_next_append_starts_clean(tmp_path: Path) -> None:
    journal = Journal.create(tmp_path, run="r1")
    planned(journal)
    journal.append(Step.STARTED, "cp1")
    with journal.path.open("ab") as f:
        f.write(b'{"seq": 3, "step": "switch')  # killed mid-write
    reopened = Journal(journal.path)
    assert [r.step for r in reopened.records()] == [Step.PLANNED, Step.STARTED]
    reopened.append(Step.SWITCHED, "cp1", bundle=NEW)
    assert [r.step for r in Journal(journal.path).records()][-1] is Step.SWITCHED


def test_a_garbled_line_in_the_middle_is_an_error_naming_the_line(tmp_path: Path) -> None:
    journal = Journal.create(tmp_path, run="r1")
    planned(journal)
    with journal.path.open("a") as f:
        f.write("not json\n")
    journal.append(Step.STARTED, "cp1")
    with pytest.raises(StateError, match=r"upgrade-r1\.jsonl:2: unreadable journal line"):
        journal.records()


def test_latest_is_the_newest_run(tmp_path: Path) -> None:
    assert Journal.latest(tmp_path / "none") is None
    Journal.create(tmp_path, run="20260101T000000Z")
    Journal.create(tmp_path, run="20260102T000000Z")
    latest = Journal.latest(tmp_path)
    assert latest is not None
    assert latest.run == "20260102T000000Z"
    with pytest.raises(StateError, match="already exists"):
        Journal.create(tmp_path, run="20260102T000000Z")


def test_replay_of_a_run_killed_half_way(tmp_path: Path) -> None:
    journal = Journal.create(tmp_path, run="r1")
    planned(journal)
    journal.append(Step.SNAPSHOT, path="/state/snap.db")
    for step in (Step.STARTED, Step.CORDONED, Step.DRAINED, Step.INSTALLED, Step.SWITCHED,
                 Step.GATE_OK, Step.UNCORDONED, Step.DONE):  # fmt: skip
        journal.append(step, "cp1")
    for step in (Step.STARTED, Step.CORDONED, Step.DRAINED):
        journal.append(step, "w1")
    progress = journal.replay()
    assert progress.status is RunStatus.RUNNING
    assert progress.done == {"cp1"}
    assert progress.on_target == {"cp1"}
    assert progress.cordoned == {"w1"}
    assert progress.pending() == [["w1"], ["w2"]]
    assert progress.snapshot == "/state/snap.db"
    assert progress.last_step == {"cp1": Step.DONE, "w1": Step.DRAINED}
    assert progress.to_revert() == ["cp1"]


def test_replay_of_a_halt_a_resume_and_a_rollback() -> None:
    def rec(seq: int, step: Step, host: str | None = None, **detail: object) -> Record:
        return Record(seq, "t", step, host, dict(detail))

    records = [
        rec(1, Step.PLANNED, target=NEW, previous=OLD, batches=[["cp1"], ["w1", "w2"]]),
        rec(2, Step.SWITCHED, "cp1"),
        rec(3, Step.DONE, "cp1"),
        rec(4, Step.SWITCHED, "w1"),
        rec(5, Step.GATE_FAILED, "w1"),
        rec(6, Step.ROLLED_BACK, "w1"),
        rec(7, Step.HALTED, reason="health gate failed on w1"),
    ]
    halted = replay("r", records)
    assert halted.status is RunStatus.HALTED
    assert halted.halt_reason == "health gate failed on w1"
    assert halted.on_target == {"cp1"}
    assert halted.pending() == [["w1", "w2"]]
    resumed = replay("r", [*records, rec(8, Step.RESUMED), rec(9, Step.SWITCHED, "w2")])
    assert resumed.status is RunStatus.RUNNING
    assert resumed.halt_reason is None
    assert resumed.to_revert() == ["w2", "cp1"]  # workers first
    back = replay("r", [*records, rec(8, Step.ROLLBACK_STARTED), rec(9, Step.REVERTED, "cp1")])
    assert back.status is RunStatus.ROLLING_BACK
    assert back.to_revert() == []
