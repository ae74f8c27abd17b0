"""NatsBus, the NATS island, against a real ``nats-server``.

The session's server (``tests.support.services.nats_server``) is shared; each test uses
subjects of its own, so what another test left behind cannot be mistaken for its own.
Messages are awaited with a ``trio.fail_after`` ceiling, never a sleep; states (connected
or not) are polled under the same ceiling. Server stops and starts block, so they run in a
thread, and every test that stops the server starts it again on its way out.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable

import pytest
import trio

from tests.support.services import NatsServer, free_port, talk
from voisnap.islands import nats as island
from voisnap.islands.nats import BusUnavailable, NatsBus

CEILING = 10.0
_tests = itertools.count(1)


class Recorder:
    """A ``deliver`` that keeps what it is given and lets a test wait for it."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._changed = trio.Event()

    def __call__(self, subject: str, payload: bytes) -> None:
        self.messages.append((subject, payload))
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, count: int) -> list[tuple[str, bytes]]:
        with trio.fail_after(CEILING):
            while len(self.messages) < count:
                await self._changed.wait()
        return self.messages


def prefix() -> str:
    """``events.tN``: this test's own subjects."""
    return f"events.t{next(_tests)}"


async def until(predicate: Callable[[], bool]) -> None:
    with trio.fail_after(CEILING):
        while not predicate():
            await trio.sleep(0.01)


@pytest.fixture
async def nats(nats_server: NatsServer) -> AsyncIterator[NatsServer]:
    await trio.to_thread.run_sync(nats_server.start)
    try:
        yield nats_server
    finally:
        await trio.to_thread.run_sync(nats_server.start)


async def start_bus(nursery: trio.Nursery, url: str) -> tuple[NatsBus, Recorder]:
    bus, recorder = NatsBus(url), Recorder()
    await nursery.start(bus.run, recorder)
    assert bus.connected
    return bus, recorder


def nats_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "voisnap-nats" and t.is_alive()]


async def test_nats_bus_delivers_what_it_publishes_in_order(nats: NatsServer) -> None:
    topic = prefix()
    async with trio.open_nursery() as nursery:
        bus, recorder = await start_bus(nursery, nats.url)
        sent = [(f"{topic}.task.completed.task_{i}", b"%d" % i) for i in range(1000)]
        for subject, payload in sent:
            await bus.publish(subject, payload)
        assert await recorder.wait_for(1000) == sent
        assert bus.statistics() == {"published": 1000, "received": 1000, "dropped": 0,
                                    "reconnects": 0}
        nursery.cancel_scope.cancel()


async def test_nats_bus_concurrent_publishers_each_keep_their_order(nats: NatsServer) -> None:
    topic = prefix()
    async with trio.open_nursery() as nursery:
        bus, recorder = await start_bus(nursery, nats.url)

        async def publisher(name: str) -> None:
            for i in range(200):
                await bus.publish(f"{topic}.{name}", b"%d" % i)

        async with trio.open_nursery() as publishers:
            for name in ("a", "b", "c"):
                publishers.start_soon(publisher, name)
        messages = await recorder.wait_for(600)
        for name in ("a", "b", "c"):
            mine = [p for s, p in messages if s == f"{topic}.{name}"]
            assert mine == [b"%d" % i for i in range(200)]
        nursery.cancel_scope.cancel()


async def test_nats_bus_two_buses_hear_each_other_and_themselves(nats: NatsServer) -> None:
    topic = prefix()
    async with trio.open_nursery() as nursery:
        a, heard_by_a = await start_bus(nursery, nats.url)
        b, heard_by_b = await start_bus(nursery, nats.url)
        await a.publish(f"{topic}.from_a", b"A")
        await b.publish(f"{topic}.from_b", b"B")
        expected = {(f"{topic}.from_a", b"A"), (f"{topic}.from_b", b"B")}
        assert set(await heard_by_a.wait_for(2)) == expected
        assert set(await heard_by_b.wait_for(2)) == expected
        nursery.cancel_scope.cancel()


async def test_nats_bus_delivers_a_message_from_the_raw_protocol(nats: NatsServer) -> None:
    topic = prefix()
    async with trio.open_nursery() as nursery:
        _, recorder = await start_bus(nursery, nats.url)
        command = f"CONNECT {{}}\r\nPUB {topic}.x.y 5\r\nhello\r\nPING\r\n".encode()
        reply = await trio.to_thread.run_sync(talk, nats.port, command, b"PONG\r\n")
        assert reply.endswith(b"PONG\r\n")
        assert await recorder.wait_for(1) == [(f"{topic}.x.y", b"hello")]
        nursery.cancel_scope.cancel()


async def test_nats_bus_ignores_subjects_outside_its_own(nats: NatsServer) -> None:
    topic = prefix()
    async with trio.open_nursery() as nursery:
        bus, recorder = await start_bus(nursery, nats.url)
        await bus.publish(f"other{topic}.x", b"not for us")
        await bus.publish("events", b"not under events.>")
        # One connection's messages arrive in order: once the marker is here, the
        # others would have been too.
        await bus.publish(f"{topic}.marker", b"")
        assert await recorder.wait_for(1) == [(f"{topic}.marker", b"")]
        assert bus.statistics()["received"] == 1
        nursery.cancel_scope.cancel()


async def test_nats_bus_refuses_to_publish_while_nats_is_down(nats: NatsServer) -> None:
    topic = prefix()
    async with trio.open_nursery() as nursery:
        bus, recorder = await start_bus(nursery, nats.url)
        await trio.to_thread.run_sync(nats.stop)
        await until(lambda: not bus.connected)
        with trio.fail_after(1.0), pytest.raises(BusUnavailable, match="Not connected"):
            await bus.publish(f"{topic}.lost", b"")

        await trio.to_thread.run_sync(nats.start)
        await until(lambda: bus.connected)
        await bus.publish(f"{topic}.back", b"again")
        assert await recorder.wait_for(1) == [(f"{topic}.back", b"again")]
        assert bus.statistics()["reconnects"] == 1
        nursery.cancel_scope.cancel()


async def test_nats_bus_starts_while_nats_is_down_and_connects_later(
    nats: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(island, "FIRST_CONNECT_TIMEOUT", 0.2)
    topic = prefix()
    await trio.to_thread.run_sync(nats.stop)
    async with trio.open_nursery() as nursery:
        bus, recorder = NatsBus(nats.url), Recorder()
        with trio.fail_after(CEILING):
            await nursery.start(bus.run, recorder)
        assert not bus.connected
        with pytest.raises(BusUnavailable):
            await bus.publish(f"{topic}.early", b"")
        await trio.to_thread.run_sync(nats.start)
        await until(lambda: bus.connected)
        await bus.publish(f"{topic}.late", b"")
        assert await recorder.wait_for(1) == [(f"{topic}.late", b"")]
        nursery.cancel_scope.cancel()


async def test_nats_bus_never_connected_stops_promptly() -> None:
    bus = NatsBus(f"nats://127.0.0.1:{free_port()}")
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            await nursery.start(bus.run, Recorder())
            assert not bus.connected
            nursery.cancel_scope.cancel()
    assert nats_threads() == []
    with pytest.raises(BusUnavailable, match="not running"):
        await bus.publish("events.x", b"")


async def test_nats_bus_stop_joins_its_thread(nats: NatsServer) -> None:
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            bus, _ = await start_bus(nursery, nats.url)
            assert len(nats_threads()) == 1
            nursery.cancel_scope.cancel()
    assert nats_threads() == []
    assert not bus.connected


async def test_nats_bus_drops_what_trio_cannot_take_and_counts_it(
    nats: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(island, "INBOX_LIMIT", 10)
    topic = prefix()
    burst = "".join(f"PUB {topic}.burst 1\r\n{i % 10}\r\n" for i in range(100))
    command = f"CONNECT {{}}\r\n{burst}PING\r\n".encode()
    recorder = Recorder()

    def deliver(subject: str, payload: bytes) -> None:
        recorder(subject, payload)
        if subject == f"{topic}.first":
            # Hold trio's thread while 100 messages arrive on the island: only 10 fit.
            talk(nats.port, command, b"PONG\r\n")
            wait_blocking(lambda: bus.statistics()["received"] == 101)

    async with trio.open_nursery() as nursery:
        bus = NatsBus(nats.url)
        await nursery.start(bus.run, deliver)
        await bus.publish(f"{topic}.first", b"")
        messages = await recorder.wait_for(11)
        assert [s for s, _ in messages] == [f"{topic}.first"] + [f"{topic}.burst"] * 10
        assert bus.statistics() == {"published": 1, "received": 101, "dropped": 90,
                                    "reconnects": 0}
        nursery.cancel_scope.cancel()


def wait_blocking(predicate: Callable[[], bool]) -> None:
    """For the one test that must hold trio's thread: poll under a deadline."""
    deadline = time.monotonic() + CEILING
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the island did not receive the burst")
        time.sleep(0.01)


async def test_nats_bus_refuses_what_nats_cannot_carry(nats: NatsServer) -> None:
    topic = prefix()
    async with trio.open_nursery() as nursery:
        bus, recorder = await start_bus(nursery, nats.url)
        for subject in ("", f"{topic}.a b", f"{topic}.x\r\nPUB {topic}.injected 0\r\n"):
            with pytest.raises(ValueError, match="not a NATS subject"):
                await bus.publish(subject, b"")
        with pytest.raises(ValueError, match="more than NATS takes"):
            await bus.publish(f"{topic}.big", bytes(2 * 1024 * 1024))
        await bus.publish(f"{topic}.fine", b"")
        assert await recorder.wait_for(1) == [(f"{topic}.fine", b"")]
        nursery.cancel_scope.cancel()
