"""Every example in inventories/ is a valid spec, and the Vagrant and lab examples match what
the Vagrantfile and `berth lab up` really produce."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from provisioner.lab import clusterspec
from provisioner.spec import json_schema, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "inventories").glob("*.yaml"))


def test_the_examples_are_there() -> None:
    names = {p.name for p in EXAMPLES}
    assert {
        "lab.yaml",
        "single-node.yaml",
        "one-plus-two.yaml",
        "ha-etcd.yaml",
        "vagrant.yaml",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates(path: Path) -> None:
    spec = load_spec(path)
    assert spec.control_plane_hosts


def test_the_committed_schema_is_current() -> None:
    # inventories/cluster.schema.json is what editors load; regenerate with
    # `berth schema -o inventories/cluster.schema.json` after changing the models.
    committed = json.loads((ROOT / "inventories" / "cluster.schema.json").read_text())
    assert committed == json_schema()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_point_editors_at_the_schema(path: Path) -> None:
    assert path.read_text().startswith("# yaml-language-server: $schema=cluster.schema.json\n")


def test_ha_example_is_on_etcd_with_an_odd_control_plane() -> None:
    spec = load_spec(ROOT / "inventories" / "ha-etcd.yaml")
    assert spec.uses_etcd
    assert len(spec.control_plane_hosts) == 3


def _vagrant_machines() -> dict[str, str]:
    text = (ROOT / "Vagrantfile").read_text()
    block = re.search(r"MACHINES = \{(.*?)\}", text, re.S)
    assert block is not None, "Vagrantfile has no MACHINES table"
    return dict(re.findall(r'"([\w-]+)"\s*=>\s*"([\d.]+)"', block.group(1)))


def test_vagrant_example_matches_the_vagrantfile() -> None:
    spec = load_spec(ROOT / "inventories" / "vagrant.yaml")
    assert {h.name: h.address for h in spec.hosts} == _vagrant_machines()
    text = (ROOT / "Vagrantfile").read_text()
    assert 'config.vm.box = ENV.fetch("BERTH_VAGRANT_BOX", "debian/bookworm64")' in text
    key = text.split('BERTH_KEY = File.expand_path(ENV.fetch("BERTH_VAGRANT_KEY", "')[1]
    assert spec.spec.ssh.identity_file == key.split('"')[0]


def test_lab_example_matches_what_the_lab_writes() -> None:
    example = load_spec(ROOT / "inventories" / "lab.yaml")
    written = parse_spec(
        clusterspec.render(
            name="demo",
            hosts=[(h.name, h.address) for h in example.hosts],
            identity_file="id_ed25519",
            known_hosts_file="known_hosts",
        ),
        filename="lab cluster.yaml",
    )
    assert written.model_dump() == example.model_dump()
