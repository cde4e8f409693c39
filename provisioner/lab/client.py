"""Logging in to lab hosts with paramiko, host keys checked strictly against the lab's pins."""

from __future__ import annotations

from typing import TYPE_CHECKING

from provisioner.sshlib import paramiko

if TYPE_CHECKING:
    from provisioner.lab.lab import Lab


def connect(lab: Lab, host: str, *, timeout: float = 10.0) -> paramiko.SSHClient:
    """An SSH session as root on ``host``: lab key, and an unknown or changed host key is refused
    (``RejectPolicy`` over the lab's ``known_hosts``). The caller closes it."""
    target = lab.host(host)
    client = paramiko.SSHClient()
    client.load_host_keys(str(lab.known_hosts_path))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            target.address,
            port=22,
            username="root",
            pkey=paramiko.Ed25519Key.from_private_key_file(str(lab.key_path)),
            look_for_keys=False,
            allow_agent=False,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
        )
    except BaseException:
        client.close()  # no half-open transport thread left behind
        raise
    return client


def run(lab: Lab, host: str, command: str, *, timeout: float = 30.0) -> tuple[int, str, str]:
    """Run ``command`` on ``host`` over a fresh session; return (exit status, stdout, stderr)."""
    with connect(lab, host, timeout=timeout) as client:
        _stdin, stdout, stderr = client.exec_command(command, timeout=timeout)
        out, err = stdout.read().decode(), stderr.read().decode()
        return stdout.channel.recv_exit_status(), out, err
