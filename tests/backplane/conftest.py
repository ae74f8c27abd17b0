"""Two backplane nodes on each implementation, for the one shared suite.

Like centrifuge's ``map_broker_shared_test.go``: every test of ``test_shared.py``
runs on a pair of ``MemoryBackplane`` nodes sharing one ``MemoryBroker``, and on a
pair of ``RedisBackplane`` nodes sharing the session's real Redis server
(``tests.support.services.redis_server``), each with a prefix of its own. Each node
runs its ``run()`` in the test's nursery; ``run()`` returning at all fails the test.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable

import attrs
import pytest
import trio

from voisnap.backplane import Backplane, MemoryBackplane, MemoryBroker
from voisnap.backplane.redis import RedisBackplane

CEILING = 10
"""Seconds any one test may take (trio-websocket's test policy)."""

Factory = Callable[[], tuple[Backplane, Backplane]]


async def echo(payload: bytes) -> bytes:
    return b"re:" + payload


async def never(payload: bytes) -> bytes:
    """An answer that never comes."""
    await trio.sleep_forever()
    raise AssertionError


class Recorder:
    """A Listener that keeps what it receives, in order, and answers with ``answer``."""

    def __init__(self, answer: Callable[[bytes], Awaitable[bytes]] = echo) -> None:
        self._answer = answer
        self._in, self._out = trio.open_memory_channel[bytes](math.inf)
        self.requests: list[bytes] = []

    def message(self, payload: bytes) -> None:
        self._in.send_nowait(payload)

    async def request(self, payload: bytes) -> bytes:
        self.requests.append(payload)
        return await self._answer(payload)

    async def next(self) -> bytes:
        return await self._out.receive()

    def received_so_far(self) -> list[bytes]:
        payloads = []
        while True:
            try:
                payloads.append(self._out.receive_nowait())
            except trio.WouldBlock:
                return payloads


@attrs.frozen
class Pair:
    a: Backplane
    b: Backplane
    kind: str


async def run_node(node: Backplane, *, task_status: trio.TaskStatus[None]) -> None:
    await node.run(task_status=task_status)
    raise AssertionError(f"{type(node).__name__}.run() returned")


def unique_prefix() -> str:
    return f"test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture(params=["memory", "redis"])
def factory(request: pytest.FixtureRequest) -> tuple[str, Factory]:
    if request.param == "memory":

        def memory_pair() -> tuple[Backplane, Backplane]:
            broker = MemoryBroker()
            return MemoryBackplane(broker), MemoryBackplane(broker)

        return "memory", memory_pair
    url = request.getfixturevalue("redis_url")
    prefix = unique_prefix()

    def redis_pair() -> tuple[Backplane, Backplane]:
        return RedisBackplane(url, prefix=prefix), RedisBackplane(url, prefix=prefix)

    return "redis", redis_pair


@pytest.fixture
async def nodes(factory: tuple[str, Factory], nursery: trio.Nursery) -> Pair:
    kind, make = factory
    a, b = make()
    with trio.fail_after(CEILING):
        for node in (a, b):
            await nursery.start(run_node, node)
            await node.wait_connected()
    return Pair(a, b, kind)
