"""Where an etcd member lives on a control-plane host, and its URLs."""

from __future__ import annotations

from provisioner.pki import REMOTE_PKI
from provisioner.spec.model import https_url

UNIT = "berth-etcd.service"
DEBIAN_UNIT = "etcd.service"
"""Debian's own unit: masked, so installing the package never starts an unconfigured etcd."""
PACKAGES = ("etcd-server", "etcd-client")
USER = "etcd"
"""Created by the ``etcd-server`` package; the member runs as this user."""

ETC = "/etc/berth/etcd"
PKI = f"{ETC}/pki"
ENV_FILE = f"{ETC}/etcd.env"
BOOTSTRAP_FILE = f"{ETC}/bootstrap.env"
"""``ETCD_INITIAL_CLUSTER*``: written once, before the member's first start (etcd ignores it
once the data directory is initialised)."""
DATA = "/var/lib/berth/etcd"
MEMBER_DIR = f"{DATA}/member"
"""Present once the member has started at least once."""

CA = f"{PKI}/ca.crt"
SERVER_CERT, SERVER_KEY = f"{PKI}/server.crt", f"{PKI}/server.key"
PEER_CERT, PEER_KEY = f"{PKI}/peer.crt", f"{PKI}/peer.key"
CLIENT_CERT, CLIENT_KEY = f"{PKI}/client.crt", f"{PKI}/client.key"
"""etcdctl's identity on the host (the API server's etcd client certificate, root only)."""

CLIENT_PORT = 2379
PEER_PORT = 2380
MAX_MEMBERS = 7
"""etcd's own advice: more members only slow writes down."""

PATHS = (ETC, DATA, f"/etc/systemd/system/{UNIT}")
"""Everything the etcd phase creates (``berth destroy`` removes these and stops :data:`UNIT`)."""

# where the pki phase puts the files each member needs (provisioner.pki.files_for_host)
SOURCES = {
    CA: (f"{REMOTE_PKI}/etcd-ca.crt", 0o644, USER),
    SERVER_CERT: (f"{REMOTE_PKI}/etcd-server.crt", 0o644, USER),
    SERVER_KEY: (f"{REMOTE_PKI}/etcd-server.key", 0o600, USER),
    PEER_CERT: (f"{REMOTE_PKI}/etcd-peer.crt", 0o644, USER),
    PEER_KEY: (f"{REMOTE_PKI}/etcd-peer.key", 0o600, USER),
    CLIENT_CERT: (f"{REMOTE_PKI}/apiserver-etcd-client.crt", 0o644, "root"),
    CLIENT_KEY: (f"{REMOTE_PKI}/apiserver-etcd-client.key", 0o600, "root"),
}
"""Member path -> (the pki phase's remote path naming the source, mode, owner)."""


def client_url(address: str) -> str:
    return https_url(address, CLIENT_PORT)


def peer_url(address: str) -> str:
    return https_url(address, PEER_PORT)
