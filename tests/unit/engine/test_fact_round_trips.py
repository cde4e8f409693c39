"""Planning reads each host's facts in one round trip: the operations of phases that declare no
facts join the declared facts' batch, and the facts of operations built *from* facts ride along
as the last plan needed them (the fact memo). Values are always read fresh; a wrong prediction
costs a second trip, never a wrong plan, and a speculative fact that does not parse is dropped."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from provisioner.commands import Shell
from provisioner.connectors.base import CommandResult, Connector, HostName, HostTarget
from provisioner.connectors.local import LocalConnector
from provisioner.engine.factmemo import FactMemo, memo_path, rebuild
from provisioner.engine.runner import Engine, HostsFailed, RunContext
from provisioner.errors import FactError
from provisioner.facts.base import Fact, FactSet
from provisioner.facts.files import PathInfo
from provisioner.facts.gather import gather
from provisioner.facts.packages import Packages
from provisioner.facts.systemd import UnitStates
from provisioner.operations.base import HostRun, OpContext, Operation
from provisioner.operations.files import Directory, File
from provisioner.operations.packages import DebPackages
from provisioner.reporting import CollectingReporter
from provisioner.workflow import Inventory, Phase, PhaseData, select

HOSTS = ("h1", "h2")


class CountingConnector(LocalConnector):
    """A local host that counts the commands it ran (each is one round trip on SSH)."""

    def __init__(self, host: str, runs: list[str]) -> None:
        super().__init__(HostName(host))
        self.runs = runs

    def run(
        self, command: Shell | str, *, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        self.runs.append(self.host)
        return super().run(command, stdin=stdin, timeout=timeout)


def _phases(root: Path) -> list[Phase]:
    """A phase whose operation depends on a fact (like the artifacts phase: which directory to
    make depends on what the host has) and a phase whose operations need no facts to build."""

    def marker_facts(data: PhaseData, host: HostTarget) -> Sequence[Fact[Any]]:
        return (PathInfo((str(root / host.name / "marker"),)),)

    def from_facts(data: PhaseData, host: HostTarget) -> Sequence[Operation]:
        marker = str(root / host.name / "marker")
        found = data.host_facts(host.name, marker_facts(data, host)).get(PathInfo((marker,)))
        which = "b" if found[marker] is not None else "a"
        return (Directory(str(root / host.name / which)),)

    def plain(data: PhaseData, host: HostTarget) -> Sequence[Operation]:
        base = root / host.name
        return (Directory(str(base)), File(str(base / "app.conf"), b"x\n"))

    return [
        Phase("files", "Write files", operations=plain),
        Phase("derived", "Built from facts", operations=from_facts, facts=marker_facts),
    ]


def _plan(root: Path, runs: list[str]) -> Engine:
    def connect(target: HostTarget) -> Connector:
        return CountingConnector(target.name, runs)

    inventory = Inventory("memo", tuple(HostTarget(HostName(h), "127.0.0.1") for h in HOSTS))
    ctx = RunContext(inventory, cache_dir=root / "cache")
    engine = Engine(ctx, select(_phases(root)), connect=connect, reporter=CollectingReporter())
    engine.connect_all()
    return engine


def test_the_second_plan_reads_each_host_in_one_round_trip(tmp_path: Path) -> None:
    first: list[str] = []
    _plan(tmp_path, first).plan()
    # nothing known yet: the derived operation's facts need their own trip
    assert sorted(first) == ["h1", "h1", "h2", "h2"]

    second: list[str] = []
    plan = _plan(tmp_path, second).plan()
    assert sorted(second) == ["h1", "h2"]
    assert len(plan.changes) == 6  # the same plan: every operation, every host

    # the memo is a prediction only: a host that changed still gets a correct plan
    (tmp_path / "h1").mkdir()
    (tmp_path / "h1" / "marker").write_text("")
    third: list[str] = []
    changed = _plan(tmp_path, third).plan()
    ops = {(o.host, o.op) for o in changed.changes}
    assert ("h1", f"directory:{tmp_path}/h1/b") in ops
    assert ("h2", f"directory:{tmp_path}/h2/a") in ops
    assert sorted(third) == ["h1", "h1", "h2"]  # h1's prediction was wrong: one more trip


def test_a_run_that_needs_the_same_facts_does_not_rewrite_the_memo(tmp_path: Path) -> None:
    _plan(tmp_path, []).plan()
    path = memo_path(tmp_path / "cache", "memo")
    before = path.stat().st_mtime_ns
    path.chmod(0o444)  # a write would replace the file: its inode and mtime would change
    inode = path.stat().st_ino
    _plan(tmp_path, []).plan()
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (inode, before)


def test_a_broken_memo_is_ignored(tmp_path: Path) -> None:
    path = memo_path(tmp_path / "cache", "memo")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    runs: list[str] = []
    plan = _plan(tmp_path, runs).plan()
    assert len(plan.changes) == 6
    assert json.loads(path.read_text())  # rewritten whole


def test_a_host_failing_a_fact_is_named(tmp_path: Path) -> None:
    runs: list[str] = []
    engine = _plan(tmp_path, runs)
    broken = engine.connectors[HostName("h2")]
    assert isinstance(broken, CountingConnector)
    broken.run = lambda *a, **k: CommandResult(1, "garbage", "boom")  # type: ignore[method-assign]
    with pytest.raises(HostsFailed) as caught:
        engine.plan()
    text = "\n".join(caught.value.lines())
    assert "h2: " in text
    assert "gathering facts failed" in text
    assert "h1:" not in text


@pytest.mark.parametrize(
    "fact",
    [
        PathInfo(("/etc/hosts", "/var/lib/x y")),
        Packages(("tree",)),
        Packages(),
        UnitStates(("berth-demo.service",)),
    ],
)
def test_a_fact_rebuilds_from_its_key(fact: Fact[Any]) -> None:
    again = rebuild(fact.key())
    assert again == fact
    assert again is not None
    assert again.key() == fact.key()


def test_a_facts_key_is_kept_per_fact_and_follows_its_arguments() -> None:
    fact = PathInfo(("/etc/hosts",))
    assert fact.key() == 'PathInfo{"paths":["/etc/hosts"]}'
    assert fact.key() is fact.key()  # computed once
    assert PathInfo(("/etc/hosts",)).key() is fact.key()  # and once for equal facts
    assert Packages().key() == 'Packages{"names":[],"unsynced_missing":true}'
    # another class with the same fields' values
    assert UnitStates(("x.service",)).key() != Packages(("x.service",)).key()
    # a fact with other arguments (replace() copies nothing it should not) has its own key
    other = dataclasses.replace(fact, paths=("/etc/passwd",))
    assert other.key() == 'PathInfo{"paths":["/etc/passwd"]}'
    assert fact.key() == 'PathInfo{"paths":["/etc/hosts"]}'
    # the kept key is no field: equality, hashing and the fields themselves are as before
    assert fact == PathInfo(("/etc/hosts",))
    assert hash(fact) == hash(PathInfo(("/etc/hosts",)))
    assert [f.name for f in dataclasses.fields(fact)] == ["paths"]
    assert rebuild(fact.key()) == fact


def test_keys_that_do_not_rebuild_exactly_are_skipped() -> None:
    assert rebuild('NoSuchFact{"paths":[]}') is None
    assert rebuild('PathInfo{"nope":[]}') is None
    assert rebuild("PathInfo{broken") is None
    assert rebuild("PathInfo") is None


def test_memo_keeps_each_selection_apart(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    one = FactMemo(path, "a,b")
    one.record("h1", [PathInfo(("/x",))])
    one.save()
    other = FactMemo(path, "a")
    assert other.predicted("h1") == []
    other.record("h1", [Packages(("tree",))])
    other.save()
    assert FactMemo(path, "a,b").predicted("h1") == [PathInfo(("/x",))]
    assert FactMemo(path, "a").predicted("h1") == [Packages(("tree",))]


@dataclasses.dataclass(frozen=True)
class Picky(Fact[int]):
    """Parses only a number (stands in for a fact whose output changed shape)."""

    text: str

    def command(self) -> str:
        return f"printf %s '{self.text}'"

    def parse(self, output: str, exit_code: int) -> int:
        return int(output)


def test_a_speculative_fact_that_does_not_parse_is_dropped() -> None:
    runs: list[str] = []
    host = CountingConnector("h1", runs)
    facts = gather(host, [Picky("7")], speculative=[Picky("seven"), Picky("8")])
    assert facts.get(Picky("7")) == 7
    assert facts.get(Picky("8")) == 8
    assert Picky("seven") not in facts
    assert runs == ["h1"]
    with pytest.raises(FactError, match="h1: cannot parse fact"):
        gather(host, [Picky("seven")])


def test_speculation_alone_costs_no_round_trip() -> None:
    runs: list[str] = []
    result = gather(CountingConnector("h1", runs), [], speculative=[Picky("1")])
    assert runs == []
    assert Picky("1") not in result


def test_nothing_to_ship_reads_nothing() -> None:
    op = DebPackages(())
    assert op.facts() == ()
    ctx = OpContext(HostName("h1"), FactSet("h1"), HostRun())
    assert list(op.commands(ctx)) == []
    assert ctx.noop_reason == "no packages to ship"
