"""Nodes and their commands: the store's half of issue 15 (docs/hubs/node.md).

Every test runs on SQLite and on a real PostgreSQL (``conftest``). What is checked is
what dispatch relies on (``storage.sql_nodes``): a name is the owner's once; a queued
command is claimed by exactly one of several stores (processes), also when they claim at
once; exactly one outcome is recorded; a node comes online and goes offline once each,
whoever notices; what a lost delivery does to queued and unqueued commands.

Times are fixed (``records.at``). No test sleeps.
"""

from __future__ import annotations

import pytest
import trio

from voisnap.storage.base import (
    COMMAND_FAILED,
    COMMAND_QUEUED,
    COMMAND_SENT,
    COMMAND_SUCCEEDED,
    COMMAND_TIMED_OUT,
    OFFLINE,
    ONLINE,
    POLLED,
    Node,
    NodeCommand,
    Presence,
    StoreError,
)
from voisnap.storage.sql import SqlStore

from .backends import Backend
from .records import ADA, BOB, at


def node(n: int, name: str = "laptop", owner=ADA) -> Node:
    return Node(f"nod_{n}", owner, name, ("echo", "read_file"), at(0))


def command(
    n: int, node_id: str = "nod_1", *, queued: bool = False, timeout: float = 30
) -> NodeCommand:
    return NodeCommand(
        command_id=f"cmd_{n}",
        node_id=node_id,
        owner=ADA,
        command="echo",
        params={"n": n},
        status=COMMAND_QUEUED,
        queued=queued,
        timeout_seconds=timeout,
        deadline=at(n + timeout),
        created_at=at(n),
    )


def heard(connection_id: str | None, when: float, transport: str = "websockets") -> Presence:
    return Presence(transport, connection_id, at(when), at(when + 75), uptime=when)


async def test_store_nodes_a_name_is_the_owners_once_until_revoked(store: SqlStore) -> None:
    await store.add_node(node(1))
    await store.add_node(node(2, owner=BOB))  # another user's laptop
    with pytest.raises(StoreError, match="named 'laptop'"):
        await store.add_node(node(3))
    assert await store.revoke_node("nod_1", at(5)) is not None
    await store.add_node(node(4))
    assert [n.node_id for n in await store.list_nodes(ADA)] == ["nod_4"]
    revoked = await store.get_node("nod_1")
    assert revoked is not None and revoked.revoked_at == at(5)


async def test_store_nodes_scopes_and_acknowledged_scopes(store: SqlStore) -> None:
    await store.add_node(node(1))
    changed = await store.set_node_scopes("nod_1", ("echo",))
    assert changed is not None and changed.scopes == ("echo",)
    acked = await store.set_node_scopes("nod_1", ("echo",), acknowledged=True)
    assert acked is not None and acked.acknowledged_scopes == ("echo",)
    await store.revoke_node("nod_1", at(1))
    assert await store.set_node_scopes("nod_1", ("shell",)) is None


async def test_store_nodes_online_once_offline_once(store: SqlStore) -> None:
    await store.add_node(node(1))
    first = await store.node_heard("nod_1", heard("c1", 0))
    again = await store.node_heard("nod_1", heard("c1", 30))
    assert first is not None and first[1] is True and first[0].status == ONLINE
    assert again is not None and again[1] is False and again[0].uptime == 30
    assert await store.node_disconnected("nod_1", "another-connection") is None
    gone = await store.node_disconnected("nod_1", "c1")
    assert gone is not None and gone.status == OFFLINE
    assert await store.node_disconnected("nod_1", "c1") is None


async def test_store_nodes_a_poll_takes_presence_from_a_closing_connection(
    store: SqlStore,
) -> None:
    """A node that moved to polling stays online when its old connection closes."""
    await store.add_node(node(1))
    await store.node_heard("nod_1", heard("c1", 0))
    await store.node_heard("nod_1", heard(None, 10, "polling"))
    assert await store.node_disconnected("nod_1", "c1") is None
    found = await store.get_node("nod_1")
    assert found is not None and found.status == ONLINE and found.transport == "polling"


async def test_store_nodes_lapsed_presence_is_expired_by_one_of_several(
    backend: Backend,
) -> None:
    stores = [await backend.open() for _ in range(3)]
    await stores[0].add_node(node(1))
    await stores[0].node_heard("nod_1", heard("c1", 0))  # online until at(75)
    assert await stores[0].expire_presence(at(60)) == []
    expired: list[list[Node]] = []

    async def sweep(store: SqlStore) -> None:
        expired.append(await store.expire_presence(at(80)))

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            for store in stores:
                nursery.start_soon(sweep, store)
    assert sorted(len(found) for found in expired) == [0, 0, 1]


async def test_store_nodes_a_revoked_node_is_not_heard(store: SqlStore) -> None:
    await store.add_node(node(1))
    await store.node_heard("nod_1", heard("c1", 0))
    revoked = await store.revoke_node("nod_1", at(1))
    assert revoked is not None and revoked[1] is True  # it was online
    assert await store.revoke_node("nod_1", at(2)) is None
    assert await store.node_heard("nod_1", heard("c1", 3)) is None


async def test_store_nodes_a_command_is_claimed_by_exactly_one(backend: Backend) -> None:
    stores = [await backend.open() for _ in range(3)]
    await stores[0].add_node(node(1))
    for n in range(1, 6):
        await stores[0].add_command(command(n))
    claimed: list[str] = []

    async def claim(store: SqlStore, via: str) -> None:
        for found in await store.claim_commands("nod_1", via, at(10), limit=10):
            claimed.append(found.command_id)

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            for index, store in enumerate(stores):
                for attempt in range(2):
                    nursery.start_soon(claim, store, f"c{index}-{attempt}")
    assert sorted(claimed) == [f"cmd_{n}" for n in range(1, 6)]
    sent = await stores[0].get_command("cmd_1")
    assert sent is not None and sent.status == COMMAND_SENT and sent.deliveries == 1


async def test_store_nodes_a_command_past_its_deadline_is_not_delivered(
    store: SqlStore,
) -> None:
    await store.add_node(node(1))
    await store.add_command(command(1, timeout=5))  # deadline at(6)
    assert await store.claim_commands("nod_1", "c1", at(7), limit=10) == []
    expired = await store.expire_commands(at(7))
    assert [c.status for c in expired] == [COMMAND_TIMED_OUT]
    assert await store.expire_commands(at(8)) == []


async def test_store_nodes_exactly_one_outcome_is_recorded(store: SqlStore) -> None:
    await store.add_node(node(1))
    await store.add_node(node(2, "desktop"))
    await store.add_command(command(1))
    await store.claim_commands("nod_1", "c1", at(2), limit=10)
    assert await store.finish_command("cmd_1", "nod_2", COMMAND_SUCCEEDED, at(3)) is None
    done = await store.finish_command("cmd_1", "nod_1", COMMAND_SUCCEEDED, at(3), result={"a": 1})
    assert done is not None and done.result == {"a": 1} and done.completed_at == at(3)
    late = await store.finish_command("cmd_1", "nod_1", COMMAND_FAILED, at(4), error="x")
    assert late is None
    kept = await store.get_command("cmd_1")
    assert kept is not None and kept.status == COMMAND_SUCCEEDED and kept.error is None
    assert await store.finish_command("cmd_none", "nod_1", COMMAND_SUCCEEDED, at(3)) is None


async def test_store_nodes_a_lost_delivery_requeues_queued_and_fails_the_others(
    store: SqlStore,
) -> None:
    await store.add_node(node(1))
    await store.add_command(command(1, queued=True))
    await store.add_command(command(2))
    await store.add_command(command(3))
    await store.claim_commands("nod_1", "c1", at(5), limit=10)
    assert await store.accept_command("cmd_3", "c1")
    assert not await store.accept_command("cmd_3", "c1")  # accepted already
    failed = await store.release_commands("nod_1", "c1", at(6), fail_unqueued=True)
    assert sorted(c.command_id for c in failed) == ["cmd_2", "cmd_3"]
    assert {c.error for c in failed} == {"node disconnected"}
    again = await store.claim_commands("nod_1", POLLED, at(7), limit=10)
    assert [(c.command_id, c.deliveries) for c in again] == [("cmd_1", 2)]


async def test_store_nodes_history_is_newest_first(store: SqlStore) -> None:
    await store.add_node(node(1))
    for n in range(1, 4):
        await store.add_command(command(n))
    listed = await store.list_commands("nod_1", limit=2)
    assert [c.command_id for c in listed] == ["cmd_3", "cmd_2"]
    assert listed[0].params == {"n": 3} and listed[0].owner == ADA
