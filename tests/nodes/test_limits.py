"""What one node may hold at once (issue 15): commands waiting or running, polls waiting.

The ``Nodes`` service in this process, on a real SQLite store and the in-memory
backplane: the limits are the service's, whatever face asks.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.support.stores import sqlite_store
from voisnap.backplane import MemoryBackplane
from voisnap.clock import SystemClock
from voisnap.nodes import NodeError, Nodes, NodeSignals
from voisnap.nodes.service import MAX_OPEN_COMMANDS, MAX_WAITING_POLLS
from voisnap.routing.cluster import Cluster
from voisnap.server.auth import TokenAuthority
from voisnap.storage.base import COMMAND_QUEUED, Node, NodeCommand, Owner

ADA = Owner("acme", "ada")
TIMEOUT = 20


class Presence:
    async def online(self, node: Node, at: datetime.datetime) -> None: ...

    async def offline(self, node: Node, at: datetime.datetime) -> None: ...


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[Nodes]:
    async with sqlite_store(tmp_path / "voisnap.db") as store, trio.open_nursery() as nursery:
        cluster = Cluster(MemoryBackplane(), timeout=5)
        nursery.start_soon(cluster.run)
        service = Nodes(
            store, TokenAuthority(b"k" * 32), NodeSignals(cluster), Presence(), SystemClock(), 30
        )
        await nursery.start(service.run)
        yield service
        nursery.cancel_scope.cancel()


async def test_limits_a_node_holds_at_most_so_many_open_commands(nodes: Nodes) -> None:
    node, _ = await nodes.register(ADA, "laptop", ("echo",), 3600)
    now = SystemClock().now()
    store = nodes._store  # the commands go straight in: a thousand dispatches would be slow
    for n in range(MAX_OPEN_COMMANDS):
        await store.add_command(
            NodeCommand(
                f"cmd_{n}",
                node.node_id,
                ADA,
                "echo",
                {},
                COMMAND_QUEUED,
                True,
                60,
                now + datetime.timedelta(seconds=60),
                now,
            )
        )
    with pytest.raises(NodeError) as refused:
        await nodes.dispatch(ADA, node.node_id, "echo", {}, queue=True)
    assert refused.value.status == 429 and "1000 commands" in str(refused.value)


async def test_limits_a_node_has_at_most_so_many_polls_waiting(nodes: Nodes) -> None:
    node, _ = await nodes.register(ADA, "poller", ("echo",), 3600)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for _ in range(MAX_WAITING_POLLS):
                nursery.start_soon(nodes.poll, node.node_id, 30.0)
            while nodes._polls.get(node.node_id, 0) < MAX_WAITING_POLLS:
                await trio.sleep(0.01)
            with pytest.raises(NodeError) as refused:
                await nodes.poll(node.node_id, 30.0)
            nursery.cancel_scope.cancel()
    assert refused.value.status == 429
    assert nodes._polls == {}  # the cancelled polls let go of their places
