"""The cluster API helper against a real API server (in-process, generated PKI)."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from pathlib import Path

from berth.api.resources import NODES
from provisioner.clusterapi import admin_client, get_node, node_not_ready, readyz
from tests.harness.apiserver import running_server


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_readyz_nodes_and_an_api_server_that_is_not_there(tmp_path: Path) -> None:
    with running_server(tmp_path) as srv:
        kubeconfig = srv.kubeconfig("admin", groups=["system:masters"])
        answer = readyz(kubeconfig, "127.0.0.1", srv.server.port)
        assert answer.ok
        assert answer.status == 200

        assert get_node(kubeconfig, "n1", user_agent="test") is None  # no such Node

        async def create() -> None:
            client = admin_client(kubeconfig, user_agent="test")
            try:
                await client.create(NODES, {"metadata": {"name": "n1"}})
            finally:
                await client.close()

        asyncio.run(create())
        node = get_node(kubeconfig, "n1", user_agent="test")
        assert node is not None
        assert node["metadata"]["name"] == "n1"
        # registered, but no agent ever reported: not Ready
        verdict = node_not_ready(node, since=dt.datetime.now(dt.UTC))
        assert verdict is not None
        assert verdict.reason == "no-condition"

        gone = readyz(kubeconfig, "127.0.0.1", _closed_port(), timeout=2)
        assert gone.status is None
        assert not gone.ok
        assert "Connection" in gone.body
