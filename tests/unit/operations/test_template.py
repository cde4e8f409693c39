"""Templates become files: rendered locally, then compared by hash like any other file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from provisioner.connectors.base import HostName
from provisioner.errors import TemplateError
from provisioner.operations.base import HostRun, OpContext, evaluate
from provisioner.operations.files import File, template
from tests.unit.operations.simhost import SimHost


def test_template_renders_into_a_file_and_is_idempotent(tmp_path: Path) -> None:
    (tmp_path / "agent.yaml.j2").write_text("node: {{ node }}\nport: {{ port }}\n")
    op = template("/etc/berth/agent.yaml", "agent.yaml.j2", {"node": "n1", "port": 10250},
                  root=tmp_path, mode=0o600)  # fmt: skip
    assert op == File("/etc/berth/agent.yaml", b"node: n1\nport: 10250\n", mode=0o600)
    host = SimHost.from_data({"dirs": {"/etc/berth": {}}})
    first = evaluate(op, OpContext(HostName("sim"), host.facts(op.facts()), HostRun()))
    digest = hashlib.sha256(b"node: n1\nport: 10250\n").hexdigest()[:12]
    assert [c.describe() for c in first.commands] == [
        f"upload /etc/berth/agent.yaml (21 bytes, sha256 {digest}, mode 0600, root:root)"
    ]
    for command in first.commands:
        host.execute(command)
    second = evaluate(op, OpContext(HostName("sim"), host.facts(op.facts()), HostRun()))
    assert second.commands == ()


def test_missing_variable_names_the_template(tmp_path: Path) -> None:
    (tmp_path / "unit.j2").write_text("ExecStart={{ binary }}\n")
    with pytest.raises(TemplateError, match=r"unit\.j2:1: UndefinedError: 'binary' is undefined"):
        template("/etc/systemd/system/x.service", "unit.j2", {}, root=tmp_path)
