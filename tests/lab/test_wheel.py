"""berth installed from its wheel, and nothing else, bootstraps a lab cluster; the apply's
default output and its ``--timeline`` SVG.

One module-scoped setup (it is heavy: a wheel build, a fresh virtualenv, a 2-host lab and a
cluster apply): the wheel is built from a copy of this checkout, installed into a virtualenv
outside the source tree from a local wheelhouse (no network, see ``wheelhouse.py``), and that
virtualenv's ``berth`` alone boots the lab (``berth lab up``), applies the cluster (``berth
apply``, which ends with verify: nodes Ready, smoke pods answering) and tears the lab down. The
tests then read what that run left:

* ``berth --version`` names the release and the commit the wheel was built from;
* the installed ``berth`` and ``provisioner`` are the virtualenv's, never this checkout's, and
  the hosts run the bundle made from the installed package;
* without a terminal, the apply printed plain lines and the summary table;
* the timeline SVG names every host and every phase the apply ran.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner.lab import Lab, run
from tests.lab import wheelhouse

pytestmark = pytest.mark.lab

SVG = "{http://www.w3.org/2000/svg}"
HOSTS = ("n1", "n2")
STAGES = ("connecting", "preflight", "plan")


@dataclass(frozen=True)
class Installed:
    """What the module's one run produced."""

    bin: Path
    work: Path
    commit: str
    lab: Lab
    apply: subprocess.CompletedProcess[str]
    timeline: Path


def _env(work: Path) -> dict[str, str]:
    """The installed berth's environment: nothing pointing into this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "BERTH_"))}
    return {**env, "BERTH_STATE_DIR": str(work / "state"), "TERM": "dumb"}


def _berth(
    installed_bin: Path, work: Path, *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(installed_bin / "berth"), *args], capture_output=True, text=True, cwd=work,
        env=_env(work), timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    work = tmp_path_factory.mktemp("wheel")
    commit = wheelhouse.head_commit()
    source = wheelhouse.source_copy(work / "src")
    wheel = wheelhouse.build_wheel(source, work / "dist", commit=commit)
    shutil.rmtree(source)  # nothing of the sources is left to find by accident
    venv_bin = wheelhouse.install(wheel, work / "venv")
    lab = Lab(f"pt{os.getpid()}-701")  # reaped by a later session if this one dies
    try:
        up = _berth(venv_bin, work, "lab", "up", str(len(HOSTS)), "--name", lab.name, "--replace")
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        timeline = work / "apply.svg"
        apply = _berth(
            venv_bin, work, "apply", "-i", str(lab.spec_path), "--yes", "--timeline", str(timeline)
        )
        (work / "apply.out").write_text(apply.stdout + apply.stderr)  # to read after a failure
        yield Installed(venv_bin, work, commit, lab, apply, timeline)
    finally:
        down = _berth(venv_bin, work, "lab", "down", "--name", lab.name)
        if down.returncode != 0:
            lab.down()  # the checkout's own teardown, so nothing is left behind either way
        assert down.returncode == 0, down.stdout[-2000:] + down.stderr[-2000:]


def test_the_installed_berth_applies_a_cluster(installed: Installed) -> None:
    out = installed.apply.stdout + installed.apply.stderr
    assert installed.apply.returncode == 0, out[-5000:]


def test_the_version_names_release_and_build_commit(installed: Installed) -> None:
    shown = _berth(installed.bin, installed.work, "--version")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"berth 0.1.0 (commit {installed.commit})"


def test_everything_runs_from_the_install(installed: Installed) -> None:
    probe = subprocess.run(
        [str(installed.bin / "python"), "-c",
         "import berth, provisioner; from provisioner.templating import TEMPLATES; "
         "from provisioner.phases.cluster.context import local_bundle_id; "
         "print(berth.__file__); print(provisioner.__file__); print(TEMPLATES); "
         "print(local_bundle_id('0.1.0'))"],
        capture_output=True, text=True, cwd=installed.work, env=_env(installed.work), check=True,
    ).stdout.split()  # fmt: skip
    venv = installed.bin.parent
    assert all(Path(p).is_relative_to(venv) for p in probe[:3]), probe
    assert (Path(probe[2]) / "berth-apiserver.service.j2").is_file()
    # the hosts run the bundle of the installed package (its id hashes the installed files;
    # a bundle from a checkout would be named by the checkout's git tree)
    for host in HOSTS:
        code, current, err = run(installed.lab, host, "readlink /opt/berth/current")
        assert code == 0, err
        assert current.strip().endswith(probe[3]), (host, current, probe[3])


def test_without_a_terminal_apply_prints_plain_lines_and_the_table(installed: Installed) -> None:
    out = installed.apply.stdout
    assert "\x1b" not in out
    lines = out.splitlines()
    assert len(lines) < 80, out  # was hundreds: every command and diff of every host
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["host", "changed"])
    rows = [line.split() for line in lines[header + 2 : header + 2 + len(HOSTS)]]
    assert [r[0] for r in rows] == list(HOSTS)
    assert all(int(r[1]) > 0 and r[3] == "0" for r in rows), rows
    assert any(re.fullmatch(r"apply: \d+ change\(s\), .*", line) for line in lines)


def test_the_timeline_names_every_host_and_phase(installed: Installed) -> None:
    # the phases the apply ran on at least one host, as its plain lines announced them
    ran = [
        m.group(1) for line in installed.apply.stdout.splitlines()
        if (m := re.fullmatch(r"\[(\S+)\] (?:[1-9]\d*/\d+ hosts|\(cluster\)), .*", line))
    ]  # fmt: skip
    assert len(ran) >= 5, installed.apply.stdout
    root = ET.parse(installed.timeline).getroot()
    texts = {t.text for t in root.iter(f"{SVG}text")}
    assert set(HOSTS) <= texts
    legend = [t.attrib["data-phase"] for t in root.iter(f"{SVG}text") if "data-phase" in t.attrib]
    assert set(legend[: len(STAGES)]) == set(STAGES)
    assert legend[len(STAGES) :] == [p for p in ran if p not in STAGES]  # in run order
    titled = {
        (m.group(1), m.group(2))
        for title in root.iter(f"{SVG}title")
        if title.text and (m := re.match(r"(\S+) \[(\S+)\]", title.text))
    }
    for host in HOSTS:
        assert {phase for h, phase in titled if h == host} >= set(STAGES)
