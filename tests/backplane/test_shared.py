"""The Backplane contract (``voisnap.backplane.base``), run on every implementation.

Each test gets ``nodes``: two connected nodes, ``a`` and ``b``, of one implementation
(see conftest). Nothing here knows which one it runs on: what holds for memory holds
for Redis. Waiting is on events (a message arriving), under a ``trio.fail_after``
ceiling; where only time can tell (a key's expiry), a short poll under the ceiling.
"""

from __future__ import annotations

import logging

import pytest
import trio

from voisnap.backplane import (
    BackplaneError,
    BackplaneStatistics,
    NoSubscriber,
    RequestRefused,
    RequestTimeout,
)

from .conftest import CEILING, Pair, Recorder

# -- publish / subscribe -------------------------------------------------------------------------


async def test_publish_reaches_other_node_not_own(nodes: Pair) -> None:
    at_a, at_b = Recorder(), Recorder()
    with trio.fail_after(CEILING):
        await nodes.a.subscribe("room", at_a)
        await nodes.b.subscribe("room", at_b)
        await nodes.a.publish("room", b"from a")
        assert await at_b.next() == b"from a"
        # b publishes only after "from a" went through the server, so had a been
        # given its own message, it would have come first.
        await nodes.b.publish("room", b"from b")
        assert await at_a.next() == b"from b"
    assert at_a.received_so_far() == at_b.received_so_far() == []


async def test_publish_keeps_order(nodes: Pair) -> None:
    at_b = Recorder()
    sent = [b"%d" % n for n in range(1000)]
    with trio.fail_after(CEILING):
        await nodes.b.subscribe("stream", at_b)
        for payload in sent:
            await nodes.a.publish("stream", payload)
        received = [await at_b.next() for _ in sent]
    assert received == sent


async def test_publish_without_subscribers_goes_nowhere(nodes: Pair) -> None:
    at_b = Recorder()
    with trio.fail_after(CEILING):
        await nodes.b.subscribe("other", at_b)
        await nodes.a.publish("nobody", b"lost")
        await nodes.a.publish("other", b"found")
        assert await at_b.next() == b"found"


async def test_subscribe_is_live_when_it_returns(nodes: Pair) -> None:
    at_b = Recorder()
    with trio.fail_after(CEILING):
        for n in range(20):
            await nodes.b.subscribe(f"fresh-{n}", at_b)
            await nodes.a.publish(f"fresh-{n}", b"%d" % n)
            assert await at_b.next() == b"%d" % n


async def test_subscribe_twice_is_an_error(nodes: Pair) -> None:
    with trio.fail_after(CEILING):
        await nodes.a.subscribe("once", Recorder())
        with pytest.raises(BackplaneError):
            await nodes.a.subscribe("once", Recorder())


async def test_unsubscribe_stops_delivery(nodes: Pair) -> None:
    at_b = Recorder()
    with trio.fail_after(CEILING):
        await nodes.b.subscribe("x", at_b)
        await nodes.b.subscribe("y", at_b)
        await nodes.b.unsubscribe("x")
        await nodes.b.unsubscribe("never subscribed")
        # Same publisher, so "x1" would arrive before "y1".
        await nodes.a.publish("x", b"x1")
        await nodes.a.publish("y", b"y1")
        assert await at_b.next() == b"y1"
        # And the channel can be subscribed again.
        await nodes.b.subscribe("x", at_b)
        await nodes.a.publish("x", b"x2")
        assert await at_b.next() == b"x2"


async def test_listener_failure_is_logged_and_delivery_goes_on(
    nodes: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    class Failing(Recorder):
        def message(self, payload: bytes) -> None:
            raise RuntimeError("listener bug")

    at_b = Recorder()
    with trio.fail_after(CEILING):
        await nodes.b.subscribe("bad", Failing())
        await nodes.b.subscribe("good", at_b)
        await nodes.a.publish("bad", b"boom")
        await nodes.a.publish("good", b"fine")
        assert await at_b.next() == b"fine"
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "'bad'" in record.getMessage()
    assert record.exc_info is not None and "listener bug" in str(record.exc_info[1])


# -- requests ------------------------------------------------------------------------------------


async def test_request_reply(nodes: Pair) -> None:
    at_b = Recorder()
    with trio.fail_after(CEILING):
        await nodes.b.subscribe("conn-1", at_b)
        assert await nodes.a.request("conn-1", b"ping", timeout=5) == b"re:ping"
        assert await nodes.a.request("conn-1", b"again", timeout=5) == b"re:again"
    assert at_b.requests == [b"ping", b"again"]


async def test_request_refused_carries_text(nodes: Pair) -> None:
    async def refuse(payload: bytes) -> bytes:
        raise RequestRefused("not here: " + payload.decode())

    with trio.fail_after(CEILING):
        await nodes.b.subscribe("conn-1", Recorder(refuse))
        with pytest.raises(RequestRefused) as refused:
            await nodes.a.request("conn-1", b"x", timeout=5)
    assert refused.value.text == "not here: x"


async def test_request_listener_failure_is_internal_error(
    nodes: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    async def fail(payload: bytes) -> bytes:
        raise ValueError("handler bug")

    with trio.fail_after(CEILING):
        await nodes.b.subscribe("conn-1", Recorder(fail))
        with pytest.raises(RequestRefused) as refused:
            await nodes.a.request("conn-1", b"x", timeout=5)
    assert refused.value.text == "internal error"
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.exc_info is not None and "handler bug" in str(record.exc_info[1])


async def test_request_timeout(nodes: Pair) -> None:
    async def never(payload: bytes) -> bytes:
        await trio.sleep_forever()
        raise AssertionError

    with trio.fail_after(CEILING):
        await nodes.b.subscribe("conn-1", Recorder(never))
        started = trio.current_time()
        with pytest.raises(RequestTimeout):
            await nodes.a.request("conn-1", b"x", timeout=0.2)
    assert 0.2 <= trio.current_time() - started < 2
    assert nodes.a.statistics().pending_requests == 0


async def test_request_without_subscriber(nodes: Pair) -> None:
    with trio.fail_after(CEILING):
        started = trio.current_time()
        with pytest.raises(NoSubscriber):
            await nodes.a.request("nobody", b"x", timeout=5)
    assert trio.current_time() - started < 1


async def test_request_to_own_listener_is_a_direct_call(nodes: Pair) -> None:
    at_a = Recorder()
    with trio.fail_after(CEILING):
        await nodes.a.subscribe("conn-1", at_a)
        assert await nodes.a.request("conn-1", b"local", timeout=5) == b"re:local"
    assert at_a.requests == [b"local"]
    assert nodes.a.statistics().requests_sent == 0
    assert nodes.a.statistics().requests_answered == 0


async def test_requests_run_concurrently(nodes: Pair) -> None:
    slow_arrived, release = trio.Event(), trio.Event()

    async def slow_until_fast(payload: bytes) -> bytes:
        if payload == b"slow":
            slow_arrived.set()
            await release.wait()
        else:
            release.set()
        return payload

    async def ask(payload: bytes, replies: list[bytes]) -> None:
        replies.append(await nodes.a.request("conn-1", payload, timeout=5))

    replies: list[bytes] = []
    with trio.fail_after(CEILING):
        await nodes.b.subscribe("conn-1", Recorder(slow_until_fast))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, b"slow", replies)
            await slow_arrived.wait()
            # "slow" waits for "fast": answered one at a time, neither would finish.
            nursery.start_soon(ask, b"fast", replies)
    assert replies == [b"fast", b"slow"]


# -- keys ----------------------------------------------------------------------------------------


async def test_keys_set_get_delete(nodes: Pair) -> None:
    with trio.fail_after(CEILING):
        assert await nodes.a.get("k") is None
        assert await nodes.a.set("k", b"v1", ttl=30) is True
        assert await nodes.b.get("k") == b"v1"  # shared between nodes
        assert await nodes.b.set("k", b"v2", ttl=30) is True
        assert await nodes.a.get("k") == b"v2"
        await nodes.b.delete("k")
        await nodes.b.delete("k")  # deleting what is gone is fine
        assert await nodes.a.get("k") is None


async def test_keys_set_only_if_absent(nodes: Pair) -> None:
    with trio.fail_after(CEILING):
        assert await nodes.a.set("owner", b"a", ttl=30, only_if_absent=True) is True
        assert await nodes.b.set("owner", b"b", ttl=30, only_if_absent=True) is False
        assert await nodes.b.get("owner") == b"a"


async def test_keys_expire_after_ttl(nodes: Pair) -> None:
    with trio.fail_after(CEILING):
        await nodes.a.set("short", b"v", ttl=0.1)
        await nodes.a.set("long", b"v", ttl=30)
        while await nodes.b.get("short") is not None:
            await trio.sleep(0.02)
        assert await nodes.b.get("long") == b"v"
        # and an expired ownership claim can be taken
        assert await nodes.b.set("short", b"b", ttl=30, only_if_absent=True) is True


async def test_keys_expire_changes_ttl(nodes: Pair) -> None:
    with trio.fail_after(CEILING):
        assert await nodes.a.expire("missing", 10) is False
        await nodes.a.set("k", b"v", ttl=30)
        assert await nodes.a.expire("k", 0.1) is True
        while await nodes.a.get("k") is not None:
            await trio.sleep(0.02)
        assert await nodes.a.expire("k", 10) is False


async def test_keys_ttl_must_be_positive(nodes: Pair) -> None:
    with trio.fail_after(CEILING), pytest.raises(ValueError):
        await nodes.a.set("k", b"v", ttl=0)


async def test_hash_set_get_delete(nodes: Pair) -> None:
    with trio.fail_after(CEILING):
        assert await nodes.a.hgetall("presence") == {}
        await nodes.a.hset("presence", "conn-1", b"alice")
        await nodes.b.hset("presence", "conn-2", b"bob")
        await nodes.b.hset("presence", "conn-2", b"bob2")
        assert await nodes.a.hgetall("presence") == {"conn-1": b"alice", "conn-2": b"bob2"}
        await nodes.a.hdel("presence", "conn-1")
        await nodes.a.hdel("presence", "conn-9")
        assert await nodes.b.hgetall("presence") == {"conn-2": b"bob2"}
        await nodes.a.hdel("presence", "conn-2")
        assert await nodes.b.hgetall("presence") == {}


async def test_hash_expires_as_a_whole(nodes: Pair) -> None:
    with trio.fail_after(CEILING):
        await nodes.a.hset("presence", "conn-1", b"alice")
        assert await nodes.a.expire("presence", 0.1) is True
        while await nodes.b.hgetall("presence"):
            await trio.sleep(0.02)
        await nodes.a.hset("presence", "conn-1", b"alice")
        await nodes.a.delete("presence")
        assert await nodes.b.hgetall("presence") == {}


async def test_keys_of_the_wrong_kind_are_an_error(nodes: Pair) -> None:
    with trio.fail_after(CEILING):
        await nodes.a.set("value", b"v", ttl=30)
        await nodes.a.hset("hash", "f", b"v")
        with pytest.raises(BackplaneError):
            await nodes.a.hgetall("value")
        with pytest.raises(BackplaneError):
            await nodes.a.hset("value", "f", b"v")
        with pytest.raises(BackplaneError):
            await nodes.a.get("hash")


# -- readiness and statistics --------------------------------------------------------------------


async def test_check_passes_when_connected(nodes: Pair) -> None:
    with trio.fail_after(CEILING):
        await nodes.a.check()
        await nodes.b.check()


async def test_node_ids_are_unique(nodes: Pair) -> None:
    assert len(nodes.a.node_id) == 32
    assert nodes.a.node_id != nodes.b.node_id


async def test_statistics(nodes: Pair) -> None:
    at_b = Recorder()
    with trio.fail_after(CEILING):
        await nodes.b.subscribe("room", at_b)
        await nodes.b.subscribe("conn-1", at_b)
        for n in range(3):
            await nodes.a.publish("room", b"%d" % n)
        for _ in range(3):
            await at_b.next()
        await nodes.a.request("conn-1", b"x", timeout=5)
    a, b = nodes.a.statistics(), nodes.b.statistics()
    assert isinstance(a, BackplaneStatistics)
    assert (a.connected, a.subscriptions, a.published, a.requests_sent) == (True, 0, 3, 1)
    assert (b.connected, b.subscriptions, b.received, b.requests_answered) == (True, 2, 3, 1)
    assert a.pending_requests == b.pending_requests == 0
    assert a.reconnects == b.reconnects == 0
    assert a.dropped == b.dropped == 0
