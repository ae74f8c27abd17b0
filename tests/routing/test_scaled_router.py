"""The router across processes (issue 10), two "processes" in one test, on every backplane.

Like centrifuge's ``map_broker_shared_test.go``: each test gets ``pair``, two
``Cluster``\\ s (one process's view each: its backplane node, ``Subscriptions``,
``Presence``, node channel) and each one's ``BackplaneRouter`` for the hub
``chat``; once on two ``MemoryBackplane``\\ s sharing one ``MemoryBroker``, once on
two ``RedisBackplane``\\ s on the session's real Redis server, with a prefix of
their own. Nothing here knows which it runs on.

Connections are ``Fake`` recipients: they frame what they are sent for their wire
(so a counting codec shows how often a message was serialized) and record it.

Waiting is on events: a fake's next message, or a *barrier*: a payload published
by one node after everything before it and awaited at the other, after which
anything the first process published has reached the second's listeners (the
backplane keeps each node's publishing order). What should not arrive is
checked after a barrier. Every test runs under a ``trio.fail_after`` ceiling.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import attrs
import pytest
import trio

from tests.support.services import RedisServer
from voisnap import failures
from voisnap.backplane import Backplane, MemoryBackplane, MemoryBroker, RequestRefused
from voisnap.backplane.redis import RedisBackplane
from voisnap.errors import HubError
from voisnap.protocol import CloseMessage, HubMessage, InvocationMessage, JsonHubProtocol
from voisnap.routing import names, remote
from voisnap.routing.cluster import Cluster
from voisnap.routing.router import GroupKey, group_key, tenant_key, user_key
from voisnap.routing.scaled import REPLY_MARGIN, BackplaneRouter
from voisnap.routing.serialized import SerializedMessage
from voisnap.transports.frames import Frame, Wire, wire_for
from voisnap.transports.outbox import Lag
from voisnap.transports.ws_frames import TEXT_FRAMER

HUB = "chat"
TIMEOUT = 2.0
"""The clusters' timeout for a cross-process operation."""
PROMPT = 0.5
"""What "at once" means: far less than TIMEOUT (one round trip to Redis)."""
CEILING = 15
OUTAGE_CEILING = 30


# -- fakes -----------------------------------------------------------------------------------------


class CountingJsonProtocol(JsonHubProtocol):
    """A JSON codec that counts how many messages it wrote."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, message: HubMessage) -> bytes:
        self.writes += 1
        return super().write(message)


Answer = Callable[[str, tuple[Any, ...], float], Awaitable[Any]]


class Fake:
    """A Recipient: records what it is sent, closes it is asked for, and answers
    client invocations with ``answer`` (by default, a value naming itself)."""

    def __init__(
        self,
        connection_id: str,
        *,
        tenant_id: str = "acme",
        user_id: str = "ada",
        wire: Wire | None = None,
        answer: Answer | None = None,
    ) -> None:
        self.connection_id = connection_id
        self.tenant_id = tenant_id
        self.user_id = user_id
        self.wire = wire or wire_for(JsonHubProtocol(), TEXT_FRAMER)
        self.frames: list[Frame] = []
        self.messages: list[HubMessage] = []
        self.closes: list[CloseMessage] = []
        self.crashes: list[Exception] = []
        self.evictions = 0
        self.invocations: list[tuple[str, tuple[Any, ...], float]] = []
        self.cancelled_invocations = 0
        self._answer = answer
        self._arrived = trio.Event()

    def send_nowait(self, message: SerializedMessage) -> None:
        self.frames.append(message.frame_for(self.wire))
        self.messages.append(message.message)
        self._arrived.set()
        self._arrived = trio.Event()

    def evict_slow_consumer(self) -> None:
        self.evictions += 1

    def lag(self) -> Lag:
        return Lag(0.0, 0.0)

    def request_close(self, message: CloseMessage) -> None:
        self.closes.append(message)

    def crashed(self, error: Exception) -> None:
        self.crashes.append(error)

    async def invoke_client(self, target: str, arguments: tuple[Any, ...], timeout: float) -> Any:
        self.invocations.append((target, arguments, timeout))
        try:
            if self._answer is not None:
                return await self._answer(target, arguments, timeout)
            return {"from": self.connection_id, "target": target, "arguments": list(arguments)}
        except trio.Cancelled:
            self.cancelled_invocations += 1
            raise

    # -- for the tests -----------------------------------------------------------------------------

    @property
    def texts(self) -> list[Any]:
        """The first argument of each message received, in order."""
        return [message.arguments[0] for message in self.messages]  # type: ignore[union-attr]

    async def wait_for(self, count: int) -> None:
        while len(self.messages) < count:
            await self._arrived.wait()

    async def wait_for_text(self, text: Any) -> None:
        while text not in self.texts:
            await self._arrived.wait()


def said(text: Any) -> InvocationMessage:
    return InvocationMessage(target="Receive", arguments=(text,))


async def never_answers(target: str, arguments: tuple[Any, ...], timeout: float) -> Any:
    await trio.sleep_forever()


async def refuses(target: str, arguments: tuple[Any, ...], timeout: float) -> Any:
    raise HubError("The client refused: no name today.")


# -- two processes ---------------------------------------------------------------------------------


@attrs.define
class Process:
    cluster: Cluster
    router: BackplaneRouter

    @property
    def backplane(self) -> Backplane:
        return self.cluster.backplane

    async def connect(self, *fakes: Fake) -> None:
        for fake in fakes:
            await self.router.add_connection(fake)

    async def join(self, key: GroupKey, *fakes: Fake) -> None:
        for fake in fakes:
            await self.router.add_to_group(fake.tenant_id, fake.connection_id, key)

    def holders(self, key: GroupKey) -> int:
        return self.cluster.subscriptions.holders(names.channel(HUB, key))

    async def wait_backplane_agrees(self) -> None:
        """Until the backplane has exactly the channels someone holds."""
        while self.backplane.statistics().subscriptions != self.cluster.subscriptions.channels:
            await trio.sleep(0.005)


class Outage:
    """The backplane's server goes away and comes back."""

    async def stop(self) -> None: ...

    async def start(self) -> None: ...


@attrs.define
class MemoryOutage(Outage):
    broker: MemoryBroker

    async def stop(self) -> None:
        self.broker.stop()

    async def start(self) -> None:
        self.broker.start()


@attrs.define
class RedisOutage(Outage):
    server: RedisServer
    nodes: tuple[Backplane, ...]

    async def stop(self) -> None:
        await trio.to_thread.run_sync(self.server.stop)
        while any(node.statistics().connected for node in self.nodes):
            await trio.sleep(0.01)

    async def start(self) -> None:
        await trio.to_thread.run_sync(self.server.start)


@attrs.define
class Pair:
    kind: str
    one: Process
    two: Process
    outage: Outage


@pytest.fixture(params=["memory", "redis"])
def implementation(request: pytest.FixtureRequest) -> Iterator[tuple[str, RedisServer | None]]:
    if request.param == "memory":
        yield "memory", None
        return
    request.getfixturevalue("redis_url")  # running and flushed (fails under CI if missing)
    server: RedisServer = request.getfixturevalue("redis_server")
    yield "redis", server
    server.start()  # for the tests after this one, if it stopped the server


async def run_cluster(cluster: Cluster, *, task_status: trio.TaskStatus[None]) -> None:
    await cluster.run(task_status=task_status)
    raise AssertionError("Cluster.run() returned")


@pytest.fixture
async def pair(implementation: tuple[str, RedisServer | None], nursery: trio.Nursery) -> Pair:
    kind, server = implementation
    outage: Outage
    if server is None:
        broker = MemoryBroker()
        nodes: tuple[Backplane, ...] = (MemoryBackplane(broker), MemoryBackplane(broker))
        outage = MemoryOutage(broker)
    else:
        prefix = f"test:{uuid.uuid4().hex[:12]}:"
        nodes = tuple(RedisBackplane(server.url, prefix=prefix) for _ in range(2))
        outage = RedisOutage(server, nodes)
    clusters = [Cluster(node, timeout=TIMEOUT) for node in nodes]
    one, two = (Process(cluster, cluster.router_for(HUB)) for cluster in clusters)
    with trio.fail_after(CEILING):
        for cluster in clusters:
            await nursery.start(run_cluster, cluster)
        for cluster in clusters:
            await cluster.backplane.wait_connected()
        await sees(one, two)
        await sees(two, one)
    return Pair(kind, one, two, outage)


async def sees(process: Process, other: Process) -> None:
    """Until ``process`` counts ``other`` among the live processes (Presence)."""
    while other.cluster.node_id not in await process.cluster.presence.other_nodes():
        await trio.sleep(0.01)


class _Barrier:
    def __init__(self) -> None:
        self.arrived = trio.Event()

    def message(self, payload: bytes) -> None:
        self.arrived.set()

    async def request(self, payload: bytes) -> bytes:
        raise RequestRefused("a barrier takes no requests")


async def barrier(sender: Process, receiver: Process) -> None:
    """Until everything ``sender`` published so far has reached ``receiver``'s listeners."""
    channel = f"barrier:{uuid.uuid4().hex}"
    listener = _Barrier()
    await receiver.backplane.subscribe(channel, listener)
    await sender.backplane.publish(channel, b"")
    await listener.arrived.wait()
    await receiver.backplane.unsubscribe(channel)


async def settle(pair: Pair) -> None:
    await barrier(pair.one, pair.two)
    await barrier(pair.two, pair.one)


@pytest.fixture
def client_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh rate limit for client-error log lines: the tests before may have used it up."""
    monkeypatch.setattr(failures, "_client_limit", failures.RateLimit())


ROOM = group_key("acme", "room")


# -- fan-out ---------------------------------------------------------------------------------------


async def test_scaled_router_send_group_reaches_members_on_both_processes_once(pair: Pair) -> None:
    a1, a2 = Fake("a1"), Fake("a2")
    b1, b2, b3 = Fake("b1"), Fake("b2"), Fake("b3")
    with trio.fail_after(CEILING):
        await pair.one.connect(a1, a2)
        await pair.two.connect(b1, b2, b3)
        await pair.one.join(ROOM, a1)
        await pair.two.join(ROOM, b1, b2)
        await pair.one.router.send_group(ROOM, said("from one"))
        await b1.wait_for(1)
        await b2.wait_for(1)
        await pair.two.router.send_group(ROOM, said("from two"))
        await a1.wait_for(2)
        await settle(pair)
    for member in (a1, b1, b2):
        assert member.messages == [said("from one"), said("from two")]
    assert a2.messages == b3.messages == []


async def test_scaled_router_exclude_is_honoured_on_the_other_process(pair: Pair) -> None:
    a1 = Fake("a1")
    b1, b2 = Fake("b1"), Fake("b2")
    with trio.fail_after(CEILING):
        await pair.one.connect(a1)
        await pair.two.connect(b1, b2)
        await pair.one.join(ROOM, a1)
        await pair.two.join(ROOM, b1, b2)
        await pair.one.router.send_group(ROOM, said("not b1"), exclude={"a1", "b1"})
        await b2.wait_for(1)
        await pair.one.router.send_group(tenant_key("acme"), said("not b2"), exclude=["b2"])
        await b1.wait_for(1)
        await settle(pair)
    assert a1.texts == ["not b2"]
    assert b1.texts == ["not b2"]
    assert b2.texts == ["not b1"]


async def test_scaled_router_send_groups_reaches_each_connection_once(pair: Pair) -> None:
    red, blue = group_key("acme", "red"), group_key("acme", "blue")
    a_both, a_red = Fake("a_both"), Fake("a_red")
    b_both, b_red, b_blue, b_none = Fake("b_both"), Fake("b_red"), Fake("b_blue"), Fake("b_none")
    everyone = [a_both, a_red, b_both, b_red, b_blue]
    with trio.fail_after(CEILING):
        await pair.one.connect(a_both, a_red)
        await pair.two.connect(b_both, b_red, b_blue, b_none)
        await pair.one.join(red, a_both, a_red)
        await pair.one.join(blue, a_both)
        await pair.two.join(red, b_both, b_red)
        await pair.two.join(blue, b_both, b_blue)
        await pair.one.router.send_groups([red, blue], said("one"))
        await pair.two.router.send_groups([blue, red], said("two"))
        await pair.one.router.send_groups([red, blue, red], said("three"), exclude={"b_blue"})
        await settle(pair)
    # No order between what two processes send: each once is what counts.
    for fake in everyone:
        expected = ["one", "two"] if fake is b_blue else ["one", "three", "two"]
        assert sorted(fake.texts) == expected, fake.connection_id
    assert b_none.messages == []


async def test_scaled_router_user_and_tenant_sends_cross_processes(pair: Pair) -> None:
    a_ada, a_bob = Fake("a_ada", user_id="ada"), Fake("a_bob", user_id="bob")
    a_other = Fake("a_other", user_id="ada", tenant_id="globex")
    b_ada, b_carl = Fake("b_ada", user_id="ada"), Fake("b_carl", user_id="carl")
    b_other = Fake("b_other", user_id="ada", tenant_id="globex")
    with trio.fail_after(CEILING):
        await pair.one.connect(a_ada, a_bob, a_other)
        await pair.two.connect(b_ada, b_carl, b_other)
        await pair.one.router.send_group(user_key("acme", "ada"), said("to ada"))
        await pair.two.router.send_group(tenant_key("acme"), said("to acme"))
        await pair.two.router.send_group(user_key("globex", "ada"), said("to globex ada"))
        await settle(pair)
    # No order between what two processes send: each once is what counts.
    assert sorted(a_ada.texts) == sorted(b_ada.texts) == ["to acme", "to ada"]
    assert a_bob.texts == b_carl.texts == ["to acme"]
    assert a_other.texts == b_other.texts == ["to globex ada"]


async def test_scaled_router_serializes_once_per_protocol_per_process(pair: Pair) -> None:
    protocols = {name: CountingJsonProtocol() for name in ("a1", "a2", "b1", "b2")}
    wires = {name: wire_for(protocol, TEXT_FRAMER) for name, protocol in protocols.items()}
    fakes = {
        name: [Fake(f"{name}-{n}", wire=wire) for n in range(10)] for name, wire in wires.items()
    }
    with trio.fail_after(CEILING):
        await pair.one.connect(*fakes["a1"], *fakes["a2"])
        await pair.two.connect(*fakes["b1"], *fakes["b2"])
        await pair.one.router.send_group(tenant_key("acme"), said("once"))
        await settle(pair)
    assert {name: protocol.writes for name, protocol in protocols.items()} == dict.fromkeys(
        protocols, 1
    )
    for members in fakes.values():
        assert all(len(fake.frames) == 1 for fake in members)
        assert len({id(fake.frames[0]) for fake in members}) == 1  # one frame per wire


# -- subscriptions ---------------------------------------------------------------------------------


async def test_scaled_router_listens_to_a_group_only_while_it_has_members(pair: Pair) -> None:
    a1 = Fake("a1")
    b1, b2, b_stays = Fake("b1", user_id="u1"), Fake("b2", user_id="u2"), Fake("b_stays")
    with trio.fail_after(CEILING):
        await pair.one.connect(a1)
        await pair.two.connect(b1, b2, b_stays)
        assert pair.two.holders(ROOM) == 0
        await pair.two.join(ROOM, b1, b2)
        assert pair.two.holders(ROOM) == 2
        assert pair.one.holders(ROOM) == 0  # process one has no member
        await pair.two.wait_backplane_agrees()

        # A member leaves (asked from the other process), then the last one goes away.
        await pair.one.router.remove_from_group("acme", "b1", ROOM)
        assert pair.two.holders(ROOM) == 1
        pair.two.router.remove_connection(b2)
        assert pair.two.holders(ROOM) == 0
        assert pair.two.holders(user_key("acme", "u2")) == 0
        assert pair.two.holders(tenant_key("acme")) == 2  # b1 and b_stays are still here
        await pair.two.wait_backplane_agrees()

        # A publish to the group no longer reaches process two at all.
        received = pair.two.backplane.statistics().received
        await pair.one.router.send_group(ROOM, said("nobody there"))
        await barrier(pair.one, pair.two)
        assert pair.two.backplane.statistics().received == received + 1  # the barrier alone
    assert b1.messages == b2.messages == b_stays.messages == []
    assert pair.one.holders(ROOM) == 0


async def test_scaled_router_removing_a_connection_releases_its_channels(pair: Pair) -> None:
    b1 = Fake("b1", user_id="only")
    channels = pair.two.cluster.subscriptions.channels
    with trio.fail_after(CEILING):
        await pair.two.connect(b1)
        await pair.two.join(ROOM, b1)
        # tenant, user, its own channel, the group
        assert pair.two.cluster.subscriptions.channels == channels + 4
        pair.two.router.remove_connection(b1)
        assert pair.two.cluster.subscriptions.channels == channels
        await pair.two.wait_backplane_agrees()
        with pytest.raises(HubError, match=r"^Connection 'b1' does not exist\.$"):
            await pair.one.router.add_to_group("acme", "b1", ROOM)


async def test_scaled_router_join_then_send_from_the_other_process_arrives(pair: Pair) -> None:
    # hold() returns only once the channel is live: no sleep between join and send.
    a1 = Fake("a1")
    b1, b2 = Fake("b1"), Fake("b2")
    with trio.fail_after(CEILING):
        await pair.one.connect(a1)
        await pair.two.connect(b1, b2)
        for n in range(5):
            key = group_key("acme", f"local-{n}")
            await pair.two.join(key, b1)
            await pair.one.router.send_group(key, said(f"local-{n}"))
        for n in range(5):
            key = group_key("acme", f"remote-{n}")
            await pair.one.router.add_to_group("acme", "b2", key)
            await pair.one.router.send_group(key, said(f"remote-{n}"))
        await b1.wait_for(5)
        await b2.wait_for(5)
        await settle(pair)
    assert b1.texts == [f"local-{n}" for n in range(5)]
    assert b2.texts == [f"remote-{n}" for n in range(5)]


# -- one connection on another process -------------------------------------------------------------


async def test_scaled_router_add_and_remove_a_connection_of_the_other_process(pair: Pair) -> None:
    a1, b1 = Fake("a1"), Fake("b1")
    with trio.fail_after(CEILING):
        await pair.one.connect(a1)
        await pair.two.connect(b1)
        await pair.one.router.add_to_group("acme", "b1", ROOM)  # acknowledged once done
        assert list(pair.two.router.local.member_ids(ROOM)) == ["b1"]
        assert pair.two.holders(ROOM) == 1
        await pair.one.router.send_group(ROOM, said("in"))
        await b1.wait_for(1)
        await pair.one.router.remove_from_group("acme", "b1", ROOM)
        assert list(pair.two.router.local.member_ids(ROOM)) == []
        await pair.one.router.send_group(ROOM, said("out"))
        await pair.two.router.send_group(ROOM, said("out too"))
        await settle(pair)
    assert b1.texts == ["in"]
    assert a1.messages == []


async def test_scaled_router_remote_join_of_another_tenants_group_is_refused(pair: Pair) -> None:
    b1 = Fake("b1", tenant_id="acme")
    with trio.fail_after(CEILING):
        await pair.two.connect(b1)
        with pytest.raises(HubError) as caught:
            await pair.one.router.add_to_group("acme", "b1", group_key("globex", "room"))
    assert str(caught.value) == "A connection can only join groups of its own tenant."
    assert list(pair.two.router.local.member_ids(group_key("globex", "room"))) == []


async def test_scaled_router_send_connection_reaches_the_other_process(pair: Pair) -> None:
    b1, b2 = Fake("b1"), Fake("b2")
    with trio.fail_after(CEILING):
        await pair.two.connect(b1, b2)
        await pair.one.router.send_connection("acme", "b1", said("just you"))
        await pair.one.router.send_connection("globex", "b1", said("wrong tenant"))
        await pair.one.router.send_connection("acme", "ghost", said("nobody"))
        await b1.wait_for(1)
        await settle(pair)
    assert b1.messages == [said("just you")]
    assert b2.messages == []


async def test_scaled_router_invoke_connection_returns_the_remote_result(pair: Pair) -> None:
    b1 = Fake("b1")
    with trio.fail_after(CEILING):
        await pair.two.connect(b1)
        result = await pair.one.router.invoke_connection(
            "acme", "b1", "GetName", (1, "two", [3]), 5.0
        )
    assert result == {"from": "b1", "target": "GetName", "arguments": [1, "two", [3]]}
    assert b1.invocations == [("GetName", (1, "two", [3]), 5.0)]


async def test_scaled_router_invoke_connection_propagates_the_error_text(pair: Pair) -> None:
    b1 = Fake("b1", answer=refuses)
    with trio.fail_after(CEILING):
        await pair.two.connect(b1)
        with pytest.raises(HubError) as caught:
            await pair.one.router.invoke_connection("acme", "b1", "GetName", (), 5.0)
    assert str(caught.value) == "The client refused: no name today."


async def test_scaled_router_invoke_connection_that_never_answers_times_out(pair: Pair) -> None:
    b1 = Fake("b1", answer=never_answers)
    timeout = 0.5
    with trio.fail_after(CEILING):
        await pair.two.connect(b1)
        started = trio.current_time()
        with pytest.raises(HubError) as caught:
            await pair.one.router.invoke_connection("acme", "b1", "GetName", (), timeout)
        waited = trio.current_time() - started
        # The client invocation on process two is not left running.
        while b1.cancelled_invocations == 0:
            await trio.sleep(0.01)
    assert timeout <= waited < timeout + REPLY_MARGIN + 1.0
    assert "b1" in str(caught.value)
    assert "did not answer" in str(caught.value)


@pytest.mark.parametrize(("tenant", "connection_id"), [("acme", "ghost"), ("globex", "b1")])
async def test_scaled_router_unknown_connection_fails_at_once(
    pair: Pair, tenant: str, connection_id: str
) -> None:
    b1 = Fake("b1", tenant_id="acme")
    expected = rf"^Connection '{connection_id}' does not exist\.$"
    key = group_key(tenant, "room")
    with trio.fail_after(CEILING):
        await pair.two.connect(b1)
        operations: list[Callable[[], Awaitable[Any]]] = [
            lambda: pair.one.router.add_to_group(tenant, connection_id, key),
            lambda: pair.one.router.remove_from_group(tenant, connection_id, key),
            lambda: pair.one.router.invoke_connection(tenant, connection_id, "GetName", (), 10.0),
        ]
        for operation in operations:
            started = trio.current_time()
            with pytest.raises(HubError, match=expected):
                await operation()
            assert trio.current_time() - started < PROMPT
    assert b1.invocations == []


async def test_scaled_router_close_user_connections_on_both_processes(pair: Pair) -> None:
    a_ada, a_bob = Fake("a_ada", user_id="ada"), Fake("a_bob", user_id="bob")
    b_ada1, b_ada2 = Fake("b_ada1", user_id="ada"), Fake("b_ada2", user_id="ada")
    b_bob = Fake("b_bob", user_id="bob")
    b_namesake = Fake("b_namesake", user_id="ada", tenant_id="globex")
    close = CloseMessage(error="Token revoked.", allow_reconnect=False)
    with trio.fail_after(CEILING):
        await pair.one.connect(a_ada, a_bob)
        await pair.two.connect(b_ada1, b_ada2, b_bob, b_namesake)
        assert await pair.one.router.close_user_connections("acme", "ada", close) == 3
        assert await pair.two.router.close_user_connections("acme", "nobody", close) == 0
    assert a_ada.closes == b_ada1.closes == b_ada2.closes == [close]
    assert a_bob.closes == b_bob.closes == b_namesake.closes == []


# -- tenants and hostile names ---------------------------------------------------------------------

HOSTILE = [
    ("t", "a:b"), ("t:a", "b"), ("t", "a%3Ab"), ("t%3Aa", "b"), ("t", "%"), ("t", "%25"),
    ("", ""), ("", "t"), ("t", ""), ("acme", "room"), ("globex", "room"), ("ü", "ä"),
    ("u\u0308", "ä"), ("群", "🙂"), ("t", "a\nb"), ("t", "*"), ("t", ">"),
]


async def test_scaled_router_hostile_names_never_mix_across_processes(pair: Pair) -> None:
    fakes: dict[tuple[str, str], tuple[Fake, Fake]] = {}
    with trio.fail_after(CEILING):
        for n, (tenant, name) in enumerate(HOSTILE):
            here, there = Fake(f"a{n}", tenant_id=tenant), Fake(f"b{n}", tenant_id=tenant)
            fakes[tenant, name] = (here, there)
            await pair.one.connect(here)
            await pair.two.connect(there)
            await pair.one.join(group_key(tenant, name), here)
            await pair.two.join(group_key(tenant, name), there)
        for tenant, name in HOSTILE:
            await pair.one.router.send_group(group_key(tenant, name), said([tenant, name]))
        await settle(pair)
    for (tenant, name), (here, there) in fakes.items():
        assert here.texts == there.texts == [[tenant, name]], (tenant, name)


async def test_scaled_router_same_group_in_two_hubs_never_mixes(pair: Pair) -> None:
    other_one = pair.one.cluster.router_for("other")
    other_two = pair.two.cluster.router_for("other")
    chat, other = Fake("chat-b"), Fake("other-b")
    with trio.fail_after(CEILING):
        await pair.two.connect(chat)
        await other_two.add_connection(other)
        await pair.two.join(ROOM, chat)
        await other_two.add_to_group("acme", "other-b", ROOM)
        await pair.one.router.send_group(ROOM, said("chat"))
        await other_one.send_group(ROOM, said("other"))
        await pair.one.router.send_group(tenant_key("acme"), said("chat all"))
        await settle(pair)
        with pytest.raises(HubError, match="does not exist"):
            await pair.one.router.add_to_group("acme", "other-b", ROOM)
    assert chat.texts == ["chat", "chat all"]
    assert other.texts == ["other"]


# -- what other processes may put on a channel -----------------------------------------------------

MALFORMED = [
    b"",
    b"\xc1",
    b"\x91" * 100_000 + b"\xc0",
    b"not a command at all",
    remote.encode(remote.Send("Receive", ("wrong kind",)))[:-1],
    bytes([0x92, 0x63, 0xC0]),  # [99, nil]
]


async def test_scaled_router_malformed_commands_are_dropped_and_logged(
    pair: Pair, caplog: pytest.LogCaptureFixture, client_errors: None
) -> None:
    caplog.set_level(logging.INFO, logger="voisnap")
    b1 = Fake("b1")
    own = names.connection_channel(HUB, "acme", "b1")
    with trio.fail_after(CEILING):
        await pair.two.connect(b1)
        await pair.two.join(ROOM, b1)
        for payload in MALFORMED:
            await pair.one.backplane.publish(names.channel(HUB, ROOM), payload)
            await pair.one.backplane.publish(own, payload)
        # Well-formed, but not for that channel: ignored.
        await pair.one.backplane.publish(own, remote.encode(remote.Fanout("Receive", ("x",))))
        await pair.one.backplane.publish(
            names.channel(HUB, ROOM), remote.encode(remote.Send("Receive", ("y",)))
        )
        with pytest.raises(RequestRefused):
            await pair.one.backplane.request(own, b"\xc1", TIMEOUT)
        # Delivery goes on.
        await pair.one.router.send_group(ROOM, said("still here"))
        await pair.one.router.send_connection("acme", "b1", said("and here"))
        await b1.wait_for(2)
        await settle(pair)
    assert b1.texts == ["still here", "and here"]
    dropped = [r for r in caplog.records if "malformed command" in r.getMessage()]
    assert len(dropped) >= 2 * len(MALFORMED)
    assert {r.levelno for r in dropped} == {logging.INFO}
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("timeout", [math.nan, -1.0], ids=["nan", "negative"])
async def test_scaled_router_invoke_with_a_bad_timeout_is_refused_quietly(
    pair: Pair, caplog: pytest.LogCaptureFixture, client_errors: None, timeout: float
) -> None:
    # ``decode`` accepts any number as Invoke's timeout; what a process must not do is
    # treat the bad one as a server bug (an error-level traceback, "internal error").
    caplog.set_level(logging.INFO, logger="voisnap")
    b1 = Fake("b1")
    own = names.connection_channel(HUB, "acme", "b1")
    with trio.fail_after(CEILING):
        await pair.two.connect(b1)
        with pytest.raises(RequestRefused) as caught:
            await pair.one.backplane.request(
                own, remote.encode(remote.Invoke("GetName", (), timeout)), TIMEOUT
            )
    assert caught.value.text != "internal error"
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_scaled_router_values_msgpack_cannot_carry_never_raise_out_of_a_send(
    pair: Pair, client_errors: None
) -> None:
    # A JSON client may send 18446744073709551616 (2**64, within the JSON codec's
    # 20 digits); the backplane's MessagePack cannot carry it. The local members
    # still get it, the send does not raise, and what follows goes through.
    a1, b1 = Fake("a1"), Fake("b1")
    huge = 2**64
    with trio.fail_after(CEILING):
        await pair.one.connect(a1)
        await pair.two.connect(b1)
        await pair.one.join(ROOM, a1)
        await pair.two.join(ROOM, b1)
        await pair.one.router.send_group(ROOM, said(huge))
        await pair.one.router.send_groups([ROOM, tenant_key("acme")], said(huge))
        await pair.one.router.send_connection("acme", "b1", said(huge))
        await pair.one.router.send_group(ROOM, said("after"))
        await b1.wait_for_text("after")
        await settle(pair)
    assert a1.texts == [huge, huge, "after"]
    assert b1.texts == ["after"]


async def test_scaled_router_remote_result_msgpack_cannot_carry_is_a_client_error(
    pair: Pair, caplog: pytest.LogCaptureFixture, client_errors: None
) -> None:
    # The same 2**64, as a JSON client's answer to a client invocation from the other
    # process: a HubError for the caller, and not a server bug in the log.
    async def huge(target: str, arguments: tuple[Any, ...], timeout: float) -> Any:
        return 2**64

    caplog.set_level(logging.INFO, logger="voisnap")
    b1 = Fake("b1", answer=huge)
    with trio.fail_after(CEILING):
        await pair.two.connect(b1)
        with pytest.raises(HubError):
            await pair.one.router.invoke_connection("acme", "b1", "GetNumber", (), 5.0)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_scaled_router_group_name_with_a_lone_surrogate_is_no_crash(pair: Pair) -> None:
    # json.loads('"\\ud800"') is a lone surrogate: a client can name a group so. It
    # may be refused (HubError), but nothing else may come out of the router.
    a1, b1 = Fake("a1"), Fake("b1")
    key = group_key("acme", "\ud800")
    with trio.fail_after(CEILING):
        await pair.one.connect(a1)
        await pair.two.connect(b1)
        joined = []
        for process, fake in ((pair.one, a1), (pair.two, b1)):
            try:
                await process.join(key, fake)
                joined.append(fake)
            except HubError:
                pass
        try:
            await pair.one.router.add_to_group("acme", "b1", group_key("acme", "x\ud800"))
        except HubError:
            pass
        await pair.one.router.send_group(key, said("odd"))
        await settle(pair)
    for fake in joined:
        assert fake.texts == ["odd"]


# -- the backplane goes away and comes back --------------------------------------------------------


async def test_scaled_router_backplane_outage_and_recovery(
    pair: Pair, client_errors: None
) -> None:
    a1 = Fake("a1")
    b1, b2 = Fake("b1"), Fake("b2")
    later = group_key("acme", "made during the outage")
    close = CloseMessage(error="Token revoked.", allow_reconnect=False)
    with trio.fail_after(OUTAGE_CEILING):
        await pair.one.connect(a1)
        await pair.two.connect(b1, b2)
        await pair.one.join(ROOM, a1)
        await pair.two.join(ROOM, b1)
        await pair.outage.stop()

        with trio.fail_after(TIMEOUT):
            # Local delivery goes on; nothing raises out of a send.
            await pair.one.router.send_group(ROOM, said("during"))
            await pair.one.router.send_groups([ROOM, tenant_key("acme")], said("during"))
            await pair.one.router.send_connection("acme", "b1", said("during"))
            await pair.one.router.send_connection("acme", "a1", said("direct"))
            # Joining a group of one's own process works, too.
            await pair.two.join(later, b2)
            await pair.two.router.send_group(later, said("local"))
        assert a1.texts == ["during", "during", "direct"]
        assert b2.texts == ["local"]

        # Cross-process operations fail promptly, with a HubError.
        operations: list[Callable[[], Awaitable[Any]]] = [
            lambda: pair.one.router.add_to_group("acme", "b2", ROOM),
            lambda: pair.one.router.remove_from_group("acme", "b1", ROOM),
            lambda: pair.one.router.invoke_connection("acme", "b1", "GetName", (), 10.0),
        ]
        for operation in operations:
            started = trio.current_time()
            with pytest.raises(HubError):
                await operation()
            assert trio.current_time() - started < TIMEOUT
        with trio.fail_after(TIMEOUT):
            try:
                await pair.one.router.close_user_connections("acme", "ada", close)
            except HubError:
                pass
        assert a1.closes == [close]  # its own process's connections, at least

        await pair.outage.start()
        # Cross-process delivery resumes (Redis: once each node has reconnected).
        n = 0
        while "resumed" not in [text[0] for text in b1.texts if isinstance(text, list)]:
            n += 1
            await pair.one.router.send_group(ROOM, said(["resumed", n]))
            with trio.move_on_after(0.1):
                await b1.wait_for(len(b1.messages) + 1)
        # The group joined during the outage is listened to now.
        await pair.one.router.send_group(later, said("later"))
        await b2.wait_for_text("later")
        # And so are the requests.
        await pair.one.router.add_to_group("acme", "b2", ROOM)
        assert await pair.one.router.invoke_connection("acme", "b1", "GetName", (), 5.0)
        # Closing a user's connections reaches the other process again once
        # presence is renewed (a Redis without persistence lost it).
        while await pair.one.router.close_user_connections("acme", "ada", close) < 3:
            await trio.sleep(0.1)
        await settle(pair)
    # At most once: what was published during the outage stayed lost.
    assert "during" not in b1.texts
    assert b1.closes[-1] == b2.closes[-1] == close
