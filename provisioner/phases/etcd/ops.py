"""The etcd phase's operations: membership changes, the one-shot bootstrap file, credentials
owned by the etcd user, and a health wait after a member (re)started.

Each reads the member list (:class:`~provisioner.phases.etcd.facts.EtcdMembers`) just before it
runs — the engine re-gathers an operation's facts at apply time — so a join sees the members
the previous joins added.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.commands import Command, Shell, Upload
from provisioner.errors import OperationError
from provisioner.facts.base import Fact
from provisioner.facts.files import PathInfo
from provisioner.operations.base import OpContext, Operation
from provisioner.operations.files import File
from provisioner.phases.etcd import layout
from provisioner.phases.etcd.facts import EtcdMembers, Member, etcdctl
from provisioner.templating import render

HEALTH_WAIT_SECONDS = 60
MEMBER_ADD_SECONDS = 30
TRANSIENT = (
    "unhealthy cluster",  # a member joined less than 5 s ago: nothing was changed
    "request timed out",  # the leader changed under the request: it may or may not apply
    "leader changed",
    "no leader",
    "context deadline exceeded",
)
"""etcd answers after which a membership change is tried again."""


def retrying(
    argv: tuple[str, ...], *, retry_on: tuple[str, ...], done_on: tuple[str, ...] = (),
    within: int,
) -> Shell:  # fmt: skip
    """``argv`` run until it succeeds: again (once a second, up to ``within`` s) while it fails
    with one of ``retry_on`` in its output, and counted as done when the output has one of
    ``done_on`` (what a retry answers when the first, timed-out attempt did apply). An empty
    string in ``retry_on`` retries every failure."""
    command = " ".join(shlex.quote(a) for a in argv)

    def pattern(words: tuple[str, ...]) -> str:
        return "|".join(f"*{shlex.quote(w)}*" if w else "*" for w in words)

    done = f'case "$out" in {pattern(done_on)}) exit 0;; esac; ' if done_on else ""
    script = (
        f"i=0; until out=$({command} 2>&1); do {done}"
        f'case "$out" in {pattern(retry_on)}) ;; *) echo "$out" >&2; exit 1;; esac; '
        f'i=$((i+1)); [ "$i" -ge {within} ] && {{ echo "$out" >&2; exit 1; }}; sleep 1; done'
    )
    return Shell("sh", "-c", script)


@dataclass(frozen=True)
class Peer:
    """A control-plane host as an etcd member: its name and peer URL."""

    name: str
    peer_url: str


@dataclass(frozen=True)
class OwnedStateFile(Operation):
    """A credential from the operator's cluster state, owned by ``owner`` on the host (read when
    the operation runs; an empty placeholder while planning a cluster whose PKI is not made)."""

    path: str
    source: Path
    mode: int
    owner: str

    @property
    def id(self) -> str:
        return f"file:{self.path}"

    def describe(self) -> str:
        return f"file {self.path} (from the cluster state, {self.owner})"

    def facts(self) -> tuple[Fact[Any], ...]:
        return (PathInfo((self.path,)),)

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        try:
            content = self.source.read_bytes()
        except FileNotFoundError:
            yield Upload(b"", self.path, self.mode, self.owner, self.owner)
            return
        file = File(self.path, content, mode=self.mode, owner=self.owner, group=self.owner)
        changes = list(file.commands(ctx))
        yield from changes
        if not changes:
            ctx.noop(f"file {self.path} is up to date")


def _is(member: Member, peer: Peer) -> bool:
    return member.name == peer.name or peer.peer_url in member.peer_urls


@dataclass(frozen=True)
class MemberJoined(Operation):
    """``peer`` is a member of the cluster (``etcdctl member add`` through the other members
    when it is not). The first control-plane host (``bootstrap``) adds nothing when no member
    answers: it starts a new cluster. A host whose data directory is initialised is a member
    already, whatever the others say."""

    peer: Peer
    endpoints: tuple[str, ...]
    """Client URLs of every control-plane host (to read the member list)."""
    others: tuple[str, ...]
    """Client URLs of the other control-plane hosts (to add this one through)."""
    bootstrap: bool
    created: bool = False
    """The cluster state records that this cluster's etcd exists already."""

    @property
    def id(self) -> str:
        return f"etcd-member:{self.peer.name}"

    def describe(self) -> str:
        return f"etcd member {self.peer.name} ({self.peer.peer_url})"

    def facts(self) -> tuple[Fact[Any], ...]:
        return (EtcdMembers(self.endpoints), PathInfo((layout.MEMBER_DIR,)))

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        if ctx.fact(PathInfo((layout.MEMBER_DIR,)))[layout.MEMBER_DIR] is not None:
            ctx.noop(f"{self.peer.name} has member data in {layout.DATA}")
            return
        members = ctx.fact(EtcdMembers(self.endpoints))
        if members is None and self.created:
            raise OperationError(
                f"{self.peer.name} has no etcd data and no member of this cluster's etcd "
                f"answers ({', '.join(self.endpoints)}), though the cluster state records that "
                "it was created: berth will not start a second etcd cluster beside it",
                hint="bring the other control-plane hosts back (then apply again), or restore "
                "a snapshot: berth snapshot restore -i SPEC FILE",
            )
        if members is None and self.bootstrap:
            ctx.noop(f"no etcd member answers: {self.peer.name} starts a new cluster")
            return
        if members is not None and any(_is(m, self.peer) for m in members):
            ctx.noop(f"{self.peer.name} is a member already (not started yet)")
            return
        if not self.others:
            ctx.noop(f"{self.peer.name} is the only control-plane host")
            return
        # etcd refuses to add a member until every member has been connected for 5 s
        # ("unhealthy cluster", nothing changed): right after the previous join, wait for that
        yield retrying(
            (*etcdctl(self.others), "member", "add", self.peer.name,
             f"--peer-urls={self.peer.peer_url}"),
            retry_on=TRANSIENT,
            done_on=("Peer URLs already exists",),
            within=MEMBER_ADD_SECONDS,
        )  # fmt: skip


@dataclass(frozen=True)
class MembersRemoved(Operation):
    """Members that are no control-plane host of the spec any more are removed (before the
    hosts are destroyed), one ``etcdctl member remove`` each. etcd itself refuses a removal
    that would leave too few started members for a quorum (``--strict-reconfig-check``)."""

    keep: tuple[Peer, ...]
    endpoints: tuple[str, ...]

    @property
    def id(self) -> str:
        return "etcd-members-removed"

    def describe(self) -> str:
        return "etcd members of hosts that left the spec removed"

    def facts(self) -> tuple[Fact[Any], ...]:
        return (EtcdMembers(self.endpoints),)

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        members = ctx.fact(EtcdMembers(self.endpoints))
        if members is None:
            ctx.noop("no etcd member answers yet (a new cluster)")
            return
        stale = [m for m in members if not any(_is(m, peer) for peer in self.keep)]
        if not stale:
            ctx.noop(f"every one of the {len(members)} member(s) is a control-plane host")
            return
        for member in stale:
            yield retrying(
                (*etcdctl(self.endpoints), "member", "remove", member.hex_id),
                retry_on=TRANSIENT,
                done_on=("member not found",),
                within=MEMBER_ADD_SECONDS,
            )


def initial_cluster(
    peer: Peer, members: tuple[Member, ...] | None, *, bootstrap: bool, earlier: tuple[Peer, ...]
) -> tuple[str, list[Peer]]:
    """``(state, peers)`` for ``ETCD_INITIAL_CLUSTER*``: the member list as etcd has it (this
    host included), or — while planning a cluster that does not answer yet — the control-plane
    hosts up to this one, which is what the joins before it will have made."""
    if members is None:
        if bootstrap:
            return "new", [peer]
        return "existing", [*earlier, peer]
    peers = [
        peer if _is(m, peer) else Peer(m.name or m.hex_id, m.peer_urls[0])
        for m in members
        if m.peer_urls
    ]
    if peer not in peers:
        peers.append(peer)
    order = {p.name: i for i, p in enumerate((*earlier, peer))}
    peers.sort(key=lambda p: (order.get(p.name, len(order)), p.name))
    return "existing", peers


@dataclass(frozen=True)
class BootstrapFile(Operation):
    """``bootstrap.env``, written before the member's first start (left alone afterwards:
    etcd ignores it once the data directory is initialised)."""

    peer: Peer
    endpoints: tuple[str, ...]
    bootstrap: bool
    earlier: tuple[Peer, ...]
    """Control-plane hosts before this one in the spec."""
    token: str

    @property
    def id(self) -> str:
        return f"file:{layout.BOOTSTRAP_FILE}"

    def describe(self) -> str:
        return f"file {layout.BOOTSTRAP_FILE} (etcd initial cluster)"

    def facts(self) -> tuple[Fact[Any], ...]:
        return (
            EtcdMembers(self.endpoints),
            PathInfo((layout.MEMBER_DIR,)),
            PathInfo((layout.BOOTSTRAP_FILE,)),
        )

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        initialised = ctx.fact(PathInfo((layout.MEMBER_DIR,)))[layout.MEMBER_DIR] is not None
        present = ctx.fact(PathInfo((layout.BOOTSTRAP_FILE,)))[layout.BOOTSTRAP_FILE] is not None
        if initialised and present:
            ctx.noop("the member's data directory is initialised (etcd ignores this file now)")
            return
        state, peers = initial_cluster(
            self.peer,
            ctx.fact(EtcdMembers(self.endpoints)),
            bootstrap=self.bootstrap,
            earlier=self.earlier,
        )
        content = render(
            "etcd/bootstrap.env.j2",
            {"state": state, "token": self.token,
             "cluster": ",".join(f"{p.name}={p.peer_url}" for p in peers)},
        ).encode()  # fmt: skip
        yield from File(layout.BOOTSTRAP_FILE, content, mode=0o644).commands(ctx)


@dataclass(frozen=True)
class HealthyAfterStart(Operation):
    """After this run started or restarted the member: wait until it serves a quorum read
    (``etcdctl endpoint health``), so the next member joins or restarts only then."""

    name: str
    within: int = HEALTH_WAIT_SECONDS

    @property
    def id(self) -> str:
        return f"etcd-healthy:{self.name}"

    def describe(self) -> str:
        return f"etcd member {self.name} healthy"

    def facts(self) -> tuple[Fact[Any], ...]:
        return ()

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        if f"service:{layout.UNIT}" not in ctx.run.changed:
            ctx.noop(f"{layout.UNIT} was not (re)started by this run")
            return
        probe = " ".join(
            shlex.quote(a) for a in (*etcdctl((layout.client_url("127.0.0.1"),)), "endpoint",
                                     "health")
        )  # fmt: skip
        script = (
            f"i=0; until {probe} >/dev/null 2>&1; do i=$((i+1)); "
            f'[ "$i" -ge {self.within} ] && {{ echo "etcd member {self.name} not healthy '
            f'after {self.within}s: see journalctl -u {layout.UNIT}" >&2; exit 1; }}; '
            "sleep 1; done"
        )
        yield Shell("sh", "-c", script)
