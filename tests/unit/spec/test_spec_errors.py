# ruff: noqa: E501  (golden lines are compared whole; wrapping them would hide the format)
"""Broken specs and the exact located messages they produce.

Each case is a ``spec:`` body (see ``conftest.doc``: line 5 is its first line) and every line
``berth validate`` must print for it, in order. The positions were checked by hand against the
documents; a change in wording or location is a user-visible change and must show up here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.errors import SpecError
from provisioner.spec import load_spec, parse_spec
from tests.harness.apiserver import TestPKI
from tests.unit.spec.conftest import ONE_HOST, doc

CASES = [
    pytest.param(
        ONE_HOST + "ssh: {identity_file: id}\n",
        [
            "cluster.yaml:7:9: spec.ssh.identity_file: unknown field 'identity_file'; hint: did you mean 'identityFile'?",
        ],
        id="snake_case_key",
    ),
    pytest.param(
        "hosts:\n  - name: n1\n    address: 10.0.0.1\n    roles: [control-plane]\n    ssh: {prot: 2222}\n",
        [
            "cluster.yaml:9:13: spec.hosts[0].ssh.prot: unknown field 'prot'; hint: did you mean 'port'?",
        ],
        id="unknown_host_ssh_key",
    ),
    pytest.param(
        ONE_HOST + "ssh: {jumpHost: {address: b.example, usr: ops}}\n",
        [
            "cluster.yaml:7:40: spec.ssh.jumpHost.usr: unknown field 'usr'; hint: did you mean 'user'?",
        ],
        id="unknown_jump_host_key",
    ),
    pytest.param(
        ONE_HOST + "runtime: docker\n",
        [
            "cluster.yaml:7:12: spec.runtime: must be one of 'runc', 'simulated' (got 'docker')",
        ],
        id="unknown_runtime",
    ),
    pytest.param(
        ONE_HOST + "colour: blue\n",
        [
            "cluster.yaml:7:3: spec.colour: unknown field 'colour'; hint: known fields here: apiServer, certificates, datastore, eventTTL, hosts, network, podEvictionTimeout, podSecurity, registries, runtime, secretsEncryption, ssh, upgrade, version",
        ],
        id="unknown_key_without_a_close_match",
    ),
    pytest.param(
        ONE_HOST + "netwrok: {}\n",
        [
            "cluster.yaml:7:3: spec.netwrok: unknown field 'netwrok'; hint: did you mean 'network'?",
        ],
        id="unknown_top_field",
    ),
    pytest.param(
        "hosts:\n  - {name: n1, adress: 10.0.0.1, roles: [control-plane]}\n",
        [
            "cluster.yaml:6:7: spec.hosts[0].address: required field is missing; hint: add 'address:' here",
            "cluster.yaml:6:18: spec.hosts[0].adress: unknown field 'adress'; hint: did you mean 'address'?",
        ],
        id="unknown_host_field",
    ),
    pytest.param(
        "hosts:\n  - {name: n1, roles: [control-plane]}\n",
        [
            "cluster.yaml:6:7: spec.hosts[0].address: required field is missing; hint: add 'address:' here",
        ],
        id="missing_address",
    ),
    pytest.param(
        "hosts:\n  - {name: n1, address: 10.0.0.256, roles: [control-plane]}\n",
        [
            "cluster.yaml:6:27: spec.hosts[0].address: is not a valid IP address (got '10.0.0.256'); hint: write an IPv4 or IPv6 address, e.g. 10.231.0.11",
        ],
        id="bad_ip",
    ),
    pytest.param(
        "hosts:\n  - {name: n1, address: 10.0.0.1, roles: [controlplane]}\n",
        [
            "cluster.yaml:6:45: spec.hosts[0].roles[0]: must be one of 'control-plane', 'worker' (got 'controlplane'); hint: did you mean 'control-plane'?",
        ],
        id="bad_role",
    ),
    pytest.param(
        "hosts:\n  - {name: n1, address: 10.0.0.1, roles: []}\n",
        [
            "cluster.yaml:6:44: spec.hosts[0].roles: must not be empty",
        ],
        id="empty_roles",
    ),
    pytest.param(
        "hosts:\n  - {name: Node1, address: 10.0.0.1, roles: [control-plane]}\n",
        [
            "cluster.yaml:6:14: spec.hosts[0].name: must be lower case (a DNS-1123 subdomain) (got 'Node1'); hint: e.g. 'n1' or 'cp1.lab'",
        ],
        id="upper_name",
    ),
    pytest.param(
        "hosts: []\n",
        [
            "cluster.yaml:5:10: spec.hosts: must not be empty",
        ],
        id="no_hosts",
    ),
    pytest.param(
        "hosts:\n  - {name: n1, address: 10.0.0.1, roles: [worker]}\n",
        [
            "cluster.yaml:6:5: spec.hosts: no host has the control-plane role; hint: add 'control-plane' to the roles of one host (or of 3 with datastore etcd)",
        ],
        id="no_control_plane",
    ),
    pytest.param(
        ONE_HOST + "  - {name: n1, address: 10.0.0.2, roles: [worker]}\n",
        [
            "cluster.yaml:7:14: spec.hosts[1].name: duplicate host name, already used by spec.hosts[0] (got 'n1'); hint: give every host its own name",
        ],
        id="dup_name",
    ),
    pytest.param(
        ONE_HOST + "  - {name: n2, address: 10.0.0.1, roles: [worker]}\n",
        [
            "cluster.yaml:7:27: spec.hosts[1].address: duplicate host address, already used by spec.hosts[0] (got '10.0.0.1'); hint: give every host its own address",
        ],
        id="dup_address",
    ),
    pytest.param(
        "hosts:\n  - {name: a, address: 10.0.0.1, roles: [control-plane]}\n  - {name: b, address: 10.0.0.2, roles: [control-plane]}\ndatastore: {type: etcd}\n",
        [
            "cluster.yaml:8:21: spec.datastore.type: etcd needs an odd number of control-plane hosts to keep quorum, the spec has 2 (got 'etcd'); hint: use 1 or 3 control-plane hosts",
        ],
        id="etcd_even",
    ),
    pytest.param(
        "hosts:\n  - {name: a, address: 10.0.0.1, roles: [control-plane]}\n  - {name: b, address: 10.0.0.2, roles: [control-plane]}\n",
        [
            "cluster.yaml:5:3: spec.datastore.type: sqlite serves exactly one control-plane host, the spec has 2 (got 'sqlite'); hint: set 'datastore: {type: etcd}' for an HA control plane (with an odd number of control-plane hosts), or keep one control-plane host",
        ],
        id="sqlite_two_cp",
    ),
    pytest.param(
        ONE_HOST + "datastore: {type: etc}\n",
        [
            "cluster.yaml:7:21: spec.datastore.type: must be one of 'sqlite', 'etcd' (got 'etc'); hint: did you mean 'etcd'?",
        ],
        id="bad_datastore",
    ),
    pytest.param(
        ONE_HOST + "network: {podCIDR: 10.244.0.1/16}\n",
        [
            "cluster.yaml:7:22: spec.network.podCIDR: has host bits set (got '10.244.0.1/16'); hint: did you mean 10.244.0.0/16?",
        ],
        id="host_bits",
    ),
    pytest.param(
        ONE_HOST + "network: {serviceCIDR: 10.96.0.0}\n",
        [
            "cluster.yaml:7:26: spec.network.serviceCIDR: is not a CIDR: the prefix length is missing (got '10.96.0.0'); hint: write an address block with its prefix length, e.g. 10.96.0.0/16",
        ],
        id="cidr_no_prefix",
    ),
    pytest.param(
        ONE_HOST + "network: {podCIDR: 10.0.0.0/8, serviceCIDR: 10.96.0.0/12}\n",
        [
            "cluster.yaml:6:27: spec.hosts[0].address: lies inside network.podCIDR 10.0.0.0/8 (got '10.0.0.1'); hint: host addresses must be outside the pod and service blocks; move network.podCIDR elsewhere",
            "cluster.yaml:7:47: spec.network.serviceCIDR: overlaps podCIDR 10.0.0.0/8 (got '10.96.0.0/12'); hint: pick blocks that do not overlap, e.g. podCIDR 10.244.0.0/16 and serviceCIDR 10.96.0.0/12",
        ],
        id="cidr_overlap",
    ),
    pytest.param(
        "hosts:\n  - {name: n1, address: 10.96.0.5, roles: [control-plane]}\n",
        [
            "cluster.yaml:6:27: spec.hosts[0].address: lies inside network.serviceCIDR 10.96.0.0/12 (got '10.96.0.5'); hint: host addresses must be outside the pod and service blocks; move network.serviceCIDR elsewhere",
        ],
        id="host_in_service",
    ),
    pytest.param(
        ONE_HOST + "network: {clusterDNS: 10.112.0.10}\n",
        [
            "cluster.yaml:7:25: spec.network.clusterDNS: is outside network.serviceCIDR 10.96.0.0/12 (got '10.112.0.10'); hint: pick an address inside the service block, e.g. 10.96.0.10",
        ],
        id="dns_outside",
    ),
    pytest.param(
        ONE_HOST + "network: {clusterDNS: 10.96.0.1}\n",
        [
            "cluster.yaml:7:25: spec.network.clusterDNS: is the address of the 'kubernetes' Service (the first address of serviceCIDR) (got '10.96.0.1'); hint: use another address, e.g. 10.96.0.10",
        ],
        id="dns_is_kubernetes",
    ),
    pytest.param(
        ONE_HOST + "network: {nodeCIDRMaskSize: 16}\n",
        [
            "cluster.yaml:7:31: spec.network.nodeCIDRMaskSize: must be longer than podCIDR's prefix /16 (got 16); hint: e.g. 24",
        ],
        id="mask_too_small",
    ),
    pytest.param(
        ONE_HOST + "network: {serviceCIDR: 10.64.0.0/10, clusterDNS: 10.64.0.10}\n",
        [
            "cluster.yaml:7:26: spec.network.serviceCIDR: is too large: the largest service block is /12 (got '10.64.0.0/10'); hint: use a prefix of /12 or longer",
        ],
        id="service_too_big",
    ),
    pytest.param(
        ONE_HOST
        + "  - {name: w1, address: 10.0.0.2, roles: [worker]}\napiServer: {endpoint: 10.0.0.2}\n",
        [
            "cluster.yaml:8:25: spec.apiServer.endpoint: is the address of host 'w1', which is not a control-plane host and runs no API server (got '10.0.0.2'); hint: point it at a control-plane host, a load balancer or a virtual IP",
        ],
        id="endpoint_worker",
    ),
    pytest.param(
        ONE_HOST + "apiServer: {extraSANs: ['bad name!']}\n",
        [
            "cluster.yaml:7:27: spec.apiServer.extraSANs[0]: is neither an IP address nor a DNS name (got 'bad name!'); hint: write an IP address or a DNS name, e.g. api.example.com",
        ],
        id="bad_san",
    ),
    pytest.param(
        "hosts:\n  - name: n1\n    address: 10.0.0.1\n    roles: [control-plane]\n    taints: [{key: a, effect: NoSchedul}]\n",
        [
            "cluster.yaml:9:33: spec.hosts[0].taints[0].effect: must be one of 'NoSchedule', 'PreferNoSchedule', 'NoExecute' (got 'NoSchedul'); hint: did you mean 'NoSchedule'?",
        ],
        id="taint_effect",
    ),
    pytest.param(
        "hosts:\n  - name: n1\n    address: 10.0.0.1\n    roles: [control-plane]\n    taints: [{key: '-a', effect: NoSchedule}]\n",
        [
            "cluster.yaml:9:22: spec.hosts[0].taints[0].key: must be alphanumeric, '-', '_' or '.', starting and ending with a letter or digit (an optional DNS prefix ends with '/') (got '-a'); hint: e.g. 'gpu' or 'example.com/zone'",
        ],
        id="taint_key",
    ),
    pytest.param(
        "hosts:\n  - name: n1\n    address: 10.0.0.1\n    roles: [control-plane]\n    labels: {zone: 'eu west'}\n",
        [
            "cluster.yaml:9:22: spec.hosts[0].labels.zone: must be empty or alphanumeric, '-', '_' or '.', starting and ending with a letter or digit (got 'eu west'); hint: e.g. 'true' or 'eu-west-1a'",
        ],
        id="label_value",
    ),
    pytest.param(
        "hosts:\n  - name: n1\n    address: 10.0.0.1\n    roles: [control-plane]\n    labels: {gpu: yes}\n",
        [
            "cluster.yaml:9:21: spec.hosts[0].labels.gpu: must be a string (got true); hint: quote it: YAML reads unquoted yes/no/on/off/true/false as booleans, e.g. 'yes'",
        ],
        id="label_bool",
    ),
    pytest.param(
        "hosts:\n  - name: n1\n    address: 10.0.0.1\n    roles: [control-plane]\n    labels: {Example.com/zone: a}\n",
        [
            "cluster.yaml:9:16: spec.hosts[0].labels[\"Example.com/zone\"]: prefix 'Example.com' must be lower case (a DNS-1123 subdomain) (got 'Example.com/zone'); hint: e.g. 'gpu' or 'example.com/zone'",
        ],
        id="label_prefix",
    ),
    pytest.param(
        ONE_HOST + "ssh: {hostKeyPolicy: accept_new}\n",
        [
            "cluster.yaml:7:24: spec.ssh.hostKeyPolicy: must be one of 'strict', 'accept-new' (got 'accept_new'); hint: did you mean 'accept-new'?",
        ],
        id="policy",
    ),
    pytest.param(
        ONE_HOST + "ssh: {port: 70000}\n",
        [
            "cluster.yaml:7:15: spec.ssh.port: must be at most 65535 (got 70000)",
        ],
        id="port_range",
    ),
    pytest.param(
        ONE_HOST + "ssh: {port: twenty-two}\n",
        [
            "cluster.yaml:7:15: spec.ssh.port: must be a whole number (got 'twenty-two')",
        ],
        id="port_type",
    ),
    pytest.param(
        ONE_HOST + "ssh: {connectTimeout: 0}\n",
        [
            "cluster.yaml:7:25: spec.ssh.connectTimeout: must be greater than 0.0 (got 0)",
        ],
        id="timeout",
    ),
    pytest.param(
        "version: 0.1\n" + ONE_HOST,
        [
            "cluster.yaml:5:12: spec.version: must be a string (got 0.1); hint: quote it: YAML reads unquoted digits as a number, e.g. '0.1.0'",
        ],
        id="version_number",
    ),
    pytest.param(
        ONE_HOST + "certificates: {caValidityDays: 100, leafValidityDays: 365}\n",
        [
            "cluster.yaml:7:57: spec.certificates.leafValidityDays: is longer than caValidityDays (100); a certificate cannot outlive its CA (got 365); hint: use at most 100",
        ],
        id="leaf_over_ca",
    ),
    pytest.param(
        ONE_HOST + "certificates: {leafValidityDays: 20}\n",
        [
            "cluster.yaml:7:17: spec.certificates.renewBeforeDays: must be shorter than leafValidityDays (20), or every run would re-issue every certificate (got 30); hint: e.g. 2",
        ],
        id="renew_window",
    ),
    pytest.param(
        "hosts:\n  - name: n1\n    address: 10.0.0.1\n    roles: [control-plane]\n    taints: [{key: a, effect: NoSchedule}, {key: a, value: b, effect: NoSchedule}]\n",
        [
            "cluster.yaml:9:46: spec.hosts[0].taints[1]: repeats taints[0] (same key and effect) (got 'a:NoSchedule'); hint: keep one taint per key and effect",
        ],
        id="dup_taint",
    ),
    pytest.param(
        "hosts:\n  - {name: n1, address: 10.0.0.1, roles: [control-plane, control-plane]}\n",
        [
            "cluster.yaml:6:44: spec.hosts[0].roles: lists a role twice (got [control-plane, control-plane]); hint: write each role once",
        ],
        id="dup_role",
    ),
    pytest.param(
        "hosts: {name: n1}\n",
        [
            "cluster.yaml:5:10: spec.hosts: must be a list (got a mapping); hint: write '[a, b]' or one '- item' per line",
        ],
        id="hosts_not_list",
    ),
    pytest.param(
        ONE_HOST + "upgrade: {maxUnavailable: 0}\n",
        [
            "cluster.yaml:7:29: spec.upgrade.maxUnavailable: must be at least 1 (got 0)",
        ],
        id="max_unavailable",
    ),
    pytest.param(
        ONE_HOST
        + "registries:\n"
        + "  - {host: 'https://r.example/v2', insecure: true}\n"
        + "  - {host: r.example:5000, insecure: true, caFile: ca.pem}\n"
        + "  - {host: R.example:5000}\n"
        + "  - {host: 'r.example:99999'}\n",
        [
            "cluster.yaml:8:14: spec.registries[0].host: is not a registry host: write host[:port] without a scheme or a path (got 'https://r.example/v2'); hint: as image references name it, e.g. registry.example.com:5000",
            "cluster.yaml:9:7: spec.registries[1]: sets both insecure and caFile (got a mapping); hint: an insecure registry speaks plain HTTP; drop insecure to use caFile",
            "cluster.yaml:10:14: spec.registries[2].host: duplicate registry, already listed as spec.registries[1] (got 'R.example:5000'); hint: list each registry once",
            "cluster.yaml:11:14: spec.registries[3].host: has a port outside 1-65535 (got 'r.example:99999'); hint: as image references name it, e.g. registry.example.com:5000",
        ],
        id="registries",
    ),
    pytest.param(
        ONE_HOST
        + "podSecurity:\n"
        + "  enforce: strict\n"
        + "  warnVersion: '1.30'\n"
        + "  exemptions: {namespaces: [kube-system, ops, kube-system], usernames: [a, a]}\n",
        [
            "cluster.yaml:8:14: spec.podSecurity.enforce: must be one of 'privileged', 'baseline', 'restricted' (got 'strict'); hint: did you mean 'restricted'?",
            "cluster.yaml:9:18: spec.podSecurity.warnVersion: is not a Pod Security version (got '1.30'); hint: write latest or v1.MINOR, e.g. v1.32",
            "cluster.yaml:10:49: spec.podSecurity.exemptions.namespaces[2]: repeats namespaces[0] (got 'kube-system'); hint: list each exemption once",
            "cluster.yaml:10:78: spec.podSecurity.exemptions.usernames[1]: repeats usernames[0] (got 'a'); hint: list each exemption once",
        ],
        id="pod_security",
    ),
    pytest.param(
        ONE_HOST + "eventTTL: 0\n",
        [
            "cluster.yaml:7:13: spec.eventTTL: must be at least 1 (got 0)",
        ],
        id="event_ttl",
    ),
]


@pytest.mark.parametrize(("body", "expected"), CASES)
def test_broken_spec_reports_located_problems(body: str, expected: list[str]) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(doc(body), filename="cluster.yaml")
    assert caught.value.problems == expected


def test_the_table_bodies_are_otherwise_valid() -> None:
    # The baseline the cases are edits of must itself be valid, or the table tests nothing.
    spec = parse_spec(doc(ONE_HOST), filename="cluster.yaml")
    assert [h.name for h in spec.hosts] == ["n1"]


def test_registry_ca_bundles_are_read_and_checked_at_load(tmp_path: Path) -> None:
    TestPKI(tmp_path / "pki")
    (tmp_path / "not-pem.txt").write_text("hello\n")
    body = ONE_HOST + (
        "registries:\n"
        "  - {host: a.example, caFile: pki/ca.crt}\n"
        "  - {host: b.example, caFile: missing.pem}\n"
        "  - {host: c.example, caFile: not-pem.txt}\n"
    )
    (tmp_path / "cluster.yaml").write_text(doc(body))
    with pytest.raises(SpecError) as caught:
        load_spec(tmp_path / "cluster.yaml")
    where = tmp_path / "cluster.yaml"
    assert caught.value.problems == [
        f"{where}:9:33: spec.registries[1].caFile: cannot read the CA bundle "
        f"{tmp_path / 'missing.pem'}: No such file or directory (got 'missing.pem'); "
        "hint: relative paths resolve against the spec file's directory",
        f"{where}:10:33: spec.registries[2].caFile: {tmp_path / 'not-pem.txt'} holds no PEM "
        "certificate (got 'not-pem.txt'); hint: give the CA certificate(s) that signed the "
        "registry's certificate, PEM",
    ]
