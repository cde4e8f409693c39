# ruff: noqa: E501  (golden lines are compared whole)
"""Loading: every problem in one run, YAML-level errors, accessors, schema and YAML output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import berth
from provisioner.errors import ExitCode, SpecError
from provisioner.spec import ClusterSpec, dump_spec, json_schema, load_spec, parse_spec
from tests.unit.spec.conftest import ONE_HOST, doc

MANY_MISTAKES = """\
apiVersion: berth.dev/v1alpha2
kind: Cluster
metadata:
  name: Demo
spec:
  version: 0.1
  ssh:
    hostKeyPolicy: accept_new
    identityfile: id_ed25519
  hosts:
    - name: n1
      address: 10.231.1.11
      roles: [control-plane, worker]
      labels: {gpu: yes}
    - name: n1
      address: 10.231.1.300
      roles: [control-plane]
    - name: n3
      address: 10.244.0.5
      roles: [worker]
  datastore: {type: etcd}
  network: {podCIDR: 10.244.0.0/16, serviceCIDR: 10.244.128.0/20, clusterDNS: 10.96.0.10}
"""


def test_one_run_reports_every_mistake_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(MANY_MISTAKES)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    f = str(path)
    assert caught.value.problems == [
        f"{f}:1:13: apiVersion: must be 'berth.dev/v1alpha1' (got 'berth.dev/v1alpha2'); hint: did you mean 'berth.dev/v1alpha1'?",
        f"{f}:4:9: metadata.name: must be lower case (a DNS-1123 label) (got 'Demo'); hint: e.g. 'demo' or 'prod-eu1'",
        f"{f}:6:12: spec.version: must be a string (got 0.1); hint: quote it: YAML reads unquoted digits as a number, e.g. '0.1.0'",
        f"{f}:8:20: spec.ssh.hostKeyPolicy: must be one of 'strict', 'accept-new' (got 'accept_new'); hint: did you mean 'accept-new'?",
        f"{f}:9:5: spec.ssh.identityfile: unknown field 'identityfile'; hint: did you mean 'identityFile'?",
        f"{f}:14:21: spec.hosts[0].labels.gpu: must be a string (got true); hint: quote it: YAML reads unquoted yes/no/on/off/true/false as booleans, e.g. 'yes'",
        f"{f}:15:13: spec.hosts[1].name: duplicate host name, already used by spec.hosts[0] (got 'n1'); hint: give every host its own name",
        f"{f}:16:16: spec.hosts[1].address: is not a valid IP address (got '10.231.1.300'); hint: write an IPv4 or IPv6 address, e.g. 10.231.0.11",
        f"{f}:19:16: spec.hosts[2].address: lies inside network.podCIDR 10.244.0.0/16 (got '10.244.0.5'); hint: host addresses must be outside the pod and service blocks; move network.podCIDR elsewhere",
        f"{f}:21:21: spec.datastore.type: etcd needs an odd number of control-plane hosts to keep quorum, the spec has 2 (got 'etcd'); hint: use 1 or 3 control-plane hosts",
        f"{f}:22:50: spec.network.serviceCIDR: overlaps podCIDR 10.244.0.0/16 (got '10.244.128.0/20'); hint: pick blocks that do not overlap, e.g. podCIDR 10.244.0.0/16 and serviceCIDR 10.96.0.0/12",
        f"{f}:22:79: spec.network.clusterDNS: is outside network.serviceCIDR 10.244.128.0/20 (got '10.96.0.10'); hint: pick an address inside the service block, e.g. 10.244.128.10",
    ]
    assert caught.value.exit_code == ExitCode.VALIDATION
    assert caught.value.lines()[-2] == "12 problem(s) in the cluster spec"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "apiVersion: x\n\tkind: y\n",
            "c.yaml:2:1: YAML syntax: while scanning for the next token found character '\\t' that cannot start any token; hint: indent with spaces; YAML does not allow tabs",
            id="tab",
        ),
        pytest.param(
            "a: 1\n---\nb: 2\n",
            "c.yaml:2:1: YAML syntax: expected a single document in the stream but found another document; hint: put one Cluster document in the file (remove the extra '---')",
            id="two-documents",
        ),
        pytest.param(
            "a: [1, 2\n",
            "c.yaml:2:1: YAML syntax: while parsing a flow sequence expected ',' or ']', but got '<stream end>'",
            id="unclosed-list",
        ),
        pytest.param(
            "",
            "c.yaml:1:1: (document): the document must be a mapping with apiVersion, kind, metadata and spec; hint: start the file with 'apiVersion: berth.dev/v1alpha1' and 'kind: Cluster'",
            id="empty",
        ),
        pytest.param(
            "- a\n- b\n",
            "c.yaml:1:1: (document): the document must be a mapping with apiVersion, kind, metadata and spec; hint: start the file with 'apiVersion: berth.dev/v1alpha1' and 'kind: Cluster'",
            id="a-list",
        ),
        pytest.param(
            doc(ONE_HOST).replace("kind: Cluster\n", "kind: Cluster\nkind: Cluster\n"),
            "c.yaml:3:1: kind: duplicate key (first at line 2); YAML keeps only the last one; hint: remove one of them",
            id="duplicate-key",
        ),
        pytest.param(
            "a: b\nc: d\x07e\n",
            "c.yaml:2:5: YAML syntax: character U+0007 is not allowed in YAML; hint: remove it (binary data does not belong in a spec)",
            id="control-character",
        ),
        pytest.param(
            "b: x\na: &x\n  c: *x\n",
            "c.yaml:2:4: YAML syntax: an alias refers to a mapping or list that contains it; hint: an anchor (&name) cannot be used (*name) inside itself",
            id="self-referencing-alias",
        ),
    ],
)
def test_document_level_errors_are_located(text: str, expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, filename="c.yaml")
    assert caught.value.problems == [expected]


def test_dates_stay_text_so_validation_reports_them() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(doc("version: 2024-13-01\n" + ONE_HOST), filename="c.yaml")
    assert caught.value.problems == [
        "c.yaml:5:12: spec.version: is not a release version (got '2024-13-01'); hint: write MAJOR.MINOR.PATCH, e.g. 0.1.0"
    ]


def test_aliases_are_fine_when_they_do_not_loop() -> None:
    text = doc(
        "ssh: &common {user: ops}\n"
        "hosts:\n  - {name: n1, address: 10.0.0.1, roles: [control-plane], ssh: *common}\n"
    )
    assert parse_spec(text).ssh_for("n1").user == "ops"


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(tmp_path / "nope.yaml")
    assert caught.value.problems == [
        f"{tmp_path / 'nope.yaml'}: cannot read the spec: No such file or directory"
    ]


FULL = """\
apiVersion: berth.dev/v1alpha1
kind: Cluster
metadata: {name: prod}
spec:
  ssh:
    user: ops
    identityFile: keys/id
    jumpHost: {address: bastion.example.com}
  hosts:
    - {name: cp1, address: 10.0.0.11, roles: [control-plane]}
    - {name: cp2, address: 10.0.0.12, roles: [control-plane]}
    - {name: cp3, address: 10.0.0.13, roles: [control-plane]}
    - name: w1
      address: 10.0.1.21
      roles: [worker]
      ssh: {address: 127.0.0.1, port: 2222, user: vagrant, identityFile: /abs/key}
  datastore: {type: etcd}
  network: {serviceCIDR: 10.100.0.0/16, clusterDNS: 10.100.0.10}
  apiServer: {endpoint: api.example.com, port: 443}
"""


@pytest.fixture
def full(tmp_path: Path) -> ClusterSpec:
    path = tmp_path / "prod.yaml"
    path.write_text(FULL)
    return load_spec(path)


def test_accessors(full: ClusterSpec, tmp_path: Path) -> None:
    assert full.name == "prod"
    assert [h.name for h in full.control_plane_hosts] == ["cp1", "cp2", "cp3"]
    assert [h.name for h in full.workers] == ["w1"]
    assert full.uses_etcd
    assert full.api_endpoint == "api.example.com"
    assert full.api_server_url == "https://api.example.com:443"
    assert full.kubernetes_service_ip == "10.100.0.1"
    assert full.cluster_dns == "10.100.0.10"
    assert full.berth_version == berth.__version__  # the operator's own when spec.version is unset
    assert full.source_path == tmp_path / "prod.yaml"
    assert full.identity_file == tmp_path / "keys" / "id"


def test_effective_ssh_merges_host_overrides(full: ClusterSpec, tmp_path: Path) -> None:
    pinned = tmp_path / "state" / "known_hosts"
    cp1 = full.ssh_for("cp1", default_known_hosts=pinned)
    assert (cp1.address, cp1.port, cp1.user) == ("10.0.0.11", 22, "ops")
    assert cp1.identity_file == tmp_path / "keys" / "id"
    assert cp1.known_hosts_file == pinned
    assert cp1.host_key_policy == "strict"
    assert cp1.jump is not None
    assert (cp1.jump.address, cp1.jump.port, cp1.jump.user) == ("bastion.example.com", 22, "ops")
    assert cp1.jump.identity_file == tmp_path / "keys" / "id"
    w1 = full.ssh_for("w1")
    assert (w1.address, w1.port, w1.user) == ("127.0.0.1", 2222, "vagrant")
    assert w1.identity_file == Path("/abs/key")
    assert w1.known_hosts_file is None
    with pytest.raises(KeyError):
        full.ssh_for("nope")


def test_endpoint_defaults_to_first_control_plane_and_ipv6_is_bracketed() -> None:
    spec = parse_spec(
        doc(
            "hosts:\n  - {name: n1, address: 'fd00::11', roles: [control-plane]}\n"
            "network: {podCIDR: 'fd00:244::/56', serviceCIDR: 'fd00:96::/112', "
            "clusterDNS: 'fd00:96::a', nodeCIDRMaskSize: 64}\n"
        )
    )
    assert spec.api_endpoint == "fd00::11"
    assert spec.api_server_url == "https://[fd00::11]:6443"
    assert spec.kubernetes_service_ip == "fd00:96::1"


def test_defaults_match_the_documented_format() -> None:
    spec = parse_spec(doc(ONE_HOST))
    body = spec.spec
    assert (body.ssh.user, body.ssh.port, body.ssh.host_key_policy) == ("root", 22, "strict")
    assert (body.ssh.connect_timeout, body.ssh.retries, body.ssh.jump_host) == (10.0, 3, None)
    assert body.datastore.type == "sqlite"
    net = body.network
    assert (net.pod_cidr, net.service_cidr, net.node_cidr_mask_size, net.cluster_dns) == (
        "10.244.0.0/16",
        "10.96.0.0/12",
        24,
        "10.96.0.10",
    )
    assert (body.api_server.endpoint, body.api_server.port, body.api_server.extra_sans) == (
        None,
        6443,
        [],
    )
    assert (body.certificates.ca_validity_days, body.certificates.leaf_validity_days) == (3650, 365)
    assert (body.upgrade.max_unavailable, body.upgrade.drain_timeout_seconds) == (1, 120)
    assert body.secrets_encryption is True


def test_models_are_frozen() -> None:
    spec = parse_spec(doc(ONE_HOST))
    with pytest.raises(ValueError, match="frozen"):
        spec.hosts[0].__setattr__("address", "10.0.0.9")


def test_schema_names_yaml_keys_and_forbids_unknown_ones() -> None:
    schema = json_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    assert set(schema["required"]) == {"apiVersion", "kind", "metadata", "spec"}
    network = schema["$defs"]["Network"]
    assert {"podCIDR", "serviceCIDR", "nodeCIDRMaskSize", "clusterDNS"} <= set(
        network["properties"]
    )
    assert network["additionalProperties"] is False
    assert schema["$defs"]["SshSettings"]["properties"]["hostKeyPolicy"]["enum"] == [
        "strict",
        "accept-new",
    ]
    json.dumps(schema)  # serialisable as is


def test_dump_round_trips(full: ClusterSpec) -> None:
    text = dump_spec(full, header="generated")
    assert text.startswith("# generated\napiVersion: berth.dev/v1alpha1\nkind: Cluster\n")
    again = parse_spec(text)
    assert again.model_dump() == full.model_dump()
