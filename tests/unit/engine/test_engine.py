"""The engine end to end on this machine: local connectors standing in for hosts, operations
confined to a temp directory. Plan predicts, apply converges, a second run changes nothing, a
saved plan refuses drift, and every failure names its phase and host."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from provisioner.connectors.base import Connector, HostName, HostTarget
from provisioner.connectors.local import LocalConnector
from provisioner.engine.plan import Plan, PlanDriftError
from provisioner.engine.runner import Engine, HostsFailed, RunContext
from provisioner.errors import ConnectError, ExitCode
from provisioner.operations.base import Operation
from provisioner.operations.files import Directory, File, Symlink
from provisioner.reporting import CollectingReporter
from provisioner.workflow import Inventory, Phase, PhaseData, select

HOSTS = ("h1", "h2")


def _inventory() -> Inventory:
    return Inventory("test", tuple(HostTarget(HostName(h), "127.0.0.1") for h in HOSTS))


def _phases(root: Path) -> list[Phase]:
    def files(data: PhaseData, host: HostTarget) -> Sequence[Operation]:
        base = root / host.name
        return (
            Directory(str(base), mode=0o755),
            File(str(base / "app.conf"), f"host={host.name}\n".encode()),
            File(str(base / "secret.key"), b"k", mode=0o600),
        )

    def links(data: PhaseData, host: HostTarget) -> Sequence[Operation]:
        base = root / host.name
        return (Symlink(str(base / "current"), str(base / "app.conf")),)

    return [
        Phase("files", "Write files", operations=files),
        Phase("links", "Link them", operations=links),
    ]


def _engine(
    root: Path, *, only: Sequence[str] = (), skip: Sequence[str] = (), down: Sequence[str] = ()
) -> tuple[Engine, CollectingReporter]:
    def connect(target: HostTarget) -> Connector:
        if target.name in down:
            raise ConnectError(f"{target.name}: could not connect to 127.0.0.1:22 (timed out)")
        return LocalConnector(target.name)

    reporter = CollectingReporter()
    ctx = RunContext(_inventory(), cache_dir=root / "cache")
    engine = Engine(
        ctx, select(_phases(root), only=only, skip=skip), connect=connect, reporter=reporter
    )
    return engine, reporter


def test_plan_then_apply_then_nothing_to_do(tmp_path: Path) -> None:
    engine, _ = _engine(tmp_path)
    engine.connect_all()
    plan = engine.plan()
    assert not (tmp_path / "h1").exists()  # planning writes nothing
    assert [(o.phase, o.host, o.op) for o in plan.changes][:2] == [
        ("files", "h1", f"directory:{tmp_path}/h1"),
        ("files", "h1", f"file:{tmp_path}/h1/app.conf"),
    ]
    assert len(plan.changes) == 8  # 4 operations on each of 2 hosts

    summary = engine.apply()
    assert summary.changed == 8
    assert (tmp_path / "h2" / "app.conf").read_text() == "host=h2\n"
    assert (tmp_path / "h2" / "current").resolve() == tmp_path / "h2" / "app.conf"
    assert (tmp_path / "h1" / "secret.key").stat().st_mode & 0o777 == 0o600

    again, _ = _engine(tmp_path)
    again.connect_all()
    second = again.plan()
    assert second.changes == []
    assert all(op.noop for op in second.ops)


def test_plan_shows_a_unified_diff_but_never_secret_content(tmp_path: Path) -> None:
    engine, _ = _engine(tmp_path)
    engine.connect_all()
    engine.apply()
    (tmp_path / "h1" / "app.conf").write_text("host=tampered\n")
    (tmp_path / "h1" / "secret.key").write_text("stolen")

    drifted, _ = _engine(tmp_path)
    drifted.connect_all()
    plan = drifted.plan()
    changed = {op.op: op for op in plan.changes}
    assert sorted(changed) == [f"file:{tmp_path}/h1/app.conf", f"file:{tmp_path}/h1/secret.key"]
    diff = changed[f"file:{tmp_path}/h1/app.conf"].diff
    assert diff is not None
    assert "-host=tampered" in diff
    assert "+host=h1" in diff
    assert changed[f"file:{tmp_path}/h1/secret.key"].diff == (
        f"(content of {tmp_path}/h1/secret.key not shown: mode 0600)"
    )


def test_saved_plan_applies_exactly_and_refuses_drift(tmp_path: Path) -> None:
    engine, _ = _engine(tmp_path)
    engine.connect_all()
    plan_path = tmp_path / "plan.json"
    engine.plan().save(plan_path)
    saved = Plan.load(plan_path)
    assert json.loads(plan_path.read_text())["format"] == 1

    (tmp_path / "h2").mkdir()  # the host changes after the plan was made
    (tmp_path / "h2" / "app.conf").write_text("surprise\n")
    applier, _ = _engine(tmp_path)
    applier.connect_all()
    with pytest.raises(PlanDriftError) as caught:
        applier.apply(saved)
    assert caught.value.exit_code == ExitCode.STATE
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("h2: drifted since the plan: PathInfo")
    assert not (tmp_path / "h1").exists()  # refused before any change on any host

    fresh, _ = _engine(tmp_path)
    fresh.connect_all()
    fresh.plan().save(plan_path)
    exact, _ = _engine(tmp_path)
    exact.connect_all()
    assert exact.apply(Plan.load(plan_path)).changed == 7  # h2's directory already existed


def test_only_and_skip_select_phases(tmp_path: Path) -> None:
    engine, _ = _engine(tmp_path, skip=["files"])
    assert [p.path for p in engine.phases] == ["links"]
    only, _ = _engine(tmp_path, only=["files"])
    assert [p.path for p in only.phases] == ["files"]
    with pytest.raises(ValueError, match="unknown phase 'nope'; phases are: files, links"):
        select(_phases(tmp_path), only=["nope"])


def test_unreachable_host_aborts_before_any_change(tmp_path: Path) -> None:
    engine, _ = _engine(tmp_path, down=["h2"])
    with pytest.raises(HostsFailed) as caught:
        engine.connect_all()
    assert caught.value.exit_code == ExitCode.CONNECTION
    assert caught.value.problems == ["h2: could not connect to 127.0.0.1:22 (timed out)"]
    assert not (tmp_path / "h1").exists()


def test_allow_unreachable_skips_the_host(tmp_path: Path) -> None:
    engine, _ = _engine(tmp_path, down=["h2"])
    engine.allow_unreachable = True
    engine.connect_all()
    engine.apply()
    assert (tmp_path / "h1" / "app.conf").exists()
    assert not (tmp_path / "h2").exists()


def test_failures_are_prefixed_with_phase_and_host(tmp_path: Path) -> None:
    (tmp_path / "h1").write_text("a file where a directory should be")
    engine, reporter = _engine(tmp_path)
    engine.connect_all()
    with pytest.raises(HostsFailed) as caught:
        engine.apply()
    assert caught.value.problems == [f"[files] h1: {tmp_path}/h1 exists and is a file"]
    assert (tmp_path / "h2" / "app.conf").exists()  # the other host finished the phase
    assert not (tmp_path / "h2" / "current").exists()  # but the next phase never started
    errors = reporter.of("error")
    assert [(e.phase, e.host) for e in errors] == [("files", "h1")]


class _H2Uploads(LocalConnector):
    """A local host whose uploads on h2 first go through :meth:`on_h2` (given the path)."""

    def on_h2(self, path: str) -> None:
        raise NotImplementedError

    def put(
        self,
        content: bytes,
        path: str,
        *,
        mode: int = 0o644,
        owner: str | None = None,
        group: str | None = None,
    ) -> None:
        if self.host == "h2":
            self.on_h2(path)
        super().put(content, path, mode=mode, owner=owner, group=group)


class _SlowUploads(_H2Uploads):
    """h2's uploads hang until the watchdog has named them (a stand-in for a host stuck
    shipping a bundle). Waiting for the warning rather than sleeping a fixed time keeps the
    test true on a loaded machine, where a short sleep can end before the watchdog runs."""

    def __init__(self, host: str, reporter: CollectingReporter) -> None:
        super().__init__(host)
        self.reporter = reporter

    def on_h2(self, path: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(
                w.host == "h2" and w.message.endswith(path) for w in self.reporter.of("warning")
            ):
                return
            time.sleep(0.02)


def test_watchdog_names_the_host_phase_and_operation_a_phase_waits_for(tmp_path: Path) -> None:
    reporter = CollectingReporter()
    ctx = RunContext(_inventory(), cache_dir=tmp_path / "cache")
    engine = Engine(
        ctx,
        select(_phases(tmp_path)),
        connect=lambda target: _SlowUploads(target.name, reporter),
        reporter=reporter,
    )
    engine.watchdog_interval = 0.1
    engine.connect_all()
    engine.apply()
    warnings = reporter.of("warning")
    slow_ops = {File(str(tmp_path / "h2" / n), b"").describe() for n in ("app.conf", "secret.key")}
    h2_ops = slow_ops | {Directory(str(tmp_path / "h2"), mode=0o755).describe()}
    named = [w for w in warnings if (w.phase, w.host) == ("files", "h2")]
    assert named, f"the watchdog never named h2 in [files]: {warnings}"
    # under load the watchdog may also catch h2 between or before operations, or in its
    # Directory step; what it names is always what h2 runs, and the hung upload is among it
    doing = {w.message.split(": ", 1)[1] for w in named if ": " in w.message}
    assert doing & slow_ops, f"the hung upload was never named: {named}"
    assert doing <= h2_ops
    assert all(w.message.startswith("still running after") for w in warnings)


class _LostUploads(_H2Uploads):
    """h2's connection dies on its first upload (what the SSH connector raises when the
    liveness monitor gives up on a host)."""

    def on_h2(self, path: str) -> None:
        raise ConnectError(
            f"h2: connection lost while uploading {path}: no answer for 20s", hint="check the host"
        )


def test_a_host_lost_mid_operation_is_named_with_phase_and_operation(tmp_path: Path) -> None:
    reporter = CollectingReporter()
    ctx = RunContext(_inventory(), cache_dir=tmp_path / "cache")
    engine = Engine(
        ctx, select(_phases(tmp_path)), connect=lambda t: _LostUploads(t.name), reporter=reporter
    )
    engine.connect_all()
    with pytest.raises(HostsFailed) as caught:
        engine.apply()
    assert caught.value.exit_code == ExitCode.APPLY
    conf = tmp_path / "h2" / "app.conf"
    op = File(str(conf), b"").describe()
    assert caught.value.problems == [
        f"[files] h2: {op}: connection lost while uploading {conf}: no answer for 20s; "
        "hint: check the host"
    ]
    assert (tmp_path / "h1" / "secret.key").exists()  # the other host finished the phase
    assert not (tmp_path / "h1" / "current").exists()  # and the next phase never started
