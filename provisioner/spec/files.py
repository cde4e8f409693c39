"""Files a spec points at on the operator's machine, checked when the spec is loaded and reported
with the other spec problems (FILE:LINE:COL of the field), before any host is contacted: a
registry CA bundle that is missing or holds no certificate; and, for `berth validate` and the
commands that connect to hosts, an SSH identity file that is missing, a directory, unreadable or
not a private key, and a known_hosts file that is not a readable file (or is missing while
hostKeyPolicy is strict, when nothing could ever connect).

The SSH connector meets the same files later; catching them here means a local mistake is one
located line from `berth validate`, not a connection failure per host."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from provisioner.spec.model import ClusterSpec
from provisioner.spec.problems import Path as FieldPath
from provisioner.spec.problems import Problem

_RELATIVE = "relative paths resolve against the spec file's directory; ~ works"


def local_file_problems(spec: ClusterSpec) -> Iterator[Problem]:
    """Files every use of the spec needs (the SSH files: :func:`ssh_file_problems`)."""
    yield from _registry_ca_problems(spec)


def _unreadable(path: Path, what: str) -> str | None:
    """Why ``path`` cannot serve as a ``what`` file; ``None`` if it is a readable file."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return f"{what} {path} does not exist"
    except OSError as error:
        return f"cannot use {what} {path}: {error.strerror}"
    if stat.S_ISDIR(info.st_mode):
        return f"{what} {path} is a directory, not a file"
    if not stat.S_ISREG(info.st_mode):
        return f"{what} {path} is not a regular file"
    if not os.access(path, os.R_OK):
        return f"cannot read {what} {path}: permission denied"
    return None


def _identity_fields(spec: ClusterSpec) -> Iterator[tuple[FieldPath, str]]:
    ssh = spec.spec.ssh
    if ssh.identity_file is not None:
        yield ("spec", "ssh", "identityFile"), ssh.identity_file
    if ssh.jump_host is not None and ssh.jump_host.identity_file is not None:
        yield ("spec", "ssh", "jumpHost", "identityFile"), ssh.jump_host.identity_file
    for index, host in enumerate(spec.hosts):
        if host.ssh.identity_file is not None:
            yield ("spec", "hosts", index, "ssh", "identityFile"), host.ssh.identity_file


_OPENSSH_BEGIN = b"-----BEGIN OPENSSH PRIVATE KEY-----"
_OPENSSH_END = b"-----END OPENSSH PRIVATE KEY-----"
_OPENSSH_MAGIC = b"openssh-key-v1\0"


def _plain_openssh_key(data: bytes) -> bool:
    """True for an unencrypted private key in OpenSSH's format (what ``ssh-keygen`` writes: its
    cipher and KDF are ``none``), told without paramiko, which a run talking to the connection
    multiplexer would otherwise import for this alone; anything else is left to paramiko."""
    text = data.strip()
    if not (text.startswith(_OPENSSH_BEGIN) and text.endswith(_OPENSSH_END)):
        return False
    body = b"".join(text[len(_OPENSSH_BEGIN) : -len(_OPENSSH_END)].split())
    try:
        blob = base64.b64decode(body, validate=True)
    except ValueError:
        return False
    if not blob.startswith(_OPENSSH_MAGIC):
        return False
    pos, names = len(_OPENSSH_MAGIC), []
    for _ in range(2):  # ciphername, kdfname: SSH strings (uint32 length, bytes)
        size = int.from_bytes(blob[pos : pos + 4], "big")
        names.append(blob[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return names == [b"none", b"none"] and pos + 4 <= len(blob)


def _identity_problem(path: Path) -> tuple[str, str] | None:
    """What is wrong with the private key at ``path`` and the hint, or ``None``."""
    hint = f"give the private key (not the .pub file), unencrypted; {_RELATIVE}"
    problem = _unreadable(path, "identity file")
    if problem is not None:
        return problem, hint
    if _plain_openssh_key(path.read_bytes()):
        return None
    from provisioner.sshlib import paramiko  # noqa: PLC0415 - for the other formats only

    try:
        paramiko.PKey.from_path(str(path))
    except (paramiko.PasswordRequiredException, TypeError):  # TypeError: from cryptography
        return f"identity file {path} is encrypted; berth cannot ask for its passphrase", hint
    except (paramiko.SSHException, ValueError, OSError):
        if path.read_bytes()[:4] in (b"ssh-", b"ecds"):
            return f"identity file {path} holds a public key, not the private key", hint
        return f"identity file {path} is not an OpenSSH or PEM private key", hint
    return None


def ssh_file_problems(spec: ClusterSpec) -> Iterator[Problem]:
    """The SSH identity and known_hosts files the spec names, each checked where it is named."""
    for where, value in _identity_fields(spec):
        path = spec.resolve_path(value)
        assert path is not None
        found = _identity_problem(path)
        if found is not None:
            yield Problem(where, found[0], value, hint=found[1])
    ssh = spec.spec.ssh
    known = spec.known_hosts_file
    if known is None or ssh.known_hosts_file is None:
        return
    where = ("spec", "ssh", "knownHostsFile")
    problem = _unreadable(known, "known_hosts file")
    if problem is None:
        return
    if not known.exists() and not known.is_symlink():
        if ssh.host_key_policy == "accept-new":
            return  # created when the first host key is pinned
        problem += " and hostKeyPolicy is strict: no host key is pinned, every connection fails"
        hint = (
            "create it with the hosts' keys (ssh-keyscan, then compare the fingerprints), "
            f"or set hostKeyPolicy: accept-new to pin them on first contact; {_RELATIVE}"
        )
    else:
        hint = f"give an OpenSSH known_hosts file; {_RELATIVE}"
    yield Problem(where, problem, ssh.known_hosts_file, hint=hint)


def _registry_ca_problems(spec: ClusterSpec) -> Iterator[Problem]:
    for index, registry in enumerate(spec.spec.registries):
        path = spec.resolve_path(registry.ca_file)
        if path is None:
            continue
        where = ("spec", "registries", index, "caFile")
        try:
            data = path.read_bytes()
        except OSError as error:
            yield Problem(
                where,
                f"cannot read the CA bundle {path}: {error.strerror}",
                registry.ca_file,
                hint="relative paths resolve against the spec file's directory",
            )
            continue
        from cryptography import x509  # noqa: PLC0415 - a tenth of `berth apply`'s start

        try:
            certificates = x509.load_pem_x509_certificates(data)
        except ValueError:
            certificates = []
        if not certificates:
            yield Problem(
                where,
                f"{path} holds no PEM certificate",
                registry.ca_file,
                hint="give the CA certificate(s) that signed the registry's certificate, PEM",
            )
