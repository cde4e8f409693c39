"""What the etcd phase reads from a host: the cluster's member list, as etcdctl there sees it."""

from __future__ import annotations

import json
from dataclasses import dataclass

from provisioner.facts._sh import words
from provisioner.facts.base import Fact
from provisioner.phases.etcd import layout

ETCDCTL_MISSING = 3
NO_MEMBER_ANSWERS = 4


def etcdctl(endpoints: tuple[str, ...]) -> tuple[str, ...]:
    """etcdctl's argv prefix with the host's client credentials and short timeouts."""
    return (
        "etcdctl", f"--endpoints={','.join(endpoints)}", f"--cacert={layout.CA}",
        f"--cert={layout.CLIENT_CERT}", f"--key={layout.CLIENT_KEY}", "--dial-timeout=2s",
        "--command-timeout=5s",
    )  # fmt: skip


@dataclass(frozen=True)
class Member:
    """One member as ``etcdctl member list`` reports it (``name`` is empty until it starts)."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]

    @property
    def hex_id(self) -> str:
        return f"{self.id:x}"


@dataclass(frozen=True)
class EtcdMembers(Fact[tuple[Member, ...] | None]):
    """The member list from the first of ``endpoints`` that answers (``None``: etcdctl is not
    installed yet, or no member answers). Each endpoint is asked on its own, so one that
    hangs costs its dial timeout and no more."""

    endpoints: tuple[str, ...]

    def command(self) -> str:
        asks = " ".join(
            f"out=$({words(etcdctl((endpoint,)))} member list -w json 2>/dev/null) "
            '&& { printf "%s\\n" "$out"; exit 0; };'
            for endpoint in self.endpoints
        )
        return (
            f"command -v etcdctl >/dev/null 2>&1 || exit {ETCDCTL_MISSING}; "
            f"{asks} exit {NO_MEMBER_ANSWERS}"
        )

    def parse(self, output: str, exit_code: int) -> tuple[Member, ...] | None:
        if exit_code in (ETCDCTL_MISSING, NO_MEMBER_ANSWERS):
            return None
        if exit_code != 0:
            raise ValueError(f"etcdctl member list exited {exit_code}")
        document = json.loads(output)
        return tuple(
            Member(
                id=int(item["ID"]),
                name=str(item.get("name", "")),
                peer_urls=tuple(item.get("peerURLs") or ()),
                client_urls=tuple(item.get("clientURLs") or ()),
            )
            for item in document.get("members") or ()
        )
