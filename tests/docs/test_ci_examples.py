"""The CI examples under docs/ci/ are valid for their platform and do what docs/ci.md says:
boot hosts, apply, verify with a JUnit report, publish it, and always destroy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.docs.blocks import DOCS

GITHUB = DOCS / "ci" / "github-actions.yml"
GITLAB = DOCS / "ci" / "gitlab-ci.yml"


def _load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict)
    return document


@pytest.mark.parametrize(
    ("path", "schema"),
    [(GITHUB, "vendor.github-workflows"), (GITLAB, "vendor.gitlab-ci")],
    ids=["github-actions", "gitlab-ci"],
)
def test_ci_example_matches_its_platform_schema(path: Path, schema: str) -> None:
    # check-jsonschema's bundled copies of the schemas GitHub and GitLab publish: no network
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(GITHUB.read_text().replace("runs-on:", "runs_on:"))
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
         str(broken)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "runs_on" in result.stdout


def test_github_workflow_applies_verifies_publishes_and_always_destroys() -> None:
    (job,) = _load(GITHUB)["jobs"].values()
    steps: list[dict[str, Any]] = job["steps"]
    runs = [str(step.get("run", "")) for step in steps]

    def index(text: str) -> int:
        return next(i for i, run in enumerate(runs) if text in run)

    boot, apply, verify = index("terraform apply"), index("berth apply"), index("--junit")
    destroy, hosts_gone = index("berth destroy"), index("terraform destroy")
    assert boot < apply < verify < destroy < hosts_gone
    assert "--yes" in runs[apply]
    assert all(steps[i].get("if") == "always()" for i in (destroy, hosts_gone))
    publish = [s for s in steps if "junit" in str(s.get("uses", "")).lower()]
    assert publish
    assert publish[0].get("if") == "always()"
    assert "verify.xml" in str(publish[0]["with"]["report_paths"])


def test_gitlab_job_applies_verifies_publishes_and_always_destroys() -> None:
    document = _load(GITLAB)
    job = document["cluster"]
    script = "\n".join(job["script"])
    assert script.index("berth lab up") < script.index("berth apply") < script.index("--junit")
    after = "\n".join(job["after_script"])
    assert after.index("berth destroy") < after.index("berth lab down")
    assert job["artifacts"]["when"] == "always"
    assert job["artifacts"]["reports"]["junit"] == "verify.xml"
