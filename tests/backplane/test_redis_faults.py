"""RedisBackplane when the Redis server goes away and comes back, on a real server.

The session's Redis server (``tests.support.services.redis_server``) is stopped in
the middle of a test and started again on the same port. Without it, each node must
fail fast (``BackplaneUnavailable`` within a second, never a hang), keep ``run()``
going, and, once the server is back, reconnect and re-subscribe by itself. Server
stops and starts block, so they run in a thread while the nodes go on. Every test
starts the server again on its way out, for the tests after it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio

from tests.support.services import RedisServer
from voisnap.backplane import BackplaneUnavailable
from voisnap.backplane.redis import RedisBackplane

from .conftest import CEILING, Recorder, never, run_node, unique_prefix

PROMPT = 1.0
"""How long an operation may take to fail while Redis is down."""


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[RedisServer]:
    await trio.to_thread.run_sync(redis_server.start)
    try:
        yield redis_server
    finally:
        await trio.to_thread.run_sync(redis_server.start)


async def start_nodes(nursery: trio.Nursery, url: str) -> tuple[RedisBackplane, RedisBackplane]:
    prefix = unique_prefix()
    a, b = RedisBackplane(url, prefix=prefix), RedisBackplane(url, prefix=prefix)
    for node in (a, b):
        await nursery.start(run_node, node)
    return a, b


async def wait_disconnected(*nodes: RedisBackplane) -> None:
    while any(node.statistics().connected for node in nodes):
        await trio.sleep(0.01)


async def fails_promptly(operation: Callable[[], Awaitable[object]]) -> None:
    started = trio.current_time()
    with pytest.raises(BackplaneUnavailable):
        await operation()
    assert trio.current_time() - started < PROMPT


async def test_redis_outage_and_recovery(redis: RedisServer, nursery: trio.Nursery) -> None:
    at_b = Recorder()
    with trio.fail_after(CEILING):
        a, b = await start_nodes(nursery, redis.url)
        await b.subscribe("room", at_b)
        await b.subscribe("conn-1", at_b)
        await b.subscribe("hangs", Recorder(never))
        await a.publish("room", b"before")
        assert await at_b.next() == b"before"

        async def pending_request() -> None:
            # Waiting for a reply when the connection goes: fails then, not at its timeout.
            await fails_promptly(lambda: a.request("hangs", b"x", timeout=CEILING))

        async with trio.open_nursery() as requests:
            requests.start_soon(pending_request)
            while a.statistics().pending_requests == 0:
                await trio.sleep(0.01)
            await trio.to_thread.run_sync(redis.stop)
        await wait_disconnected(a, b)

        await fails_promptly(lambda: a.publish("room", b"lost"))
        await fails_promptly(lambda: a.request("conn-1", b"x", timeout=5))
        await fails_promptly(lambda: a.set("k", b"v", ttl=30))
        await fails_promptly(lambda: a.set("k", b"v", ttl=30, only_if_absent=True))
        await fails_promptly(lambda: a.get("k"))
        await fails_promptly(lambda: a.delete("k"))
        await fails_promptly(lambda: a.expire("k", 30))
        await fails_promptly(lambda: a.hset("h", "f", b"v"))
        await fails_promptly(lambda: a.hdel("h", "f"))
        await fails_promptly(lambda: a.hgetall("h"))
        await fails_promptly(a.check)
        # Subscribing while disconnected records the interest and returns at once.
        with trio.fail_after(PROMPT):
            await b.subscribe("during", at_b)
            await b.unsubscribe("hangs")

        await trio.to_thread.run_sync(redis.start)
        await a.wait_connected()
        await b.wait_connected()
        await a.publish("room", b"after")
        assert await at_b.next() == b"after"
        await a.publish("during", b"new")
        assert await at_b.next() == b"new"
        assert await a.request("conn-1", b"x", timeout=5) == b"re:x"
        assert await a.set("k", b"v", ttl=30) is True
        await a.check()
    assert a.statistics().reconnects >= 1 and b.statistics().reconnects >= 1
    assert at_b.received_so_far() == []  # "lost" stayed lost


async def test_redis_node_started_during_outage_connects_later(
    redis: RedisServer, nursery: trio.Nursery
) -> None:
    at_b = Recorder()
    with trio.fail_after(CEILING):
        await trio.to_thread.run_sync(redis.stop)
        # nursery.start returns after the first attempt, connected or not.
        a, b = await start_nodes(nursery, redis.url)
        assert not a.statistics().connected
        await fails_promptly(a.check)
        with trio.fail_after(PROMPT):
            await b.subscribe("room", at_b)
        await trio.to_thread.run_sync(redis.start)
        await a.wait_connected()
        await b.wait_connected()
        await a.publish("room", b"hello")
        assert await at_b.next() == b"hello"


async def test_redis_malformed_envelope_is_dropped(
    redis: RedisServer, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voisnap.backplane.redis")
    at_b = Recorder()
    with trio.fail_after(CEILING):
        a, b = await start_nodes(nursery, redis.url)
        await b.subscribe("room", at_b)
        channel = b.names.channel("room").decode()
        for garbage in ("", "not msgpack", "\x93\x01\xa1x"):
            reply = await trio.to_thread.run_sync(redis.execute, "PUBLISH", channel, garbage)
            assert reply == b":1"
        await a.publish("room", b"still fine")
        assert await at_b.next() == b"still fine"
    assert b.statistics().dropped == 3
    assert sum("malformed envelope" in r.getMessage() for r in caplog.records) == 3


async def test_redis_publish_waits_while_queue_full_then_fails(
    redis: RedisServer, nursery: trio.Nursery
) -> None:
    at_b = Recorder()
    prefix = unique_prefix()
    a = RedisBackplane(redis.url, prefix=prefix, queue_size=4, timeout=0.3)
    b = RedisBackplane(redis.url, prefix=prefix)
    with trio.fail_after(CEILING):
        for node in (a, b):
            await nursery.start(run_node, node)
        await b.subscribe("room", at_b)
        # Redis holds back PUBLISH (a write) for a second: a's writer waits, its queue fills.
        reply = await trio.to_thread.run_sync(redis.execute, "CLIENT", "PAUSE", "1000", "WRITE")
        assert reply == b"+OK"
        accepted = []
        started = trio.current_time()
        with pytest.raises(BackplaneUnavailable, match="queue"):
            for n in range(100):
                await a.publish("room", b"%d" % n)
                accepted.append(b"%d" % n)
        assert 0.3 <= trio.current_time() - started < 0.3 + PROMPT
        assert 4 <= len(accepted) <= 4 + 512  # the queue, and at most one batch in flight
        # Once Redis goes on, what was accepted arrives, in order.
        assert [await at_b.next() for _ in accepted] == accepted
