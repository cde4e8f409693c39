"""The generated PKI, checked with `cryptography` and independently with openssl and kubectl."""

from __future__ import annotations

import base64
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client, config

from provisioner import pki
from provisioner.pki import x509 as crypto
from provisioner.pki.certlist import CertSpec, check_table
from provisioner.state import ClusterState
from tests.unit.pki.conftest import NOW, ha_spec

CLUSTER_CA_LEAVES = [
    "apiserver",
    "apiserver-agent-client",
    *[f"agent-client-{h}" for h in ("cp1", "cp2", "cp3", "w1")],
    *[f"agent-serving-{h}" for h in ("cp1", "cp2", "cp3", "w1")],
    "scheduler",
    "controller-manager",
    "proxy",
    "ingress",
    "admin",
]
ETCD_CA_LEAVES = [
    "apiserver-etcd-client",
    *[f"etcd-{kind}-{h}" for kind in ("server", "peer") for h in ("cp1", "cp2", "cp3")],
]


def cert(state: ClusterState, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((state.pki_dir / f"{name}.crt").read_bytes())


def openssl(*args: str) -> str:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_table_expands_to_every_certificate() -> None:
    ids = [r.id for r in pki.expand(ha_spec())]
    assert ids[:2] == ["ca", "etcd-ca"]
    assert sorted(ids) == sorted(["ca", "etcd-ca", *CLUSTER_CA_LEAVES, *ETCD_CA_LEAVES])


def test_sqlite_clusters_get_no_etcd_pki() -> None:
    spec = ha_spec().model_copy(deep=True)
    sqlite = ha_spec(
        "apiVersion: berth.dev/v1alpha1\nkind: Cluster\nmetadata: {name: s}\nspec:\n"
        "  hosts: [{name: n1, address: 10.0.0.1, roles: [control-plane, worker]}]\n"
    )
    ids = {r.id for r in pki.expand(sqlite)}
    assert not {i for i in ids if "etcd" in i}
    assert spec.uses_etcd


def test_a_row_with_an_unknown_ca_fails_the_table_check() -> None:
    def subject(spec: object, host: object) -> tuple[str, tuple[str, ...]]:
        return "x", ()

    with pytest.raises(ValueError, match="references unknown CA 'nope'"):
        check_table([CertSpec("ca", "ca", None, subject), CertSpec("x", "x", "nope", subject)])


def test_files_and_permissions(pristine: ClusterState) -> None:
    for directory in (
        pristine.root,
        pristine.pki_dir,
        pristine.kubeconfig_dir,
        pristine.secrets_dir,
    ):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    keys = sorted(pristine.pki_dir.glob("*.key"))
    assert len(keys) == 2 + len(CLUSTER_CA_LEAVES) + len(ETCD_CA_LEAVES) + 1  # + sa.key
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    for crt in pristine.pki_dir.glob("*.crt"):
        assert stat.S_IMODE(crt.stat().st_mode) == 0o644, crt
    secrets = [pristine.secrets_dir / "encryption-key", *pristine.kubeconfig_dir.rglob("*.conf")]
    assert len(secrets) == 1 + 5 + 4  # key; admin, scheduler, cm, proxy, ingress; 4 nodes
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_chains_keys_and_curves_with_cryptography(pristine: ClusterState) -> None:
    ca, etcd_ca = cert(pristine, "ca"), cert(pristine, "etcd-ca")
    for root in (ca, etcd_ca):
        assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        root.verify_directly_issued_by(root)
    for name, issuer in [(n, ca) for n in CLUSTER_CA_LEAVES] + [
        (n, etcd_ca) for n in ETCD_CA_LEAVES
    ]:
        leaf = cert(pristine, name)
        leaf.verify_directly_issued_by(issuer)
        key = crypto.load_key((pristine.pki_dir / f"{name}.key").read_bytes())
        assert isinstance(key.curve, ec.SECP256R1)
        assert crypto.key_matches(leaf, key)
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_lifetimes_come_from_the_spec(pristine: ClusterState) -> None:
    assert (cert(pristine, "ca").not_valid_after_utc - NOW).days == 3650
    assert (cert(pristine, "admin").not_valid_after_utc - NOW).days == 365


def eku(certificate: x509.Certificate) -> set[str]:
    return {
        o.dotted_string
        for o in certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    }


def test_identities_and_usages(pristine: ClusterState) -> None:
    server, client = (
        ExtendedKeyUsageOID.SERVER_AUTH.dotted_string,
        ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string,
    )

    def subject(name: str) -> tuple[list[str], list[str]]:
        c = cert(pristine, name)
        cn = [str(a.value) for a in c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        o = [str(a.value) for a in c.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
        return cn, o

    assert subject("agent-client-w1") == (["system:node:w1"], ["system:nodes"])
    assert subject("agent-serving-cp2") == (["system:node:cp2"], ["system:nodes"])
    assert subject("scheduler") == (["system:kube-scheduler"], [])
    assert subject("controller-manager") == (["system:kube-controller-manager"], [])
    assert subject("proxy") == (["system:kube-proxy"], [])
    assert subject("ingress") == (["system:berth-ingress"], [])
    assert subject("admin") == (["berth-admin"], ["system:masters"])
    assert eku(cert(pristine, "apiserver")) == {server}
    assert eku(cert(pristine, "agent-serving-w1")) == {server}
    assert eku(cert(pristine, "etcd-peer-cp1")) == {server, client}
    for name in (
        "admin",
        "scheduler",
        "agent-client-w1",
        "apiserver-etcd-client",
        "apiserver-agent-client",
    ):
        assert eku(cert(pristine, name)) == {client}, name


def sans(certificate: x509.Certificate) -> set[str]:
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {f"DNS:{d}" for d in san.get_values_for_type(x509.DNSName)} | {
        f"IP:{i}" for i in san.get_values_for_type(x509.IPAddress)
    }


def test_apiserver_sans_cover_every_address_a_client_uses(pristine: ClusterState) -> None:
    assert sans(cert(pristine, "apiserver")) == {
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
        "DNS:localhost",
        "DNS:api.ha.example",
        "DNS:cp1",
        "DNS:cp2",
        "DNS:cp3",
        "IP:127.0.0.1",
        "IP:10.96.0.1",
        "IP:10.231.1.11",
        "IP:10.231.1.12",
        "IP:10.231.1.13",
        "IP:10.231.1.100",
    }
    assert sans(cert(pristine, "etcd-server-cp2")) == {
        "DNS:cp2",
        "DNS:localhost",
        "IP:10.231.1.12",
        "IP:127.0.0.1",
        "IP:::1",
    }
    assert sans(cert(pristine, "agent-serving-w1")) == {"DNS:w1", "IP:10.231.1.21"}


def test_openssl_verifies_every_chain(pristine: ClusterState) -> None:
    pki_dir = pristine.pki_dir
    out = openssl(
        "verify",
        "-CAfile",
        str(pki_dir / "ca.crt"),
        *(str(pki_dir / f"{n}.crt") for n in CLUSTER_CA_LEAVES),
    )
    assert out.count(": OK") == len(CLUSTER_CA_LEAVES)
    out = openssl(
        "verify",
        "-CAfile",
        str(pki_dir / "etcd-ca.crt"),
        *(str(pki_dir / f"{n}.crt") for n in ETCD_CA_LEAVES),
    )
    assert out.count(": OK") == len(ETCD_CA_LEAVES)
    openssl(
        "verify",
        "-purpose",
        "sslserver",
        "-CAfile",
        str(pki_dir / "ca.crt"),
        str(pki_dir / "apiserver.crt"),
    )
    openssl(
        "verify",
        "-purpose",
        "sslclient",
        "-CAfile",
        str(pki_dir / "ca.crt"),
        str(pki_dir / "admin.crt"),
    )
    # a leaf of the other CA must not verify: the two trees are separate
    wrong = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(pki_dir / "ca.crt"),
            str(pki_dir / "etcd-peer-cp1.crt"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert wrong.returncode != 0


def test_openssl_reads_the_apiserver_certificate(pristine: ClusterState) -> None:
    text = openssl("x509", "-in", str(pristine.pki_dir / "apiserver.crt"), "-text", "-noout")
    assert "ASN1 OID: prime256v1" in text
    assert "Signature Algorithm: ecdsa-with-SHA256" in text
    assert "CA:FALSE" in text
    assert "TLS Web Server Authentication" in text
    assert "DNS:kubernetes.default.svc.cluster.local" in text
    assert "IP Address:10.96.0.1" in text
    assert "IP Address:10.231.1.100" in text
    admin = openssl(
        "x509", "-in", str(pristine.pki_dir / "admin.crt"), "-noout", "-subject", "-issuer"
    )
    assert "subject=O = system:masters, CN = berth-admin" in admin
    assert "issuer=CN = berth-ca" in admin


def test_service_account_key_pair_matches(pristine: ClusterState) -> None:
    derived = openssl("ec", "-in", str(pristine.pki_dir / "sa.key"), "-pubout")
    assert derived == (pristine.pki_dir / "sa.pub").read_text()


def test_encryption_key_is_32_random_bytes(pristine: ClusterState) -> None:
    raw = base64.b64decode(
        (pristine.secrets_dir / "encryption-key").read_text().strip(), validate=True
    )
    assert len(raw) == 32
    assert len(set(raw)) > 8


def kubectl(config: Path, *args: str) -> str:
    done = subprocess.run(
        ["/usr/bin/kubectl", "--kubeconfig", str(config), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_admin_kubeconfig_is_accepted_by_kubectl(pristine: ClusterState) -> None:
    config = pristine.kubeconfig_dir / "admin.conf"
    assert kubectl(config, "config", "current-context").strip() == "berth-admin@ha"
    view = yaml.safe_load(kubectl(config, "config", "view", "--raw"))
    cluster = view["clusters"][0]["cluster"]
    assert cluster["server"] == "https://api.ha.example:6443"
    assert (
        base64.b64decode(cluster["certificate-authority-data"])
        == (pristine.pki_dir / "ca.crt").read_bytes()
    )
    user = view["users"][0]["user"]
    assert (
        base64.b64decode(user["client-certificate-data"])
        == (pristine.pki_dir / "admin.crt").read_bytes()
    )
    assert (
        base64.b64decode(user["client-key-data"]) == (pristine.pki_dir / "admin.key").read_bytes()
    )


def test_component_and_node_kubeconfigs(pristine: ClusterState) -> None:
    scheduler = yaml.safe_load(
        kubectl(pristine.kubeconfig_dir / "scheduler.conf", "config", "view", "--raw")
    )
    assert scheduler["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert scheduler["current-context"] == "system:kube-scheduler@ha"
    node = yaml.safe_load(
        kubectl(pristine.kubeconfig_dir / "nodes" / "w1.conf", "config", "view", "--raw")
    )
    assert node["clusters"][0]["cluster"]["server"] == "https://api.ha.example:6443"
    pem = base64.b64decode(node["users"][0]["user"]["client-certificate-data"])
    assert pem == (pristine.pki_dir / "agent-client-w1.crt").read_bytes()


def test_official_python_client_loads_the_admin_kubeconfig(pristine: ClusterState) -> None:
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(pristine.kubeconfig_dir / "admin.conf"), client_configuration=configuration
    )
    assert configuration.host == "https://api.ha.example:6443"
    cert_file = configuration.cert_file
    assert cert_file is not None
    assert Path(cert_file).read_bytes() == (pristine.pki_dir / "admin.crt").read_bytes()
