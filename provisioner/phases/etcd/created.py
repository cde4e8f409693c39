"""The cluster state remembers that this cluster's etcd was created.

Only the first apply may start a *new* etcd cluster. Afterwards, a first control-plane host
that finds no member answering (its data lost, the others down or cut off) must not bootstrap a
second cluster beside the real one: the join then fails, saying so, instead. ``berth destroy``
(without ``--keep-data``) forgets the record together with the members' data.
"""

from __future__ import annotations

import datetime as dt
import json

from provisioner.state import ClusterState

FILE = "etcd-created.json"


def was_created(state: ClusterState) -> bool:
    return (state.root / FILE).is_file()


def record_created(state: ClusterState, *, first_member: str) -> None:
    doc = {"createdAt": dt.datetime.now(dt.UTC).isoformat(), "firstMember": first_member}
    state.write_public(state.root / FILE, json.dumps(doc).encode() + b"\n")


def forget_created(state: ClusterState) -> None:
    (state.root / FILE).unlink(missing_ok=True)
