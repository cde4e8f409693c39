"""Real TLS handshakes with the generated certificates, in memory (no sockets).

Python's ssl module (OpenSSL) checks the chain, the server name against the SANs and the key
usages exactly as a client dialing the cluster would; the berth client reads the kubeconfig.
"""

from __future__ import annotations

import ssl

import pytest

from berth.client.kubeconfig import client_ssl_context, load_kubeconfig, server_ssl_context
from provisioner.state import ClusterState


def handshake(
    client: ssl.SSLContext, server: ssl.SSLContext, server_name: str
) -> dict[str, object]:
    """Run a TLS handshake between two contexts through memory buffers; returns the client
    certificate as the server saw it."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_end = client.wrap_bio(to_client, to_server, server_hostname=server_name)
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_end = server.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(20):
        finished = 0
        for end in (client_end, server_end):
            try:
                end.do_handshake()
                finished += 1
            except ssl.SSLWantReadError:
                pass
        server_in.write(to_server.read())
        to_client.write(server_out.read())
        if finished == 2:
            peer = server_end.getpeercert()
            assert peer is not None
            return dict(peer)
    raise AssertionError("handshake did not finish")


def files(state: ClusterState, name: str) -> tuple[bytes, bytes]:
    return (state.pki_dir / f"{name}.crt").read_bytes(), (
        state.pki_dir / f"{name}.key"
    ).read_bytes()


def apiserver(state: ClusterState) -> ssl.SSLContext:
    cert, key = files(state, "apiserver")
    return server_ssl_context(
        ca_pem=(state.pki_dir / "ca.crt").read_bytes(), cert_pem=cert, key_pem=key
    )


def subject(peer: dict[str, object]) -> set[tuple[str, str]]:
    rdns = peer["subject"]
    assert isinstance(rdns, tuple)
    return {pair for rdn in rdns for pair in rdn}


@pytest.mark.parametrize(
    "name",
    [
        "10.231.1.11",
        "10.231.1.13",
        "api.ha.example",
        "10.231.1.100",
        "127.0.0.1",
        "localhost",
        "10.96.0.1",
        "kubernetes.default.svc.cluster.local",
        "cp2",
    ],
)
def test_admin_kubeconfig_reaches_the_apiserver_by_every_client_address(
    pristine: ClusterState, name: str
) -> None:
    credentials = load_kubeconfig(pristine.kubeconfig_dir / "admin.conf")
    assert credentials.server == "https://api.ha.example:6443"
    peer = handshake(credentials.ssl_context(), apiserver(pristine), name)
    assert subject(peer) == {("organizationName", "system:masters"), ("commonName", "berth-admin")}


@pytest.mark.parametrize("name", ["10.231.1.21", "w1", "evil.example"])
def test_names_outside_the_sans_are_refused(pristine: ClusterState, name: str) -> None:
    credentials = load_kubeconfig(pristine.kubeconfig_dir / "admin.conf")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(credentials.ssl_context(), apiserver(pristine), name)


def test_node_agent_and_apiserver_authenticate_each_other(pristine: ClusterState) -> None:
    ca = (pristine.pki_dir / "ca.crt").read_bytes()
    cert, key = files(pristine, "agent-serving-w1")
    agent = server_ssl_context(ca_pem=ca, cert_pem=cert, key_pem=key)
    cert, key = files(pristine, "apiserver-agent-client")
    caller = client_ssl_context(ca_pem=ca, cert_pem=cert, key_pem=key)
    peer = handshake(caller, agent, "10.231.1.21")
    assert ("commonName", "berth-apiserver-agent-client") in subject(peer)
    node = load_kubeconfig(pristine.kubeconfig_dir / "nodes" / "w1.conf")
    peer = handshake(node.ssl_context(), apiserver(pristine), "api.ha.example")
    assert subject(peer) == {("organizationName", "system:nodes"), ("commonName", "system:node:w1")}


def test_etcd_members_trust_only_the_etcd_ca(pristine: ClusterState) -> None:
    etcd_ca = (pristine.pki_dir / "etcd-ca.crt").read_bytes()
    cert, key = files(pristine, "etcd-server-cp1")
    member = server_ssl_context(ca_pem=etcd_ca, cert_pem=cert, key_pem=key)
    cert, key = files(pristine, "apiserver-etcd-client")
    peer = handshake(
        client_ssl_context(ca_pem=etcd_ca, cert_pem=cert, key_pem=key), member, "10.231.1.11"
    )
    assert ("commonName", "berth-apiserver-etcd-client") in subject(peer)
    cert, key = files(pristine, "etcd-peer-cp2")
    handshake(client_ssl_context(ca_pem=etcd_ca, cert_pem=cert, key_pem=key), member, "cp1")
    # a cluster-CA client (the admin) is not an etcd client
    cert, key = files(pristine, "admin")
    with pytest.raises(ssl.SSLError):
        handshake(client_ssl_context(ca_pem=etcd_ca, cert_pem=cert, key_pem=key), member, "cp1")
