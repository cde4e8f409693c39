"""The README's supported-platform table is provisioner.platforms.SUPPORTED, row for row."""

from __future__ import annotations

from pathlib import Path

from provisioner.platforms import SUPPORTED

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_lists_exactly_the_platforms_preflight_accepts() -> None:
    text = README.read_text()
    section = text.split("## Supported host platforms", 1)[1].split("\n## ", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| Debian") or line.startswith("| Ubuntu")
    ]
    expected = [
        [
            f"{p.name.split(' (')[0]}",
            p.codename,
            p.python_version,
            p.etcd,
            ", ".join(p.etcd_runs_on),
        ]
        for p in SUPPORTED
    ]
    assert rows == expected
