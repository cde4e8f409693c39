"""Simulated control-plane hosts sharing one simulated etcd cluster.

Extends the operations' :class:`SimHost` with what the etcd phase needs: the member list fact
(``None`` while no member runs, as when etcdctl finds nobody), ``etcdctl member add/remove``,
starting ``berth-etcd.service`` (the member initialises its data directory and takes its name,
after checking its bootstrap file against the cluster as etcd does), and the health wait.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from provisioner.commands import Raw
from provisioner.facts.base import Fact
from provisioner.phases.etcd import layout
from provisioner.phases.etcd.facts import EtcdMembers, Member
from tests.unit.operations.simhost import Entry, SimHost


@dataclass
class SimCluster:
    members: list[Member] = field(default_factory=list)
    running: set[str] = field(default_factory=set)
    """Names of started members."""
    next_id: int = 0x1000

    def answers(self) -> bool:
        return bool(self.running)

    def add(self, name: str, peer_url: str) -> None:
        assert self.answers(), "member add needs a running member"
        assert all(peer_url not in m.peer_urls for m in self.members), "peer URL already used"
        self.next_id += 1
        self.members.append(Member(self.next_id, "", (peer_url,), ()))

    def remove(self, hex_id: str) -> None:
        before = len(self.members)
        gone = [m for m in self.members if m.hex_id == hex_id]
        self.members = [m for m in self.members if m.hex_id != hex_id]
        assert len(self.members) == before - 1, f"no member {hex_id}"
        self.running -= {m.name for m in gone}


def unwrap_retry(script: str) -> str | None:
    """The command a :func:`provisioner.phases.etcd.ops.retrying` script runs."""
    match = re.match(r"i=0; until out=\$\((.*) 2>&1\); do ", script)
    return match.group(1) if match else None


def _env(content: bytes) -> dict[str, str]:
    return dict(re.findall(r"^(ETCD_\w+)=(.*)$", content.decode(), re.M))


@dataclass
class EtcdHost(SimHost):
    cluster: SimCluster = field(default_factory=SimCluster)
    name: str = ""

    def value(self, fact: Fact[Any]) -> Any:
        if isinstance(fact, EtcdMembers):
            return tuple(self.cluster.members) if self.cluster.answers() else None
        return super().value(fact)

    def _segment(self, argv: list[str | Raw]) -> None:
        words = [a for a in argv if isinstance(a, str)]
        if words[:2] == ["sh", "-c"] and (inner := unwrap_retry(words[2])):
            words = shlex.split(inner)
        match words:
            case ["etcdctl", *_, "member", "add", name, peer]:
                self.log.append(" ".join(words))
                self.cluster.add(name, peer.removeprefix("--peer-urls="))
            case ["etcdctl", *_, "member", "remove", hex_id]:
                self.log.append(" ".join(words))
                self.cluster.remove(hex_id)
            case ["sh", "-c", script] if "endpoint health" in script:
                self.log.append("health wait")
                assert self.name in self.cluster.running, "waiting on a member that never started"
            case ["systemctl", "start" | "restart", layout.UNIT] | [
                "systemctl",
                "enable",
                "--now",
                layout.UNIT,
            ]:
                super()._segment(argv)
                self._start_member()
            case _:
                super()._segment(argv)

    def _start_member(self) -> None:
        """What etcd checks at start-up, then the member runs."""
        if layout.MEMBER_DIR not in self.paths:
            env = _env(self.paths[layout.ENV_FILE].content)
            boot = _env(self.paths[layout.BOOTSTRAP_FILE].content)
            listed = dict(p.split("=", 1) for p in boot["ETCD_INITIAL_CLUSTER"].split(","))
            peer = env["ETCD_INITIAL_ADVERTISE_PEER_URLS"]
            assert listed.get(self.name) == peer, "initial cluster must name this member"
            if boot["ETCD_INITIAL_CLUSTER_STATE"] == "new":
                assert not self.cluster.members, "bootstrapping a second cluster"
                self.cluster.members.append(Member(0x1, self.name, (peer,), ()))
            else:
                expected = sorted(m.peer_urls[0] for m in self.cluster.members)
                assert sorted(listed.values()) == expected, "initial cluster != member list"
                index = next(i for i, m in enumerate(self.cluster.members) if peer in m.peer_urls)
                member = self.cluster.members[index]
                self.cluster.members[index] = Member(member.id, self.name, member.peer_urls, ())
            self.paths[layout.MEMBER_DIR] = Entry("directory", 0o700, "etcd", "etcd")
        self.cluster.running.add(self.name)
