"""apt for another release: the machine's own mirrors, suites renamed, private state."""

from __future__ import annotations

from pathlib import Path

from provisioner.artifacts import aptroot
from provisioner.artifacts.aptroot import AptRoot, machine_codename, renamed_sources

MACHINE = """Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main

Types: deb
URIs: https://packages.example.com/apt
Suites: stable
Components: main"""


def test_the_machines_mirrors_serve_the_wanted_release() -> None:
    assert renamed_sources(MACHINE, own="bookworm", wanted="trixie") == (
        "Types: deb\n"
        "URIs: http://deb.debian.org/debian\n"
        "Suites: trixie trixie-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        "\n"
        "Types: deb\n"
        "URIs: http://deb.debian.org/debian-security\n"
        "Suites: trixie-security\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )


def test_no_suite_of_the_machines_release_gives_no_sources() -> None:
    assert renamed_sources(MACHINE, own="bullseye", wanted="trixie") == ""


def test_the_codename_comes_from_os_release(tmp_path: Path) -> None:
    path = tmp_path / "os-release"
    path.write_text('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nVERSION_CODENAME=trixie\n')
    assert machine_codename(path) == "trixie"


def test_the_machines_own_release_uses_its_own_apt(tmp_path: Path) -> None:
    assert aptroot.apt_options(tmp_path, machine_codename()) == ()
    assert aptroot.apt_options(tmp_path, "") == ()
    assert not (tmp_path / "apt").exists()


def test_another_release_keeps_state_cache_and_status_private(tmp_path: Path) -> None:
    options = AptRoot(tmp_path / "trixie", "trixie", own="bookworm").options()
    settings = dict(o.split("=", 1) for o in options if o != "-o")
    assert settings["Dir::State::status"] == str(tmp_path / "trixie" / "status")
    assert settings["Dir::State"] == str(tmp_path / "trixie" / "state")
    assert settings["Dir::Cache"] == str(tmp_path / "trixie" / "cache")
    assert settings["Dir::Etc::SourceParts"] == str(tmp_path / "trixie" / "sources.list.d")
