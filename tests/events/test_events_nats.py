"""``/v1/events`` on a real NATS server (issue 20: ``--nats-url``; docs/v1-events.md,
"Other services' events"), one process.

- another service publishes on NATS (the text protocol, over a socket): voisnap's
  subscribers get it, for the whole tenant;
- voisnap's own events are on NATS, in their envelope, for other services.

Across processes: tests/cluster/test_events_across_processes.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import trio

from tests.events.test_events import chat, events_of, subscribe
from tests.support.server import ServerProcess
from tests.support.services import NatsServer

TIMEOUT = 15


class RawNats:
    """Just enough of the NATS text protocol: CONNECT, PUB, SUB and MSG."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = await self.stream.receive_some(65536)
            assert chunk, "NATS closed the connection"
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    async def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size + 2:
            self.buffer += await self.stream.receive_some(65536)
        data, self.buffer = self.buffer[:size], self.buffer[size + 2:]
        return data

    async def publish(self, subject: str, payload: bytes) -> None:
        await self.stream.send_all(f"PUB {subject} {len(payload)}\r\n".encode() + payload
                                   + b"\r\n")

    async def subscribe(self, subject: str) -> None:
        await self.stream.send_all(f"SUB {subject} 1\r\nPING\r\n".encode())
        while await self.line() != b"PONG":
            pass

    async def message(self) -> tuple[str, bytes]:
        """The next MSG: its subject and payload (PINGs answered on the way)."""
        while True:
            line = await self.line()
            if line == b"PING":
                await self.stream.send_all(b"PONG\r\n")
            elif line.startswith(b"MSG "):
                parts = line.split()
                return parts[1].decode(), await self.exactly(int(parts[-1]))


@asynccontextmanager
async def raw_nats(nats: NatsServer) -> AsyncIterator[RawNats]:
    stream = await trio.open_tcp_stream("127.0.0.1", nats.port)
    async with stream:
        client = RawNats(stream)
        assert (await client.line()).startswith(b"INFO ")
        await stream.send_all(b'CONNECT {"verbose":false}\r\n')
        yield client


async def test_events_published_on_nats_reach_subscribers(
    start_server: Callable[..., ServerProcess], nats_server: NatsServer
) -> None:
    server = start_server(settings={"nats_url": nats_server.url})
    with trio.fail_after(TIMEOUT):
        async with events_of(server, server.token(user="a")) as first, \
                events_of(server, server.token(user="b")) as second, raw_nats(nats_server) as bus:
            await subscribe(first, "s", "events.acme.crm.contact.created.*")
            await subscribe(second, "s", "events.acme.crm.>")
            await bus.publish("events.acme.crm.contact.created.c1", b'{"name": "Ada"}')
            await bus.publish("events.acme.crm.contact.note.c1", b"not json")
            await bus.publish("events.other.crm.contact.created.c2", b"{}")
            await bus.publish("elsewhere.acme.crm.contact.created.c3", b"{}")
            got = await first.until_type("event")
            both = [await second.until_type("event"), await second.until_type("event")]
    assert (got["topic"], got["data"]) == ("events.acme.crm.contact.created.c1", {"name": "Ada"})
    assert [e["data"] for e in both] == [{"name": "Ada"}, "not json"]


async def test_voisnaps_own_events_are_on_nats(
    start_server: Callable[..., ServerProcess], nats_server: NatsServer
) -> None:
    server = start_server(settings={"nats_url": nats_server.url, "agent_token_delay": "0.001"})
    token = server.token(user="ada")
    with trio.fail_after(TIMEOUT):
        async with raw_nats(nats_server) as bus, events_of(server, token) as client:
            await bus.subscribe("events.acme.tasks.>")
            await subscribe(client, "t", "events.acme.tasks.task.completed.*")
            await chat(server, token, "hello")
            subject, payload = await bus.message()
            await client.until_type("event")
    envelope = json.loads(payload)
    assert subject.startswith("events.acme.tasks.task.queued.task_")
    assert envelope["voisnap_event"] == 1 and envelope["user_id"] == "ada"
    assert envelope["data"]["status"] == "queued"


async def test_readiness_follows_nats(
    start_server: Callable[..., ServerProcess], nats_server: NatsServer
) -> None:
    server = start_server(settings={"nats_url": nats_server.url})

    async def ready() -> int:
        async with httpx.AsyncClient() as http:
            return (await http.get(f"{server.url}/readyz")).status_code

    with trio.fail_after(30):
        assert await ready() == 200
        nats_server.stop()
        try:
            while await ready() != 503:  # the bus notices the server is gone
                await trio.sleep(0.05)
        finally:
            nats_server.start()
        while await ready() != 200:  # and reconnects
            await trio.sleep(0.05)
