"""A local multi-host lab of systemd-nspawn hosts for berth's tests and demos.

Public API::

    from provisioner.lab import Lab, LabHost, HostStatus, connect, run, ensure_rootfs

    lab = Lab("mytest")             # a name: DNS-1123 label, <= 32 characters
    lab.up(3)                       # n1..n3; lab.spec_path, lab.key_path, lab.known_hosts_path
    lab.hosts                       # [LabHost(name="n1", address="10.231.x.11", ...), ...]
    run(lab, "n1", "systemctl is-system-running")   # paramiko, strict host-key checking
    lab.stop/start/kill/freeze/thaw/cut/heal("n2"); lab.partition("n1", "n2"); lab.unpartition(...)
    lab.down()
"""

from provisioner.lab.client import connect, run
from provisioner.lab.lab import HostStatus, Lab, LabHost, labs_root, list_labs
from provisioner.lab.rootfs import RootfsResult, ensure_rootfs

__all__ = [
    "HostStatus",
    "Lab",
    "LabHost",
    "RootfsResult",
    "connect",
    "ensure_rootfs",
    "labs_root",
    "list_labs",
    "run",
]
