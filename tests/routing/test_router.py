"""LocalRouter: membership, tenant isolation, fan-out without waiting, serialize once.

Seed 000, "Groups" (tenant-qualified names; one tenant never reaches another) and
"Backpressure" (a full outbox evicts the slow consumer); STYLE.md habit 4 (fan-out
never awaits a client, encode once per protocol like ASP.NET's
``SerializedHubMessage``). Driven by small fake recipients: ``send_nowait`` frames
the ``SerializedMessage`` for the recipient's wire and records it, or raises
``trio.WouldBlock`` when the fake is "full".
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from voisnap.errors import HubError
from voisnap.protocol import CloseMessage, HubMessage, InvocationMessage, JsonHubProtocol
from voisnap.routing.router import (
    LocalRouter,
    RouterStatistics,
    group_key,
    tenant_key,
    user_key,
)
from voisnap.routing.serialized import SerializedMessage
from voisnap.transports.frames import Frame, Wire, wire_for
from voisnap.transports.outbox import Lag
from voisnap.transports.ws_frames import BINARY_FRAMER, TEXT_FRAMER

CEILING = 5


class CountingJsonProtocol(JsonHubProtocol):
    """A JSON codec that counts how many messages it wrote."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, message: HubMessage) -> bytes:
        self.writes += 1
        return super().write(message)


class FakeRecipient:
    def __init__(
        self,
        connection_id: str,
        *,
        user_id: str = "user",
        tenant_id: str = "acme",
        wire: Wire | None = None,
        full: bool = False,
    ) -> None:
        self.connection_id = connection_id
        self.user_id = user_id
        self.tenant_id = tenant_id
        self.wire = wire or wire_for(JsonHubProtocol(), TEXT_FRAMER)
        self.full = full
        self.frames: list[Frame] = []
        self.messages: list[HubMessage] = []
        self.evictions = 0
        self.closes: list[CloseMessage] = []
        self.on_evict: Any = None

    def send_nowait(self, message: SerializedMessage) -> None:
        if self.full:
            raise trio.WouldBlock
        self.frames.append(message.frame_for(self.wire))
        self.messages.append(message.message)

    def evict_slow_consumer(self) -> None:
        self.evictions += 1
        if self.on_evict is not None:
            self.on_evict(self)

    def lag(self) -> Lag:
        return Lag(behind_seconds=1.5, full_seconds=0.25) if self.full else Lag(0.0, 0.0)

    def request_close(self, message: CloseMessage) -> None:
        self.closes.append(message)

    async def invoke_client(self, target: str, arguments: tuple[Any, ...], timeout: float) -> Any:
        return (self.connection_id, target, arguments, timeout)


def invocation(text: str = "hi") -> InvocationMessage:
    return InvocationMessage(target="Receive", arguments=(text,))


def router_with(*recipients: FakeRecipient) -> LocalRouter:
    router = LocalRouter()
    for recipient in recipients:
        router.register(recipient)
    return router


# -- keys ------------------------------------------------------------------------------------------


def test_router_keys_embed_the_tenant() -> None:
    assert group_key("a", "g") != group_key("b", "g")
    assert user_key("a", "u") != user_key("b", "u")
    assert tenant_key("a") != tenant_key("b")
    assert len({group_key("a", "x"), user_key("a", "x"), tenant_key("x")}) == 3


# -- tenant isolation ------------------------------------------------------------------------------


async def test_router_same_group_name_in_two_tenants_never_crosses() -> None:
    acme = FakeRecipient("c1", tenant_id="acme")
    globex = FakeRecipient("c2", tenant_id="globex")
    router = router_with(acme, globex)
    with trio.fail_after(CEILING):
        await router.add_to_group("acme", "c1", group_key("acme", "room"))
        await router.add_to_group("globex", "c2", group_key("globex", "room"))
        await router.send_group(group_key("acme", "room"), invocation("for acme"))
    assert acme.messages == [invocation("for acme")]
    assert globex.messages == []


async def test_router_tenant_key_reaches_only_that_tenant() -> None:
    a1 = FakeRecipient("a1", tenant_id="acme", user_id="u1")
    a2 = FakeRecipient("a2", tenant_id="acme", user_id="u2")
    other = FakeRecipient("g1", tenant_id="globex", user_id="u1")
    router = router_with(a1, a2, other)
    with trio.fail_after(CEILING):
        await router.send_group(tenant_key("acme"), invocation())
    assert len(a1.messages) == len(a2.messages) == 1
    assert other.messages == []


async def test_router_user_key_reaches_every_connection_of_the_user_in_its_tenant() -> None:
    phone = FakeRecipient("phone", user_id="ada")
    laptop = FakeRecipient("laptop", user_id="ada")
    someone = FakeRecipient("x", user_id="bob")
    namesake = FakeRecipient("y", user_id="ada", tenant_id="globex")
    router = router_with(phone, laptop, someone, namesake)
    with trio.fail_after(CEILING):
        await router.send_group(user_key("acme", "ada"), invocation())
    assert [len(r.messages) for r in (phone, laptop, someone, namesake)] == [1, 1, 0, 0]


async def test_router_exclude_skips_the_named_connections() -> None:
    sender = FakeRecipient("sender")
    others = [FakeRecipient(f"c{n}") for n in range(3)]
    router = router_with(sender, *others)
    with trio.fail_after(CEILING):
        await router.send_group(tenant_key("acme"), invocation(), exclude={"sender"})
    assert sender.messages == []
    assert all(len(r.messages) == 1 for r in others)
    assert router.statistics().deliveries == 3


async def test_router_send_connection_stays_within_the_tenant() -> None:
    target = FakeRecipient("c1", tenant_id="acme")
    router = router_with(target)
    with trio.fail_after(CEILING):
        await router.send_connection("globex", "c1", invocation("wrong tenant"))
        await router.send_connection("acme", "missing", invocation("nobody"))
        await router.send_connection("acme", "c1", invocation("right"))
    assert target.messages == [invocation("right")]


async def test_router_add_to_group_refuses_a_group_of_another_tenant() -> None:
    router = router_with(FakeRecipient("c1", tenant_id="acme"))
    with trio.fail_after(CEILING), pytest.raises(HubError) as caught:
        await router.add_to_group("acme", "c1", group_key("globex", "room"))
    assert str(caught.value) == "A connection can only join groups of its own tenant."
    assert list(router.members(group_key("globex", "room"))) == []


async def test_router_add_to_group_refuses_a_connection_of_another_tenant() -> None:
    router = router_with(FakeRecipient("c1", tenant_id="acme"))
    with trio.fail_after(CEILING), pytest.raises(HubError) as caught:
        await router.add_to_group("globex", "c1", group_key("globex", "room"))
    assert str(caught.value) == "Connection 'c1' does not exist."
    assert list(router.members(group_key("globex", "room"))) == []


async def test_router_add_to_group_refuses_an_unknown_connection() -> None:
    router = LocalRouter()
    with trio.fail_after(CEILING), pytest.raises(HubError) as caught:
        await router.add_to_group("acme", "ghost", group_key("acme", "room"))
    assert str(caught.value) == "Connection 'ghost' does not exist."
    assert router.statistics().groups == 0


# -- membership ------------------------------------------------------------------------------------


async def test_router_add_connection_joins_tenant_and_user_keys() -> None:
    recipient = FakeRecipient("c1", user_id="ada")
    router = router_with(recipient)
    assert list(router.members(tenant_key("acme"))) == [recipient]
    assert list(router.members(user_key("acme", "ada"))) == [recipient]
    assert router.all_connections() == [recipient]


async def test_router_remove_from_group_drops_an_emptied_group() -> None:
    a, b = FakeRecipient("a"), FakeRecipient("b")
    router = router_with(a, b)
    room = group_key("acme", "room")
    with trio.fail_after(CEILING):
        await router.add_to_group("acme", "a", room)
        await router.add_to_group("acme", "b", room)
        await router.remove_from_group("acme", "a", room)
        assert list(router.members(room)) == [b]
        await router.remove_from_group("acme", "b", room)
        await router.remove_from_group("acme", "b", room)  # twice is harmless
    assert router.statistics().groups == 0
    assert room not in router._members


async def test_router_remove_connection_cleans_every_key() -> None:
    leaving = FakeRecipient("leaving", user_id="ada")
    staying = FakeRecipient("staying", user_id="bob")
    router = router_with(leaving, staying)
    with trio.fail_after(CEILING):
        for name in ("solo", "shared"):
            await router.add_to_group("acme", "leaving", group_key("acme", name))
        await router.add_to_group("acme", "staying", group_key("acme", "shared"))
    router.remove_connection(leaving)
    router.remove_connection(leaving)  # twice is harmless
    assert router.all_connections() == [staying]
    assert list(router.members(group_key("acme", "solo"))) == []
    assert list(router.members(group_key("acme", "shared"))) == [staying]
    assert list(router.members(user_key("acme", "ada"))) == []
    assert list(router.members(tenant_key("acme"))) == [staying]
    # No empty member sets are left behind.
    assert all(router._members.values())
    assert set(router._members) == {
        tenant_key("acme"), user_key("acme", "bob"), group_key("acme", "shared")
    }
    assert router.statistics().groups == 1
    with trio.fail_after(CEILING), pytest.raises(HubError):
        await router.add_to_group("acme", "leaving", group_key("acme", "solo"))


async def test_router_remove_last_connection_leaves_nothing() -> None:
    recipients = [FakeRecipient(f"c{n}", user_id=f"u{n}") for n in range(3)]
    router = router_with(*recipients)
    with trio.fail_after(CEILING):
        for recipient in recipients:
            await router.add_to_group("acme", recipient.connection_id, group_key("acme", "g"))
    for recipient in recipients:
        router.remove_connection(recipient)
    assert router._members == {}
    assert router.statistics().connections == 0


# -- fan-out and slow consumers --------------------------------------------------------------------


async def test_router_full_member_is_evicted_once_and_others_still_receive() -> None:
    before = [FakeRecipient(f"b{n}") for n in range(3)]
    slow = FakeRecipient("slow", full=True)
    after = [FakeRecipient(f"a{n}") for n in range(3)]
    router = router_with(*before, slow, *after)
    with trio.fail_after(CEILING):
        await router.send_group(tenant_key("acme"), invocation())
    assert slow.evictions == 1
    assert slow.messages == []
    assert all(r.messages == [invocation()] and r.evictions == 0 for r in before + after)
    stats = router.statistics()
    assert (stats.deliveries, stats.evictions) == (6, 1)
    assert stats.recent_evictions == (Lag(behind_seconds=1.5, full_seconds=0.25),)


async def test_router_eviction_may_remove_the_connection_during_the_fan_out() -> None:
    router = LocalRouter()
    slow = [FakeRecipient(f"slow{n}", full=True) for n in range(2)]
    fast = [FakeRecipient(f"fast{n}") for n in range(2)]
    for recipient in slow:
        recipient.on_evict = router.remove_connection
    for recipient in (slow[0], fast[0], slow[1], fast[1]):
        router.register(recipient)
    with trio.fail_after(CEILING):
        await router.send_group(tenant_key("acme"), invocation())
    assert [r.evictions for r in slow] == [1, 1]
    assert all(len(r.messages) == 1 for r in fast)
    assert router.all_connections() == [fast[0], fast[1]]


async def test_router_fan_out_never_waits_for_a_full_member() -> None:
    # The slow member never drains; the send still completes at once, with the
    # eviction already done when it returns.
    slow = FakeRecipient("slow", full=True)
    fast = FakeRecipient("fast")
    router = router_with(slow, fast)
    with trio.fail_after(CEILING):
        for n in range(3):
            await router.send_group(tenant_key("acme"), invocation(str(n)))
    assert len(fast.messages) == 3
    assert slow.messages == []
    assert slow.evictions >= 1


async def test_router_statistics_count_messages_deliveries_and_evictions() -> None:
    a, b = FakeRecipient("a"), FakeRecipient("b", full=True)
    router = router_with(a, b)
    with trio.fail_after(CEILING):
        await router.add_to_group("acme", "a", group_key("acme", "room"))
        await router.send_group(group_key("acme", "room"), invocation())
        await router.send_group(tenant_key("acme"), invocation())
        await router.send_group(group_key("acme", "nobody"), invocation())
        await router.send_connection("acme", "a", invocation())
    assert router.statistics() == RouterStatistics(
        connections=1,  # the evicted one left the router at once
        groups=1,
        messages_sent=4,
        deliveries=3,
        evictions=1,
        recent_evictions=(Lag(behind_seconds=1.5, full_seconds=0.25),),
    )


# -- one connection --------------------------------------------------------------------------------


async def test_router_close_user_connections_closes_only_that_user_in_that_tenant() -> None:
    phone = FakeRecipient("phone", user_id="ada")
    laptop = FakeRecipient("laptop", user_id="ada")
    bob = FakeRecipient("bob", user_id="bob")
    namesake = FakeRecipient("other", user_id="ada", tenant_id="globex")
    router = router_with(phone, laptop, bob, namesake)
    close = CloseMessage(error="Token revoked.", allow_reconnect=False)
    with trio.fail_after(CEILING):
        assert await router.close_user_connections("acme", "ada", close) == 2
        assert await router.close_user_connections("acme", "nobody", close) == 0
    assert phone.closes == [close]
    assert laptop.closes == [close]
    assert bob.closes == namesake.closes == []


async def test_router_invoke_connection_reaches_the_connection_in_its_tenant() -> None:
    router = router_with(FakeRecipient("c1", tenant_id="acme"))
    with trio.fail_after(CEILING):
        result = await router.invoke_connection("acme", "c1", "GetName", (1,), 2.0)
        assert result == ("c1", "GetName", (1,), 2.0)
        with pytest.raises(HubError, match=r"^Connection 'c1' does not exist\.$"):
            await router.invoke_connection("globex", "c1", "GetName", (), 2.0)


# -- serialize once per protocol, frame once per wire ---------------------------------------------


async def test_router_fan_out_serializes_once_per_protocol() -> None:
    protocol = CountingJsonProtocol()
    wire = wire_for(protocol, TEXT_FRAMER)
    members = [FakeRecipient(f"c{n}", wire=wire) for n in range(100)]
    router = router_with(*members)
    with trio.fail_after(CEILING):
        await router.send_group(tenant_key("acme"), invocation())
    assert protocol.writes == 1
    first = members[0].frames[0]
    assert all(len(m.frames) == 1 and m.frames[0] is first for m in members)
    record = JsonHubProtocol().write(invocation())
    assert first.data == TEXT_FRAMER.frame(record).data


async def test_router_two_protocols_write_once_each() -> None:
    one, two = CountingJsonProtocol(), CountingJsonProtocol()
    wire_one, wire_two = wire_for(one, TEXT_FRAMER), wire_for(two, TEXT_FRAMER)
    members = [FakeRecipient(f"c{n}", wire=wire_one if n % 2 else wire_two) for n in range(10)]
    router = router_with(*members)
    with trio.fail_after(CEILING):
        await router.send_group(tenant_key("acme"), invocation())
    assert (one.writes, two.writes) == (1, 1)
    frames_one = {id(m.frames[0]) for m in members if m.wire is wire_one}
    frames_two = {id(m.frames[0]) for m in members if m.wire is wire_two}
    assert len(frames_one) == len(frames_two) == 1
    assert frames_one != frames_two


async def test_router_two_framers_share_one_record() -> None:
    protocol = CountingJsonProtocol()
    text, binary = wire_for(protocol, TEXT_FRAMER), wire_for(protocol, BINARY_FRAMER)
    members = [FakeRecipient(f"c{n}", wire=text if n % 2 else binary) for n in range(10)]
    router = router_with(*members)
    with trio.fail_after(CEILING):
        await router.send_group(tenant_key("acme"), invocation())
    assert protocol.writes == 1
    text_frames = {id(m.frames[0]) for m in members if m.wire is text}
    binary_frames = {id(m.frames[0]) for m in members if m.wire is binary}
    assert len(text_frames) == len(binary_frames) == 1
    assert text_frames != binary_frames


def test_router_wire_for_returns_one_wire_per_pair() -> None:
    protocol = JsonHubProtocol()
    assert wire_for(protocol, TEXT_FRAMER) is wire_for(protocol, TEXT_FRAMER)
    assert wire_for(protocol, TEXT_FRAMER) is not wire_for(protocol, BINARY_FRAMER)
    assert wire_for(protocol, TEXT_FRAMER) is not wire_for(JsonHubProtocol(), TEXT_FRAMER)


def test_router_serialized_message_caches_record_and_frame() -> None:
    protocol = CountingJsonProtocol()
    wire = wire_for(protocol, TEXT_FRAMER)
    message = SerializedMessage(invocation())
    assert message.record_for(protocol) is message.record_for(protocol)
    assert message.frame_for(wire) is message.frame_for(wire)
    assert protocol.writes == 1
