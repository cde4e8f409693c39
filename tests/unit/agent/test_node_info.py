"""What a node tells about itself in Node.status.nodeInfo."""

from __future__ import annotations

from pathlib import Path

from berth.agent import node


def test_os_image_is_the_hosts_pretty_name(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    assert node.os_image(release) == "Debian GNU/Linux 12 (bookworm)"


def test_os_image_falls_back_when_unreadable(tmp_path: Path) -> None:
    assert node.os_image(tmp_path / "missing") == "Linux"
