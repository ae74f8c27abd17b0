"""Groups, users, "others" and broadcasts through the hub API on a LocalRouter.

HubProtocol.md, "Non-Blocking Invocations" (what every recipient receives: an
Invocation without an id); ASP.NET Core's ``DefaultHubLifetimeManager`` for the
addressing; seed 000, "Groups" (every address is tenant-qualified) and
"Backpressure" (a consumer whose outbox is full is dropped, and nobody waits
for it).
"""

from __future__ import annotations

from typing import Any

import trio

from tests.support.fakes import RS, TestClient, connect, make_endpoint
from voisnap.apps.playground import PlaygroundHub
from voisnap.config import Settings
from voisnap.hubs.connection import SLOW_CONSUMER
from voisnap.principal import Principal
from voisnap.protocol import CloseMessage, InvocationMessage, JsonHubProtocol

ALICE = Principal(user_id="alice", tenant_id="t1")
BOB = Principal(user_id="bob", tenant_id="t1")
CAROL = Principal(user_id="carol", tenant_id="t1")
ALICE_ELSEWHERE = Principal(user_id="alice", tenant_id="t2")
DAVE_ELSEWHERE = Principal(user_id="dave", tenant_id="t2")


class GroupsHub(PlaygroundHub):
    async def send_to_others(self, payload: Any) -> None:
        await self.clients.others.send("Receive", payload)

    async def send_to_user(self, user_id: str, payload: Any) -> None:
        await self.clients.user(user_id).send("Receive", payload)

    async def send_to_others_in_group(self, name: str, payload: Any) -> None:
        await self.clients.others_in_group(name).send("Receive", payload)

    async def send_to_connection(self, connection_id: str, payload: Any) -> None:
        await self.clients.connection(connection_id).send("Receive", payload)


def receive_of(payload: Any) -> InvocationMessage:
    return InvocationMessage(target="Receive", arguments=(payload,))


async def call(client: TestClient, target: str, *args: Any) -> None:
    completion = await client.invoke(target, *args)
    assert completion.error is None, completion.error


async def assert_received(client: TestClient, payload: Any) -> None:
    assert await client.receive() == receive_of(payload)


async def assert_nothing_received(client: TestClient) -> None:
    """Anything sent to ``client`` earlier would arrive before this Echo's answer."""
    completion = await client.invoke("Echo", "probe")
    assert completion.result == "probe"
    assert list(client.unread) == []


async def test_group_join_send_leave(autojump_clock):
    hub = make_endpoint(GroupsHub)
    async with connect(hub, principal=ALICE) as alice, connect(hub, principal=BOB) as bob:
        await call(alice, "JoinGroup", "g")
        await call(bob, "JoinGroup", "g")
        await call(alice, "SendToGroup", "g", {"n": 1})
        await assert_received(alice, {"n": 1})
        assert await bob.receive_record() == (
            b'{"type":1,"target":"Receive","arguments":[{"n":1}]}'
        )

        await call(bob, "LeaveGroup", "g")
        await call(alice, "SendToGroup", "g", 2)
        await assert_received(alice, 2)
        await assert_nothing_received(bob)


async def test_group_send_by_non_member(autojump_clock):
    hub = make_endpoint(GroupsHub)
    async with connect(hub, principal=ALICE) as alice, connect(hub, principal=BOB) as bob:
        await call(alice, "JoinGroup", "g")
        await call(bob, "SendToGroup", "g", "hi")
        await assert_received(alice, "hi")
        await assert_nothing_received(bob)


async def test_group_unknown_and_leave_unjoined_are_harmless(autojump_clock):
    hub = make_endpoint(GroupsHub)
    async with connect(hub, principal=ALICE) as alice:
        await call(alice, "SendToGroup", "nobody-here", 1)
        await call(alice, "LeaveGroup", "never-joined")
        await assert_nothing_received(alice)


async def test_group_join_twice_receives_once(autojump_clock):
    hub = make_endpoint(GroupsHub)
    async with connect(hub, principal=ALICE) as alice:
        await call(alice, "JoinGroup", "g")
        await call(alice, "JoinGroup", "g")
        await call(alice, "SendToGroup", "g", 1)
        await assert_received(alice, 1)
        await assert_nothing_received(alice)


async def test_group_name_validated(autojump_clock):
    async with connect(GroupsHub) as client:
        completion = await client.invoke("JoinGroup", "")
        assert completion.error == (
            "An unexpected error occurred invoking 'JoinGroup' on the server. "
            "HubException: A group name must be 1 to 256 characters long."
        )


async def test_group_others_in_group_excludes_caller(autojump_clock):
    hub = make_endpoint(GroupsHub)
    async with connect(hub, principal=ALICE) as alice, connect(hub, principal=BOB) as bob:
        await call(alice, "JoinGroup", "g")
        await call(bob, "JoinGroup", "g")
        await call(alice, "SendToOthersInGroup", "g", "psst")
        await assert_received(bob, "psst")
        await assert_nothing_received(alice)


async def test_group_same_name_in_other_tenant_not_reached(autojump_clock):
    hub = make_endpoint(GroupsHub)
    async with (
        connect(hub, principal=ALICE) as alice,
        connect(hub, principal=DAVE_ELSEWHERE) as dave,
    ):
        await call(alice, "JoinGroup", "g")
        await call(dave, "JoinGroup", "g")
        await call(alice, "SendToGroup", "g", "t1 only")
        await assert_received(alice, "t1 only")
        await assert_nothing_received(dave)
        await call(dave, "SendToGroup", "g", "t2 only")
        await assert_received(dave, "t2 only")
        await assert_nothing_received(alice)


async def test_group_membership_ends_with_connection(autojump_clock):
    hub = make_endpoint(GroupsHub)
    async with connect(hub, principal=ALICE) as alice:
        await call(alice, "JoinGroup", "g")
        assert hub.router.statistics().groups == 1
    assert hub.router.statistics().groups == 0
    assert hub.router.statistics().connections == 0


async def test_others_excludes_caller_and_other_tenants(autojump_clock):
    hub = make_endpoint(GroupsHub)
    async with (
        connect(hub, principal=ALICE) as alice,
        connect(hub, principal=BOB) as bob,
        connect(hub, principal=CAROL) as carol,
        connect(hub, principal=DAVE_ELSEWHERE) as dave,
    ):
        await call(alice, "SendToOthers", "hello")
        await assert_received(bob, "hello")
        await assert_received(carol, "hello")
        await assert_nothing_received(alice)
        await assert_nothing_received(dave)


async def test_user_reaches_every_connection_of_user_in_tenant(autojump_clock):
    hub = make_endpoint(GroupsHub)
    async with (
        connect(hub, principal=ALICE) as alice_laptop,
        connect(hub, principal=ALICE) as alice_phone,
        connect(hub, principal=ALICE_ELSEWHERE) as alice_other_tenant,
        connect(hub, principal=BOB) as bob,
    ):
        await call(bob, "SendToUser", "alice", "for alice")
        await assert_received(alice_laptop, "for alice")
        await assert_received(alice_phone, "for alice")
        await assert_nothing_received(alice_other_tenant)
        await assert_nothing_received(bob)


async def test_connection_in_other_tenant_not_reached(autojump_clock):
    hub = make_endpoint(GroupsHub)
    async with (
        connect(hub, principal=ALICE) as alice,
        connect(hub, principal=DAVE_ELSEWHERE) as dave,
    ):
        await call(alice, "SendToConnection", dave.connection.connection_id, "sneaky")
        await assert_nothing_received(dave)
        await call(dave, "SendToConnection", dave.connection.connection_id, "self")
        await assert_received(dave, "self")


async def test_broadcast_reaches_tenant_only(autojump_clock):
    hub = make_endpoint(GroupsHub)
    async with (
        connect(hub, principal=ALICE) as alice,
        connect(hub, principal=BOB) as bob,
        connect(hub, principal=DAVE_ELSEWHERE) as dave,
    ):
        await call(alice, "Broadcast", [1, 2])
        await assert_received(alice, [1, 2])
        await assert_received(bob, [1, 2])
        await assert_nothing_received(dave)


async def test_group_send_evicts_slow_consumer(autojump_clock):
    settings = Settings(outbox_capacity=2, keep_alive_interval=1000)
    hub = make_endpoint(GroupsHub, settings)
    async with (
        connect(hub, principal=ALICE) as sender,
        connect(hub, principal=BOB) as fast,
        # client_buffer=0: once this client stops reading, the writer stalls
        # with one batch in flight and the outbox fills up behind it.
        connect(hub, principal=CAROL, client_buffer=0) as slow,
    ):
        await call(fast, "JoinGroup", "g")
        await call(slow, "JoinGroup", "g")
        for number in range(6):
            # The sender is never blocked by the stalled member.
            await call(sender, "SendToGroup", "g", number)
        for number in range(6):
            await assert_received(fast, number)

        with trio.fail_after(10):
            await slow.finished.wait()
        assert slow.transport.aborted
        last = slow.transport.last_frame
        assert last is not None
        assert last.data.endswith(RS)
        assert JsonHubProtocol().parse(last.data[:-1]) == CloseMessage(
            error=SLOW_CONSUMER, allow_reconnect=True
        )
        routed = {c.connection_id for c in hub.router.all_connections()}
        assert slow.connection.connection_id not in routed
        assert hub.router.statistics().evictions == 1

        # The others carry on.
        await call(sender, "SendToGroup", "g", "after")
        await assert_received(fast, "after")
