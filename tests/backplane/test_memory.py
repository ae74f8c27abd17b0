"""What only the in-memory backplane promises: the one-process default costs next to
nothing, keys expire by trio's clock (so an autojump clock skips a minute at once), a
broker can be stopped to test what sits above a backplane, and a node that cannot
keep up drops messages instead of slowing the publisher."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from voisnap.backplane import (
    BackplaneUnavailable,
    MemoryBackplane,
    MemoryBroker,
    NoSubscriber,
)

from .conftest import CEILING, Recorder, never, run_node


async def test_memory_lone_node_needs_nothing_else(nursery: trio.Nursery) -> None:
    node = MemoryBackplane()
    await nursery.start(run_node, node)
    at_node = Recorder()
    with trio.fail_after(CEILING):
        await node.subscribe("room", at_node)
        for _ in range(100):
            await node.publish("room", b"x")  # the router delivered locally already
        assert await node.request("room", b"ping", timeout=1) == b"re:ping"
        with pytest.raises(NoSubscriber):
            await node.request("elsewhere", b"ping", timeout=1)
        await node.check()
    assert at_node.received_so_far() == []
    statistics = node.statistics()
    assert (statistics.published, statistics.received, statistics.dropped) == (100, 0, 0)


async def test_memory_keys_expire_by_trio_clock(autojump_clock: trio.testing.MockClock) -> None:
    node = MemoryBackplane()
    await node.set("claim", b"a", ttl=60)
    await node.hset("presence", "conn-1", b"alice")
    await node.expire("presence", 120)
    await trio.sleep(59.9)
    assert await node.get("claim") == b"a"
    await trio.sleep(0.2)
    assert await node.get("claim") is None
    assert await node.hgetall("presence") == {"conn-1": b"alice"}
    await trio.sleep(60)
    assert await node.hgetall("presence") == {}


async def test_memory_broker_stop_and_start(nursery: trio.Nursery) -> None:
    broker = MemoryBroker()
    a, b = MemoryBackplane(broker), MemoryBackplane(broker)
    for node in (a, b):
        await nursery.start(run_node, node)
    at_b = Recorder()
    waiting = Recorder(never)
    with trio.fail_after(CEILING):
        await b.subscribe("room", at_b)
        await b.subscribe("hangs", waiting)

        async def pending_request() -> None:
            with pytest.raises(BackplaneUnavailable):
                await a.request("hangs", b"x", timeout=CEILING)

        async with trio.open_nursery() as requests:
            requests.start_soon(pending_request)
            while not waiting.requests:
                await trio.sleep(0)
            broker.stop()
        assert not a.statistics().connected
        for operation in (
            lambda: a.publish("room", b"x"),
            lambda: a.request("room", b"x", timeout=1),
            lambda: a.set("k", b"v", ttl=1),
            lambda: a.get("k"),
            lambda: a.hgetall("h"),
            a.check,
        ):
            with pytest.raises(BackplaneUnavailable):
                await operation()
        broker.start()
        await a.wait_connected()
        await a.publish("room", b"back")
        assert await at_b.next() == b"back"


async def test_memory_slow_node_drops_messages() -> None:
    broker = MemoryBroker()
    a, b = MemoryBackplane(broker), MemoryBackplane(broker, inbox_size=2)
    # b's run() is not running: nothing drains its inbox
    await b.subscribe("room", Recorder())
    for n in range(5):
        await a.publish("room", b"%d" % n)
    assert b.statistics().dropped == 3
