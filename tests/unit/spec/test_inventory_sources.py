# ruff: noqa: E501  (golden lines are compared whole)
"""Generating specs from `vagrant ssh-config` and `terraform output -json`."""

from __future__ import annotations

import json

import pytest

from provisioner.errors import SpecError
from provisioner.inventory_sources import (
    HostEntry,
    assign_roles,
    from_terraform,
    from_vagrant,
    parse_ssh_config,
)
from provisioner.spec import dump_spec, parse_spec

LIBVIRT = """\
Host cp1
  HostName 192.168.121.17
  User vagrant
  Port 22
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile /home/me/proj/.vagrant/machines/cp1/libvirt/private_key
  IdentitiesOnly yes
  LogLevel FATAL

Host w1
  HostName 192.168.121.18
  User vagrant
  Port 22
  IdentityFile /home/me/proj/.vagrant/machines/w1/libvirt/private_key
  IdentitiesOnly yes
"""

VIRTUALBOX = """\
Host cp1
  HostName 127.0.0.1
  User vagrant
  Port 2222
  IdentityFile "/home/me/my proj/.vagrant/machines/cp1/virtualbox/private_key"

Host w1
  HostName 127.0.0.1
  User vagrant
  Port 2200
  IdentityFile "/home/me/my proj/.vagrant/machines/w1/virtualbox/private_key"
"""


def test_ssh_config_blocks_are_parsed() -> None:
    blocks = parse_ssh_config(VIRTUALBOX)
    assert [(b.alias, b.line) for b in blocks] == [("cp1", 1), ("w1", 7)]
    assert blocks[0].options["port"] == "2222"
    assert (
        blocks[0].options["identityfile"]
        == "/home/me/my proj/.vagrant/machines/cp1/virtualbox/private_key"
    )


def test_libvirt_machines_become_a_valid_spec() -> None:
    document = from_vagrant(LIBVIRT, name="lab")
    spec = parse_spec(dump_spec(document))
    assert [(h.name, h.address, h.roles) for h in spec.hosts] == [
        ("cp1", "192.168.121.17", ["control-plane"]),
        ("w1", "192.168.121.18", ["worker"]),
    ]
    assert spec.spec.ssh.user == "root"
    assert spec.spec.ssh.host_key_policy == "accept-new"
    assert spec.ssh_for("w1").identity_file is not None
    assert str(spec.ssh_for("w1").identity_file).endswith("machines/w1/libvirt/private_key")
    assert spec.spec.datastore.type == "sqlite"


def test_virtualbox_port_forwards_need_addresses() -> None:
    with pytest.raises(SpecError) as caught:
        from_vagrant(VIRTUALBOX, name="lab", filename="ssh.cfg")
    assert caught.value.problems == [
        "ssh.cfg:1:1: Host cp1: HostName 127.0.0.1 is a port forward on this machine, not the machine's own address; hint: pass --address cp1=IP with its private network address",
        "ssh.cfg:7:1: Host w1: HostName 127.0.0.1 is a port forward on this machine, not the machine's own address; hint: pass --address w1=IP with its private network address",
    ]


def test_virtualbox_with_addresses_keeps_ssh_on_the_forward() -> None:
    document = from_vagrant(
        VIRTUALBOX,
        name="lab",
        addresses={"cp1": "192.168.56.11", "w1": "192.168.56.21"},
        control_planes=["w1"],
    )
    spec = parse_spec(dump_spec(document))
    cp1 = spec.ssh_for("cp1")
    assert (spec.host("cp1").address, cp1.address, cp1.port) == ("192.168.56.11", "127.0.0.1", 2222)
    assert spec.host("w1").roles == ["control-plane"]
    assert spec.host("cp1").roles == ["worker"]


def test_unknown_names_in_options_are_errors() -> None:
    with pytest.raises(SpecError) as caught:
        from_vagrant(LIBVIRT, name="lab", control_planes=["cp9"], filename="s")
    assert caught.value.problems == ["s: --control-plane names unknown machine(s): cp9"]
    with pytest.raises(SpecError) as caught:
        from_vagrant(LIBVIRT, name="lab", addresses={"cp9": "10.0.0.1"}, filename="s")
    assert caught.value.problems == ["s: --address names unknown machine(s): cp9"]
    with pytest.raises(SpecError) as caught:
        from_vagrant("", name="lab", filename="s")
    assert caught.value.problems == ["s:1:1: no 'Host' blocks found"]


def test_default_roles() -> None:
    one = [HostEntry("a", "10.0.0.1")]
    three = [HostEntry("a", "10.0.0.1"), HostEntry("b", "10.0.0.2"), HostEntry("c", "10.0.0.3")]
    assert assign_roles(one) == [("control-plane", "worker")]
    assert assign_roles(three) == [("control-plane",), ("worker",), ("worker",)]
    assert assign_roles(three, ["a", "b", "c"]) == [("control-plane", "worker")] * 3
    explicit = [HostEntry("a", "10.0.0.1", roles=("worker",)), HostEntry("b", "10.0.0.2")]
    assert assign_roles(explicit, ["b"]) == [("worker",), ("control-plane",)]


TERRAFORM = {
    "berth_hosts": {
        "sensitive": False,
        "type": ["tuple", []],
        "value": [
            {"name": "cp1", "address": "10.1.0.11", "roles": ["control-plane"], "user": "debian"},
            {"name": "cp2", "address": "10.1.0.12", "roles": ["control-plane"], "user": "debian"},
            {"name": "cp3", "address": "10.1.0.13", "roles": ["control-plane"], "user": "debian"},
            {
                "name": "w1",
                "address": "10.1.0.21",
                "user": "debian",
                "port": 2222,
                "labels": {"zone": "a"},
            },
        ],
    },
    "other": {"sensitive": False, "type": "string", "value": "x"},
}


def test_terraform_output_becomes_an_ha_spec() -> None:
    document = from_terraform(json.dumps(TERRAFORM, indent=2), name="tf", identity_file="~/.ssh/tf")
    spec = parse_spec(dump_spec(document))
    assert [h.name for h in spec.control_plane_hosts] == ["cp1", "cp2", "cp3"]
    assert spec.uses_etcd
    assert spec.spec.ssh.user == "debian"
    assert spec.ssh_for("w1").port == 2222
    assert spec.host("w1").labels == {"zone": "a"}
    assert spec.host("w1").roles == ["worker"]


def test_terraform_bare_list_is_accepted() -> None:
    bare = json.dumps(TERRAFORM["berth_hosts"]["value"])
    spec = parse_spec(dump_spec(from_terraform(bare, name="tf")))
    assert len(spec.hosts) == 4


def test_terraform_problems_are_located() -> None:
    text = """{
  "berth_hosts": {
    "value": [
      {"name": "cp1", "address": "10.1.0.11"},
      {"name": "w1", "adress": "10.1.0.21", "port": "22"}
    ]
  }
}"""
    with pytest.raises(SpecError) as caught:
        from_terraform(text, name="tf", filename="out.json")
    assert caught.value.problems == [
        "out.json:5:7: berth_hosts.value[1].address: required text field is missing or empty",
        "out.json:5:22: berth_hosts.value[1].adress: unknown field 'adress'; hint: did you mean 'address'?",
        "out.json:5:53: berth_hosts.value[1].port: must be a number (got '22')",
    ]


def test_terraform_missing_output_names_the_ones_present() -> None:
    with pytest.raises(SpecError) as caught:
        from_terraform(json.dumps({"ips": {"value": []}}), name="tf", filename="out.json")
    assert caught.value.problems == ["out.json:1:1: no output named 'berth_hosts' (outputs: ips)"]


def test_odd_ssh_config_lines_do_not_crash_the_parser() -> None:
    blocks = parse_ssh_config('Host a\n  HostName=10.0.0.1\n  IdentityFile "/unbalanced\n  Port\n')
    assert blocks[0].options == {"hostname": "10.0.0.1", "identityfile": "/unbalanced", "port": ""}
